"""SampleRing: the node's receive buffer, indexed by the radio's sample time, with gaps flagged where they happened.

Sample ``t`` lives at slot ``t % capacity``. Samples the radio lost (an overflow: its next block starts later than
the previous one ended) are written as zeros at their own sample times and flagged, so the index never shifts: a
reader asking for ``[t0, t0 + n)`` gets exactly those sample times and the list of flagged intervals inside them.
"""

from __future__ import annotations

import collections
import threading
import time

import numpy as np

from radio.base import LateError, RadioError
from radio.memory import resident_zeros


class SampleRing:
    """Ring of ``capacity`` complex64 samples plus one flag byte each (1: lost, zero-filled).

    Written by one thread (:meth:`write`), read by any (:meth:`read` waits, with a timeout, for samples to arrive).
    """

    def __init__(self, capacity: int):
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity = {capacity!r}: expected an integer number of samples >= 1")
        self.capacity = int(capacity)
        # mapped now: a first write into a huge page stalled its writer 12-29 ms (radio.memory)
        self._data = resident_zeros(self.capacity, np.complex64)
        self._flag = resident_zeros(self.capacity, np.uint8)
        self.start: int | None = None     # first sample time ever written
        self.end: int | None = None       # one past the last sample time written
        self._cond = threading.Condition()
        self.gap_count = 0
        self.gap_samples = 0
        self.gaps: collections.deque[tuple[int, int]] = collections.deque(maxlen=10_000)   # [start, end) intervals
        self.backsteps = 0                # blocks that started before the previous one ended (dropped overlap)

    def _put(self, t0: int, x: np.ndarray, flag: int) -> None:
        n = x.size
        if n > self.capacity:             # only the newest capacity samples can be held
            x, t0, n = x[-self.capacity:], t0 + n - self.capacity, self.capacity
        i = t0 % self.capacity
        k = min(n, self.capacity - i)
        self._data[i:i + k] = x[:k]
        self._flag[i:i + k] = flag
        if k < n:
            self._data[:n - k] = x[k:]
            self._flag[:n - k] = flag

    def write(self, t0: int, x: np.ndarray) -> None:
        """Store complex64[n] received from sample time ``t0``; a jump past :attr:`end` is a gap (zeros, flagged)."""
        x = np.asarray(x, np.complex64)
        with self._cond:
            if self.end is None:
                self.start = self.end = int(t0)
            if t0 < self.end:             # overlap with what we hold: keep the first copy, count it
                self.backsteps += 1
                cut = self.end - t0
                if cut >= x.size:
                    return
                x, t0 = x[cut:], self.end
            if t0 > self.end:
                lost = t0 - self.end
                self.gap_count += 1
                self.gap_samples += lost
                self.gaps.append((self.end, t0))
                fill = min(lost, self.capacity)
                self._put(t0 - fill, np.zeros(fill, np.complex64), 1)
            self._put(int(t0), x, 0)
            self.end = int(t0) + x.size
            self._cond.notify_all()

    def mark_lost(self, a: int, b: int, new_gap: bool) -> None:
        """Flag ``[a, b)`` (already written, e.g. zeros a radio filled in place) as lost; ``new_gap``: it starts a
        gap of its own (counted in :attr:`gap_count`) rather than continuing the last one."""
        with self._cond:
            if self.end is None or b <= a:
                return
            lo = max(int(a), self.end - self.capacity)
            hi = min(int(b), self.end)
            if hi <= lo:
                return
            idx = np.arange(lo, hi) % self.capacity
            self._data[idx] = 0
            self._flag[idx] = 1
            self.gap_samples += hi - lo
            if new_gap or not self.gaps:
                self.gap_count += 1
                self.gaps.append((lo, hi))
            else:
                s, _ = self.gaps[-1]
                self.gaps[-1] = (s, hi)

    def oldest(self) -> int | None:
        """The oldest sample time still held (None before the first write)."""
        if self.end is None:
            return None
        return max(self.start, self.end - self.capacity)

    def read(self, t0: int, n: int, timeout_s: float) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """complex64[n] for sample times ``[t0, t0 + n)`` and the flagged (lost, zero-filled) intervals among them,
        as ``[(start, end), ...]`` in sample time. Waits at most ``timeout_s`` for the samples to arrive
        (RadioError naming what it waited for), LateError when they are no longer held."""
        if n < 0 or n > self.capacity:
            raise ValueError(f"n = {n}: expected 0 <= n <= ring capacity {self.capacity}")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.end is None or self.end < t0 + n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RadioError(f"timed out after {timeout_s} s waiting for samples [{t0}, {t0 + n}) "
                                     f"(the node has received up to {self.end})")
                self._cond.wait(left)
            oldest = self.oldest()
            if t0 < oldest:
                raise LateError(f"node read of {n} samples", t0, oldest)
            idx = np.arange(t0, t0 + n) % self.capacity
            out = self._data[idx]
            flags = self._flag[idx]
        return out, _intervals(flags, t0)


def _intervals(flags: np.ndarray, t0: int) -> list[tuple[int, int]]:
    """[(start, end)) sample-time intervals where ``flags`` is 1."""
    if not flags.any():
        return []
    d = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [(t0 + int(a), t0 + int(b)) for a, b in zip(starts, ends)]
