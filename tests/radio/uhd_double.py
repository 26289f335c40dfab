"""A recording test double of UHD's Python API (the parts :mod:`radio.drivers.usrp` uses), with a simulated USRP.

``make_uhd()`` returns ``(uhd, device, log)``: a module-like object to pass as ``UsrpRadio(..., uhd_module=uhd)``,
the simulated device (one board, one channel) and an :class:`ApiLog` of every UHD name touched, type constructed,
method called and attribute set, with arguments described as JSON (``describe``) so that the API conformance test can
replay them against the real python3-uhd.

Simulated device: an integer sample clock ``device.now``; what the driver transmits comes back at its receiver
``device.loop_delay`` samples later (scaled by ``device.loop_gain``) on top of ``device.rx_source(t)`` (default: each
sample's value is its own time, t + 0j, so tests can read timing straight off the samples). Injected events:
``device.overflow_at`` / ``overflow_drop`` (the receiver loses samples), ``device.underflow_next`` (the next burst
underflows), a burst or stream command whose time has passed (late), ``device.send_limit`` (partial sends).

Wall-clock mode (``device.wallclock = True``, or ``make_uhd(wallclock=True)``): the device time follows the host's
monotonic clock at the sample rate, ``recv`` waits until the samples it returns have been received, and a PPS (when
``pps_period`` is set) has its edges on the host's whole UTC seconds, as a GPSDO/OctoClock PPS with an NTP-disciplined
host. Several devices of one process share that host clock, so several doubles aligned with ``set_time_next_pps``
hold the same time. ``device.mboards`` > 1 poses as a MultiUSRP of several motherboards (``set_time_unknown_pps``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import types as pytypes

import numpy as np


@dataclasses.dataclass
class ApiLog:
    names: set = dataclasses.field(default_factory=set)          # "types.TimeSpec", "types.StreamMode.num_done"
    constructed: list = dataclasses.field(default_factory=list)  # (type name, [described args])
    calls: list = dataclasses.field(default_factory=list)        # (owner type, method, [described args], returns)
    sets: list = dataclasses.field(default_factory=list)         # (owner type, attribute, described value)
    gets: set = dataclasses.field(default_factory=set)           # (owner type, attribute)
    # > 0 while the double itself runs (per thread: the driver reads async messages on a thread of its own)
    _local: threading.local = dataclasses.field(default_factory=threading.local, repr=False)

    @property
    def muted(self) -> int:
        return getattr(self._local, "muted", 0)

    @muted.setter
    def muted(self, value: int) -> None:
        self._local.muted = value

    @contextlib.contextmanager
    def mute(self):
        self.muted += 1
        try:
            yield
        finally:
            self.muted -= 1

    def to_json(self) -> dict:
        return {"names": sorted(self.names), "constructed": self.constructed, "calls": self.calls,
                "sets": self.sets, "gets": sorted(self.gets)}

    def calls_to(self, method: str) -> list:
        return [args for _, m, args, _ in self.calls if m == method]


def describe(value):
    """JSON description of an argument, enough to rebuild it with the real UHD."""
    if isinstance(value, _Recorded):
        return {"obj": type(value).__name__, "made": value._made, "sets": {k: describe(v) for k, v in
                                                                           value._sets.items()}}
    if isinstance(value, _EnumValue):
        return {"enum": value.enum, "name": value.name}
    if isinstance(value, np.ndarray):
        return {"ndarray": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": value}
    if isinstance(value, float):
        return {"float": value}
    if isinstance(value, str):
        return {"str": value}
    if isinstance(value, (list, tuple)):
        return {"list": [describe(v) for v in value]}
    if value is None:
        return None
    raise TypeError(f"the UHD double cannot describe {value!r}")


class _EnumValue:
    def __init__(self, enum: str, name: str):
        self.enum, self.name = enum, name

    def __eq__(self, other):
        return isinstance(other, _EnumValue) and (self.enum, self.name) == (other.enum, other.name)

    def __hash__(self):
        return hash((self.enum, self.name))

    def __repr__(self):
        return f"{self.enum}.{self.name}"


class _Recorded:
    """Base of the double's UHD types: logs attribute reads/writes and method calls (with arguments)."""

    _log: ApiLog = None  # set per double

    def __init__(self, *args):
        object.__setattr__(self, "_sets", {})
        object.__setattr__(self, "_made", {"ctor": [describe(a) for a in args]})
        if not self._log.muted:
            self._log.constructed.append((type(self).__name__, [describe(a) for a in args]))

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            if not self._log.muted:
                self._log.sets.append((type(self).__name__, name, describe(value)))
            self._sets[name] = value
        object.__setattr__(self, name, value)

    def __getattribute__(self, name):
        attr = object.__getattribute__(self, name)
        if name.startswith("_"):
            return attr
        log = object.__getattribute__(self, "_log")
        if log.muted:
            return attr
        owner = type(self).__name__
        if callable(attr):
            def recorded(*args, **kwargs):
                if kwargs:
                    raise TypeError(f"the UHD double wants positional arguments only, got {kwargs}")
                with log.mute():
                    result = attr(*args)
                log.calls.append((owner, name, [describe(a) for a in args], _type_name(result)))
                return result
            return recorded
        log.gets.add((owner, name))
        return attr


