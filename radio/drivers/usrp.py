"""Ettus USRP radios (B2xx, X3xx, N2xx, ...) through UHD's Python API (``uhd.usrp.MultiUSRP``).

The radio's sample clock is the USRP's own time register read in samples: ``t = time_spec.to_ticks(sample_rate)`` and
``TimeSpec.from_ticks(t, sample_rate)`` back, which are exact inverses for every integer ``t`` (UHD splits the tick
count into whole seconds and a remainder before touching floating point). Timed transmission puts that TimeSpec in
the first packet's ``TXMetadata`` (start and end of burst); timed reception issues a ``StreamCMD`` with
``stream_now = False``: ``start_cont`` at the asked time, a stream that ``rx(at=None)``
continues gap-free.

Everything that goes wrong on the wire is counted in :attr:`UsrpRadio.stats` (and shown by ``settings()``):
transmit underflows ("U"), sequence errors and late bursts from the asynchronous TX messages, receive overflows
("O"), late commands, timeouts and other receive error codes. A receive overflow loses samples: the gap is filled
with zeros so that sample times stay exact, and the number of zero-filled samples is counted.

Burst outcomes reach the caller: a thread of its own reads UHD's asynchronous TX messages (``recv_async_msg``:
``burst_ack``, ``time_error`` = late, ``underflow``, ``seq_error``) and turns them into one :class:`TxResult` per
burst, in send order; :meth:`UsrpRadio.wait_tx_result` returns the result of a given burst, :meth:`wait_tx_done`
waits for all of them. ``send`` itself still blocks until the device has taken the burst (UHD's flow control), so a
caller that schedules far ahead sends from a thread of its own.

Time alignment (``pps_align``, for several USRPs sharing one PPS and a host clock disciplined by NTP/PTP/GPS): the
driver waits for a PPS edge, reads the host's UTC time just after it and arms ``set_time_next_pps(S + 1)`` on every
motherboard, S the current whole second; every USRP aligned this way (on one host or many) then counts the same
absolute time: sample ``t`` is UTC second ``t / sample_rate``. Several motherboards of one ``MultiUSRP`` (device args
naming several addresses) are aligned together with ``set_time_unknown_pps``. Without ``pps_align`` time is set to 0
immediately.

UHD is imported lazily, so the rest of otalab works without it. Pass ``uhd_module=`` to drive any object with UHD's
API (the tests use a recording test double).
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import threading
import time
from collections import deque
from typing import Literal

import numpy as np

from radio.base import LateError, Radio, RadioCapabilities, RadioError, TxStatus, as_samples

INSTALL_HINT = ("Install UHD's Python API: on Debian/Ubuntu `sudo apt install python3-uhd` and create the "
                "virtualenv from the system Python with `/usr/bin/python3 -m venv --system-site-packages .venv`; "
                "with conda use radioconda or `conda install -c conda-forge uhd`. "
                "Check with `python -c 'import uhd'` and `uhd_find_devices`.")

#: seconds to poll for reference lock / a PPS edge / LO lock before giving up
LOCK_TIMEOUT_S = 2.0
#: PPS edges come once a second: waits for an edge use this much beyond LOCK_TIMEOUT_S
PPS_PERIOD_S = 1.0
#: receive buffers are at most this many samples long when a stream is skipped forward (discarded)
_SKIP_CHUNK = 1 << 16


def import_uhd():
    """Import UHD's Python module or raise :class:`RadioError` telling how to install it."""
    try:
        return importlib.import_module("uhd")
    except ImportError as exc:
        raise RadioError(f"The USRP driver needs UHD's Python API (module 'uhd'), which {sys.executable} cannot "
                         f"import ({exc}). {INSTALL_HINT}") from None


