"""LoopbackRadio: several radios on one in-process :class:`radio.sim.air.Air` (e.g. a parameter server and K devices).

Every radio is an endpoint of a shared Air. ``rx(n, at)`` advances the air as far as it needs and keeps the samples the
other endpoints have not read yet in a shared hub, so radios can be driven one after the other from a single thread:

    air = Air(20e6, 2.4e9, seed=1)
    ps, dev = LoopbackRadio(air, "ps"), LoopbackRadio(air, "dev0")
    t = dev.tx(burst, at=dev.time_now() + 1000)
    samples, t0 = ps.rx(4000, at=t)

``realtime=True`` puts the air on the host's wall clock (a stand-in for hardware, used by the radio node): the air's
sample time follows ``time.monotonic()`` at the sample rate from the moment the first realtime radio of that air is
opened (one anchor per air, so every radio on it agrees); ``rx`` blocks until its samples exist, ``tx`` deadlines are
checked against the wall-derived time, and a continuing ``rx`` that fell more than ``max_buffer_samples`` behind loses
the oldest samples: it returns the oldest ones still held, with ``t0`` jumped (a gap), as a radio's overflow does.

Memory is bounded: an endpoint's buffer keeps only samples it has not consumed yet (a ``rx`` moves its cursor) and at
most ``max_buffer_samples`` of them; asking for samples that were dropped raises :class:`radio.base.LateError`.
"""

from __future__ import annotations

import collections
import math
import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np

from radio.sim.air import Air
from radio.base import LateError, Radio, RadioCapabilities, TxStatus, as_samples
from radio.sim.channel import LinkParams


@dataclass
class LoopbackArgs:
    """``radio.args`` of driver "loopback": the endpoint name on the shared air and the receive-buffer bound."""

    endpoint: str = "radio0"
    max_buffer_samples: int = 1 << 23
    realtime: bool = False

    def __post_init__(self):
        if not isinstance(self.endpoint, str) or not self.endpoint:
            raise ValueError(f"endpoint = {self.endpoint!r}: expected a non-empty endpoint name")
        if self.max_buffer_samples < 1:
            raise ValueError(f"max_buffer_samples = {self.max_buffer_samples!r}: expected an integer >= 1")


class _Buffer:
    """Received samples of one endpoint not consumed yet: chunks covering [start, start + size)."""

    def __init__(self, start: int, limit: int):
        self.start = start
        self.chunks: list[np.ndarray] = []
        self.size = 0
        self.limit = limit

    def append(self, x: np.ndarray) -> None:
        self.chunks.append(x)
        self.size += x.size
        if self.size > self.limit:
            self.drop_before(self.start + self.size - self.limit)

    def drop_before(self, t: int) -> None:
        """Forget samples before time t."""
        while self.chunks and self.start + self.chunks[0].size <= t:
            c = self.chunks.pop(0)
            self.start += c.size
            self.size -= c.size
        if self.chunks and self.start < t:
            k = t - self.start
            self.chunks[0] = self.chunks[0][k:]
            self.start += k
            self.size -= k
        if not self.chunks and self.start < t:
            self.start = t

    def read(self, t: int, n: int) -> np.ndarray:
        """complex64[n] for [t, t+n) (must be inside the buffer)."""
        out = np.empty(n, np.complex64)
        pos = self.start
        for c in self.chunks:
            lo, hi = max(pos, t), min(pos + c.size, t + n)
            if lo < hi:
                out[lo - t:hi - t] = c[lo - pos:hi - pos]
            pos += c.size
            if pos >= t + n:
                break
        return out


