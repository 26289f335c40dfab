"""Continuous streaming for the PlutoSDR driver: a receive thread and a TX feeder that keep the host-side clock on
device time.

A Pluto has no timestamps; the only clock is the count of RX samples fetched. This module keeps that count true:

* **RX thread.** Refills the RX buffer back to back into a ring indexed by RX sample count, whether or not anybody
  calls ``rx()``, so ``time_now()`` follows the device while the host is busy elsewhere. After every refill it reads
  the ADC core's status register (0x80000088, bit 0x4: the DMA dropped data, as GNU Radio's gr-iio does) and
  clears it. An overflow means that every kernel buffer was full: the ``kernel_buffers`` blocks queued at that moment
  are contiguous with what came before, and the DMA restarted when the host freed one, i.e. during the refill that
  showed the flag. The gap is placed after those blocks, its length estimated from the host clock (the flagged
  refill's completion less one block transfer, on a device-time/host-time map kept from refills that had to wait
  for their data); it is zero-filled in the ring and listed in :attr:`PlutoStream.gaps` — the index is never
  shifted. The estimate is off by the host↔device latency of a refill and the host's scheduling delays;
  :attr:`PlutoStream.gap_uncertainty` states the bound (two block transfers plus the larger of ``HOST_DELAY_S`` = 15 ms
  — chosen from the measurements below, not derived — and the spread of the recent
  refills' latency, which grows on a loaded host). Measured against the in-process emulator at 1 MS/s (emulator and client share one GIL): 0.25–0.6 ms
  off with 8192-sample blocks at load ~10; 0.7–14.1 ms, always short, with 16384-sample blocks at load 9–15 (the
  cause of the bias is not identified).
* **TX feeder.** Pushes TX buffers (``tx_buffer_size``) continuously: zeros, with any scheduled burst samples added
  where they fall. The DMA accepts a push only when a kernel buffer is free, which paces the feeder at the sample
  rate; as long as the DAC never runs dry, TX sample k leaves a fixed number of samples after RX sample k was taken
  (the TX→RX latency: unknown, constant; timing advance measures it). **How it is locked:** TX stream sample k is
  defined to belong to RX-count time ``T0 + k``, T0 the RX count when the feeder started; a burst for ``at`` goes
  into TX stream position ``at − T0``. The RX thread also reads the DAC core's status after every refill (bit 0x1:
  underflow); an underflow means the stream slipped against RX: :attr:`PlutoStream.lock` reports it lost, with a
  new epoch (the constant changed: timing advance must measure again). The feeder then skips the TX stream ahead to
  stand where it stood against the RX count before (bursts in the skipped part are dropped and counted), so the new
  constant is near the old one, and reports the lock held again. One epoch has one constant: a burst pushed while
  the lock is lost (between the slip and the skip) went out at neither, and is reported "underflow". An RX gap
  starts a new epoch too (the RX count after it is estimated, so the constant moved by the estimate's error); a burst
  that spans it is reported "unknown" (it left on time; where it shows in RX is not known to the sample).

**The feeder takes no lock** that another thread holds while it runs Python: a thread that holds a lock can lose the
GIL (or its CPU) inside it, and the feeder waiting behind it lets the DAC run dry. Measured (10 s streaming test,
1 MS/s, 8 TX kernel buffers of 4096 samples, load 2-3, 2026-12-06): when the feeder shared the RX thread's lock, it
waited 12-56 ms for it several times a run (the RX thread stalled inside it, mostly by the page faults of
:mod:`radio.memory`), and the emulated DAC ran dry 1-4 times a run (8-30 bursts reported). Now bursts reach it through a
queue (``schedule`` appends; the feeder publishes how far it has built, ``tx_pos``, before it takes them up, so a
burst that passed the lead check starts at or after the block being built, and one whose scheduling thread stalled
past that is reported "late", never sent partly), and the lock state, which both threads rewrite, has a lock of its
own that the feeder takes only to realign after a slip. The feeder's pushes are logged
(:attr:`PlutoStream.push_log`: when it took up each block, started the push, the push returned).

Bursts must be scheduled at least :meth:`PlutoStream.min_lead` ahead of ``time_now()`` (the TX buffers queued ahead
plus one in the making); later ones raise :class:`radio.base.LateError`.
"""

