"""ClockMap: the radio's sample time <-> the host's ``time.monotonic()``, fitted to when RX blocks arrive.

Each RX block that ends at sample time ``t`` arrives at host time ``m = m0 + t / f + d`` where ``f`` is the radio's
true sample rate (nominal rate times (1 + ppm offset)) and ``d >= 0`` the delivery latency (driver, USB, scheduler).
A least-squares line through the last ``window`` points ``(t, m)``, refitted on the quarter of them that arrived
most promptly (stalls of a loaded host delay arrivals in runs, which would tilt the line), gives the slope ``1 / f``; because latency is never
negative, its intercept is then moved down to the least-delayed arrival in the window (the lower envelope, as NTP's
minimum-delay filter does), so the map says when a sample *existed*, not when the host happened to see it.

The slope is held within ``max_ppm`` (default 200 ppm) of the nominal rate: oscillators are off by a few to tens of
ppm (Pluto ±25, USRP B210 ±2), while a loaded host delays arrivals in runs that can tilt even the prompt quarter by
thousands of ppm (measured: −2,940 ppm on the UHD double at load 11, the map 8.7 ms off). With the slope held, a
1.28 s window (256 blocks of 5 ms) can put the map off by at most 200e-6 × 1.28 s ≈ 0.26 ms through the slope.

The line is refitted every ``refit_every`` points (default 8: every 40 ms with 5 ms blocks), and at once when a point
arrives earlier than the map says its sample existed (the envelope moved down); between refits a point only joins
the window. A refit costs two least-squares fits over the window (about 0.3 ms of CPU in numpy): refitting at every
5 ms block cost a node most of its CPU time at 1 MS/s, which a loaded host cannot spare.
"""

from __future__ import annotations

import collections
import threading

import numpy as np


class ClockMap:
    """Fits ``mono = mono_ref + (t - t_ref) * seconds_per_sample`` to (sample time, arrival) points."""

    def __init__(self, sample_rate: float, window: int = 256, max_ppm: float = 200.0, refit_every: int = 8):
        if not sample_rate > 0:
            raise ValueError(f"sample_rate = {sample_rate!r}: expected > 0 samples/s")
        if window < 2:
            raise ValueError(f"window = {window!r}: expected >= 2 points")
        if not 0 <= max_ppm <= 1e4:
            raise ValueError(f"max_ppm = {max_ppm!r}: expected 0 .. 10000 ppm")
        if refit_every < 1:
            raise ValueError(f"refit_every = {refit_every!r}: expected >= 1 point")
        self.refit_every = int(refit_every)
        self._unfitted = 0
        self.max_ppm = float(max_ppm)
        self.sample_rate = float(sample_rate)
        self._pts: collections.deque[tuple[int, float]] = collections.deque(maxlen=int(window))
        self._lock = threading.Lock()
        self.t_ref: int | None = None
        self.mono_ref = 0.0
        self.seconds_per_sample = 1.0 / self.sample_rate
        self.residual_us = 0.0           # rms of the arrivals above the envelope (delivery jitter), µs

    def add(self, t: int, mono: float) -> None:
        """Record that the sample before ``t`` had arrived at host time ``mono``; refit every ``refit_every``
        points, or now if it arrived before the map says it existed."""
        with self._lock:
            self._pts.append((int(t), float(mono)))
            self._unfitted += 1
            early = self.t_ref is not None and mono < self.mono_ref + (int(t) - self.t_ref) * self.seconds_per_sample
            if self._unfitted < self.refit_every and len(self._pts) >= 8 and not early:
                return
            self._unfitted = 0
            pts = np.asarray(self._pts, dtype=np.float64)
            t_ref = int(self._pts[-1][0])
            x = pts[:, 0] - t_ref
            y = pts[:, 1]
            if len(pts) >= 8 and np.ptp(x) > 0:
                slope, icpt = np.polyfit(x, y, 1)
                low = y - (slope * x + icpt) <= np.percentile(y - (slope * x + icpt), 25)
                if low.sum() >= 8 and np.ptp(x[low]) > 0:   # refit on the prompt quarter: host stalls delay
                    slope, icpt = np.polyfit(x[low], y[low], 1)   # arrivals, never advance them
                lo = 1.0 / (self.sample_rate * (1 + self.max_ppm * 1e-6))
                hi = 1.0 / (self.sample_rate * (1 - self.max_ppm * 1e-6))
                slope = min(max(slope, lo), hi)     # a crystal is off by ppm, not by a host's backlog
            else:
                slope = 1.0 / self.sample_rate
            resid = y - slope * x
            icpt = float(resid.min())
            self.t_ref, self.mono_ref, self.seconds_per_sample = t_ref, icpt, float(slope)
            self.residual_us = float(np.sqrt(np.mean((resid - icpt) ** 2)) * 1e6)

    @property
    def ready(self) -> bool:
        """True once a point has been recorded."""
        return self.t_ref is not None

    def to_mono(self, t: int) -> float:
        """Host monotonic time at which sample ``t`` exists (exists: was taken by the radio's ADC)."""
        with self._lock:
            return self.mono_ref + (int(t) - self.t_ref) * self.seconds_per_sample

    def to_sample(self, mono: float) -> int:
        """The radio's sample time at host monotonic time ``mono``."""
        with self._lock:
            return self.t_ref + int(np.floor((mono - self.mono_ref) / self.seconds_per_sample))

    def as_dict(self) -> dict:
        """The current fit: t_ref, mono_ref, seconds_per_sample, rate_ppm (vs the nominal rate), residual_us."""
        with self._lock:
            return {"t_ref": self.t_ref, "mono_ref": self.mono_ref, "seconds_per_sample": self.seconds_per_sample,
                    "rate_ppm": (1.0 / (self.seconds_per_sample * self.sample_rate) - 1.0) * 1e6,
                    "residual_us": self.residual_us, "points": len(self._pts)}