def _type_name(value) -> str | None:
    if isinstance(value, _Recorded):
        return type(value).__name__
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list"}.get(type(value))


def make_uhd(rate_quantum: float | None = None, wallclock: bool = False):
    """Build a fresh double: ``(uhd_module, device, log)``."""
    log = ApiLog()
    device = FakeDevice(rate_quantum)
    device.wallclock = wallclock

    class Base(_Recorded):
        _log = log

    class TimeSpec(Base):
        def __init__(self, *args):
            super().__init__(*args)
            if len(args) == 1:
                secs = float(args[0])
                full = int(np.floor(secs))
                self._full, self._frac = full, secs - full
            else:
                raise TypeError(f"TimeSpec({args}): the double supports TimeSpec(float) and from_ticks only")

        @staticmethod
        def from_ticks(ticks, rate):
            """As UHD: whole seconds by integer division, then the remaining ticks as a fraction."""
            if not isinstance(ticks, int) or isinstance(ticks, bool):
                raise TypeError(f"from_ticks(ticks: int, rate: float), got ticks={ticks!r}")
            if not log.muted:
                log.calls.append(("TimeSpec", "from_ticks", [describe(ticks), describe(rate)], "TimeSpec"))
            with log.mute():
                ts = TimeSpec(0.0)
            rate_i = int(rate)
            full = ticks // rate_i
            ts._full = full
            ts._frac = (ticks - full * rate_i - full * (rate - rate_i)) / rate
            object.__setattr__(ts, "_made", {"from_ticks": [describe(ticks), describe(rate)]})
            return ts

        def to_ticks(self, rate):
            """As UHD: whole seconds times the integer part of the rate, the rest rounded."""
            rate_i = int(rate)
            return self._full * rate_i + int(round(self._full * (rate - rate_i) + self._frac * rate))

        def get_real_secs(self):
            return self._full + self._frac

    class TuneRequest(Base):
        def __init__(self, target_freq=0.0, lo_off=None):
            super().__init__(*([target_freq] if lo_off is None else [target_freq, lo_off]))
            self.target_freq = float(target_freq)

    class StreamCMD(Base):
        def __init__(self, mode):
            super().__init__(mode)
            object.__setattr__(self, "mode", mode)
            object.__setattr__(self, "num_samps", 0)
            object.__setattr__(self, "stream_now", True)
            object.__setattr__(self, "time_spec", None)

    class TXMetadata(Base):
        def __init__(self):
            super().__init__()
            for k, v in (("start_of_burst", False), ("end_of_burst", False), ("has_time_spec", False),
                         ("time_spec", None)):
                object.__setattr__(self, k, v)

    class RXMetadata(Base):
        def __init__(self):
            super().__init__()
            for k, v in (("error_code", RXMetadataErrorCode.none), ("has_time_spec", False), ("time_spec", None),
                         ("out_of_sequence", False), ("end_of_burst", False), ("more_fragments", False)):
                object.__setattr__(self, k, v)

        def strerror(self):
            return f"ERROR_CODE_{self.error_code.name.upper()}"

    class TXAsyncMetadata(Base):
        def __init__(self):
            super().__init__()
            for k, v in (("event_code", None), ("has_time_spec", False), ("time_spec", None), ("channel", 0)):
                object.__setattr__(self, k, v)

    class SensorValue(Base):
        def __init__(self, name, value):
            super().__init__(name, value)
            object.__setattr__(self, "_value", value)

        def to_bool(self):
            return bool(self._value)

    class SubdevSpec(Base):
        def __init__(self, spec):
            super().__init__(spec)
            object.__setattr__(self, "spec", spec)

    class StreamArgs(Base):
        def __init__(self, cpu, otw):
            super().__init__(cpu, otw)
            object.__setattr__(self, "channels", [])

    class _EnumMeta(type):
        def __getattribute__(cls, name):
            if not name.startswith("_") and not log.muted:
                log.names.add(f"types.{type.__getattribute__(cls, '__name__')}.{name}")
            return type.__getattribute__(cls, name)

    def enum(name, members):
        return _EnumMeta(name, (), {m: _EnumValue(name, m) for m in members})

    StreamMode = enum("StreamMode", ["start_cont", "stop_cont", "num_done", "num_more"])
    RXMetadataErrorCode = enum("RXMetadataErrorCode", ["none", "timeout", "late", "broken_chain", "overflow",
                                                       "alignment", "bad_packet"])
    TXMetadataEventCode = enum("TXMetadataEventCode", ["burst_ack", "underflow", "seq_error", "time_error",
                                                       "underflow_in_packet", "seq_error_in_packet",
                                                       "user_payload"])

    class RXStreamer(Base):
        def get_max_num_samps(self):
            return device.max_chunk

        def issue_stream_cmd(self, cmd):
            device.stream_cmd(cmd)

        def recv(self, buf, md, timeout=0.1):
            return device.recv(buf, md, RXMetadataErrorCode, TimeSpec)

    class TXStreamer(Base):
        def get_max_num_samps(self):
            return device.max_chunk

        def send(self, buf, md, timeout=0.1):
            return device.send(buf, md)

        def recv_async_msg(self, md, timeout=0.1):
            return device.pop_async(md, TXMetadataEventCode, TimeSpec, timeout)

    class MultiUSRP(Base):
        def __init__(self, args=""):
            super().__init__(args)
            if device.open_error:
                raise RuntimeError(device.open_error)
            device.args = args

        def get_rx_num_channels(self):
            return 1

        def get_tx_num_channels(self):
            return 1

        def get_num_mboards(self):
            return device.mboards

        def set_clock_source(self, source, mboard=0):
            device.check_mboard(mboard)
            device.clock_source = device.clock_sources[mboard] = source

        def set_time_source(self, source, mboard=0):
            device.check_mboard(mboard)
            device.time_source = device.time_sources[mboard] = source

        def get_mboard_sensor_names(self, mboard=0):
            return ["ref_locked", "gps_locked"]

        def get_mboard_sensor(self, name, mboard=0):
            device.check_mboard(mboard)
            return SensorValue(name, device.sensors.get(name, True))

        def get_rx_sensor_names(self, chan=0):
            return ["lo_locked", "rssi"]

        def get_tx_sensor_names(self, chan=0):
            return ["lo_locked"]

        def get_rx_sensor(self, name, chan=0):
            return SensorValue(name, device.lo_locked if name == "lo_locked" else True)

        def get_tx_sensor(self, name, chan=0):
            return SensorValue(name, device.lo_locked)

        def set_rx_subdev_spec(self, spec, mboard=0):
            device.rx_subdev = spec.spec

        def set_tx_subdev_spec(self, spec, mboard=0):
            device.tx_subdev = spec.spec

        def set_master_clock_rate(self, rate, mboard=0):
            device.master_clock_rate = rate

        def get_master_clock_rate(self, mboard=0):
            return device.master_clock_rate

        def set_tx_rate(self, rate, chan=0):
            device.tx_rate = device.quantize(rate)

        def set_rx_rate(self, rate, chan=0):
            device.rx_rate = device.quantize(rate)

        def get_tx_rate(self, chan=0):
            return device.tx_rate

        def get_rx_rate(self, chan=0):
            return device.rx_rate

        def set_tx_freq(self, request, chan=0):
            device.tx_freq = request.target_freq

        def set_rx_freq(self, request, chan=0):
            device.rx_freq = request.target_freq

        def set_tx_gain(self, gain, chan=0):
            device.tx_gain = min(max(gain, 0.0), 89.75)

        def set_rx_gain(self, gain, chan=0):
            device.rx_gain = min(max(gain, 0.0), 76.0)

        def get_tx_gain(self, chan=0):
            return device.tx_gain

        def get_rx_gain(self, chan=0):
            return device.rx_gain

        def set_tx_antenna(self, ant, chan=0):
            device.tx_antenna = ant

        def set_rx_antenna(self, ant, chan=0):
            device.rx_antenna = ant

        def get_tx_antenna(self, chan=0):
            return device.tx_antenna

        def get_rx_antenna(self, chan=0):
            return device.rx_antenna

        def set_tx_bandwidth(self, bw, chan=0):
            device.tx_bandwidth = bw

        def set_rx_bandwidth(self, bw, chan=0):
            device.rx_bandwidth = bw

        def get_mboard_name(self, mboard=0):
            return "B210 (double)"

        def get_rx_stream(self, args):
            return RXStreamer()

        def get_tx_stream(self, args):
            return TXStreamer()

        def set_time_now(self, ts, mboard=0):
            device.now = ts.to_ticks(device.rx_rate or 1.0)

        def get_time_now(self, mboard=0):
            device.advance(device.poll_step)
            return TimeSpec.from_ticks(device.now, device.rx_rate)

        def get_time_last_pps(self, mboard=0):
            return TimeSpec.from_ticks(device.pps_edge(), device.rx_rate)

        def set_time_next_pps(self, ts, mboard=0):
            device.check_mboard(mboard)
            device.arm(ts.to_ticks(device.rx_rate))

        def set_time_unknown_pps(self, ts):
            """As UHD: wait for a PPS edge, arm every motherboard for the next one, wait until it has passed."""
            last = device.pps_edge()
            while device.pps_edge() == last:
                device.idle(0.002)
            device.arm(ts.to_ticks(device.rx_rate))
            target = ts.to_ticks(device.rx_rate)
            while device.pps_edge() != target:
                device.idle(0.002)

    class _Namespace(pytypes.SimpleNamespace):
        def __getattribute__(self, name):
            if not name.startswith("_") and not log.muted:
                log.names.add(f"{object.__getattribute__(self, '_prefix')}{name}")
            return object.__getattribute__(self, name)

    types_ns = _Namespace(_prefix="types.", TimeSpec=TimeSpec, TuneRequest=TuneRequest, StreamCMD=StreamCMD,
                          TXMetadata=TXMetadata, RXMetadata=RXMetadata, TXAsyncMetadata=TXAsyncMetadata,
                          StreamMode=StreamMode, RXMetadataErrorCode=RXMetadataErrorCode,
                          TXMetadataEventCode=TXMetadataEventCode, SensorValue=SensorValue)
    usrp_ns = _Namespace(_prefix="usrp.", MultiUSRP=MultiUSRP, StreamArgs=StreamArgs, RXStreamer=RXStreamer,
                         TXStreamer=TXStreamer, SubdevSpec=SubdevSpec)
    uhd = _Namespace(_prefix="", types=types_ns, usrp=usrp_ns)
    return uhd, device, log


