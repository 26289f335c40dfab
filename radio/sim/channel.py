"""One radio link's impairments as a stateful streaming filter: the ONE implementation of every channel impairment.

Used by the in-process :class:`radio.sim.air.Air`, the ZeroMQ broker and the Pluto emulator. For an input stream ``x[n]``
(complex64, the transmitter's samples, ``n`` counted from the link's creation) :class:`LinkChannel` produces::

    y[n] = g · exp(j(2π f_off n / fs + φ[n])) · Σ_k c_k · x_interp(n − δ(n) − d_k)

in this order of stages:

1. **multipath** (TDL-A..E of 3GPP TR 38.901 scaled by ``delay_spread_s``, or an exponential PDP): block-fading taps
   ``c_k`` (Rayleigh; the TDL-D/E LOS path has constant amplitude and a random phase) at delays ``d_k`` rounded to the
   nearest sample; the mean powers are normalized to unit sum, so the average power gain over realizations is 1;
2. **bulk delay** ``delay_samples`` (integer part exact, fractional part by a fractional-delay FIR) and, when
   ``sco_ppm`` ≠ 0, **sampling-clock offset** as a time-varying delay ``δ(n) = delay_samples + sco_ppm·1e-6·n``
   realised by a polyphase interpolator with the same kernels tabulated at 2048 phases (nearest phase);
3. **complex gain and path loss** ``g = gain · 10^(−path_loss_db/20)``;
4. **carrier frequency offset** ``f_off = cfo_ppm·1e-6·fc`` as a phase ramp ``2π f_off n/fs`` (from the sample index,
   so continuous across blocks) and **Wiener phase noise** ``φ[n] = φ[n−1] + w[n]``, ``w ~ N(0, 2π·linewidth/fs)``.

Causality. The link never looks ahead (a transmitter may still schedule a burst for "now"), so a fractional delay ``D``
uses a kernel of half-length ``L = min(16, ceil(D))``: for ``D ≥ 15`` samples the full 32-tap Kaiser-windowed sinc
(β = 9; error ≤ −85 dB for |f| ≤ 0.4·fs), for smaller ``D`` a shorter kernel (Lagrange for L ≤ 4; ``D < 1``: linear
interpolation), accurate only at low frequencies — give links that need an accurate fractional delay a bulk delay of at
least 15 samples. ``docs/air.md`` has the measured accuracy per ``D``. The same rule sets the SCO interpolator's
half-length ``min(16, ceil(δ(n)))``. A negative ``sco_ppm`` shrinks the delay; it is clamped at 0 (a link cannot
deliver a sample before it was sent) and the clamped samples are counted in :attr:`LinkChannel.sco_clamped`.

Block invariance. The output does not depend on how the input stream is cut into ``process`` calls (up to float32
rounding): every stage keeps its history, the CFO phase is computed from the absolute sample index and the phase-noise
generator is consumed sample by sample.

Why our own code: scipy has the FIR primitives (``scipy.signal.oaconvolve`` is used for long impulse responses) but no
streaming, stateful channel with these impairments; Sionna's channels are batched torch blocks without stream state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass

import numpy as np

from radio.sim.tdl import TDL_PROFILES

#: allowed values of :attr:`LinkParams.profile`
PROFILES: tuple[str, ...] = ("none", "exp", *TDL_PROFILES)
#: half-length (taps each side) of the static fractional-delay kernel
FD_HALF_LENGTH = 16
#: half-length of the sampling-clock-offset interpolator and its number of tabulated phases
SCO_HALF_LENGTH = 16
SCO_PHASES = 2048
#: Kaiser window shape parameter of the windowed-sinc kernels (half-length > LAGRANGE_MAX_HALF_LENGTH)
KAISER_BETA = 9.0
#: kernels up to this half-length are Lagrange interpolators (better than a windowed sinc with so few taps)
LAGRANGE_MAX_HALF_LENGTH = 4
#: exponential PDPs are truncated where a tap falls this far below the first one
EXP_PDP_FLOOR_DB = 40.0
#: Doppler: sinusoids per Rayleigh tap, grid points per Doppler period (linear interpolation between them: error
#: ≤ (π/64)²/2 ≈ −58 dB) and samples per vectorized chunk
DOPPLER_SINUSOIDS = 32
DOPPLER_GRID_PER_PERIOD = 64
DOPPLER_CHUNK = 1 << 15
#: impulse responses longer than this use FFT overlap-add instead of direct convolution
_DIRECT_CONV_MAX_TAPS = 100


@dataclass(frozen=True)
class LinkParams:
    """Impairments of one transmitter→receiver link (all optional; the default is an ideal unit link).

    ``delay_samples``: bulk delay in samples (integer + fractional); ``gain``: complex amplitude gain;
    ``path_loss_db``: extra loss applied on top of ``gain``; ``cfo_ppm``: carrier offset in ppm of the carrier
    (f_off = cfo_ppm·1e-6·fc); ``sco_ppm``: sampling-clock offset (the delay grows by sco_ppm·1e-6 samples per sample);
    ``phase_noise_linewidth_hz``: 3-dB linewidth of Wiener phase noise; ``profile``: "none", "TDL-A".."TDL-E" or "exp";
    ``delay_spread_s``: RMS delay spread that scales the profile; ``seed``: seed of this link's random draws (None:
    derived from the owner's seed); ``doppler_hz``: maximum Doppler frequency of time-varying Rayleigh taps (Clarke
    spectrum; 0: block fading).
    """

    delay_samples: float = 0.0
    gain: complex = 1.0
    path_loss_db: float = 0.0
    cfo_ppm: float = 0.0
    sco_ppm: float = 0.0
    phase_noise_linewidth_hz: float = 0.0
    profile: str = "none"
    delay_spread_s: float = 30e-9
    seed: int | None = None
    doppler_hz: float = 0.0

    def __post_init__(self):
        def check(name, ok, expected):
            if not ok:
                raise ValueError(f"LinkParams.{name} = {getattr(self, name)!r}: expected {expected}")

        check("delay_samples", _finite(self.delay_samples) and self.delay_samples >= 0, "a finite number >= 0")
        check("gain", isinstance(self.gain, (int, float, complex, np.number)) and np.isfinite(complex(self.gain)),
              "a finite (complex) number")
        check("path_loss_db", _finite(self.path_loss_db), "a finite number of dB")
        check("cfo_ppm", _finite(self.cfo_ppm), "a finite number of ppm")
        check("sco_ppm", _finite(self.sco_ppm) and abs(self.sco_ppm) <= 1e4, "a finite number of ppm, |ppm| <= 1e4")
        check("phase_noise_linewidth_hz", _finite(self.phase_noise_linewidth_hz)
              and self.phase_noise_linewidth_hz >= 0, "a finite number >= 0 Hz")
        check("profile", self.profile in PROFILES, "one of " + ", ".join(repr(p) for p in PROFILES))
        check("delay_spread_s", _finite(self.delay_spread_s) and self.delay_spread_s >= 0, "a finite number >= 0 s")
        check("doppler_hz", _finite(self.doppler_hz) and self.doppler_hz >= 0, "a finite number >= 0 Hz")
        check("seed", self.seed is None or (isinstance(self.seed, (int, np.integer)) and not isinstance(self.seed, bool)
                                            and self.seed >= 0), "None or an integer >= 0")

    @property
    def is_ideal(self) -> bool:
        """True for the identity link (no delay, unit gain, no impairment)."""
        return (self.delay_samples == 0 and complex(self.gain) == 1 and self.path_loss_db == 0 and self.cfo_ppm == 0
                and self.sco_ppm == 0 and self.phase_noise_linewidth_hz == 0 and self.profile == "none")

    def replace(self, **changes) -> LinkParams:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


def _finite(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def stable_seed(*parts) -> np.random.SeedSequence:
    """A SeedSequence from ints and strings that is stable across processes (strings hashed with SHA-256)."""
    words: list[int] = []
    for p in parts:
        if isinstance(p, str):
            words.extend(np.frombuffer(hashlib.sha256(p.encode()).digest()[:16], dtype=np.uint32).tolist())
        else:
            words.append(int(p))
    return np.random.SeedSequence(words)


def power_delay_profile(profile: str, delay_spread_s: float, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean power delay profile of ``profile`` on the sample grid.

    Returns ``(lags, powers)``: int64[K] sample lags (TDL delays × delay_spread_s × sample_rate rounded to the nearest
    sample, equal lags merged) and float64[K] mean powers summing to 1. "none" is a single unit tap at lag 0. "exp" is
    a sampled exponential ``p_m ∝ r^m`` whose discrete RMS delay spread ``sqrt(r)/(1−r)/fs`` equals ``delay_spread_s``
    exactly (truncated 40 dB below the first tap).
    """
    if profile == "none" or delay_spread_s == 0:
        return np.zeros(1, np.int64), np.ones(1)
    if profile == "exp":
        x = delay_spread_s * sample_rate                   # delay spread in samples
        s = (-1.0 + math.sqrt(1.0 + 4.0 * x * x)) / (2.0 * x)  # sqrt(r) solving sqrt(r)/(1-r) = x
        r = s * s
        m = 1 + int(math.ceil(EXP_PDP_FLOOR_DB / 10 * math.log(10) / -math.log(r))) if r > 0 else 1
        p = r ** np.arange(m, dtype=np.float64)
        return np.arange(m, dtype=np.int64), p / p.sum()
    if profile not in TDL_PROFILES:
        raise ValueError(f"profile = {profile!r}: expected one of {', '.join(PROFILES)}")
    delays, powers = TDL_PROFILES[profile].scaled(delay_spread_s)
    lags = np.rint(delays * sample_rate).astype(np.int64)
    uniq, inv = np.unique(lags, return_inverse=True)
    merged = np.zeros(uniq.size)
    np.add.at(merged, inv, powers)
    return uniq, merged


