"""ClockMap: the radio's sample time <-> the host's ``time.monotonic()``, fitted to when RX blocks arrive.

Each RX block that ends at sample time ``t`` arrives at host time ``m = m0 + t / f + d`` where ``f`` is the radio's
true sample rate (nominal rate times (1 + ppm offset)) and ``d >= 0`` the delivery latency (driver, USB, scheduler).
Because latency is never negative, every point lies on or above the line ``m0 + t / f``; the map is the line
below all of the last ``window`` points that lies closest to them (the least total distance: the linear program of
Moon, Skelly and Towsley's skew estimation, "Estimation and removal of clock skew from network delay measurements",
INFOCOM 1999). Its solution is the edge of the points' lower convex hull that spans their mean sample time: it rests
on the most promptly delivered arrivals only, so runs of delayed arrivals (a loaded host stalls in runs) neither tilt
nor lift it, and it says when a sample *existed*, not when the host happened to see it (as NTP's minimum-delay
filter does for offsets). The window is 10 s at 5 ms blocks by default: a host that delivers nothing promptly for a
second (a least-squares fit on the prompt quarter of a 1.28 s window put the map 2-3 ms late at load 7) still has
prompt arrivals from before in it.

The slope is held within ``max_ppm`` (default 200 ppm) of the nominal rate: oscillators are off by a few to tens of
ppm (Pluto ±25, USRP B210 ±2); a hull with too few prompt points could tilt further.

The line is refitted every ``refit_every`` points (default 8: every 40 ms with 5 ms blocks), and at once when a point
arrives earlier than the map says its sample existed (the envelope moved down); between refits a point only joins
the window. Refitting at every 5 ms block cost a node most of its CPU time at 1 MS/s, which a loaded host cannot
spare.
"""

from __future__ import annotations

import collections
import threading

import numpy as np


#: points a hull is built from (the most prompt of each stretch of the window)
HULL_CANDIDATES = 64


def _hull_slope(x: np.ndarray, y: np.ndarray) -> float | None:
    """Slope of the edge of the lower convex hull of points (x, y) (x increasing) that spans mean(x): the line below
    every point with the least total distance to them (module docstring). None when x does not increase."""
    keep = np.r_[True, np.diff(x) > 0]            # (equal sample times: keep the first, the hull needs distinct x)
    x, y = x[keep], y[keep]
    if x.size < 2:
        return None
    xm = float(x.mean())
    if x.size > 2 * HULL_CANDIDATES:              # the hull's vertices are the most prompt points of their stretch:
        c = -(-x.size // HULL_CANDIDATES)         # keep each stretch's (against the mean slope), so the hull is
        d = y - x * ((y[-1] - y[0]) / (x[-1] - x[0]))   # built from HULL_CANDIDATES points, not every one
        pad = c * HULL_CANDIDATES - x.size
        idx = np.argmin(np.r_[d, np.full(pad, np.inf)].reshape(HULL_CANDIDATES, c), axis=1)
        idx = idx + np.arange(HULL_CANDIDATES) * c
        idx = idx[idx < x.size]
        x, y = x[idx], y[idx]
    hull: list[int] = []
    for k in range(x.size):                       # Andrew's monotone chain, lower half
        while len(hull) >= 2:
            i, j = hull[-2], hull[-1]
            if (y[j] - y[i]) * (x[k] - x[i]) >= (y[k] - y[i]) * (x[j] - x[i]):   # j not below the chord i-k
                hull.pop()
            else:
                break
        hull.append(k)
    for i, j in zip(hull[:-1], hull[1:]):
        if x[j] >= xm:
            return float((y[j] - y[i]) / (x[j] - x[i]))
    return float((y[hull[-1]] - y[hull[-2]]) / (x[hull[-1]] - x[hull[-2]]))


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
            slope = _hull_slope(x, y) if len(pts) >= 8 else None
            if slope is None:
                slope = 1.0 / self.sample_rate
            lo = 1.0 / (self.sample_rate * (1 + self.max_ppm * 1e-6))
            hi = 1.0 / (self.sample_rate * (1 - self.max_ppm * 1e-6))
            slope = min(max(slope, lo), hi)     # a crystal is off by ppm, not by a host's backlog
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