#: host UTC time minus monotonic time, fixed once per process: every double's PPS edges fall on the same instants
_HOST_UTC_OFFSET = time.time() - time.monotonic()


class FakeDevice:
    """The simulated USRP behind the double (see module docstring)."""

    def __init__(self, rate_quantum: float | None):
        self.rate_quantum = rate_quantum
        self.open_error = ""
        self.args = ""
        self.wallclock = False        # True: the clock runs at rx_rate in host time and recv waits for samples
        self._now = 0
        self._wall0 = time.monotonic()
        self.poll_step = 0            # samples the clock moves on each get_time_now (host latency)
        self.tx_rate = self.rx_rate = 1.0
        self.master_clock_rate = 32e6
        self.tx_freq = self.rx_freq = 0.0
        self.tx_gain = self.rx_gain = 0.0
        self.tx_antenna, self.rx_antenna = "TX/RX", "RX2"
        self.tx_bandwidth = self.rx_bandwidth = None
        self.clock_source = self.time_source = "internal"
        self.mboards = 1
        self.clock_sources: dict[int, str] = {}
        self.time_sources: dict[int, str] = {}
        self.rx_subdev = self.tx_subdev = None
        self.lo_locked = True
        self.sensors: dict[str, bool] = {}
        self.pps_period = 0           # 0: no PPS; else a PPS edge every pps_period samples of ``now``
        self.pps_armed: int | None = None
        self.arm_time = 0
        self.loop_delay = 0
        self.loop_gain = 1.0
        self.rx_source = lambda t: t.astype(np.float32).astype(np.complex64)
        self.max_chunk = 1000
        self.send_limit: int | None = None
        self.send_latency = 0         # samples the clock moves between the host's time read and the burst reaching it
        self.underflow_next = False
        self.overflow_at: int | None = None
        self.overflow_drop = 0
        self.bursts: list[tuple[int, np.ndarray]] = []  # (start time, samples) that went on the air
        self.async_events: list[tuple[str, int | None]] = []
        self._async_ready = threading.Event()
        self.stream: dict | None = None   # {"next": t, "left": n or None}
        self.late_pending = False
        self.commands: list[tuple[str, int | None, int]] = []

    def check_mboard(self, mboard: int) -> None:
        if not 0 <= mboard < self.mboards:
            raise IndexError(f"mboard {mboard} out of range (the double has {self.mboards})")

    @staticmethod
    def idle(seconds: float) -> None:
        """Wait without time.sleep (tests may patch it away)."""
        threading.Event().wait(seconds)

    def _ticks_at(self, mono: float) -> int:
        return self._now + int((mono - self._wall0) * self.rx_rate)

    @property
    def now(self) -> int:
        if self.wallclock:
            self._load_armed()
            return self._ticks_at(time.monotonic())
        return self._now

    @now.setter
    def now(self, value: int) -> None:
        self._now = value - (int((time.monotonic() - self._wall0) * self.rx_rate) if self.wallclock else 0)

    def advance(self, samples: int) -> None:
        """Move the clock ``samples`` ahead (exact in both modes: ``now = now + k`` in wall-clock mode would
        re-read the host clock in between and lose the ticks that passed)."""
        self._now += int(samples)

    def quantize(self, rate: float) -> float:
        return rate if not self.rate_quantum else round(rate / self.rate_quantum) * self.rate_quantum

    def arm(self, ticks: int) -> None:
        """``set_time_next_pps``: load ``ticks`` at the first PPS edge after now."""
        self.arm_time = self.now
        self._arm_host = time.monotonic() + _HOST_UTC_OFFSET
        self.pps_armed = ticks

    def _load_armed(self) -> None:
        """Wall-clock mode: if an armed edge (the first whole UTC second after arming) has passed, the device time
        at that edge becomes the armed value."""
        if self.pps_armed is None or not self.pps_period:
            return
        edge_utc = int(self._arm_host) + 1
        edge_mono = edge_utc - _HOST_UTC_OFFSET
        if time.monotonic() >= edge_mono:
            armed, self.pps_armed = self.pps_armed, None
            self._now = armed - int((edge_mono - self._wall0) * self.rx_rate)

    def pps_edge(self) -> int:
        """Time of the last PPS edge. Wall-clock mode: edges on the host's whole UTC seconds. Otherwise each poll
        lets a quarter PPS period pass. An armed time is loaded at the first edge after ``set_time_next_pps``."""
        if not self.pps_period:
            return 0
        if self.wallclock:
            self._load_armed()
            edge_utc = int(time.monotonic() + _HOST_UTC_OFFSET)
            return self._ticks_at(edge_utc - _HOST_UTC_OFFSET)
        self.now += self.pps_period // 4
        edge = (self.now // self.pps_period) * self.pps_period
        if self.pps_armed is not None and edge > self.arm_time:
            self.now = self.now - edge + self.pps_armed
            edge = self.pps_armed
            self.pps_armed = None
        return edge

    # --- transmit ---
    def send(self, buf, md) -> int:
        x = np.asarray(buf).reshape(-1)
        k = x.size if self.send_limit is None else min(x.size, self.send_limit)
        if md.has_time_spec:
            start = md.time_spec.to_ticks(self.tx_rate)
            self.advance(self.send_latency)
            if start < self.now:
                self.push_async("time_error", start)
                self._dropping = True
                return k
            self._dropping = False
            self.bursts.append((start, x[:k].copy()))
        elif not getattr(self, "_dropping", False):
            t0, prev = self.bursts[-1]
            self.bursts[-1] = (t0, np.concatenate([prev, x[:k]]))
        if md.end_of_burst and k == x.size and not getattr(self, "_dropping", False):
            if self.underflow_next:
                self.underflow_next = False
                self.push_async("underflow", None)
            self.push_async("burst_ack", None)
        return k

    def push_async(self, name: str, t: int | None) -> None:
        self.async_events.append((name, t))
        self._async_ready.set()

    def pop_async(self, md, codes, TimeSpec, timeout: float = 0.0) -> bool:
        if not self.async_events:
            self._async_ready.clear()
            if not self.async_events and not self._async_ready.wait(min(timeout, 0.05)):
                return False
            if not self.async_events:
                return False
        name, t = self.async_events.pop(0)
        object.__setattr__(md, "event_code", getattr(codes, name))
        object.__setattr__(md, "has_time_spec", t is not None)
        if t is not None:
            object.__setattr__(md, "time_spec", TimeSpec.from_ticks(t, self.tx_rate))
        return True

    # --- receive ---
    def stream_cmd(self, cmd) -> None:
        mode = cmd.mode.name
        start = None if cmd.stream_now else cmd.time_spec.to_ticks(self.rx_rate)
        self.commands.append((mode, start, cmd.num_samps))
        if mode == "stop_cont":
            self.stream = None
            return
        if start is not None and start < self.now:
            self.late_pending = True
            self.stream = None
            return
        self.stream = {"next": self.now if start is None else start,
                       "left": cmd.num_samps if mode in ("num_done", "num_more") else None}

    def signal(self, t0: int, n: int) -> np.ndarray:
        t = np.arange(t0, t0 + n, dtype=np.int64)
        y = self.rx_source(t).astype(np.complex64)
        for start, x in self.bursts:
            a = max(t0, start + self.loop_delay)
            b = min(t0 + n, start + self.loop_delay + x.size)
            if a < b:
                y[a - t0:b - t0] += self.loop_gain * x[a - start - self.loop_delay:b - start - self.loop_delay]
        return y

    def recv(self, buf, md, codes, TimeSpec) -> int:
        object.__setattr__(md, "end_of_burst", False)
        object.__setattr__(md, "out_of_sequence", False)
        if self.late_pending:
            self.late_pending = False
            object.__setattr__(md, "error_code", codes.late)
            return 0
        if self.stream is None:
            object.__setattr__(md, "error_code", codes.timeout)
            return 0
        s = self.stream
        k = min(buf.shape[-1], self.max_chunk, s["left"] if s["left"] is not None else 1 << 62)
        if self.overflow_at is not None and s["next"] == self.overflow_at:
            self.overflow_at = None
            s["next"] += self.overflow_drop      # the host was too slow: these samples never arrive
            object.__setattr__(md, "error_code", codes.overflow)
            return 0
        if self.overflow_at is not None and s["next"] < self.overflow_at:
            k = min(k, self.overflow_at - s["next"])
        t0 = s["next"]
        if self.wallclock and t0 + k > self.now:   # the samples have not been received yet: wait for them
            time.sleep((t0 + k - self.now) / self.rx_rate)
        buf.reshape(-1)[:k] = self.signal(t0, k)
        object.__setattr__(md, "error_code", codes.none)
        object.__setattr__(md, "has_time_spec", True)
        object.__setattr__(md, "time_spec", TimeSpec.from_ticks(int(t0), self.rx_rate))
        s["next"] += k
        if not self.wallclock:                     # (wall-clock mode: recv waited, so now >= next already)
            self.now = max(self.now, s["next"])
        if s["left"] is not None:
            s["left"] -= k
            if s["left"] == 0:
                object.__setattr__(md, "end_of_burst", True)
                self.stream = None
        return k