def fd_weights(frac: np.ndarray | float, half_length: int) -> np.ndarray:
    """Fractional-delay interpolation weights.

    For a position ``i + frac`` (0 ≤ frac < 1) returns float64[..., 2·half_length] weights of the samples
    ``x[i + k]``, ``k = −half_length+1 … half_length``. Short kernels (half_length ≤ 4) are Lagrange interpolators
    (maximally flat at DC: the better choice with few taps); longer ones are ``sinc(k − frac)·kaiser((k − frac)/L)``
    with β = KAISER_BETA, normalized to unit DC gain (accuracy table in docs/air.md).
    """
    frac = np.asarray(frac, dtype=np.float64)[..., None]
    k = np.arange(-half_length + 1, half_length + 1, dtype=np.float64)
    if half_length <= LAGRANGE_MAX_HALF_LENGTH:
        h = np.ones(frac.shape[:-1] + k.shape)
        for j, kj in enumerate(k):
            for ki in k:
                if ki != kj:
                    h[..., j] *= (frac[..., 0] - ki) / (kj - ki)
        return h
    t = k - frac
    w = np.i0(KAISER_BETA * np.sqrt(np.clip(1.0 - (t / half_length) ** 2, 0.0, None))) / np.i0(KAISER_BETA)
    h = np.sinc(t) * w
    return h / h.sum(axis=-1, keepdims=True)


