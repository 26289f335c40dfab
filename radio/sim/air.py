"""The simulated air: a sample-clock engine that superposes every transmitter at every receiver.

Each endpoint transmits bursts scheduled at integer sample times and receives

    r_rx[n] = Σ_tx  channel_{tx→rx}( s_tx )[n]  +  w_rx[n],      w_rx ~ CN(0, noise_power_rx)

where ``s_tx`` is the sum of the endpoint's scheduled bursts (overlapping bursts add) and ``channel`` is a
:class:`radio.sim.channel.LinkChannel` (or the identity for ideal links, which costs one add). The sum over transmitters is
sample accurate: the over-the-air superposition that over-the-air computation (A-DSGD) relies on.

Determinism: the receiver noise of sample ``t`` comes from a generator whose state is derived from ``(seed, receiver
name, t // NOISE_BLOCK)`` and each link's random draws from ``(seed, tx name, rx name)``, so the output depends only
on the seed and the schedule — not on how time is cut into :meth:`Air.advance` calls, nor on which other endpoints
exist.

Why our own code: no library offers a streaming multi-endpoint sample-clock air with timed bursts; this is the
project's core (see DESIGN.md). Speed: ideal links skip the channel entirely, transmit-only endpoints
(``receiving=False``) skip their noise, and the noise is generated as float32 directly into the output buffer, in
cache-sized blocks, by numpy's SFC64 generator (the fastest of numpy's bit generators for Gaussian draws).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from radio.base import LateError, as_samples
from radio.sim.channel import PROFILES, LinkChannel, LinkParams, stable_seed

#: AirConfig.channel values: "awgn" (no multipath) or a multipath profile name
CHANNELS: tuple[str, ...] = ("awgn", *[p for p in PROFILES if p != "none"])
#: receiver noise is generated in blocks of this many complex samples (random access by block; fits in cache)
NOISE_BLOCK = 1 << 15
_LINK_FIELDS = tuple(f.name for f in dataclasses.fields(LinkParams))


@dataclass
class AirConfig:
    """The YAML ``air:`` section: receiver noise floor and default/per-link impairments of the simulated air.

    ``snr_db`` sets every receiver's noise variance per complex sample to ``10**(-snr_db/10)`` (the SNR of a
    unit-power-per-used-subcarrier OFDM signal through a unit-gain link); ``noise_power`` sets it directly (give at
    most one; neither: noiseless). ``channel``: "awgn" or a multipath profile ("TDL-A".."TDL-E", "exp");
    ``doppler_hz`` > 0 makes its Rayleigh taps time-varying (Clarke spectrum) instead of block fading. The other
    fields are :class:`~radio.sim.channel.LinkParams` defaults for every link; ``links`` maps ``"tx->rx"`` to a dict of
    LinkParams fields overriding them for that link.
    """

    seed: int = 0
    snr_db: float | None = None
    noise_power: float | None = None
    channel: str = "awgn"
    delay_spread_s: float = 30e-9
    delay_samples: float = 0.0
    gain: float = 1.0
    path_loss_db: float = 0.0
    cfo_ppm: float = 0.0
    sco_ppm: float = 0.0
    phase_noise_linewidth_hz: float = 0.0
    doppler_hz: float = 0.0
    links: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.snr_db is not None and self.noise_power is not None:
            raise ValueError(f"snr_db = {self.snr_db!r} and noise_power = {self.noise_power!r}: give at most one")
        if self.snr_db is not None and not math.isfinite(self.snr_db):
            raise ValueError(f"snr_db = {self.snr_db!r}: expected a finite number of dB or null")
        if self.noise_power is not None and not (math.isfinite(self.noise_power) and self.noise_power >= 0):
            raise ValueError(f"noise_power = {self.noise_power!r}: expected a finite number >= 0 or null")
        if self.channel not in CHANNELS:
            raise ValueError(f"channel = {self.channel!r}: expected one of {', '.join(map(repr, CHANNELS))}")
        self.default_link()                                   # validates the impairment fields
        if not isinstance(self.links, dict):
            raise ValueError(f"links = {self.links!r}: expected a mapping 'tx->rx' -> LinkParams fields")
        for key, over in self.links.items():
            parse_link_key(key)
            if not isinstance(over, dict):
                raise ValueError(f"links[{key!r}] = {over!r}: expected a mapping of LinkParams fields "
                                 f"({', '.join(_LINK_FIELDS)})")
            unknown = sorted(set(over) - set(_LINK_FIELDS))
            if unknown:
                raise ValueError(f"links[{key!r}]: unknown key {unknown[0]!r}; allowed: {', '.join(_LINK_FIELDS)}")
            for name, value in over.items():   # YAML 1.1 reads 1e-7 as a string: accept numbers written like that
                if name not in ("profile", "seed") and isinstance(value, str):
                    try:
                        over[name] = complex(value) if name == "gain" else float(value)
                    except ValueError:
                        raise ValueError(f"links[{key!r}].{name} = {value!r}: expected a number") from None
            self.link_params(*parse_link_key(key))

    @property
    def receiver_noise_power(self) -> float:
        """Noise variance per complex sample at every receiver."""
        if self.snr_db is not None:
            return 10.0 ** (-self.snr_db / 10.0)
        return float(self.noise_power or 0.0)

    def default_link(self) -> LinkParams:
        """The LinkParams every link gets unless overridden in ``links``."""
        return LinkParams(delay_samples=self.delay_samples, gain=self.gain, path_loss_db=self.path_loss_db,
                          cfo_ppm=self.cfo_ppm, sco_ppm=self.sco_ppm,
                          phase_noise_linewidth_hz=self.phase_noise_linewidth_hz,
                          profile="none" if self.channel == "awgn" else self.channel,
                          delay_spread_s=self.delay_spread_s, doppler_hz=self.doppler_hz)

    def link_params(self, tx: str, rx: str) -> LinkParams:
        """LinkParams of link tx→rx (default plus its ``links`` override); ValueError names a bad override."""
        over = self.links.get(f"{tx}->{rx}", {})
        try:
            return dataclasses.replace(self.default_link(), **over)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"links['{tx}->{rx}']: {exc}") from None


def parse_link_key(key) -> tuple[str, str]:
    """``"ps->dev0"`` -> ("ps", "dev0"); ValueError naming the key otherwise."""
    if not isinstance(key, str) or key.count("->") != 1:
        raise ValueError(f"links key {key!r}: expected 'tx->rx' (two endpoint names joined by '->')")
    tx, rx = (s.strip() for s in key.split("->"))
    if not tx or not rx:
        raise ValueError(f"links key {key!r}: expected 'tx->rx' with non-empty endpoint names")
    return tx, rx


_M64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """SplitMix64 finalizer (Steele et al. 2014): a bijective 64-bit mixer used to derive per-block RNG states."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class _Endpoint:
    """One endpoint: its receiver noise and its scheduled bursts.

    The noise of sample ``t`` comes from block ``t // NOISE_BLOCK``, whose SFC64 state is derived from
    (seed, name, block index): noise is random-access, so it does not depend on how time is cut into advance() calls
    and a non-receiving endpoint can skip it without changing anything later.
    """

    def __init__(self, name: str, noise_power: float, seed: int, receiving: bool = True):
        self.name = name
        self.noise_power = float(noise_power)
        self.noise_std = np.float32(math.sqrt(self.noise_power / 2.0))
        self.receiving = receiving
        self._keys = [int(k) for k in stable_seed(seed, "noise", name).generate_state(3, np.uint64)]
        self._bitgen = np.random.SFC64(0)
        self._rng = np.random.Generator(self._bitgen)
        self._cache: tuple[int, np.ndarray] | None = None
        self.bursts: list[tuple[int, np.ndarray]] = []   # (start time, complex64 samples), any order

    def segment(self, t0: int, n: int) -> np.ndarray | None:
        """This endpoint's transmitted samples for [t0, t0+n) (complex64[n], maybe a read-only view) or None if
        silent; drops bursts that end before t0+n."""
        t1 = t0 + n
        hits = [(s, b) for s, b in self.bursts if s < t1 and s + b.size > t0]
        if hits:
            self.bursts = [(s, b) for s, b in self.bursts if s + b.size > t1]
        if not hits:
            return None
        if len(hits) == 1:
            s, b = hits[0]
            if s <= t0 and s + b.size >= t1:
                return b[t0 - s:t1 - s]
        out = np.zeros(n, np.complex64)
        for s, b in hits:
            lo, hi = max(s, t0), min(s + b.size, t1)
            out[lo - t0:hi - t0] += b[lo - s:hi - s]
        return out

    def _block_rng(self, block: int) -> np.random.Generator:
        """The generator of noise block ``block`` (state set from the keys and the block index; 12 warm-up draws)."""
        k0, k1, k2 = self._keys
        words = [_splitmix64(k0 ^ block), _splitmix64(k1 ^ _splitmix64(block)), _splitmix64((k2 + block) & _M64), 1]
        self._bitgen.state = {"bit_generator": "SFC64", "has_uint32": 0, "uinteger": 0,
                              "state": {"state": np.array(words, dtype=np.uint64)}}
        self._bitgen.random_raw(12)
        return self._rng

    def _fill(self, block: int, flat: np.ndarray) -> None:
        self._block_rng(block).standard_normal(out=flat, dtype=np.float32)
        flat *= self.noise_std

    def noise(self, t0: int, n: int, plus: list[np.ndarray] = ()) -> np.ndarray:
        """complex64[n]: receiver noise for samples [t0, t0+n) (zeros when noise_power is 0) plus the signals ``plus``
        (complex64[n] each), block by block so the sum is formed while the noise is still in cache."""
        if self.noise_power == 0:
            if not plus:
                return np.zeros(n, np.complex64)
            out = plus[0].copy()
            for p in plus[1:]:
                out += p
            return out
        out = np.empty(n, np.complex64)
        flat = out.view(np.float32)
        t, t1 = t0, t0 + n
        while t < t1:
            block = t // NOISE_BLOCK
            lo = t - block * NOISE_BLOCK
            hi = min(NOISE_BLOCK, t1 - block * NOISE_BLOCK)
            i, j = t - t0, t - t0 + hi - lo
            if lo == 0 and hi == NOISE_BLOCK:          # a whole block: generate in place
                self._fill(block, flat[2 * i:2 * j])
            else:                                      # part of a block: generate it once, keep it for the next call
                if self._cache is None or self._cache[0] != block:
                    buf = np.empty(NOISE_BLOCK, np.complex64)
                    self._fill(block, buf.view(np.float32))
                    self._cache = (block, buf)
                out[i:j] = self._cache[1][lo:hi]
            for p in plus:
                out[i:j] += p[i:j]
            t += hi - lo
        return out