class _Hub:
    """Per-Air shared receive buffers of the loopback radios."""

    def __init__(self, air: Air):
        self.air = air
        self.buffers: dict[str, _Buffer] = {}
        self.lock = threading.RLock()               # the air and the buffers are shared by radios in any thread
        self.anchor: tuple[float, int] | None = None   # realtime: (time.monotonic(), air sample) of the wall clock

    def wall_now(self) -> int:
        """Realtime: the sample time the wall clock says now (the anchor is set by the first realtime radio)."""
        mono, t = self.anchor
        return t + int((time.monotonic() - mono) * self.air.sample_rate)

    def wall_of(self, t: int) -> float:
        """Realtime: ``time.monotonic()`` at which sample ``t`` exists."""
        mono, t_a = self.anchor
        return mono + (t - t_a) / self.air.sample_rate

    def register(self, name: str, limit: int) -> None:
        self.buffers[name] = _Buffer(self.air.now, limit)

    def advance_to(self, t: int) -> None:
        if t > self.air.now:
            out = self.air.advance(t - self.air.now)
            for name, buf in self.buffers.items():
                if name in out:
                    buf.append(out[name])


_HUBS: "weakref.WeakKeyDictionary[Air, _Hub]" = weakref.WeakKeyDictionary()


def _hub(air: Air) -> _Hub:
    hub = _HUBS.get(air)
    if hub is None:
        hub = _HUBS[air] = _Hub(air)
    return hub