def fractional_delay_filter(delay: float, max_half_length: int = FD_HALF_LENGTH) -> tuple[int, np.ndarray]:
    """Causal FIR realising a delay of ``delay`` samples: ``(bulk, h)`` with ``y[n] = Σ_m h[m] x[n − bulk − m]``.

    Integer delays give ``h = [1]``. Otherwise the kernel half-length is ``L = min(max_half_length, ceil(delay))`` (no
    look-ahead), ``h`` is float64[2L] and ``bulk = ceil(delay) − L``.
    """
    c = math.ceil(delay)
    if c == delay:
        return int(c), np.ones(1)
    half = min(max_half_length, c)
    # y[n] = x(n - D) = Σ_k w_k x[ip + k] with ip = n - ceil(D), frac = ceil(D) - D; lag m = ceil(D) - k
    w = fd_weights(c - delay, half)             # k = -half+1 .. half
    return c - half, w[::-1].copy()             # lags ceil(D)-half .. ceil(D)+half-1


def _sco_table() -> np.ndarray:
    """float32[SCO_HALF_LENGTH, SCO_PHASES, 2·SCO_HALF_LENGTH]: weights for every half-length 1..SCO_HALF_LENGTH
    (zero-padded, centred)."""
    tab = np.zeros((SCO_HALF_LENGTH, SCO_PHASES, 2 * SCO_HALF_LENGTH), np.float32)
    frac = np.arange(SCO_PHASES) / SCO_PHASES
    for half in range(1, SCO_HALF_LENGTH + 1):
        lo = SCO_HALF_LENGTH - half
        tab[half - 1, :, lo:lo + 2 * half] = fd_weights(frac, half)
    return tab


_SCO_TABLE: np.ndarray | None = None