_IDEAL = "ideal"
_CUT = "cut"


class Air:
    """Sample-clock engine of the simulated air (see the module docstring).

    ``sample_rate`` and ``center_freq`` in Hz; ``seed`` makes noise and channel draws reproducible. ``default_link``:
    the LinkParams of every pair not set with :meth:`set_link` (None: ideal unit link); ``default_noise_power``: the
    noise of endpoints added without one; ``link_overrides``: ``{(tx, rx): LinkParams}`` applied when both exist.
    An endpoint never hears itself unless that link is set explicitly. Not thread-safe: callers that share an Air
    between threads hold one lock around every call.
    """

    def __init__(self, sample_rate: float, center_freq: float, seed: int = 0, *,
                 default_link: LinkParams | None = None, default_noise_power: float = 0.0,
                 link_overrides: dict[tuple[str, str], LinkParams] | None = None):
        if not (math.isfinite(sample_rate) and sample_rate > 0):
            raise ValueError(f"sample_rate = {sample_rate!r}: expected a finite number > 0 Hz")
        if not (math.isfinite(center_freq) and center_freq >= 0):
            raise ValueError(f"center_freq = {center_freq!r}: expected a finite number >= 0 Hz")
        if not (math.isfinite(default_noise_power) and default_noise_power >= 0):
            raise ValueError(f"default_noise_power = {default_noise_power!r}: expected a finite number >= 0")
        self.sample_rate = float(sample_rate)
        self.center_freq = float(center_freq)
        self.seed = int(seed)
        self.default_link = default_link if (default_link is not None and not default_link.is_ideal) else None
        self.default_noise_power = float(default_noise_power)
        self._overrides = dict(link_overrides or {})
        self._now = 0
        self._endpoints: dict[str, _Endpoint] = {}
        self._links: dict[tuple[str, str], object] = {}   # (tx, rx) -> LinkChannel | _IDEAL | _CUT

    @classmethod
    def from_config(cls, cfg: AirConfig, sample_rate: float, center_freq: float) -> Air:
        """An Air whose links and noise follow an :class:`AirConfig` (endpoints are added later)."""
        overrides = {parse_link_key(k): cfg.link_params(*parse_link_key(k)) for k in cfg.links}
        return cls(sample_rate, center_freq, cfg.seed, default_link=cfg.default_link(),
                   default_noise_power=cfg.receiver_noise_power, link_overrides=overrides)

    # ------------------------------------------------------------------ endpoints and links
    @property
    def now(self) -> int:
        """The air's current sample time: the next sample advance() produces."""
        return self._now

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Names of the endpoints, in the order they were added."""
        return tuple(self._endpoints)

    def add_endpoint(self, name: str, noise_power: float | None = None, *, receiving: bool = True) -> str:
        """Add an endpoint (transmitter and receiver) with receiver noise variance ``noise_power`` per complex sample
        (None: the Air's default). ``receiving=False``: a transmit-only endpoint (see :meth:`set_receiving`).
        Returns the name."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"endpoint name = {name!r}: expected a non-empty string")
        if name in self._endpoints:
            raise ValueError(f"endpoint name = {name!r}: already on this air (endpoints: {list(self._endpoints)})")
        noise = self.default_noise_power if noise_power is None else noise_power
        if not (isinstance(noise, (int, float, np.floating)) and math.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise_power = {noise!r} for endpoint {name!r}: expected a finite number >= 0")
        self._endpoints[name] = _Endpoint(name, noise, self.seed, bool(receiving))
        for other in self._endpoints:
            for pair in ((name, other), (other, name)):
                if pair in self._overrides:
                    self.set_link(*pair, self._overrides[pair])
                elif pair[0] != pair[1] and self.default_link is not None:
                    self.set_link(*pair, self.default_link)
        return name

    def set_receiving(self, name: str, receiving: bool) -> None:
        """Whether advance() produces samples for endpoint ``name``. A transmit-only endpoint costs no noise generation;
        its links keep running, and its noise is random-access, so switching back gives the same samples as if it
        had received all along."""
        self._require(name, "endpoint").receiving = bool(receiving)

    def remove_endpoint(self, name: str) -> None:
        """Remove an endpoint, its scheduled bursts and its links."""
        self._require(name, "endpoint")
        del self._endpoints[name]
        self._links = {k: v for k, v in self._links.items() if name not in k}

    def set_link(self, tx: str, rx: str, params: LinkParams | None) -> None:
        """Set the impairments of link tx→rx (None: rx does not hear tx at all). The link's channel state starts now."""
        self._require(tx, "tx")
        self._require(rx, "rx")
        if params is None:
            self._links[(tx, rx)] = _CUT
        elif not isinstance(params, LinkParams):
            raise ValueError(f"params = {params!r}: expected a LinkParams or None")
        elif params.is_ideal:
            self._links[(tx, rx)] = _IDEAL
        else:
            seed = int(stable_seed(self.seed, "link", tx, rx).generate_state(1)[0])
            self._links[(tx, rx)] = LinkChannel(params, self.sample_rate, self.center_freq, seed)

    def link(self, tx: str, rx: str) -> LinkChannel | None:
        """The LinkChannel of tx→rx, or None for an ideal (or cut) link."""
        ch = self._links.get((tx, rx))
        return ch if isinstance(ch, LinkChannel) else None

    def redraw_fading(self) -> None:
        """Start a new block-fading block: every multipath link draws its next realization (deterministic per seed)."""
        for ch in self._links.values():
            if isinstance(ch, LinkChannel) and ch.params.profile != "none":
                ch.new_realization()

    def _link_kind(self, tx: str, rx: str):
        ch = self._links.get((tx, rx))
        if ch is None:
            return _CUT if tx == rx else _IDEAL
        return ch

    def _require(self, name: str, what: str) -> _Endpoint:
        try:
            return self._endpoints[name]
        except KeyError:
            raise ValueError(f"{what} = {name!r}: not an endpoint of this air "
                             f"(endpoints: {list(self._endpoints)})") from None

    # ------------------------------------------------------------------ time
    def schedule(self, tx: str, samples: np.ndarray, at: int) -> int:
        """Transmit ``samples`` (complex64[N], copied) from endpoint ``tx`` starting at sample time ``at`` (≥ now);
        overlapping bursts of one endpoint add. Returns ``at``; raises LateError if ``at < now``."""
        ep = self._require(tx, "tx")
        if isinstance(at, bool) or not isinstance(at, (int, np.integer)):
            raise ValueError(f"at = {at!r}: expected an integer sample time")
        at = int(at)
        if at < self._now:
            raise LateError(f"transmission from {tx!r}", at, self._now)
        arr = as_samples(samples, "samples")
        if arr.size:
            ep.bursts.append((at, arr.copy()))
        return at

    def pending(self, tx: str) -> int:
        """Number of samples still scheduled (not yet transmitted) by ``tx`` (bounded-memory checks)."""
        ep = self._require(tx, "tx")
        return sum(min(b.size, s + b.size - self._now) for s, b in ep.bursts)

    def advance(self, n: int) -> dict[str, np.ndarray]:
        """Produce the next ``n`` samples at every receiving endpoint: {name: complex64[n]}; moves ``now`` by n."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n = {n!r}: expected an integer number of samples >= 0")
        n = int(n)
        t0 = self._now
        segments = {name: ep.segment(t0, n) for name, ep in self._endpoints.items()}
        heard: dict[str, list[np.ndarray]] = {rx: [] for rx in self._endpoints}
        # every channel must see every block (its state moves with time), whether its transmitter is on or not
        for (tx, rx), ch in self._links.items():
            if isinstance(ch, LinkChannel):
                seg = segments[tx]
                y = ch.process(seg) if seg is not None else ch.process_silence(n)
                if y is not None:
                    heard[rx].append(y)
        for tx, seg in segments.items():
            if seg is not None:
                for rx in self._endpoints:
                    if self._link_kind(tx, rx) is _IDEAL:
                        heard[rx].append(seg)
        out = {rx: ep.noise(t0, n, heard[rx]) for rx, ep in self._endpoints.items() if ep.receiving}
        self._now = t0 + n
        return out