class LoopbackRadio(Radio):
    """A :class:`Radio` that is endpoint ``name`` of an in-process :class:`Air` (added if not there yet, with the
    air's default noise or ``noise_power``). Timed TX and RX are exact to the sample."""

    driver = "loopback"
    thread_safe = True

    def __init__(self, air: Air, name: str, noise_power: float | None = None,
                 max_buffer_samples: int = LoopbackArgs.max_buffer_samples, realtime: bool = False):
        if not isinstance(air, Air):
            raise ValueError(f"air = {air!r}: expected a radio.sim.air.Air")
        if name not in air.endpoints:
            air.add_endpoint(name, noise_power)
        self._air = air
        self._name = name
        self._hub = _hub(air)
        if name in self._hub.buffers:
            raise ValueError(f"name = {name!r}: a LoopbackRadio already uses this endpoint")
        self._hub.register(name, int(max_buffer_samples))
        self._cursor: int | None = None
        self._closed = False
        self._realtime = bool(realtime)
        self._sent: collections.deque[int] = collections.deque(maxlen=4096)   # start times of accepted bursts
        if self._realtime:
            with self._hub.lock:
                if self._hub.anchor is None:
                    self._hub.anchor = (time.monotonic(), air.now)

    @classmethod
    def from_args(cls, air: Air, args: LoopbackArgs) -> LoopbackRadio:
        """Build from the driver's config dataclass."""
        return cls(air, args.endpoint, max_buffer_samples=args.max_buffer_samples, realtime=args.realtime)

    @property
    def air(self) -> Air:
        """The shared air."""
        return self._air

    @property
    def name(self) -> str:
        """This radio's endpoint name."""
        return self._name

    @property
    def sample_rate(self) -> float:
        return self._air.sample_rate

    @property
    def center_freq(self) -> float:
        return self._air.center_freq

    @property
    def capabilities(self) -> RadioCapabilities:
        return RadioCapabilities(timed_tx=True, timed_rx=True, full_duplex=True, simulated=True,
                                 wall_clock=self._realtime)

    @property
    def realtime(self) -> bool:
        """True when the air follows the wall clock (see the module docstring)."""
        return self._realtime

    def time_now(self) -> int:
        if self._realtime:
            return max(self._air.now, self._hub.wall_now())
        return self._air.now

    def tx(self, samples: np.ndarray, at: int | None = None) -> int:
        """Schedule ``samples`` (complex64[N]) at ``at`` (None: now); returns the start time. Realtime: LateError
        when ``at`` is before the wall-derived sample time."""
        self._check_open()
        samples = as_samples(samples, "samples")
        with self._hub.lock:
            now = self.time_now()
            if at is None:
                at = now
            elif self._realtime and at < now:
                raise LateError(f"transmission by {self._name!r}", int(at), now)
            start = self._air.schedule(self._name, samples, at)
            self._sent.append(start)
        return start

    def tx_status(self, at: int, timeout_s: float = 0.0) -> TxStatus:
        """A burst this radio accepted leaves exactly at its time (the air superposes it to the sample)."""
        if int(at) in self._sent:
            return TxStatus(int(at), "on_time", "accepted by the air before its deadline")
        return super().tx_status(at, timeout_s)

    def rx(self, n: int, at: int | None = None) -> tuple[np.ndarray, int]:
        """Receive complex64[n] from ``at`` (None: where the last rx ended; first call: now). Advances the shared air
        when needed. LateError if the samples were already dropped (consumed or beyond the buffer bound)."""
        self._check_open()
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n = {n!r}: expected an integer number of samples >= 0")
        if at is not None and (isinstance(at, bool) or not isinstance(at, (int, np.integer))):
            raise ValueError(f"at = {at!r}: expected an integer sample time or None")
        if self._realtime:
            return self._rx_realtime(int(n), at)
        t = (self._air.now if self._cursor is None else self._cursor) if at is None else int(at)
        with self._hub.lock:
            return self._read(t, int(n))

    def _rx_realtime(self, n: int, at: int | None) -> tuple[np.ndarray, int]:
        buf = self._hub.buffers[self._name]
        now = self.time_now()
        oldest = now - buf.limit          # what a radio buffering max_buffer_samples still holds
        if at is None:
            t = now if self._cursor is None else max(self._cursor, oldest)   # overflow: jump, never shift
        else:
            t = int(at)
            if t < oldest:
                raise LateError(f"reception by {self._name!r}", t, oldest)
        delay = self._hub.wall_of(t + n) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with self._hub.lock:
            buf.drop_before(min(t, self._air.now))
            return self._read(t, n)

    def _read(self, t: int, n: int) -> tuple[np.ndarray, int]:
        buf = self._hub.buffers[self._name]
        if t < buf.start:
            raise LateError(f"reception by {self._name!r}", t, buf.start)
        if t + n - buf.start > buf.limit:
            raise ValueError(f"rx(n={n}, at={t}) would need {t + n - buf.start} buffered samples, more than "
                             f"max_buffer_samples={buf.limit}")
        self._hub.advance_to(t + n)
        if t < buf.start:   # the advance pushed the buffer beyond its bound
            raise LateError(f"reception by {self._name!r}", t, buf.start)
        out = buf.read(t, n)
        buf.drop_before(t + n)
        self._cursor = t + n
        return out, t

    def close(self) -> None:
        """Leave the air (the endpoint stays, the receive buffer is released). Idempotent."""
        if not self._closed:
            self._closed = True
            with self._hub.lock:
                self._hub.buffers.pop(self._name, None)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"LoopbackRadio {self._name!r} is closed")

    def settings(self) -> dict:
        return {**super().settings(), "endpoint": self._name, "now": self._air.now}


def loopback_pair(snr_db: float | None = None, link: LinkParams | None = None, seed: int = 0,
                  sample_rate: float = 20e6, center_freq: float = 2.4e9) -> tuple[LoopbackRadio, LoopbackRadio]:
    """Two radios ("tx", "rx") on a fresh Air: link tx→rx with ``link`` impairments (None: ideal) and receiver noise
    variance ``10**(-snr_db/10)`` per complex sample at "rx" (None: noiseless). Returns (tx_radio, rx_radio)."""
    noise = 0.0 if snr_db is None else 10.0 ** (-snr_db / 10.0)
    if not math.isfinite(noise):
        raise ValueError(f"snr_db = {snr_db!r}: expected a finite number of dB or None")
    air = Air(sample_rate, center_freq, seed)
    tx = LoopbackRadio(air, "tx", noise_power=0.0)
    rx = LoopbackRadio(air, "rx", noise_power=noise)
    if link is not None:
        air.set_link("tx", "rx", link)
    return tx, rx