@dataclasses.dataclass
class UsrpArgs:
    """``radio.args`` for driver "usrp" (YAML).

    ``args`` is UHD's device address string ("type=b200", "addr=192.168.10.2", "serial=3215ABC,
    master_clock_rate=30.72e6"); empty opens the first USRP found. ``clock_source``/``time_source`` select the 10 MHz
    reference and PPS ("internal", "external" connectors, "gpsdo" the board's GPS-disciplined oscillator).
    ``pps_align`` loads the host's UTC second + 1 on the next PPS edge on every motherboard (several USRPs sharing
    one PPS then hold the same absolute time; see the module docstring); otherwise the time is set to 0 immediately.
    ``gpsdo_lock_timeout`` (s): how long to wait for GPS lock with a ``gpsdo`` source: a cold GPSDO can take several
    minutes. ``subdev`` (e.g. "A:A", "A:B" on a B210) selects the frontend (UHD subdev spec; empty keeps UHD's).
    Antennas empty keep UHD's default; ``lo_offset`` tunes the LO away from the carrier (DSP corrects it) to move the
    LO leakage out of the signal.
    """

    args: str = ""
    channel: int = 0
    tx_antenna: str = ""
    rx_antenna: str = ""
    clock_source: Literal["internal", "external", "gpsdo"] = "internal"
    time_source: Literal["internal", "external", "gpsdo"] = "internal"
    pps_align: bool = False
    gpsdo_lock_timeout: float = 300.0
    subdev: str = ""
    master_clock_rate: float | None = None
    bandwidth: float | None = None
    lo_offset: float = 0.0
    otw_format: Literal["sc16", "sc12", "sc8"] = "sc16"
    start_delay: float = 0.05     # seconds from "now" to the first sample of an rx/tx that does not give ``at``
    timeout: float = 1.0          # seconds of slack on top of the time a burst needs before declaring a timeout

    def __post_init__(self):
        if self.channel < 0:
            raise ValueError(f"channel must be >= 0, got {self.channel}")
        if self.pps_align and self.time_source == "internal":
            raise ValueError("pps_align needs a PPS: set time_source to 'external' or 'gpsdo' (got 'internal')")
        if not self.start_delay > 0:
            raise ValueError(f"start_delay must be > 0 s, got {self.start_delay}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 s, got {self.timeout}")
        if not self.gpsdo_lock_timeout > 0:
            raise ValueError(f"gpsdo_lock_timeout must be > 0 s, got {self.gpsdo_lock_timeout}")
        for name in ("master_clock_rate", "bandwidth"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 Hz or null, got {value}")


def _new_stats() -> dict[str, int]:
    return {"tx_bursts": 0, "tx_samples": 0, "tx_underflows": 0, "tx_seq_errors": 0, "tx_late": 0,
            "tx_bursts_acked": 0, "tx_timeouts": 0, "rx_samples": 0, "rx_overflows": 0, "rx_seq_errors": 0,
            "rx_late": 0, "rx_timeouts": 0, "rx_dropped_samples": 0, "rx_other_errors": 0, "rx_restarts": 0}


@dataclasses.dataclass
class TxResult:
    """What the device said about one burst (from UHD's asynchronous TX messages).

    ``at``: the burst's requested sample time; ``done``: an end-of-burst message came (``burst_ack`` or
    ``time_error``); ``acked``: it was sent completely (``burst_ack``); ``late``: the device got it after its time
    (``time_error``; UHD drops such a burst); ``underflow``/``seq_error``: reported while it was on the air;
    ``ok``: acked without late/underflow/seq errors; ``error_time``: the sample time the late message named.
    """

    at: int
    done: bool = False
    acked: bool = False
    late: bool = False
    underflow: bool = False
    seq_error: bool = False
    error_time: int | None = None

    @property
    def ok(self) -> bool:
        return self.acked and not (self.late or self.underflow or self.seq_error)


class UsrpRadio(Radio):
    """A USRP channel pair (one TX, one RX) with an exact integer sample clock.

    Parameters: ``sample_rate`` (Hz, used for TX and RX; the rate UHD actually sets becomes :attr:`sample_rate`),
    ``center_freq`` (Hz), ``tx_gain``/``rx_gain`` (dB, UHD's gain reference for the daughterboard), ``args``
    (:class:`UsrpArgs`), ``uhd_module`` (default: ``import uhd``).

    ``tx(samples: complex64[N], at)`` sends one timed burst; ``rx(n, at) -> (complex64[n], t0)`` captures ``n``
    samples (see :mod:`radio.base` for the contract). Samples are full scale at amplitude 1.
    """

    driver = "usrp"

    def __init__(self, sample_rate: float, center_freq: float, tx_gain: float = 0.0, rx_gain: float = 0.0,
                 args: UsrpArgs | None = None, uhd_module=None):
        if not sample_rate > 0:
            raise ValueError(f"sample_rate must be > 0 Hz, got {sample_rate}")
        if not center_freq > 0:
            raise ValueError(f"center_freq must be > 0 Hz, got {center_freq}")
        self.args = args if args is not None else UsrpArgs()
        self._uhd = uhd_module if uhd_module is not None else import_uhd()
        self.stats: dict[str, int] = _new_stats()
        self._closed = False
        self._rx_streaming = False      # a start_cont stream is running
        self._rx_next: int | None = None  # sample time of the next sample the stream delivers / the last rx ended
        self._carry: tuple[np.ndarray, int] | None = None  # received samples beyond the last request, with their time
        self._rx_gaps: deque[tuple[int, int]] = deque(maxlen=1024)   # [start, end) lost to overflows, zero-filled
        self._results: dict[int, TxResult] = {}   # burst time -> result, for every burst sent (oldest dropped)
        self._unfinished: deque[TxResult] = deque()   # bursts sent, no end-of-burst message yet (send order)
        self._async_cv = threading.Condition()
        self._async_stop = threading.Event()
        self._async_thread: threading.Thread | None = None
        uhd = self._uhd
        try:
            self._usrp = uhd.usrp.MultiUSRP(self.args.args)
        except Exception as exc:  # UHD raises RuntimeError/LookupError/KeyError for "no devices found"
            raise RadioError(f"usrp: cannot open a USRP with device args {self.args.args!r}: {exc}. "
                             f"Check the connection and `uhd_find_devices --args \"{self.args.args}\"`.") from None
        try:
            self._configure(sample_rate, center_freq, tx_gain, rx_gain)
        except Exception:
            self.close()
            raise
        self._async_thread = threading.Thread(target=self._async_loop, name="usrp-tx-async", daemon=True)
        self._async_thread.start()

    # ------------------------------------------------------------------------------------------------ set-up
    def _configure(self, sample_rate: float, center_freq: float, tx_gain: float, rx_gain: float) -> None:
        uhd, usrp, a = self._uhd, self._usrp, self.args
        n_rx, n_tx = usrp.get_rx_num_channels(), usrp.get_tx_num_channels()
        if a.channel >= min(n_rx, n_tx):
            raise RadioError(f"usrp: channel {a.channel} does not exist; this USRP has {n_rx} RX and {n_tx} TX "
                             f"channels (radio.args.channel)")
        self._set_clock_and_time_sources()
        if a.subdev:
            spec = uhd.usrp.SubdevSpec(a.subdev)
            usrp.set_rx_subdev_spec(spec, 0)
            usrp.set_tx_subdev_spec(spec, 0)
        if a.master_clock_rate is not None:
            usrp.set_master_clock_rate(float(a.master_clock_rate))
        usrp.set_tx_rate(float(sample_rate), a.channel)
        usrp.set_rx_rate(float(sample_rate), a.channel)
        rx_rate, tx_rate = usrp.get_rx_rate(a.channel), usrp.get_tx_rate(a.channel)
        if rx_rate != tx_rate:
            raise RadioError(f"usrp: requested {sample_rate} S/s but UHD set RX {rx_rate} and TX {tx_rate} S/s; "
                             f"choose a rate that divides the master clock rate")
        self._rate = float(rx_rate)
        self.center_freq = center_freq
        self.tx_gain = tx_gain
        self.rx_gain = rx_gain
        if a.tx_antenna:
            usrp.set_tx_antenna(a.tx_antenna, a.channel)
        if a.rx_antenna:
            usrp.set_rx_antenna(a.rx_antenna, a.channel)
        if a.bandwidth is not None:
            usrp.set_tx_bandwidth(float(a.bandwidth), a.channel)
            usrp.set_rx_bandwidth(float(a.bandwidth), a.channel)
        stream_args = uhd.usrp.StreamArgs("fc32", a.otw_format)
        stream_args.channels = [a.channel]
        self._rx_stream = usrp.get_rx_stream(stream_args)
        stream_args = uhd.usrp.StreamArgs("fc32", a.otw_format)
        stream_args.channels = [a.channel]
        self._tx_stream = usrp.get_tx_stream(stream_args)
        self._rx_md = uhd.types.RXMetadata()
        self._align_time()

    @property
    def num_mboards(self) -> int:
        """Motherboards behind this MultiUSRP (several when the device args name several addresses)."""
        return int(self._usrp.get_num_mboards())

    def _set_clock_and_time_sources(self) -> None:
        """Clock and time source on every motherboard, then wait for reference (and GPS) lock on each."""
        usrp, a = self._usrp, self.args
        for mb in range(self.num_mboards):
            usrp.set_clock_source(a.clock_source, mb)
            usrp.set_time_source(a.time_source, mb)
        for mb in range(self.num_mboards):
            if a.clock_source != "internal":
                self._wait_for_sensor("ref_locked", f"10 MHz reference on clock source {a.clock_source!r}", mb)
            if a.clock_source == "gpsdo" or a.time_source == "gpsdo":
                self._wait_for_sensor("gps_locked", "GPSDO lock (needs an antenna with sky view; after a cold start "
                                      "lock can take several minutes: raise radio.args.gpsdo_lock_timeout, or wait "
                                      "and retry)", mb, a.gpsdo_lock_timeout)

    def _wait_for_sensor(self, name: str, what: str, mboard: int = 0, timeout: float | None = None) -> None:
        usrp = self._usrp
        timeout = LOCK_TIMEOUT_S if timeout is None else timeout
        if name not in usrp.get_mboard_sensor_names(mboard):
            return  # this board cannot report it; nothing to wait for
        deadline = time.monotonic() + timeout
        while not usrp.get_mboard_sensor(name, mboard).to_bool():
            if time.monotonic() > deadline:
                raise RadioError(f"usrp: no {what} on motherboard {mboard} after {timeout} s (sensor {name!r} "
                                 f"false); check the cable or set radio.args.clock_source/time_source to 'internal'")
            time.sleep(0.01)

    def _check_lo_locked(self) -> None:
        """After tuning: every LO that reports ``lo_locked`` must be locked (within LOCK_TIMEOUT_S)."""
        usrp, ch = self._usrp, self.args.channel
        for side, names, sensor in (("TX", usrp.get_tx_sensor_names, usrp.get_tx_sensor),
                                    ("RX", usrp.get_rx_sensor_names, usrp.get_rx_sensor)):
            if "lo_locked" not in names(ch):
                continue
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while not sensor("lo_locked", ch).to_bool():
                if time.monotonic() > deadline:
                    raise RadioError(f"usrp: {side} LO of channel {ch} not locked {LOCK_TIMEOUT_S} s after tuning to "
                                     f"{self._center_freq_requested} Hz (lo_offset {self.args.lo_offset} Hz); is "
                                     f"the frequency inside the daughterboard's range?")
                time.sleep(0.01)

    def _align_time(self) -> None:
        """Without ``pps_align``: time 0 now. With it: the host's UTC second + 1 at the next PPS edge on every
        motherboard (module docstring), checked on the edge that loads it."""
        uhd, usrp = self._uhd, self._usrp
        if not self.args.pps_align:
            usrp.set_time_now(uhd.types.TimeSpec(0.0), 0)
            return
        self._wait_pps_edge(usrp.get_time_last_pps(0).to_ticks(self._rate), "no PPS edge")
        # just after an edge: the host's whole second S names it, and S + 1 names the next one (the host clock must
        # be within half a second of the PPS: NTP/PTP/GPS disciplined)
        second = int(time.time()) + 1
        if self.num_mboards > 1:
            # UHD waits for an edge itself, arms every board, and the time lands one edge later
            usrp.set_time_unknown_pps(uhd.types.TimeSpec(float(second + 1)))
            second += 1
        else:
            usrp.set_time_next_pps(uhd.types.TimeSpec(float(second)), 0)
        target = self.from_time_spec(uhd.types.TimeSpec(float(second)))
        last = usrp.get_time_last_pps(0).to_ticks(self._rate)
        if last != target:
            self._wait_pps_edge(last, f"the PPS edge that loads second {second}")
            last = usrp.get_time_last_pps(0).to_ticks(self._rate)
        if last != target:
            raise RadioError(f"usrp: PPS alignment failed: the edge after arming second {second} holds sample "
                             f"{last}, expected {target}; is the host clock (NTP/PTP) within 0.5 s of the PPS?")

    def _wait_pps_edge(self, last: int, what: str) -> None:
        usrp = self._usrp
        limit = LOCK_TIMEOUT_S + PPS_PERIOD_S
        deadline = time.monotonic() + limit
        while usrp.get_time_last_pps(0).to_ticks(self._rate) == last:
            if time.monotonic() > deadline:
                raise RadioError(f"usrp: {what} within {limit} s on time source {self.args.time_source!r}; "
                                 f"check the PPS cable or set pps_align: false")
            time.sleep(0.002)

    # -------------------------------------------------------------------------------------------- properties
    @property
    def sample_rate(self) -> float:
        return self._rate

    @property
    def center_freq(self) -> float:
        return self._center_freq

    @center_freq.setter
    def center_freq(self, freq: float) -> None:
        if not freq > 0:
            raise ValueError(f"center_freq must be > 0 Hz, got {freq}")
        tune = self._uhd.types
        request = (tune.TuneRequest(float(freq), float(self.args.lo_offset)) if self.args.lo_offset
                   else tune.TuneRequest(float(freq)))
        self._center_freq_requested = float(freq)
        self._usrp.set_tx_freq(request, self.args.channel)
        self._usrp.set_rx_freq(request, self.args.channel)
        self._check_lo_locked()
        self._center_freq = float(freq)

    @property
    def tx_gain(self) -> float:
        return self._tx_gain

    @tx_gain.setter
    def tx_gain(self, gain: float) -> None:
        self._usrp.set_tx_gain(float(gain), self.args.channel)
        self._tx_gain = float(self._usrp.get_tx_gain(self.args.channel))

    @property
    def rx_gain(self) -> float:
        return self._rx_gain

    @rx_gain.setter
    def rx_gain(self, gain: float) -> None:
        self._usrp.set_rx_gain(float(gain), self.args.channel)
        self._rx_gain = float(self._usrp.get_rx_gain(self.args.channel))

    @property
    def capabilities(self) -> RadioCapabilities:
        return RadioCapabilities(timed_tx=True, timed_rx=True, full_duplex=True, simulated=False, wall_clock=True)

    # ------------------------------------------------------------------------------------------------ clock
    def to_time_spec(self, t: int):
        """Sample time -> UHD TimeSpec (exact: ``from_ticks``)."""
        return self._uhd.types.TimeSpec.from_ticks(int(t), self._rate)

    def from_time_spec(self, ts) -> int:
        """UHD TimeSpec -> sample time (exact for TimeSpecs made by :meth:`to_time_spec`)."""
        return int(ts.to_ticks(self._rate))

    def time_now(self) -> int:
        return self.from_time_spec(self._usrp.get_time_now(0))

    def _delay_samples(self) -> int:
        return int(round(self.args.start_delay * self._rate))

    # ---------------------------------------------------------------------------------------------- transmit
    def tx(self, samples: np.ndarray, at: int | None = None) -> int:
        """Send ``samples`` (complex64[N]) as one burst whose first sample leaves the antenna at sample time ``at``
        (None: ``start_delay`` from now). Returns ``at``. Raises LateError if ``at`` has passed, RadioError if UHD
        does not accept the samples in time. Underflows and late bursts reported later are counted in ``stats``."""
        self._check_open()
        x = np.ascontiguousarray(as_samples(samples, "tx samples"))
        if x.size == 0:
            raise ValueError("tx samples is empty; a burst needs at least one sample")
        now = self.time_now()
        at = now + self._delay_samples() if at is None else int(at)
        if at < now:
            self.stats["tx_late"] += 1
            raise LateError("usrp tx", at, now)
        self._register_burst(at)
        md = self._uhd.types.TXMetadata()
        md.start_of_burst = True
        md.end_of_burst = True
        md.has_time_spec = True
        md.time_spec = self.to_time_spec(at)
        timeout = (at - now + x.size) / self._rate + self.args.timeout
        sent, stalls = 0, 0
        while sent < x.size:
            k = int(self._tx_stream.send(x[sent:].reshape(1, -1), md, timeout))
            if k == 0:
                stalls += 1
                self.stats["tx_timeouts"] += 1
                if stalls >= 3:
                    raise RadioError(f"usrp: TX streamer accepted {sent} of {x.size} samples before timing out "
                                     f"({timeout:.3f} s per try); is the USRP still connected?")
            sent += k
            md.start_of_burst = False   # the rest of a partly sent burst continues it, untimed
            md.has_time_spec = False
        self.stats["tx_bursts"] += 1
        self.stats["tx_samples"] += x.size
        return at

    def _register_burst(self, at: int) -> None:
        with self._async_cv:
            result = TxResult(at)
            self._unfinished.append(result)
            self._results[at] = result
            while len(self._results) > 4096:                       # bounded: forget the oldest
                self._results.pop(next(iter(self._results)))

    def _async_loop(self) -> None:
        """Thread: read UHD's asynchronous TX messages and finish the bursts' TxResults (send order)."""
        md = self._uhd.types.TXAsyncMetadata()
        codes = self._uhd.types.TXMetadataEventCode
        while not self._async_stop.is_set():
            stream = self._tx_stream
            if stream is None:
                return
            try:
                got = stream.recv_async_msg(md, 0.05)
            except Exception:  # the streamer went away under us (close)
                return
            if not got:
                if self._async_stop.wait(0.001):   # (a real recv_async_msg waits in C; the double returns at once)
                    return
                continue
            code = md.event_code
            with self._async_cv:
                head = self._unfinished[0] if self._unfinished else None
                if code == codes.burst_ack:
                    self.stats["tx_bursts_acked"] += 1
                    if head is not None:
                        head.acked = head.done = True
                        self._unfinished.popleft()
                elif code in (codes.underflow, codes.underflow_in_packet):
                    self.stats["tx_underflows"] += 1
                    if head is not None:
                        head.underflow = True
                elif code in (codes.seq_error, codes.seq_error_in_packet):
                    self.stats["tx_seq_errors"] += 1
                    if head is not None:
                        head.seq_error = True
                elif code == codes.time_error:
                    self.stats["tx_late"] += 1
                    if head is not None:
                        head.late = head.done = True
                        head.error_time = self.from_time_spec(md.time_spec) if md.has_time_spec else None
                        self._unfinished.popleft()
                self._async_cv.notify_all()

    def wait_tx_result(self, at: int | None = None, timeout: float = 1.0) -> TxResult:
        """The device's verdict on the burst sent for sample time ``at`` (None: the last one sent), waiting up to
        ``timeout`` s for its end-of-burst message; a result with ``done=False`` means none came in time.
        Raises ValueError if no burst was sent for ``at``."""
        deadline = time.monotonic() + timeout
        with self._async_cv:
            if at is None:
                if not self._results:
                    raise ValueError("wait_tx_result: no burst has been sent")
                at = next(reversed(self._results))
            result = self._results.get(int(at))
            if result is None:
                raise ValueError(f"wait_tx_result: no burst was sent for sample time {at} (or it is too old)")
            while not result.done and time.monotonic() < deadline:
                self._async_cv.wait(deadline - time.monotonic())
            return dataclasses.replace(result)

    def tx_status(self, at: int, timeout_s: float = 0.0) -> TxStatus:
        """The Radio contract's burst outcome (:class:`radio.base.TxStatus`) from :meth:`wait_tx_result`: "late"
        (``time_error``: UHD dropped it), "underflow", "on_time" (acked clean), "unknown" (no end-of-burst message
        within ``timeout_s``, or no burst sent for ``at``)."""
        try:
            r = self.wait_tx_result(at, timeout_s)
        except ValueError as exc:
            return TxStatus(int(at), "unknown", str(exc))
        if r.late:
            return TxStatus(r.at, "late", f"time_error from the device (it got the burst after sample {r.at})")
        if r.underflow or r.seq_error:
            return TxStatus(r.at, "underflow", "underflow" if r.underflow else "sequence error")
        if r.acked:
            return TxStatus(r.at, "on_time", "burst_ack")
        return TxStatus(r.at, "unknown", f"no end-of-burst message within {timeout_s} s")

    def wait_tx_done(self, timeout: float = 1.0) -> bool:
        """Wait until every burst sent so far has its end-of-burst message (or ``timeout`` s pass); returns True
        when every one was acknowledged (none late)."""
        deadline = time.monotonic() + timeout
        with self._async_cv:
            while self._unfinished and time.monotonic() < deadline:
                self._async_cv.wait(deadline - time.monotonic())
            return not self._unfinished and self.stats["tx_bursts_acked"] >= self.stats["tx_bursts"]

    # ----------------------------------------------------------------------------------------------- receive
    def rx(self, n: int, at: int | None = None) -> tuple[np.ndarray, int]:
        """Receive ``n`` samples: complex64[n] and the sample time of the first.

        ``at=None`` continues gap-free where the previous ``rx`` ended (starting a continuous stream ``start_delay``
        from now on the first call); ``at`` inside a running stream (within 1 s) reads through to it; any other
        ``at`` (re)starts the continuous stream at ``at`` (``start_cont`` with a time spec), so that a timed capture
        is continued by the next ``rx(at=None)``. Samples lost to an overflow come back as zeros (counted in
        ``stats``).
        """
        self._check_open()
        n = int(n)
        if n < 0:
            raise ValueError(f"n must be >= 0 samples, got {n}")
        if at is None:
            if self._rx_streaming:
                start = self._rx_next
            else:
                now = self.time_now()
                start = now + self._delay_samples() if self._rx_next is None else self._rx_next
                if start < now + self._delay_samples():
                    # after a finished one-shot capture the samples that follow it are gone (or too close to be
                    # commanded): the stream continues from the first time the device can honour; rx returns that
                    # t0, so the gap is visible and never shifts later sample times
                    self.stats["rx_restarts"] += 1
                    start = now + self._delay_samples()
                self._issue("start_cont", start)
                self._rx_streaming = True
                self._carry = None
            out = self._receive(n, start)
        else:
            start = int(at)
            if self._rx_streaming and start < self._rx_next:
                self.stats["rx_late"] += 1
                raise LateError("usrp rx", start, self._rx_next)
            if self._rx_streaming and start - self._rx_next <= int(self._rate):  # within 1 s: read through
                while self._rx_next < start:  # discard the samples in between
                    skip = min(start - self._rx_next, _SKIP_CHUNK)
                    self._receive(skip, self._rx_next)
                    self._rx_next += skip
                out = self._receive(n, start)
            else:   # a timed capture starts a continuous stream at ``at``: rx(at=None) then continues it
                self._stop_stream()
                now = self.time_now()
                if start < now:
                    self.stats["rx_late"] += 1
                    raise LateError("usrp rx", start, now)
                self._issue("start_cont", start)
                self._rx_streaming = True
                self._carry = None
                out = self._receive(n, start)
        self._rx_next = start + n
        self.stats["rx_samples"] += n
        return out, start

    def _issue(self, mode: str, start: int, n: int = 0) -> None:
        types = self._uhd.types
        cmd = types.StreamCMD(getattr(types.StreamMode, mode))
        if n:
            cmd.num_samps = n
        cmd.stream_now = False
        cmd.time_spec = self.to_time_spec(start)
        self._rx_stream.issue_stream_cmd(cmd)

    def _stop_stream(self) -> None:
        if not self._rx_streaming:
            return
        types = self._uhd.types
        self._rx_stream.issue_stream_cmd(types.StreamCMD(types.StreamMode.stop_cont))
        self._rx_streaming = False
        self._carry = None
        scratch = np.empty((1, _SKIP_CHUNK), np.complex64)  # drain what is still in flight
        while self._rx_stream.recv(scratch, self._rx_md, 0.05) > 0:
            pass

    def rx_gaps(self) -> list[tuple[int, int]]:
        """``[start, end)`` intervals lost to overflows and zero-filled in what ``rx`` returned (newest 1024)."""
        return list(self._rx_gaps)

    def _receive(self, n: int, start: int) -> np.ndarray:
        """Fill complex64[n] with the stream's samples for times start..start+n-1 (zeros where samples were lost)."""
        out = np.zeros(n, np.complex64)
        pos = 0
        if self._carry is not None:
            samples, t0 = self._carry
            self._carry = None
            pos = self._place(out, pos, start, samples, t0)
        codes = self._uhd.types.RXMetadataErrorCode
        md = self._rx_md
        timeout = max(0.0, (start + n - self.time_now()) / self._rate) + self.args.timeout
        failures = 0
        while pos < n:
            buf = out[pos:]
            k = int(self._rx_stream.recv(buf.reshape(1, -1), md, timeout))
            code = md.error_code
            if code == codes.overflow:
                self.stats["rx_seq_errors" if md.out_of_sequence else "rx_overflows"] += 1
            elif code == codes.late:
                self.stats["rx_late"] += 1
                self._rx_streaming = False
                raise LateError("usrp rx (the device received the stream command too late)", start,
                                self.time_now())
            elif code == codes.timeout:
                self.stats["rx_timeouts"] += 1
                failures += 1
            elif code != codes.none:
                self.stats["rx_other_errors"] += 1
                failures += 1
            if k > 0:
                failures = 0
                t_chunk = self.from_time_spec(md.time_spec) if md.has_time_spec else start + pos
                if t_chunk == start + pos:
                    pos += k
                else:  # samples before ``start`` (skipped) or after a gap (lost): move them where they belong
                    pos = self._place(out, pos, start, buf[:k].copy(), t_chunk)
            if failures >= 3:
                self._rx_streaming = False
                raise RadioError(f"usrp: receive failed ({md.strerror()}) with {pos} of {n} samples from sample "
                                 f"{start}; is the USRP still connected?")
        return out

    def _place(self, out: np.ndarray, pos: int, start: int, samples: np.ndarray, t0: int) -> int:
        """Put ``samples`` (first at time ``t0``) into ``out`` (``out[i]`` is time start+i, filled up to ``pos``):
        drop those before start+pos, zero-fill and count a gap, keep those beyond ``out`` for the next call."""
        expected = start + pos
        if t0 < expected:
            samples = samples[expected - t0:]
            t0 = expected
        gap = min(t0 - expected, out.size - pos)
        if gap:
            out[pos:pos + gap] = 0
            self.stats["rx_dropped_samples"] += gap
            self._rx_gaps.append((expected, expected + gap))
            pos += gap
        if t0 > start + pos:  # the samples lie entirely beyond this request
            self._carry = (samples, t0) if samples.size else None
            return pos
        m = min(samples.size, out.size - pos)
        out[pos:pos + m] = samples[:m]
        if samples.size > m:
            self._carry = (samples[m:].copy(), t0 + m)
        return pos + m

    # -------------------------------------------------------------------------------------------- lifecycle
    def _check_open(self) -> None:
        if self._closed:
            raise RadioError("usrp: the radio is closed")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._async_stop.set()
        try:
            if getattr(self, "_rx_stream", None) is not None:
                self._stop_stream()
            if self._async_thread is not None and self._async_thread is not threading.current_thread():
                self._async_thread.join(timeout=1.0)
        finally:
            self._rx_stream = self._tx_stream = None
            self._usrp = None

    def settings(self) -> dict:
        out = super().settings()
        out.update({"device_args": self.args.args, "channel": self.args.channel,
                    "clock_source": self.args.clock_source, "time_source": self.args.time_source,
                    "pps_align": self.args.pps_align, "subdev": self.args.subdev, "lo_offset": self.args.lo_offset,
                    "otw_format": self.args.otw_format})
        if not self._closed:
            usrp, ch = self._usrp, self.args.channel
            out.update({"mboard": usrp.get_mboard_name(0), "master_clock_rate": usrp.get_master_clock_rate(0),
                        "tx_antenna": usrp.get_tx_antenna(ch), "rx_antenna": usrp.get_rx_antenna(ch)})
        out.update(self.stats)
        return out