from __future__ import annotations

import bisect
import threading
import time
import weakref
from collections import deque

import numpy as np

from radio.base import LateError, RadioError
from radio.memory import resident_zeros
from radio.thread_priority import raise_thread_priority, shorten_switch_interval

#: AXI ADC/DAC core status register and its bits
STATUS_REGISTER, OVERFLOW, UNDERFLOW = 0x80000088, 0x4, 0x1
#: the host's scheduling delay allowed for in the gap bound (empirical: the largest error seen was 14.1 ms, once
#: taken as 3 GIL switch intervals of CPython's default 5 ms; it stayed 13 ms with a 0.5 ms interval, so a constant)
HOST_DELAY_S = 0.015
#: the RX thread reads the DAC's underflow bit every this many RX blocks (the ADC's overflow bit after every one)
DAC_STATUS_EVERY = 2
#: refills within this many seconds of the map's prediction count as "waited for" (they calibrate the map)
_MAP_WINDOW = 64
#: USB 2.0 high-speed bulk payload limit (B/s): at most 13 packets of 512 bytes per 125 µs microframe (USB 2.0
#: specification, 5.8.4). Every link of an ADALM-PLUTO (``usb:``, or ``ip:`` over its USB network gadget or a dongle
#: on its OTG port) goes through its USB 2.0 port, so no RX buffer reaches the host faster than this
USB2_BULK_BYTES_PER_S = 13 * 512 * 8000


def usb2_transfer_floor_s(samples: int, bytes_per_sample: int = 4) -> float:
    """Shortest time (s) one RX buffer of ``samples`` samples (I and Q as int16: 4 bytes each) can take over USB 2.0:
    its bytes at :data:`USB2_BULK_BYTES_PER_S`. A lower bound, never an estimate: iiod's framing, the host controller
    and a network gadget's overhead only add to it (8192 samples: 0.615 ms; 16384: 1.23 ms)."""
    if samples < 0 or bytes_per_sample <= 0:
        raise ValueError(f"usb2_transfer_floor_s({samples!r}, {bytes_per_sample!r}): expected samples >= 0 and "
                         f"bytes_per_sample > 0")
    return samples * bytes_per_sample / USB2_BULK_BYTES_PER_S


