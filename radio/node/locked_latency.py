"""The TX->RX constant of a radio whose TX is locked to its RX, learned per lock epoch from its own bursts.

A streaming Pluto has no timestamps: a burst for sample time ``at`` is received at ``at + C`` with C a constant
(pipeline latencies) that changes only when the TX stream slips, and each slip starts a new lock epoch that the
radio reports (:attr:`radio.node.node.TxResult.lock_epoch`). Timing advance measures C; in digital loopback (or with
TX cabled to RX) the radio can measure it itself: a probe burst finds the first epoch's C, and the first on-time
burst of each later epoch, found by exact match within ``window_s`` (0.5 s) of the previous C, gives that epoch's (an
estimated RX gap on a loaded host can move it by tens of ms). Bursts must
differ from their neighbours within the window (:func:`numbered_burst`): an exact match then names one.

    lat = LockedLatency(node, atol=2.0 ** -14)
    lat.probe(burst)                        # C of the current epoch
    off = lat.offset(result, burst)         # C of the epoch ``result`` left in (None: not found)
    x, gaps = node.rx(result.at + off, burst.size)
"""

from __future__ import annotations

import time

import numpy as np

from radio.base import RadioError


def numbered_burst(k: int, size: int = 64, amplitude: float = 0.5) -> np.ndarray:
    """complex64[size]: burst number ``k``: one fixed random-phase sequence (seed 7) at ``amplitude``, turned by its
    own phase 2π·frac(0.137 k), so that an exact match tells it from its neighbours."""
    base = np.exp(2j * np.pi * np.random.default_rng(7).random(size)) * amplitude
    return (base * np.exp(2j * np.pi * ((0.137 * k) % 1.0))).astype(np.complex64)


class LockedLatency:
    """Per-epoch TX->RX constants of ``node`` (a :class:`radio.node.RadioNode` or a NodeClient whose radio loops TX
    back to RX). ``atol``: how exactly a burst comes back (e.g. the Pluto's int16 step, 2**-14); ``window_s``: how far
    from the previous epoch's constant a slip can move it."""

    def __init__(self, node, atol: float, window_s: float = 0.5):
        if not atol >= 0:
            raise ValueError(f"atol = {atol!r}: expected >= 0")
        if not window_s > 0:
            raise ValueError(f"window_s = {window_s!r}: expected > 0 s")
        self.node, self.atol = node, float(atol)
        self.window = int(window_s * node.sample_rate)
        #: lock epoch -> TX->RX constant (samples)
        self.constants: dict[int, int] = {}

    def find(self, burst: np.ndarray, t0: int, n: int) -> list[int]:
        """Sample times in ``[t0, t0 + n)`` at which ``burst`` starts exactly (within ``atol``) in the node's RX."""
        ring = getattr(self.node, "ring", None)      # a RadioNode; a NodeClient says in its status
        oldest = ring.oldest() if ring is not None else int(self.node.status()["rx_oldest"])
        if t0 < oldest:                               # (not received before the node started)
            n, t0 = n - (oldest - t0), oldest
        if n <= 0:
            return []
        x, _ = self.node.rx(int(t0), int(n) + burst.size, timeout_s=3.0)
        cand = np.flatnonzero(np.abs(x[:n] - burst[0]) <= 2 * self.atol)
        return [int(t0) + int(k) for k in cand if np.allclose(x[k:k + burst.size], burst, atol=self.atol)]

    def probe(self, burst: np.ndarray, lead_s: float = 0.05, search_s: float = 0.2, tries: int = 8,
              retry_s: float = 0.25) -> int:
        """Send ``burst`` ``lead_s`` ahead and find it within ``search_s`` of its time (either side: the constant
        may be negative: the TX stream's labels are RX counts taken when it started, behind the device by what the
        RX kernel buffers held then): the current epoch's constant. A burst caught in a slip is sent again
        ``retry_s`` later (the stream realigns after a slip; up to ``tries`` times); RadioError if none left on time
        or it was not found exactly once."""
        fs = self.node.sample_rate
        for i in range(tries):          # each try turned by its own phase: earlier tries went out too, elsewhere
            b = (burst * np.exp(2j * np.pi * 0.37 * i)).astype(np.complex64)
            r = self.node.tx(b, self.node.time_now() + int(lead_s * fs))
            if r.state == "on_time" and r.lock_epoch is not None:
                break
            time.sleep(retry_s)
        else:
            raise RadioError(f"latency probe: none of {tries} bursts left on time (last: {r.state}, {r.detail})")
        found = self.find(b, r.at - int(search_s * fs), 2 * int(search_s * fs))
        if len(found) != 1:
            raise RadioError(f"latency probe: the burst sent at {r.at} was found {len(found)} times within "
                             f"±{search_s} s (expected once: is the radio in loopback?)")
        self.constants[r.lock_epoch] = found[0] - r.at
        return self.constants[r.lock_epoch]

    def offset(self, result, burst: np.ndarray) -> int | None:
        """The constant of the epoch ``result`` (an on-time TxResult of ``burst``) left in; a new epoch's is learned
        from this burst. None: no epoch, nothing learned yet, or not found exactly once near the last constant."""
        epoch = result.lock_epoch
        if epoch is None or not self.constants:
            return None
        if epoch not in self.constants:
            prev = self.constants[max(self.constants)]
            found = self.find(burst, result.at + prev - self.window, 2 * self.window)
            if len(found) != 1:
                return None
            self.constants[epoch] = found[0] - result.at
        return self.constants[epoch]
