"""RadioNode: owns one wall-clock radio; streams its RX continuously and sends TX bursts scheduled ahead of time.

    node = RadioNode(radio, lead_s=0.02).start()
    t = node.time_now() + int(0.05 * node.sample_rate)
    result = node.tx(burst, at=t)          # TxResult: accepted? left on time?
    samples, gaps = node.rx(t, 4000)       # the samples of [t, t + 4000) and the lost intervals among them
    node.close()

Threads: the RX thread reads blocks of ``block`` samples (``rx(n)`` continuing the stream) into a
:class:`radio.node.ring.SampleRing` and feeds each block's arrival to a :class:`radio.node.clock_map.ClockMap`; the TX
thread hands accepted bursts to the radio (``tx(samples, at)``, so radios with timed TX get ``at`` in hardware) and
asks it for the outcome (:meth:`radio.base.Radio.tx_status`), so a burst far ahead never blocks RX. Radios that are not
``thread_safe`` are driven under one lock (a TX then waits for at most one RX block). Every wait has a timeout and an
error naming what it waited for.

A burst is accepted only when ``at >= time_now() + lead`` (``lead_s`` seconds); later ones are refused with a result
that says by how much (``state="rejected"``): nothing is handed to the radio that it could only send late.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np

from radio.base import LateError, Radio, RadioError, as_samples
from radio.node.clock_map import ClockMap
from radio.node.ring import SampleRing
from radio.thread_priority import raise_thread_priority

#: RX reads that had to wait for the radio before :meth:`RadioNode.start` returns (the clock map is then true)
CAUGHT_UP_READS = 8


@dataclass(frozen=True)
class TxResult:
    """Outcome of :meth:`RadioNode.tx`.

    ``at``: asked sample time; ``accepted``: passed the lead check and was handed to the radio; ``state``:
    ``"on_time"``, ``"late"``, ``"underflow"``, ``"unknown"`` (the radio cannot tell), ``"rejected"`` (less than
    ``lead`` ahead: not sent) or ``"error"``; ``start``: the sample time the radio says it starts at (None when not
    sent); ``lead_samples``: how far ahead of the node's clock ``at`` was when asked; ``detail``: why;
    ``lock_epoch``: a radio with TX locked to RX (a streaming Pluto): the lock epoch the burst left in (its TX->RX
    offset is one constant per epoch), else None.
    """

    at: int
    accepted: bool
    state: str
    start: int | None = None
    lead_samples: int = 0
    detail: str = ""
    lock_epoch: int | None = None

    @property
    def on_time(self) -> bool | None:
        """True/False when known, None when the radio cannot tell."""
        return None if self.state == "unknown" else self.state == "on_time"

    def as_dict(self) -> dict:
        return asdict(self)


class RadioNode:
    """The per-radio streaming owner of ``radio`` (a :class:`radio.base.Radio` whose ``capabilities.wall_clock`` is
    true: hardware, the realtime ZeroMQ air, a realtime loopback air, the emulators' wall-clock modes).

    ``lead_s``: the smallest lead a TX burst must have (seconds; raised to the radio's own
    :meth:`radio.base.Radio.min_lead_samples` when that is longer, as a streaming Pluto's is); ``ring_s``: seconds of RX history held;
    ``block``: samples per RX read (default 5 ms); ``timeout_s``: the longest any call waits by default;
    ``fit_window``/``max_ppm``: the clock map's (:class:`radio.node.clock_map.ClockMap`); ``name``: shown in status
    and errors; ``own_radio``: close the radio with the node.
    """

    def __init__(self, radio: Radio, *, name: str = "node", lead_s: float = 0.02, ring_s: float = 4.0,
                 block: int | None = None, timeout_s: float = 5.0, fit_window: int = 2048, max_ppm: float = 200.0,
                 own_radio: bool = True):
        if not isinstance(radio, Radio):
            raise ValueError(f"radio = {radio!r}: expected a radio.base.Radio")
        if not lead_s >= 0:
            raise ValueError(f"lead_s = {lead_s!r}: expected >= 0 seconds")
        if not ring_s > 0:
            raise ValueError(f"ring_s = {ring_s!r}: expected > 0 seconds")
        self.radio, self.name = radio, name
        self.sample_rate = float(radio.sample_rate)
        # the lead a burst needs: the one asked for, or the radio's own if that is longer (a burst less than it
        # ahead could only leave late: a node does not accept it)
        self.lead_requested_s = float(lead_s)
        self.radio_lead_s = radio.min_lead_samples() / self.sample_rate
        self.lead_s, self.timeout_s = max(self.lead_requested_s, self.radio_lead_s), float(timeout_s)
        self.block = int(block) if block else max(1, int(round(0.005 * self.sample_rate)))
        self.ring = SampleRing(max(int(ring_s * self.sample_rate), 4 * self.block))
        self.clock = ClockMap(self.sample_rate, fit_window, max_ppm)
        self._own = own_radio
        self._lock = threading.Lock() if not getattr(radio, "thread_safe", False) else None
        self._stop = threading.Event()
        self._pause_until = 0.0
        self._caught_up = threading.Event()   # RX reads waited for the radio: no backlog, prompt arrivals
        self.priority = ""                    # the RX thread's scheduling priority (radio.thread_priority)
        self._waited = 0
        self._tx_waiting = False          # the TX thread waits for the radio: the RX thread lets it go first
        self._flagged_to = -1             # the radio's in-place gaps are flagged in the ring up to here
        self._txq: queue.Queue = queue.Queue()
        self._statq: queue.Queue = queue.Queue()   # bursts handed to the radio, waiting for their outcome
        self._threads: list[threading.Thread] = []
        self.stats = {"rx_blocks": 0, "rx_errors": 0, "tx_on_time": 0, "tx_late": 0, "tx_underflow": 0,
                      "tx_unknown": 0, "tx_rejected": 0, "tx_error": 0}
        self.last_error = ""
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------------------------------------ lifecycle
    def start(self, timeout_s: float | None = None) -> RadioNode:
        """Start the RX and TX threads; returns once the first RX block arrived (RadioError after ``timeout_s``) and
        RX has caught up with the radio (a read waited for its samples, so the clock map holds a prompt arrival;
        after ``timeout_s`` without one it returns anyway and says so in ``last_error``)."""
        if self._started:
            raise RadioError(f"node {self.name!r} already started")
        if not self.radio.capabilities.wall_clock:
            raise RadioError(f"node {self.name!r}: radio {self.radio!r} does not run on a wall clock (capabilities."
                             f"wall_clock is false): use realtime pacing (zmq: broker.pacing realtime; loopback: "
                             f"radio.args.realtime true)")
        self._started = True
        for target, what in ((self._rx_loop, "rx"), (self._tx_loop, "tx"), (self._status_loop, "tx status")):
            th = threading.Thread(target=target, name=f"RadioNode {self.name} {what}", daemon=True)
            th.start()
            self._threads.append(th)
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while not self.clock.ready:
            if time.monotonic() > deadline:
                self.close()
                raise RadioError(f"node {self.name!r}: no RX block from {self.radio.driver} radio within "
                                 f"{timeout_s} s of starting ({self.last_error or 'no error reported'})")
            time.sleep(0.001)
        # the first blocks may be a backlog (what the radio buffered before the node read it): they arrive late and
        # put the clock map late until blocks arrive that the radio made us wait for (prompt arrivals: the map's
        # envelope is then true). Measured on the ZeroMQ air at load 5: up to 25 ms off for the first 50 ms; 1.6 ms
        # after one waited read (the broker was still starting); under 0.5 ms after CAUGHT_UP_READS of them
        while not self._caught_up.wait(0.01):
            if time.monotonic() > deadline:
                self.last_error = (f"start: RX had not caught up with the radio within {timeout_s} s (every read "
                                   f"returned at once): the clock map may be late until it does")
                break
        return self

    def close(self) -> None:
        """Stop the threads (each joined with a timeout) and close the radio if the node owns it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._txq.put(None)
        self._statq.put(None)
        for th in self._threads:
            th.join(timeout=max(2.0, 4 * self.block / self.sample_rate))
        if self._own:
            self.radio.close()

    def __enter__(self) -> RadioNode:
        return self if self._started else self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ clock
    def time_now(self) -> int:
        """The radio's sample time now, from the fitted map (as fine as the host clock)."""
        return self.clock.to_sample(time.monotonic())

    def to_mono(self, t: int) -> float:
        """Host ``time.monotonic()`` at which sample ``t`` exists."""
        return self.clock.to_mono(t)

    def to_sample(self, mono: float) -> int:
        """The radio's sample time at host ``time.monotonic()`` value ``mono``."""
        return self.clock.to_sample(mono)

    def wait_until(self, t: int, timeout_s: float | None = None) -> int:
        """Sleep until the radio's clock reaches sample ``t``; returns ``time_now()``. RadioError when that is more
        than ``timeout_s`` away."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        left = self.to_mono(t) - time.monotonic()
        if left > timeout_s:
            raise RadioError(f"node {self.name!r}: wait_until({t}) is {left:.3f} s away, more than timeout_s="
                             f"{timeout_s}")
        deadline = time.monotonic() + timeout_s
        while True:   # the clock map may be refitted while we sleep: wait until the clock itself says t
            now = self.time_now()
            if now >= t:
                return now
            if time.monotonic() > deadline:
                raise RadioError(f"node {self.name!r}: wait_until({t}): the clock is at {now} after "
                                 f"timeout_s={timeout_s}")
            time.sleep(min(max(self.to_mono(t) - time.monotonic(), 0.0005), 0.05))

    # ------------------------------------------------------------------------------------------------ rx/tx
    def rx(self, t0: int, n: int, timeout_s: float | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """complex64[n] received at sample times ``[t0, t0 + n)`` and the lost (zero-filled) intervals among them.
        Waits until they arrived (RadioError after ``timeout_s`` beyond their time), LateError when no longer held."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n = {n!r}: expected an integer number of samples >= 0")
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        ahead = max(0.0, self.to_mono(int(t0) + int(n)) - time.monotonic())
        return self.ring.read(int(t0), int(n), ahead + timeout_s)

    def submit(self, samples: np.ndarray, at: int) -> concurrent.futures.Future:
        """Schedule ``samples`` (complex64[N]) at sample time ``at`` without waiting: a Future of its
        :class:`TxResult`, already done (``"rejected"``) when ``at`` is less than ``lead_s`` ahead. The TX thread
        hands bursts to the radio in order and a status thread collects their outcomes, so a caller that sends every
        20 ms never waits for the radio's verdict on the previous burst."""
        x = as_samples(samples, f"node {self.name!r} tx samples")
        if isinstance(at, bool) or not isinstance(at, (int, np.integer)):
            raise ValueError(f"at = {at!r}: expected an integer sample time")
        at = int(at)
        fut: concurrent.futures.Future = concurrent.futures.Future()
        lead = at - self.time_now()
        need = int(round(self.lead_s * self.sample_rate))
        if lead < need:
            self.stats["tx_rejected"] += 1
            fut.set_result(TxResult(at, False, "rejected", None, lead,
                                    f"{lead} samples ahead of the radio clock, less than lead {need} ({self.lead_s} s)"))
            return fut
        if self._closed:
            raise RadioError(f"node {self.name!r} is closed")
        self._txq.put((x, at, lead, fut))
        return fut

    def tx(self, samples: np.ndarray, at: int, timeout_s: float | None = None) -> TxResult:
        """Send ``samples`` (complex64[N]) at sample time ``at`` if that is at least ``lead_s`` ahead; returns when
        the radio has taken it and said how it left (at most ``timeout_s`` after ``at``)."""
        fut = self.submit(samples, at)
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        wait = max(0.0, self.to_mono(int(at) + np.size(samples)) - time.monotonic()) + timeout_s
        try:
            return fut.result(wait)
        except concurrent.futures.TimeoutError:
            self.stats["tx_error"] += 1
            return TxResult(int(at), True, "error", None, 0, f"no outcome from the radio within {wait:.3f} s")

    # ------------------------------------------------------------------------------------------------ status
    def status(self) -> dict:
        """Counters and the clock map, JSON-ready."""
        return {"name": self.name, "driver": self.radio.driver, "sample_rate": self.sample_rate,
                "now": self.time_now() if self.clock.ready else None, "rx_end": self.ring.end,
                "rx_oldest": self.ring.oldest(), "gaps": self.ring.gap_count, "gap_samples": self.ring.gap_samples,
                "lead_s": self.lead_s, "lead_requested_s": self.lead_requested_s, "radio_lead_s": self.radio_lead_s,
                "block": self.block, "serialised": self._lock is not None,
                "clock_map": self.clock.as_dict(), "timed_tx": self.radio.capabilities.timed_tx,
                "timing_accuracy_samples": self.radio.capabilities.timing_accuracy_samples,
                "rx_thread_priority": self.priority, **self.stats, "radio_timing": self.radio.timing_state(),
                "last_error": self.last_error}

    def pause_rx(self, seconds: float) -> None:
        """Test hook: stall the RX thread for ``seconds`` (a busy host), as if the process had not been scheduled."""
        self._pause_until = time.monotonic() + float(seconds)

    # ------------------------------------------------------------------------------------------------ threads
    def _call(self, fn, *args):
        """Call the radio; serialised under the node's lock when the radio is not thread-safe."""
        if self._lock is None:
            return fn(*args)
        with self._lock:
            return fn(*args)

    def _call_tx(self, fn, *args):
        """As :meth:`_call`, but the RX thread lets it go first: Python's lock is not fair, and an RX loop that
        takes it again at once could starve a burst past its time on a busy host."""
        if self._lock is None:
            return fn(*args)
        self._tx_waiting = True           # only the TX thread writes it
        try:
            with self._lock:
                return fn(*args)
        finally:
            self._tx_waiting = False

    def _call_rx(self, fn, *args):
        if self._lock is not None:
            while self._tx_waiting and not self._stop.is_set():
                time.sleep(0.0002)
        return self._call(fn, *args)

    def _rx_loop(self) -> None:
        self.priority = raise_thread_priority()      # it drains the radio: above a busy host's other work
        while not self._stop.is_set():
            pause = self._pause_until - time.monotonic()
            if pause > 0:
                self._stop.wait(pause)
                continue
            called = time.monotonic()
            try:
                x, t0 = self._call_rx(self.radio.rx, self.block)
            except LateError as exc:      # the stream could not continue: start again from now
                self.stats["rx_errors"] += 1
                self.last_error = f"rx: {exc}"
                self._resync()
                continue
            except (RadioError, ValueError) as exc:
                if self._stop.is_set():
                    return
                self.stats["rx_errors"] += 1
                self.last_error = f"rx: {exc}"
                self._stop.wait(0.01)
                continue
            arrived = time.monotonic()
            if arrived - called >= 0.5 * x.size / self.sample_rate:
                self._waited += 1
                if self._waited >= CAUGHT_UP_READS:
                    self._caught_up.set()
            self.ring.write(t0, x)
            self._flag_filled(t0, t0 + x.size)
            stamped = self.radio.rx_arrivals()
            if stamped is None:       # the radio does not stamp its blocks: when this read returned
                self.clock.add(t0 + x.size, arrived)
            else:                     # its own stamps (a Pluto's: when libiio's refill returned each completed
                for t, mono in stamped[0]:    # block, less a real Pluto's USB 2.0 transfer floor: pluto_stream)
                    self.clock.add(t, mono)
                # the shortest refill (a block already queued) is reported, not subtracted: it also holds the
                # request's round trip, which a refill waiting for its block had paid before the block completed;
                # subtracted, it put the map 3.2-3.6 ms early on a quiet host. The emulated Pluto's map is 0.2-0.45 ms
                # late unsubtracted (its DMA's and iiod's wake-ups and the socket: docs/radio-clocks.md)
                self.stats["refill_shortest_s"] = float(stamped[1])
            self.stats["rx_blocks"] += 1

    def _flag_filled(self, t0: int, t1: int) -> None:
        """Flag in the ring what the radio zero-filled in place within ``[t0, t1)`` (``Radio.rx_gaps``: a Pluto's
        overflow, a USRP's; those keep the index, so the ring cannot see them as a jump)."""
        for a, b in self.radio.rx_gaps():
            a, b = max(a, t0, self._flagged_to), min(b, t1)
            if a < b:
                self.ring.mark_lost(a, b, new_gap=a != self._flagged_to)
                self._flagged_to = b

    def _resync(self) -> None:
        try:
            x, t0 = self._call(self.radio.rx, self.block, self._call(self.radio.time_now))
            self.ring.write(t0, x)
            self.clock.add(t0 + x.size, time.monotonic())
        except RadioError as exc:
            self.last_error = f"rx resync: {exc}"
            self._stop.wait(0.01)

    def _tx_loop(self) -> None:
        while True:
            item = self._txq.get()
            if item is None:
                return
            x, at, lead, fut = item
            try:
                start = self._call_tx(self.radio.tx, x, at)
            except LateError as exc:
                self.stats["tx_late"] += 1
                fut.set_result(TxResult(at, True, "late", None, lead, str(exc)))
                continue
            except (RadioError, ValueError) as exc:
                self.stats["tx_error"] += 1
                self.last_error = f"tx: {exc}"
                fut.set_result(TxResult(at, True, "error", None, lead, str(exc)))
                continue
            self._statq.put((x.size, at, lead, int(start), fut))

    def _status_loop(self) -> None:
        while True:
            item = self._statq.get()
            if item is None:
                return
            size, at, lead, start, fut = item
            wait = max(0.0, self.to_mono(at + size) - time.monotonic()) + self.timeout_s
            status = self.radio.tx_status(at, timeout_s=wait)
            state, detail = status.state, status.detail
            if state == "unknown" and start != at:
                acc = self.radio.capabilities.timing_accuracy_samples
                if abs(start - at) > acc:
                    state, detail = "late", f"the radio started it at {start}, {start - at} samples off (accuracy {acc})"
            self.stats[f"tx_{state}"] = self.stats.get(f"tx_{state}", 0) + 1
            fut.set_result(TxResult(at, True, state, start, lead, detail, status.lock_epoch))