class PlutoStream:
    """Background RX ring + TX feeder on a pyadi-iio ``adi.Pluto`` (module docstring).

    ``sdr``: the adi.Pluto (RX buffer size set, channels enabled); ``rate``: S/s; ``to_amplitude``: raw RX array ->
    complex64 full-scale amplitudes; ``tx_block``: TX buffer size (samples); ``kernel_buffers``: the RX kernel buffer
    count in force; ``ring_samples``: RX kept on the host (older samples raise LateError); ``link_floor_s``: the
    shortest time one RX buffer can take from the device to the host over its link (a lower bound: for a real Pluto
    :func:`usb2_transfer_floor_s`), taken off each arrival stamp (:meth:`arrivals`), since a completed buffer reaches
    the host that much later at the earliest.
    """

    def __init__(self, sdr, rate: float, to_amplitude, tx_block: int, kernel_buffers: int,
                 ring_samples: int = 1 << 22, tx_scale: float = 2 ** 14, tx_kernel_buffers: int | None = None,
                 link_floor_s: float = 0.0):
        if not 0.0 <= link_floor_s < 1.0:
            raise ValueError(f"link_floor_s = {link_floor_s!r}: expected 0 <= s < 1 (one RX buffer's shortest "
                             f"transfer)")
        self.link_floor_s = float(link_floor_s)
        self._sdr = sdr
        self.rate = float(rate)
        # the feeder and the RX thread get the GIL back within a fraction of a block (radio.thread_priority)
        self.switch_interval_s = shorten_switch_interval()
        self._to_amp = to_amplitude
        self._tx_block = int(tx_block)
        self._nbuf = int(kernel_buffers)
        self._tx_nbuf = int(tx_kernel_buffers or kernel_buffers)
        self._ring = resident_zeros(int(ring_samples), np.complex64)   # (mapped now: radio.memory)
        self._tx_scale = float(tx_scale)
        self._cv = threading.Condition()
        # the TX feeder never waits on _cv (module docstring, "The feeder takes no lock"): bursts reach it through
        # _inbox; the lock state and the realignment request, which the RX thread and the feeder both rewrite, are
        # guarded by _lock_guard, which the feeder takes only to realign after a slip
        self._lock_guard = threading.Lock()
        self._inbox: deque = deque()       # (at, words) from schedule(), None from cancel(), oldest first
        self._stop = threading.Event()
        self.end = 0                       # RX count: samples received (and gaps placed) so far
        self.gaps: deque[tuple[int, int]] = deque(maxlen=1024)   # (first missing index, length)
        self.gap_uncertainty = 0           # samples: worst host-latency bound of the gap estimates so far
        self.stats = {"rx_blocks": 0, "rx_overflows": 0, "rx_gaps": 0, "rx_gap_samples": 0, "tx_blocks": 0,
                      "tx_underflows": 0, "tx_bursts": 0, "tx_bursts_dropped": 0}
        self.error: BaseException | None = None
        self.priority: dict[str, str] = {}   # thread -> its scheduling priority (radio.thread_priority)
        self._map: deque[float] = deque(maxlen=_MAP_WINDOW)   # m_done − end/rate of recent refills
        self._pending: list[list] = []     # overflows not placed yet: [blocks to go before the gap, restart host time]
        self._transfer = float("inf")      # shortest refill seen (s): a block that was already queued
        self._refilled: list[float | None] = [None]   # host time the last libiio refill returned (_stamp_refills)
        self._tx_primed = threading.Event()            # the feeder has filled the DAC's queue once
        self._realign_after: int | None = None         # after a slip: put the TX stream back ahead of RX once
        self._caught_up_at = 0                         # RX caught up after this block (the last refill that waited)
        self._lead_ref: int | None = None              # tx_pos − end once primed
        self._scheduled: dict[int, tuple[int, int]] = {}          # at -> (end, lock epoch when scheduled)
        self._unlocked: set[int] = set()   # bursts (at) pushed while the lock was lost, or dropped by a realignment
        self._passed: set[int] = set()     # bursts (at) the TX stream had passed when the feeder took them up
        # DAC-status reads: (tx_pos when read, TX underflows counted after it), oldest first (tx_pos never falls)
        self._checks: deque[tuple[int, int]] = deque(maxlen=4096)
        self._pushed_to = 0                          # TX stream pushed (returned from the push) up to here
        self._pushed: dict[int, int] = {}            # at -> RX count when its last sample was pushed
        self._gap_at: deque[int] = deque(maxlen=1024)   # RX counts where estimated gaps were placed
        #: (RX count after a block, host time its refill returned), taken by :meth:`arrivals`
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=4096)
        #: the feeder's last pushes: (host time it took up the block, started the push, the push returned)
        self.push_log: deque[tuple[float, float, float]] = deque(maxlen=4096)
        # the RX buffer exists before the first TX (both streams start from a known relation)
        block, m_done = self._fetch()
        self._append(block, m_done, m_done)
        zeros = np.zeros(self._tx_block, np.complex64)
        self.t0 = self.end                 # TX stream sample k belongs to RX-count time t0 + k
        self.tx_pos = self.t0              # RX-count time of the next TX sample to push
        self._pushed_to = self.t0
        self._push(zeros)                  # creates the TX buffer in this thread (libiio attribute I/O)
        self.lock = {"locked": True, "epoch": 0, "since": self.t0,
                     "how": "TX fed with zeros continuously; TX stream sample k = RX count t0 + k"}
        self._rx_thread = threading.Thread(target=self._guard(self._rx_loop), name="pluto-rx", daemon=True)
        self._tx_thread = threading.Thread(target=self._guard(self._tx_loop), name="pluto-tx", daemon=True)
        self._rx_thread.start()
        self._tx_thread.start()

    # ------------------------------------------------------------------------------------------------ plumbing
    def _guard(self, fn):
        def run():
            # a streaming thread: raised above a busy host's other work where allowed (radio.thread_priority)
            self.priority[fn.__name__.strip("_")] = raise_thread_priority()
            try:
                fn()
            except BaseException as exc:  # reported to the caller at its next rx/tx
                if not self._stop.is_set():
                    self.error = exc
                with self._cv:
                    self._cv.notify_all()
        return run

    def _fetch(self) -> tuple[np.ndarray, float]:
        """(the next RX block as amplitudes, host time libiio's refill returned it: before pyadi-iio and this driver
        convert it, which took 0.2-0.35 ms for 8192 samples, measured (docs/pluto.md, "The node's clock map"))."""
        self._refilled[0] = None
        raw = self._sdr.rx()
        m_rx = time.monotonic()
        self._stamp_refills()
        m_done = self._refilled[0]
        return self._to_amp(raw), m_rx if m_done is None else m_done

    def _stamp_refills(self) -> None:
        """Make the RX buffer's ``refill`` stamp the host time it returns (into ``_refilled``): the block is on the
        host then; pyadi-iio's ``rx()`` goes on to read each channel out of the buffer and build complex samples,
        host work, not delivery. With libiio 0.x pyadi-iio refills ``sdr._rxbuf`` (an ``iio.Buffer``, made at the
        first ``rx()``, made again after a failed refill); with libiio 1.x it has none and the stamp stays the
        return of ``rx()``. The wrapper holds no reference to the buffer or to this stream (a weak one, and the
        stamp list): a reference cycle would leave the buffer to the cycle collector, which may free it after its
        context (the crash pyadi-iio's compat layer works around)."""
        buf = getattr(self._sdr, "_rxbuf", None)
        if buf is None or "refill" in getattr(buf, "__dict__", {"refill": None}):
            return
        refill, ref, box = type(buf).refill, weakref.ref(buf), self._refilled

        def stamped():
            out = refill(ref())
            box[0] = time.monotonic()
            return out

        buf.refill = stamped

    def _push(self, words: np.ndarray) -> None:
        self._sdr.tx(words)

    def _status(self, dev, bit: int) -> bool:
        value = dev.reg_read(STATUS_REGISTER)
        if value & bit:
            dev.reg_write(STATUS_REGISTER, bit)
        return bool(value & bit)

    def close(self) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        for t in (self._rx_thread, self._tx_thread):
            if t is not threading.current_thread():
                t.join(timeout=5.0)

    # ------------------------------------------------------------------------------------------------ receive
    def _rx_loop(self) -> None:
        rxadc, txdac = self._sdr._rxadc, self._sdr._txdac
        self._status(rxadc, OVERFLOW)
        self._status(txdac, UNDERFLOW)
        while not self._stop.is_set():
            m_req = time.monotonic()
            block, m_done = self._fetch()
            self._transfer = min(self._transfer, m_done - m_req)
            for p in self._pending:            # earlier overflows: one block closer to their gap
                p[0] -= 1
            while self._pending and self._pending[0][0] < 0:
                self._place_gap(self._pending.pop(0)[1])
            # the block is readers' before the status registers are read (each a round trip to the device: on a
            # busy host they put the samples ms late); this block's own overflow flag places a gap only after the
            # kernel_buffers - 1 blocks that follow it
            self._append(block, m_req, m_done)
            if m_done - m_req >= 0.5 * block.size / self.rate:   # waited for its data: RX has no backlog
                self._caught_up_at = self.stats["rx_blocks"]
            overflow = self._status(rxadc, OVERFLOW)
            # the DAC's status only every DAC_STATUS_EVERY blocks: each read is a round trip to the device
            check_dac = self.stats["rx_blocks"] % DAC_STATUS_EVERY == 0
            tx_pos_before = self._pushed_to
            underflow = check_dac and self._status(txdac, UNDERFLOW)
            if not self._tx_primed.is_set():   # the DAC may run dry once while the feeder starts: not a slip
                underflow = False
            elif not self.lock.get("primed"):
                with self._lock_guard:
                    self.lock = {**self.lock, "primed": True}
                underflow = False
            if check_dac:
                with self._cv:
                    self._checks.append((tx_pos_before, self.stats["tx_underflows"] + bool(underflow)))
            if underflow:
                with self._cv, self._lock_guard:
                    self.stats["tx_underflows"] += 1
                    self.lock = {**self.lock, "locked": False, "epoch": self.lock["epoch"] + 1, "since": self.end,
                                 "lost_at": self.end}
                    # realign once RX has caught up (no backlog: a refill waited for its data; the gap placed)
                    self._realign_after = self.stats["rx_blocks"] + 1
            if overflow:
                self.stats["rx_overflows"] += 1
                # this block and the next kernel_buffers-1 were queued when the DMA stopped; it restarted when
                # this refill freed a buffer: the refill then returned a queued block, one transfer later
                self._pending.append([self._nbuf - 1, m_done - self._transfer])

    def _received_by(self) -> int:
        """RX count by which a sample pushed now has surely been received: the device's count now (from the map;
        the RX count if later) plus the TX queue it waits in (tx kernel buffers, one more for the push that waits
        for a free one) plus two blocks for the map's latency and the device's TX->RX pipeline."""
        now = self.end if not self._map else max(self.end, int(self._device_time(time.monotonic())))
        return now + (self._tx_nbuf + 3) * self._tx_block

    def _device_time(self, mono: float) -> float:
        """RX count the device had reached at host time ``mono`` (from the map)."""
        return (mono - min(self._map)) * self.rate

    def _place_gap(self, restart_mono: float) -> None:
        if not self._map:
            return
        # the estimate's error bound: a block transfer each way, plus the host's scheduling delay: HOST_DELAY_S or the
        # spread of the recent waited refills' latency (large on a loaded host), whichever is larger (module
        # docstring)
        spread = max(self._map) - min(self._map)
        delay = max(HOST_DELAY_S, spread)
        self.gap_uncertainty = max(self.gap_uncertainty, int(np.ceil((2 * self._transfer + delay) * self.rate)) + 1)
        gap = int(round(self._device_time(restart_mono))) - self.end
        if gap <= 0:
            return
        with self._cv:
            self._write(np.zeros(min(gap, self._ring.size), np.complex64), self.end + max(0, gap - self._ring.size))
            self.gaps.append((self.end, gap))
            self._gap_at.append(self.end)
            self.stats["rx_gaps"] += 1
            self.stats["rx_gap_samples"] += gap
            self.end += gap
            # the RX count after the gap is an estimate (off by up to gap_uncertainty): where TX stream sample k is
            # received moved by that error: a new lock epoch (a new constant for timing advance to measure)
            with self._lock_guard:
                self.lock = {**self.lock, "epoch": self.lock["epoch"] + 1, "since": self.end}
            # entries from before the gap carry the old index offset; if this estimate is off by e, mixing them
            # would bias every later estimate by e: learn the map again
            self._map.clear()

    def _append(self, block: np.ndarray, m_req: float, m_done: float) -> None:
        with self._cv:
            self._write(block, self.end)
            self.end += block.size
            self.stats["rx_blocks"] += 1
            # a refill that waited for its data ended when the block was complete: m_done − end/rate is then the
            # host time of RX count 0 plus the latency; the minimum over recent refills is the best estimate
            duration = (m_done - m_req) * self.rate / block.size   # in block periods
            # longer than 1.5: a stalled host, not a wait for data; while a gap is pending the index lacks it
            if (0.25 < duration < 1.5 and not self._pending) or not self._map:
                self._map.append(m_done - self.end / self.rate)
            if not self._pending:      # (a pending gap: the index lacks it yet)
                self._arrivals.append((self.end, m_done - self.link_floor_s))
            self._cv.notify_all()

    def arrivals(self) -> tuple[list[tuple[int, float]], float]:
        """(the ``(RX count, host time libiio's refill returned the block less link_floor_s)`` stamps recorded since
        the last call, oldest first; the shortest refill seen, s: a block already queued, i.e. its transfer and the
        client's own work, which a block that had to be waited for took too; 0 before one was seen). The shortest
        refill is no estimate of a stamp's lateness: it also holds the request's round trip, which a refill that
        waited for its block had paid before the block completed (subtracted, it put the map 3.2-3.6 ms early): the
        node reports it, and the stamps are all it maps by."""
        with self._cv:
            out = list(self._arrivals)
            self._arrivals.clear()
        return out, (self._transfer if self._transfer != float("inf") else 0.0)

    def _write(self, x: np.ndarray, t: int) -> None:
        n, size = x.size, self._ring.size
        i = t % size
        k = min(n, size - i)
        self._ring[i:i + k] = x[:k]
        self._ring[:n - k] = x[k:]

    def oldest(self) -> int:
        """RX count of the oldest sample the ring still holds."""
        with self._cv:
            return max(0, self.end - self._ring.size)

    def read(self, n: int, start: int, timeout: float, clamp: bool = False) -> tuple[np.ndarray, int]:
        """(complex64[n] RX samples, their first RX count) from RX count ``start``, waiting up to ``timeout`` s for
        them; ``clamp``: start no earlier than the oldest sample held (a continuing read that fell behind), else
        LateError."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self.end < start + n:
                if self.error is not None:
                    raise RadioError(f"PlutoSDR receive thread failed: {self.error}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RadioError(f"PlutoSDR: no RX samples up to {start + n} within {timeout:.1f} s "
                                     f"(have up to {self.end}); is the device still streaming?")
                self._cv.wait(min(left, 0.1))
            oldest = self.end - self._ring.size
            if start < oldest and clamp:
                start = oldest
                while self.end < start + n:
                    self._cv.wait(0.1)
                oldest = self.end - self._ring.size
                start = max(start, oldest)
            if start < oldest:
                raise LateError("PlutoSDR rx (ring buffer)", start, oldest)
            out = np.empty(n, np.complex64)
            size = self._ring.size
            i = start % size
            k = min(n, size - i)
            out[:k] = self._ring[i:i + k]
            out[k:] = self._ring[:n - k]
            return out, start

    # ----------------------------------------------------------------------------------------------- transmit
    def min_lead(self) -> int:
        """Samples a burst must be ahead of ``time_now()``: TX buffers queued beyond the RX count, plus one."""
        with self._cv:
            return max(0, self.tx_pos - self.end) + self._tx_block

    def schedule(self, words: np.ndarray, at: int) -> int:
        """Put TX words (complex64 DAC words) at RX-count time ``at``; LateError if it is less than
        :meth:`min_lead` ahead of the RX count (that part of the stream may already be pushed)."""
        with self._cv:
            if self.error is not None:
                raise RadioError(f"PlutoSDR TX feeder failed: {self.error}")
            # not yet pushed; and when the stream's labels trail the RX count (it started, or slipped, with RX
            # behind), not before the RX count plus a block
            earliest = self.tx_pos if self.tx_pos >= self.end else self.end + self._tx_block
            if at < earliest:
                raise LateError(f"PlutoSDR tx (the TX stream is pushed up to sample {self.tx_pos}; schedule at "
                                f"least {max(0, self.tx_pos - self.end) + self._tx_block} samples ahead of "
                                f"time_now)", at, earliest)
            self.stats["tx_bursts"] += 1
            self._scheduled[int(at)] = (int(at) + words.size, self.lock["epoch"], self.end, self.stats["tx_underflows"])
            while len(self._scheduled) > 4096:
                oldest = next(iter(self._scheduled))
                del self._scheduled[oldest]
                self._unlocked.discard(oldest)
                self._passed.discard(oldest)
                self._pushed.pop(oldest, None)
            self._inbox.append((int(at), words))      # (last: the feeder takes it up at its next block)
        return at

    def status(self, at: int, timeout: float) -> tuple[str, str]:
        """(state, detail) of the burst scheduled at ``at``. "underflow": the first DAC-status read after its last
        sample was pushed showed the DAC had run dry since it was scheduled (the stream slipped: it left at another
        offset), or it was pushed while the lock was lost or dropped by the realignment. "unknown": an RX gap was
        placed between its scheduling and its reception (the RX count there is estimated), or not yet known within
        ``timeout`` s. "on_time": none of these: it is received at its lock epoch's constant offset. Its reception
        is taken as done once the RX count passed :meth:`_received_by` as it stood at the push."""
        deadline = time.monotonic() + timeout

        def wait(ready) -> bool:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    return False
                self._cv.wait(min(left, 0.05))
            return True

        with self._cv:
            entry = self._scheduled.get(int(at))
            if entry is None:
                return "unknown", f"no burst scheduled at {at}"
            end, epoch, rx_then, underflows = entry
            # pushed (or dropped), and the RX thread has read the DAC status since (every DAC_STATUS_EVERY blocks)
            if not wait(lambda: int(at) in self._unlocked or int(at) in self._passed or (
                    int(at) in self._pushed and self._checks
                                                               and self._checks[-1][0] >= end)):
                return "unknown", "not yet pushed and checked"
            if int(at) in self._passed:
                return "late", ("the TX stream had passed its time when the feeder took it up (the scheduling "
                                "thread was delayed between its lead check and handing it over): not sent")
            if int(at) in self._unlocked:
                return "underflow", (f"pushed while the TX stream was realigning after a slip, or dropped by the "
                                     f"realignment (lock epoch {epoch}: not at its constant offset)")
            after = next(u for pos, u in self._checks if pos >= end)   # the first read after the push
            if after > underflows:
                return "underflow", f"the TX stream slipped while it was queued (lock epoch {epoch} ended)"
            received = self._pushed[int(at)]
            if not wait(lambda: self.end >= received):
                return "unknown", "not yet received"
            if any(rx_then < g < received for g in self._gap_at):
                return "unknown", (f"an RX overflow's gap was placed before it was received: the RX count after the "
                                   f"gap is estimated (±{self.gap_uncertainty} samples), so where this burst appears "
                                   f"in RX is not known to the sample (lock epoch {epoch} ended)")
            return "on_time", f"pushed in lock epoch {epoch} (constant TX->RX offset)"

    def epoch_of(self, at: int) -> int | None:
        """The lock epoch the burst scheduled at ``at`` was scheduled in (None: not known)."""
        with self._cv:
            entry = self._scheduled.get(int(at))
            return None if entry is None else entry[1]

    def cancel(self) -> None:
        """Drop every burst not yet pushed."""
        self._inbox.append(None)

    def _take_up(self, bursts: list, t: int) -> list:
        """The feeder's bursts after taking up what schedule()/cancel() handed over; a burst starting before ``t``
        (the stream passed it meanwhile) is not sent and is reported "late"."""
        while self._inbox:
            item = self._inbox.popleft()
            if item is None:
                bursts = []
            elif item[0] < t:
                self._passed.add(item[0])
                self.stats["tx_bursts_dropped"] += 1
            else:
                bisect.insort(bursts, item, key=lambda b: b[0])
        return bursts

    def _tx_loop(self) -> None:
        B = self._tx_block
        bursts: list[tuple[int, np.ndarray]] = []    # the feeder's own, by start (handed over through _inbox)
        m_loop = time.monotonic()
        while not self._stop.is_set():
            # (no _cv here: module docstring, "The feeder takes no lock")
            if self._realign_after is not None and self._lead_ref is not None and not self._pending \
                    and self._caught_up_at >= self._realign_after:
                with self._lock_guard:
                    # the DAC ran dry: the stream slipped by the dry time. Skip the stream ahead to where it stood
                    # against RX before (the offset is again constant, near the old one: timing advance re-measures)
                    new = max(self.tx_pos, self.end + self._lead_ref)
                    bursts = self._take_up(bursts, self.tx_pos)
                    dropped = [b for b in bursts if b[0] < new]
                    self.stats["tx_bursts_dropped"] += len(dropped)
                    self._unlocked.update(b[0] for b in dropped)    # not sent as scheduled: reported
                    bursts = [b for b in bursts if b[0] >= new]
                    self.tx_pos = new
                    self._realign_after = None
                    self.lock = {**self.lock, "locked": True, "since": new}
            t = self.tx_pos
            # published before the hand-over is read: a burst schedule() admits from now on starts at t + B or later
            self.tx_pos = t + B
            bursts = self._take_up(bursts, t)
            block = np.zeros(B, np.complex64)
            keep = []
            locked = self.lock["locked"]
            for at, words in bursts:
                lo, hi = max(at, t), min(at + words.size, t + B)
                if lo < hi:
                    block[lo - t:hi - t] += words[lo - at:hi - at]
                    if not locked:
                        self._unlocked.add(at)
                if at + words.size > t + B:
                    keep.append((at, words))
                else:
                    self._pushed[at] = self._received_by()
            bursts = keep
            m_push = time.monotonic()
            self._push(block)          # waits while the kernel's TX buffers are full: paced by the DAC
            m_done = time.monotonic()
            self.push_log.append((m_loop, m_push, m_done))
            m_loop = m_done
            self._pushed_to = t + B
            self.stats["tx_blocks"] += 1
            if self.stats["tx_blocks"] == self._nbuf + 1:
                self._lead_ref = self.tx_pos - self.end
                self._tx_primed.set()