class LinkChannel:
    """Stateful streaming channel of one link (see the module docstring for the model).

    Parameters: ``params`` (:class:`LinkParams`), ``sample_rate`` (Hz), ``center_freq`` (Hz, for the CFO), ``seed``
    (int; used when ``params.seed`` is None) — the multipath realization and the phase noise are drawn from it.
    """

    def __init__(self, params: LinkParams, sample_rate: float, center_freq: float, seed: int = 0):
        if not isinstance(params, LinkParams):
            raise ValueError(f"params = {params!r}: expected a LinkParams")
        if not (_finite(sample_rate) and sample_rate > 0):
            raise ValueError(f"sample_rate = {sample_rate!r}: expected a finite number > 0 Hz")
        if not (_finite(center_freq) and center_freq >= 0):
            raise ValueError(f"center_freq = {center_freq!r}: expected a finite number >= 0 Hz")
        self.params = params
        self.sample_rate = float(sample_rate)
        self.center_freq = float(center_freq)
        self.seed = int(params.seed if params.seed is not None else seed)
        ss_fading, ss_phase = np.random.SeedSequence(self.seed).spawn(2)
        self._fading_rng = np.random.default_rng(ss_fading)
        self._pn_rng = np.random.default_rng(ss_phase)
        self._pn_std = math.sqrt(2 * math.pi * params.phase_noise_linewidth_hz / self.sample_rate)
        self._cfo_cycles = params.cfo_ppm * 1e-6 * self.center_freq / self.sample_rate  # cycles per sample
        self._sco = params.sco_ppm * 1e-6
        self._g = complex(params.gain) * 10.0 ** (-params.path_loss_db / 20.0)
        self.sco_clamped = 0      #: samples whose SCO delay would have been negative (clamped to 0)
        self._n = 0               # index of the next output sample
        self._phi = 0.0           # phase-noise state (rad)
        self._active_until = 0    # output index from which the output is zero if no further input arrives
        self._tv_hist: np.ndarray | None = None   # input history of the Doppler (time-varying) multipath stage
        self.new_realization()

    # ------------------------------------------------------------------ setup
    def new_realization(self) -> None:
        """Draw a new multipath realization (block fading: new taps; Doppler: new sinusoid angles and phases). Keeps
        the stream position and the filter history."""
        p = self.params
        lags, powers = power_delay_profile(p.profile, p.delay_spread_s, self.sample_rate)
        self._tv = None
        if p.profile == "none" or p.delay_spread_s == 0:
            row_lags, rows = np.zeros(1, np.int64), np.ones(1, np.complex128)
            los = np.zeros(1, bool)
        else:
            if p.profile == "exp":
                row_lags, row_powers, los = lags, powers, np.zeros(lags.size, bool)
            else:
                table = TDL_PROFILES[p.profile]
                row_delays, row_powers = table.scaled(p.delay_spread_s)
                row_lags = np.rint(row_delays * self.sample_rate).astype(np.int64)
                los = np.zeros(row_lags.size, bool)
                los[0] = table.los
            rows = self._rayleigh(row_powers)
            if los[0]:   # TDL-D/E row 0: specular LOS path, constant amplitude, random phase
                rows[0] = math.sqrt(row_powers[0]) * np.exp(2j * math.pi * self._fading_rng.random())
            if p.doppler_hz > 0:
                self._tv = self._doppler_model(lags, row_lags, np.sqrt(row_powers), los, rows)
        coeffs = np.zeros(lags.size, np.complex128)
        np.add.at(coeffs, np.searchsorted(lags, row_lags), rows)
        self.tap_lags = lags                  #: int64[K] sample lags of the realized taps
        self.tap_powers = powers              #: float64[K] mean tap powers (sum 1)
        self.tap_coeffs = coeffs              #: complex128[K] realized tap amplitudes (before gain; Doppler: at n=0)
        if self._tv is not None:              # time-varying taps run in their own stage; the LTI part is g·delay
            mp = np.full(1, self._g, np.complex128)
            if self._tv_hist is None or self._tv_hist.size != int(lags[-1]):
                self._tv_hist = np.zeros(int(lags[-1]), np.complex64)
            self.tap_coeffs = self._tv_taps(np.zeros(1, np.int64))[:, 0].astype(np.complex128)
        else:
            mp = np.zeros(int(lags[-1]) + 1, np.complex128)
            mp[lags] = coeffs
            mp *= self._g
        if self._sco == 0:
            bulk, fd = fractional_delay_filter(p.delay_samples)
            h = np.convolve(mp, fd)
        else:
            bulk, h = 0, mp
        self._install_filter(bulk, h)

    def _doppler_model(self, lags, row_lags, row_amp, los, rows) -> dict:
        """Sum-of-sinusoids Rayleigh processes (Clarke/Jakes spectrum, random arrival angles): row r's gain is
        u_r(n) = M^(−1/2) Σ_m exp(j(2π ν_rm n + φ_rm)) with ν_rm = f_D·cos(α_rm)/fs, α, φ ~ U[0, 2π), so that
        E[u_r(n+τ) u_r*(n)] = J0(2π f_D τ/fs). The LOS row stays constant."""
        m = DOPPLER_SINUSOIDS
        ray = ~los
        alpha = self._fading_rng.uniform(0, 2 * math.pi, (int(ray.sum()), m))
        phi = self._fading_rng.uniform(0, 2 * math.pi, (int(ray.sum()), m))
        nu = self.params.doppler_hz * np.cos(alpha) / self.sample_rate          # cycles per sample
        step = max(1, int(self.sample_rate / (self.params.doppler_hz * DOPPLER_GRID_PER_PERIOD)))
        lag_of_row = np.searchsorted(lags, row_lags)
        const = np.zeros(lags.size, np.complex128)
        np.add.at(const, lag_of_row[los], rows[los])
        return {"nu": nu, "phi": phi, "amp": row_amp[ray] / math.sqrt(m), "lag_of_row": lag_of_row[ray],
                "const": const, "step": step, "lags": lags}

    def _tv_grid(self, k0: int, k1: int) -> np.ndarray:
        """complex64[K, k1−k0]: the per-lag gains Σ_rows a_r u_r(t) at grid times t = k·step, k0 ≤ k < k1."""
        tv = self._tv
        t = np.arange(k0, k1, dtype=np.float64) * tv["step"]
        cyc = tv["nu"][:, :, None] * t[None, None, :]
        cyc -= np.floor(cyc)
        ph = (2 * math.pi * cyc + tv["phi"][:, :, None]).astype(np.float32)
        u = (np.cos(ph) + 1j * np.sin(ph)).sum(axis=1) * tv["amp"][:, None]     # (rows, grid)
        grid = np.zeros((tv["lags"].size, t.size), np.complex128)
        np.add.at(grid, tv["lag_of_row"], u)
        grid += tv["const"][:, None]
        return grid.astype(np.complex64)

    def _tv_taps(self, n: np.ndarray) -> np.ndarray:
        """complex64[K, len(n)]: per-lag gains at sample indices ``n`` (linear interpolation of the grid)."""
        step = self._tv["step"]
        k0 = int(n[0]) // step
        grid = self._tv_grid(k0, int(n[-1]) // step + 2)
        idx = n // step - k0
        if step == 1:
            return grid[:, idx]
        w = ((n % step) / step).astype(np.float32)
        return grid[:, idx] * (1 - w) + grid[:, idx + 1] * w

    def _time_varying(self, x: np.ndarray) -> np.ndarray:
        """y[n] = Σ_k c_k(n)·x[n − lag_k] with Doppler-varying c_k (kept input history of max-lag samples)."""
        lags = self._tv["lags"]
        full = np.concatenate((self._tv_hist, x)) if self._tv_hist.size else x
        off = self._tv_hist.size
        y = np.zeros(x.size, np.complex64)
        for i in range(0, x.size, DOPPLER_CHUNK):
            j = min(i + DOPPLER_CHUNK, x.size)
            c = self._tv_taps(np.arange(self._n + i, self._n + j, dtype=np.int64))
            for k, lag in enumerate(lags):
                y[i:j] += c[k] * full[off + i - lag:off + j - lag]
        if self._tv_hist.size:
            self._tv_hist = full[-self._tv_hist.size:].copy()
        return y

    def _rayleigh(self, powers: np.ndarray) -> np.ndarray:
        """complex128[K] circular Gaussian taps with E|c_k|² = powers[k]."""
        z = self._fading_rng.standard_normal((2, powers.size))
        return np.sqrt(powers / 2) * (z[0] + 1j * z[1])

    def _install_filter(self, bulk: int, h: np.ndarray) -> None:
        h = np.asarray(h, np.complex64)
        old_bulk = getattr(self, "_bulk", None)
        old_hist = getattr(self, "_hist", None)
        self._bulk = int(bulk)
        self._h = h
        self._scalar = h.size == 1
        need = self._bulk + h.size - 1            # input samples of history the LTI part needs
        hist = np.zeros(need, np.complex64)
        if old_hist is not None and old_bulk is not None and old_hist.size and need:
            k = min(need, old_hist.size)
            hist[-k:] = old_hist[-k:]
        self._hist = hist
        if self._sco != 0:
            global _SCO_TABLE
            if _SCO_TABLE is None:
                _SCO_TABLE = _sco_table()
            if not hasattr(self, "_sco_buf"):
                pre = math.ceil(self.params.delay_samples) + SCO_HALF_LENGTH + 2
                self._sco_buf = np.zeros(pre, np.complex64)   # LTI outputs with global index _sco_start...
                self._sco_start = -pre

    # ------------------------------------------------------------------ properties
    @property
    def is_identity(self) -> bool:
        """True when the link passes its input through unchanged (process() is a copy)."""
        return self.params.is_ideal

    @property
    def position(self) -> int:
        """Number of samples processed so far (index of the next output sample)."""
        return self._n

    @property
    def memory(self) -> int:
        """Samples after the last input until the output is guaranteed zero (delay + filter length + SCO drift)."""
        extra = int(self._tv["lags"][-1]) if self._tv is not None else 0
        if self._sco != 0:
            extra += math.ceil(max(0.0, self.params.delay_samples + self._sco * self._n)) + SCO_HALF_LENGTH + 2
        return self._bulk + self._h.size + extra

    @property
    def impulse_response(self) -> tuple[int, np.ndarray]:
        """``(bulk, h)``: the linear time-invariant part ``y[n] = Σ_m h[m] x[n − bulk − m]`` (complex64[M]), before the
        SCO interpolator, CFO and phase noise (with Doppler, after the time-varying taps, which it then excludes)."""
        return self._bulk, self._h.copy()

    # ------------------------------------------------------------------ streaming
    def process(self, x: np.ndarray) -> np.ndarray:
        """The link's output (complex64[N]) for the next N samples ``x`` (complex64[N]) of its input stream."""
        x = np.asarray(x)
        if x.ndim != 1:
            raise ValueError(f"x must be a 1-D complex64 array, got shape {x.shape}")
        return self._process(x.astype(np.complex64, copy=False), live=True)

    def _process(self, x: np.ndarray, live: bool) -> np.ndarray:
        n = x.size
        if n == 0:
            return np.zeros(0, np.complex64)
        if self._tv is not None:
            x = self._time_varying(x)
        y = self._lti(x)
        if self._sco != 0:
            y = self._resample(y)
        self._rotate(y)
        self._n += n
        if live:
            self._active_until = self._quiet_from()
        return y

    def _quiet_from(self) -> int:
        """First output index whose value is certainly zero if the input is zero from ``self._n`` on."""
        last_lti = self._n - 1 + self._bulk + self._h.size - 1      # last LTI output that may be nonzero
        if self._tv is not None:
            last_lti += int(self._tv["lags"][-1])
        if self._sco == 0:
            return last_lti + 1
        # output n reads LTI samples from floor(n - δ(n)) - L + 1 on, δ(n) = max(0, D + sco·n)
        reach = last_lti + SCO_HALF_LENGTH + 1
        grown = (reach + self.params.delay_samples) / (1.0 - self._sco)
        return max(reach, math.ceil(grown)) + 2

    def process_silence(self, n: int) -> np.ndarray | None:
        """Advance by ``n`` samples of zero input; returns the output (complex64[n]) or None when it is all zero
        (no input within the channel's memory). Cheaper than ``process(zeros)`` and gives the same result."""
        if n < 0:
            raise ValueError(f"n = {n}: expected a number of samples >= 0")
        if n == 0:
            return None
        if self._n < self._active_until:
            return self._process(np.zeros(n, np.complex64), live=False)
        # all history is zero: only the phase-noise generator and the clock move
        if self._pn_std:
            inc = self._pn_rng.standard_normal(n)
            inc *= self._pn_std
            self._phi = float(self._phi + inc.sum()) % (2 * math.pi)
        if self._sco != 0:
            end = self._n + n
            start = min(self._sco_buf_start_for(end) - 2, end)
            self._sco_buf = np.zeros(end - start, np.complex64)
            self._sco_start = start
            self._count_clamped(self._n, n)
        self._n += n
        self._active_until = self._n
        return None

    def _lti(self, x: np.ndarray) -> np.ndarray:
        """Bulk delay + FIR with kept history (exact direct convolution for short filters)."""
        h = self._h
        if self._hist.size == 0:
            return x * h[0] if (self._scalar and h[0] != 1) else x.copy()
        full = np.concatenate((self._hist, x))
        self._hist = full[-self._hist.size:].copy()
        n = x.size
        if self._scalar:                          # pure bulk delay (times a gain)
            y = full[:n].copy()
            if h[0] != 1:
                y *= h[0]
            return y
        seg = full[:n + h.size - 1]               # inputs x[n - bulk - m] for this block
        if h.size <= _DIRECT_CONV_MAX_TAPS:
            y = np.convolve(seg, h, mode="valid")
        else:
            from scipy.signal import oaconvolve   # lazy: scipy.signal takes ~1 s to import, rarely needed here
            y = oaconvolve(seg, h, mode="valid")
        return y.astype(np.complex64, copy=False)

    def _sco_buf_start_for(self, n: int) -> int:
        """Lowest LTI-output index the interpolator needs from output ``n`` on."""
        delay = max(0.0, self.params.delay_samples + self._sco * n)
        return math.floor(n - delay) - SCO_HALF_LENGTH

    def _count_clamped(self, n0: int, n: int) -> None:
        if self._sco < 0:
            # delay(n) = D + sco·n < 0  <=>  n > D / -sco
            first = math.floor(self.params.delay_samples / -self._sco) + 1
            self.sco_clamped += max(0, n0 + n - max(first, n0))

    def _resample(self, u: np.ndarray) -> np.ndarray:
        """Time-varying delay δ(n) = D + sco·n by the polyphase windowed-sinc interpolator (no look-ahead)."""
        n0, n = self._n, u.size
        buf = np.concatenate((self._sco_buf, u))
        start = self._sco_start                   # global index of buf[0]
        idx = np.arange(n0, n0 + n, dtype=np.float64)
        delay = self.params.delay_samples + self._sco * idx
        self._count_clamped(n0, n)
        np.maximum(delay, 0.0, out=delay)
        pos = idx - delay
        ip = np.floor(pos)
        phase = np.rint((pos - ip) * SCO_PHASES).astype(np.int64)
        wrap = phase == SCO_PHASES
        ip = ip.astype(np.int64) + wrap
        phase[wrap] = 0
        half = np.clip(np.ceil(delay), 1, SCO_HALF_LENGTH).astype(np.int64)
        w = _SCO_TABLE[half - 1, phase]                               # float32[n, 16]
        k = np.arange(-SCO_HALF_LENGTH + 1, SCO_HALF_LENGTH + 1)
        gather = ip[:, None] + k[None, :] - start
        np.clip(gather, 0, buf.size - 1, out=gather)                  # clipped entries carry zero weight
        g = buf[gather].view(np.float32).reshape(n, k.size, 2)                     # (re, im) pairs
        y = np.matmul(w[:, None, :], g)[:, 0, :].copy().view(np.complex64)[:, 0]  # Σ_k w·x, complex64[n]
        keep_from = self._sco_buf_start_for(n0 + n) - 2 - start
        keep_from = max(0, min(keep_from, buf.size))
        self._sco_buf = buf[keep_from:].copy()
        self._sco_start = start + keep_from
        return y

    def _rotate(self, y: np.ndarray) -> None:
        """Apply CFO and phase noise in place (absolute sample index → block invariant). The phase is formed in float64,
        reduced mod 2π, and only then rounded to float32 for cos/sin (error < 1e-6 rad)."""
        n = y.size
        if not self._cfo_cycles and not self._pn_std:
            return
        if self._cfo_cycles:
            cyc = np.arange(self._n, self._n + n, dtype=np.float64)
            cyc *= self._cfo_cycles
            cyc -= np.floor(cyc)
            phase = cyc
            phase *= 2 * math.pi
        else:
            phase = np.zeros(n, np.float64)
        if self._pn_std:
            inc = self._pn_rng.standard_normal(n)
            inc *= self._pn_std
            pn = np.cumsum(inc)
            pn += self._phi
            self._phi = float(pn[-1]) % (2 * math.pi)
            phase += pn
            np.remainder(phase, 2 * math.pi, out=phase)
        ph32 = phase.astype(np.float32)
        rot = np.empty(n, np.complex64)
        np.cos(ph32, out=rot.real)
        np.sin(ph32, out=rot.imag)
        y *= rot
