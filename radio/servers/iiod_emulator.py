"""A PlutoSDR emulator that speaks libiio's network (iiod) protocol, with any :class:`radio.base.Radio` as its RF side.

Unmodified clients — pyadi-iio's ``adi.Pluto("ip:127.0.0.1:PORT")``, ``iio_info``, GNU Radio — connect to it as to a
real ADALM-PLUTO: they read the context XML (:mod:`radio.servers.pluto_context`), read and write attributes, and stream
buffers. Behind the DMA cores sits a Radio (an endpoint of the in-process :class:`radio.sim.air.Air`, a ZeroMQ-air
endpoint, ...):

* TX buffer (``cf-ad9361-dds-core-lpc``, int16 I/Q words) → ``radio.tx(words / TX_FULL_SCALE · 10**(atten_dB/20),
  at)``. A non-cyclic buffer starts where the previous one ended, or at the device's "now" (the next RX sample)
  plus ``tx_latency_samples`` if the stream ran dry; a cyclic buffer repeats until the buffer is closed (repetitions are
  scheduled ahead, ``cyclic_horizon_samples`` at a time, by a pump thread and before every RX read).
* RX buffer (``cf-ad9361-lpc``) ← ``radio.rx(n)`` continuing the stream (the first read starts at the radio time
  the emulator was created, its "power-on", so emulators created together on one air have aligned RX clocks; if
  those samples are gone the stream starts at the radio's now), times the RX gain
  (``10**((hardwaregain − rx_gain_ref_db)/20)`` in ``manual`` mode, 0 dB in the AGC modes), times RX_FULL_SCALE,
  rounded and clipped to the 12-bit ADC range [-2048, 2047].
* debug attribute ``loopback`` = 1 (digital loopback): RX returns the TX words exactly as written (the air is not
  touched); = 2 (RF loopback): the TX words through the TX attenuation, RX gain and ADC quantisation, without the air.
  The loopback mode in force when a TX buffer is pushed decides where it goes (air or loopback path).

Differences from hardware, on purpose: the emulator has no wall clock — RX samples are produced when the client reads
them, so nothing overflows and the device time advances only by reading (the RX stream is contiguous across reads and
buffers); attribute values are stored exactly (the real driver quantises LO, rate and gains); the radio's sample rate
is fixed by the RF side, whatever ``sampling_frequency`` the client writes.

Why written here: libiio's own ``iiod`` needs a Linux kernel IIO device behind it; this is the project's core
hardware-free test path for the Pluto driver.
"""

from __future__ import annotations

import errno
import logging
import math
import socket
import socketserver
import threading
import weakref
from collections import deque
from dataclasses import dataclass

import numpy as np

from radio.base import LateError, Radio
from radio.servers.pluto_context import (GAIN_MODES, PHY, RX_FULL_SCALE, RXADC, TX_FULL_SCALE, TXDAC, Device, context_xml,
                                 default_values, path_rates, pluto_devices)

log = logging.getLogger(__name__)

MAX_LINE = 4096              # longest command line accepted (bytes)
MAX_WRITE = 1 << 20          # longest attribute write accepted (bytes)
MAX_BUFFER_BYTES = 1 << 27   # largest READBUF/WRITEBUF accepted (bytes)
MAX_LOOPBACK_SAMPLES = 1 << 23  # TX samples kept for digital loopback before the oldest are dropped

#: AXI DAC/ADC core status register (bit 0: DMA underflow/overflow, write 1 to clear), polled by GNU Radio's gr-iio
DMA_STATUS_REGISTER = 0x80000088

#: emulators sharing one lock (i.e. one Air): before any of them reads RX, all top up their cyclic TX
_PEERS: "weakref.WeakKeyDictionary[object, weakref.WeakSet]" = weakref.WeakKeyDictionary()


@dataclass
class EmulatorSettings:
    """Settings of the emulated Pluto (YAML ``radio.args.emulator`` of driver "pluto").

    ``tx_latency_samples`` is the constant TX→RX latency the emulated device adds (a real Pluto has an unknown but
    constant one; sync's timing advance measures it). ``rx_gain_ref_db`` is the manual RX gain at which the air's
    amplitude maps one-to-one onto ADC full scale. ``hear_self``: ``otalab emulate pluto`` links the device to itself
    through the air so that a lone client hears its own transmission.
    """

    host: str = "127.0.0.1"
    port: int = 0
    endpoint: str = "pluto0"
    tx_latency_samples: int = 0
    rx_gain_ref_db: float = 0.0
    cyclic_horizon_samples: int = 1 << 17
    hear_self: bool = True

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ValueError(f"emulator port must be 0..65535 (0: any free port), got {self.port}")
        if self.tx_latency_samples < 0:
            raise ValueError(f"tx_latency_samples must be >= 0, got {self.tx_latency_samples}")
        if self.cyclic_horizon_samples < 1:
            raise ValueError(f"cyclic_horizon_samples must be >= 1, got {self.cyclic_horizon_samples}")
        if not self.endpoint:
            raise ValueError("emulator endpoint name must not be empty")


class CommandError(Exception):
    """A command line that cannot be parsed or executed; ``code`` is the positive errno sent back negated."""

    def __init__(self, code: int, message: str = ""):
        super().__init__(message or errno.errorcode.get(code, str(code)))
        self.code = code


@dataclass(frozen=True)
class Command:
    """A parsed iiod command: ``name`` plus whichever operands it has."""

    name: str
    dev: str | None = None
    kind: str | None = None      # None (device attr), "DEBUG", "BUFFER", "INPUT", "OUTPUT"
    chan: str | None = None
    attr: str | None = None
    size: int | None = None      # WRITE / READBUF / WRITEBUF byte count, OPEN sample count, TIMEOUT ms
    mask: int | None = None      # OPEN channel mask
    cyclic: bool = False


def _int(token: str, what: str, minimum: int = 0) -> int:
    if not token.isdigit():
        raise CommandError(errno.EINVAL, f"{what} must be a decimal integer, got {token!r}")
    value = int(token)
    if value < minimum:
        raise CommandError(errno.EINVAL, f"{what} must be >= {minimum}, got {value}")
    return value


def parse_command(line: str) -> Command:
    """Parse one command line (without ``\\r\\n``); raises :class:`CommandError` (EINVAL) on anything malformed."""
    tok = line.split()
    if not tok:
        raise CommandError(errno.EINVAL, "empty command")
    name, rest = tok[0].upper(), tok[1:]
    if name in ("HELP", "EXIT", "PRINT", "ZPRINT", "VERSION", "BINARY") and not rest:
        return Command(name)
    if name == "TIMEOUT" and len(rest) == 1:
        return Command(name, size=_int(rest[0], "timeout"))
    if name in ("CLOSE", "GETTRIG") and len(rest) == 1:
        return Command(name, dev=rest[0])
    if name == "SETTRIG" and len(rest) in (1, 2):
        return Command(name, dev=rest[0], attr=rest[1] if len(rest) == 2 else None)
    if name == "SET" and len(rest) == 3 and rest[1].upper() == "BUFFERS_COUNT":
        return Command(name, dev=rest[0], size=_int(rest[2], "buffers count", 1))
    if name in ("READBUF", "WRITEBUF") and len(rest) == 2:
        return Command(name, dev=rest[0], size=_int(rest[1], "byte count"))
    if name == "OPEN" and len(rest) in (3, 4):
        if len(rest) == 4 and rest[3].upper() != "CYCLIC":
            raise CommandError(errno.EINVAL, f"OPEN: expected CYCLIC or nothing after the mask, got {rest[3]!r}")
        mask_text = rest[2]
        if not mask_text or len(mask_text) % 8 or any(c not in "0123456789abcdefABCDEF" for c in mask_text):
            raise CommandError(errno.EINVAL, f"OPEN: mask must be hex words of 8 digits, got {mask_text!r}")
        return Command(name, dev=rest[0], size=_int(rest[1], "sample count", 1), mask=int(mask_text, 16),
                       cyclic=len(rest) == 4)
    if name in ("READ", "WRITE") and rest:
        dev, ops = rest[0], rest[1:]
        if name == "WRITE":
            if not ops:
                raise CommandError(errno.EINVAL, "WRITE: missing byte count")
            size = _int(ops[-1], "byte count")
            ops = ops[:-1]
        else:
            size = None
        kind = ops[0].upper() if ops else ""
        if kind in ("INPUT", "OUTPUT") and len(ops) == 3:
            return Command(name, dev=dev, kind=kind, chan=ops[1], attr=ops[2], size=size)
        if kind in ("DEBUG", "BUFFER") and len(ops) == 2:
            return Command(name, dev=dev, kind=kind, attr=ops[1], size=size)
        if len(ops) == 1:
            return Command(name, dev=dev, attr=ops[0], size=size)
    raise CommandError(errno.EINVAL, f"unknown or malformed command {line[:80]!r}")


def _gain_db(text: str) -> float:
    """'71.000000 dB' -> 71.0"""
    return float(text.split()[0])


class PlutoEmulator:
    """State and RF engine of one emulated Pluto; :class:`IiodServer` exposes it over TCP.

    ``radio`` is the RF side (None: only digital/RF loopback produce signals, RX reads zeros otherwise). ``lock``
    serialises every call into ``radio``; emulators whose radios share one :class:`radio.sim.air.Air` must share one lock.
    """

    def __init__(self, radio: Radio | None, settings: EmulatorSettings | None = None,
                 lock: threading.RLock | None = None):
        self.radio = radio
        self.settings = settings or EmulatorSettings()
        self.lock = lock if lock is not None else threading.RLock()
        self.devices: dict[str, Device] = {d.id: d for d in pluto_devices()}
        self._by_name = {d.name: d for d in self.devices.values()}
        self.values = default_values()
        self.xml = context_xml(list(self.devices.values()))
        self.open_buffers: dict[str, bool] = {}       # device id -> cyclic
        self.registers: dict[str, dict[int, int]] = {}  # device id -> {address: value} (direct_reg_access)
        self.stats = {"tx_samples": 0, "rx_samples": 0, "late_tx": 0, "rx_skips": 0, "cyclic_gaps": 0}
        self._rx_pos: int | None = None                # device time of the next RX sample (None: not read yet)
        self._epoch = int(radio.time_now()) if radio is not None else 0   # the device's power-on time
        self._loop_pos = 0                             # device time of the next loopback RX sample
        self._tx_next = 0                              # end of the queued non-cyclic TX stream
        self._segments: deque[tuple[int, np.ndarray]] = deque()   # (start, complex64 DAC words) for loopback
        self._segment_samples = 0
        self._cyclic: tuple[int, np.ndarray] | None = None        # (start, complex64 DAC words)
        self._cyclic_air: np.ndarray | None = None                 # the cyclic buffer as scaled for the air
        self._cyc_next = 0
        with self.lock:
            _PEERS.setdefault(self.lock, weakref.WeakSet()).add(self)
        self._stop = threading.Event()
        self._wake = threading.Event()                  # set when a cyclic buffer starts (or on close)
        self._pump = threading.Thread(target=self._pump_loop, name="pluto-emulator-cyclic", daemon=True)
        self._pump.start()

    # ----------------------------------------------------------------------------------------------- attributes
    def _device(self, token: str) -> Device:
        dev = self.devices.get(token) or self._by_name.get(token)
        if dev is None:
            raise CommandError(errno.ENODEV, f"no device {token!r}")
        return dev

    def _key(self, cmd: Command) -> tuple[str, str]:
        """Storage key of the attribute a READ/WRITE command names; raises ENODEV/ENOENT."""
        dev = self._device(cmd.dev)
        if cmd.kind in ("INPUT", "OUTPUT"):
            ch = dev.channel(cmd.chan, cmd.kind == "OUTPUT")
            if ch is None or cmd.attr not in ch.attrs:
                raise CommandError(errno.ENOENT, f"{dev.name}: no {cmd.kind.lower()} {cmd.chan} attribute {cmd.attr}")
            return dev.id, ch.attrs[cmd.attr]
        names = {None: dev.attrs, "DEBUG": dev.debug_attrs, "BUFFER": dev.buffer_attrs}[cmd.kind]
        if cmd.attr not in names:
            raise CommandError(errno.ENOENT, f"{dev.name}: no {cmd.kind or 'device'} attribute {cmd.attr}")
        prefix = {None: "attr", "DEBUG": "debug", "BUFFER": "buffer"}[cmd.kind]
        return dev.id, f"{prefix}:{cmd.attr}"

    def read_attr(self, cmd: Command) -> str:
        """Value of the attribute ``cmd`` names."""
        key = self._key(cmd)
        with self.lock:
            return self.values.get(key, "0")

    def write_attr(self, cmd: Command, raw: bytes) -> None:
        """Validate and store a written value (raises CommandError EINVAL like the Linux driver would)."""
        key = self._key(cmd)
        text = raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
        dev, name = key
        with self.lock:
            if name.endswith("sampling_frequency"):
                self._set_rate(dev, name, text)
            elif dev == PHY and name in ("in_voltage0_hardwaregain", "out_voltage0_hardwaregain"):
                lo, hi = (-1.0, 73.0) if name.startswith("in") else (-89.75, 0.0)
                self.values[key] = f"{self._number(text, name, lo, hi):.6f} dB"
            elif dev == PHY and name == "in_voltage0_gain_control_mode":
                if text not in GAIN_MODES:
                    raise CommandError(errno.EINVAL, f"gain_control_mode {text!r} not one of {GAIN_MODES}")
                self.values[key] = text
            elif dev == PHY and name.endswith("_LO_frequency"):
                self.values[key] = str(int(self._number(text, name, 70e6, 6e9, integer=True)))
            elif dev == PHY and name.endswith("rf_bandwidth"):
                self.values[key] = str(int(self._number(text, name, 200e3, 56e6, integer=True)))
            elif name == "debug:loopback":
                if text not in ("0", "1", "2"):
                    raise CommandError(errno.EINVAL, f"loopback {text!r}: expected 0, 1 or 2")
                self._loop_pos = self._rx_pos if self._rx_pos is not None else self._loop_pos
                self.values[key] = text
            elif name == "debug:direct_reg_access":
                self._register_access(dev, text)
            elif name == "attr:filter_fir_config":
                self.values[key] = self._fir_summary(text)
            elif name.endswith("filter_fir_en"):
                if text not in ("0", "1"):
                    raise CommandError(errno.EINVAL, f"{name} {text!r}: expected 0 or 1")
                self.values[key] = text
            else:
                self.values[key] = text

    def _register_access(self, dev: str, text: str) -> None:
        """``direct_reg_access`` (libiio's iio_device_reg_read/write): "ADDR" selects the register the next read
        returns, "ADDR VALUE" writes it. Registers are plain storage (all 0 at power-on: e.g. no DMA underflow)."""
        words = text.split()
        try:
            addr, value = int(words[0], 0), (int(words[1], 0) if len(words) == 2 else None)
        except (ValueError, IndexError):
            raise CommandError(errno.EINVAL, f"direct_reg_access {text!r}: expected 'ADDR' or 'ADDR VALUE'") from None
        if len(words) > 2 or addr < 0 or (value is not None and not 0 <= value < 1 << 32):
            raise CommandError(errno.EINVAL, f"direct_reg_access {text!r}: expected 'ADDR' or 'ADDR VALUE' (32 bit)")
        regs = self.registers.setdefault(dev, {})
        if value is not None:
            if addr == DMA_STATUS_REGISTER and dev in (TXDAC, RXADC):
                value = regs.get(addr, 0) & ~value      # write-1-to-clear (never set: no under/overflows here)
            regs[addr] = value
        self.values[(dev, "debug:direct_reg_access")] = hex(regs.get(addr, 0)) if value is None else hex(value)

    def preset(self, sample_rate: float | None = None, center_freq: float | None = None,
               tx_gain: float | None = None, rx_gain: float | None = None,
               gain_control_mode: str | None = None, rf_bandwidth: float | None = None) -> None:
        """Set power-on values (e.g. from a bench config) as a client would; raises ValueError on invalid ones."""
        phy_in = dict(dev=PHY, kind="INPUT", chan="voltage0")
        writes = []
        if sample_rate is not None:
            writes += [(Command("WRITE", dev=PHY, kind="INPUT", chan="out", attr="voltage_filter_fir_en"), "1"),
                       (Command("WRITE", **phy_in, attr="sampling_frequency"), str(int(round(sample_rate))))]
        if center_freq is not None:
            writes += [(Command("WRITE", dev=PHY, kind="OUTPUT", chan=f"altvoltage{i}", attr="frequency"),
                        str(int(round(center_freq)))) for i in (0, 1)]
        if rf_bandwidth is not None:
            writes += [(Command("WRITE", dev=PHY, kind=kind, chan="voltage0", attr="rf_bandwidth"),
                        str(int(round(rf_bandwidth)))) for kind in ("INPUT", "OUTPUT")]
        if gain_control_mode is not None:
            writes.append((Command("WRITE", **phy_in, attr="gain_control_mode"), gain_control_mode))
        if rx_gain is not None:
            writes.append((Command("WRITE", **phy_in, attr="hardwaregain"), repr(float(rx_gain))))
        if tx_gain is not None:
            writes.append((Command("WRITE", dev=PHY, kind="OUTPUT", chan="voltage0", attr="hardwaregain"),
                           repr(float(tx_gain))))
        for cmd, value in writes:
            try:
                self.write_attr(cmd, value.encode())
            except CommandError as exc:
                raise ValueError(f"emulated Pluto: cannot preset {cmd.attr} = {value}: {exc}") from None

    @staticmethod
    def _number(text: str, name: str, lo: float, hi: float, integer: bool = False) -> float:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise CommandError(errno.EINVAL, f"{name} {text!r}: expected a number") from None
        if not (lo <= value <= hi) or not math.isfinite(value):
            raise CommandError(errno.EINVAL, f"{name} {value} outside [{lo}, {hi}]")
        return value

    def _set_rate(self, dev: str, name: str, text: str) -> None:
        rate = int(self._number(text, name, 1, 61.44e6, integer=True))
        if dev != PHY:  # the FPGA's decimate/interpolate-by-8 switch: only the listed rates
            avail = self.values[(dev, name + "_available")].split()
            if text not in avail:
                raise CommandError(errno.EINVAL, f"{name} {text}: expected one of {avail}")
            self.values[(dev, name)] = text
            return
        if rate < 2_083_333 and self.values[(PHY, "in_voltage_filter_fir_en")] != "1" \
                and self.values[(PHY, "in_out_voltage_filter_fir_en")] != "1":
            raise CommandError(errno.EINVAL, f"sampling_frequency {rate} < 2083333 needs the FIR filter enabled")
        for k in ("in_voltage_sampling_frequency", "out_voltage_sampling_frequency"):
            self.values[(PHY, k)] = str(rate)
        for d, prefix in ((RXADC, "in"), (TXDAC, "out")):
            self.values[(d, f"{prefix}_voltage_sampling_frequency")] = str(rate)
            self.values[(d, f"{prefix}_voltage_sampling_frequency_available")] = f"{rate} {rate // 8}"
        self.values[(PHY, "attr:rx_path_rates")], self.values[(PHY, "attr:tx_path_rates")] = path_rates(rate)

    @staticmethod
    def _fir_summary(text: str) -> str:
        """What the driver reports after loading a FIR config: 'FIR Rx: <taps>,<dec> Tx: <taps>,<int>'."""
        taps = sum(1 for line in text.splitlines() if "," in line and not line.strip().startswith("#"))
        dec = interp = 1
        for line in text.splitlines():
            words = line.upper().split()
            if words[:1] == ["RX"] and "DEC" in words:
                dec = int(words[words.index("DEC") + 1]) if words.index("DEC") + 1 < len(words) else 1
            if words[:1] == ["TX"] and "INT" in words:
                interp = int(words[words.index("INT") + 1]) if words.index("INT") + 1 < len(words) else 1
        return f"FIR Rx: {taps},{dec} Tx: {taps},{interp}"

    # ------------------------------------------------------------------------------------------------ RF state
    @property
    def loopback(self) -> int:
        """Current loopback mode (0 off, 1 digital, 2 RF)."""
        return int(self.values[(PHY, "debug:loopback")])

    def _tx_scale(self) -> float:
        return 10 ** (_gain_db(self.values[(PHY, "out_voltage0_hardwaregain")]) / 20) / TX_FULL_SCALE

    def _rx_scale(self) -> float:
        if self.values[(PHY, "in_voltage0_gain_control_mode")] == "manual":
            gain = _gain_db(self.values[(PHY, "in_voltage0_hardwaregain")]) - self.settings.rx_gain_ref_db
        else:
            gain = 0.0
        return 10 ** (gain / 20) * RX_FULL_SCALE

    def device_now(self) -> int:
        """The device's current sample time: the next RX sample; before the first RX read, the later of its
        power-on time and the radio's clock."""
        if self.loopback:
            return self._loop_pos
        if self._rx_pos is not None:
            return self._rx_pos
        return max(self._epoch, self.radio.time_now()) if self.radio is not None else self._loop_pos

    def _radio_tx(self, x: np.ndarray, at: int) -> None:
        if self.radio is None:
            return
        if not self.radio.capabilities.timed_tx:
            self.radio.tx(x)
            return
        try:
            self.radio.tx(x, at)
        except LateError as exc:
            self.stats["late_tx"] += 1
            log.debug("emulated Pluto: TX late (%s); sending at the radio's now", exc)
            self.radio.tx(x, self.radio.time_now())

    def _top_up_cyclic(self, until: int) -> None:
        """Schedule repetitions of the cyclic TX buffer on the radio up to device time ``until``."""
        if self._cyclic is None or self.radio is None or self.loopback:
            return
        x = self._cyclic_air
        n = x.size
        now = self.radio.time_now()
        if self._cyc_next < now:  # the air moved on without us: keep the phase, count the gap
            self.stats["cyclic_gaps"] += 1
            self._cyc_next += -(-(now - self._cyc_next) // n) * n
        if self._cyc_next >= until:
            return
        reps = -(-(until - self._cyc_next) // n)
        self._radio_tx(np.tile(x, reps), self._cyc_next)
        self._cyc_next += reps * n

    def _pump_loop(self) -> None:
        """Keep a cyclic transmission scheduled ahead of the radio's clock (sleeps while there is none)."""
        while not self._stop.is_set():
            if self._cyclic is None:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                with self.lock:
                    if self._cyclic is not None and self.radio is not None:
                        self._top_up_cyclic(self.radio.time_now() + self.settings.cyclic_horizon_samples)
            except Exception:  # a broken RF side must not kill the emulator
                log.exception("emulated Pluto: cyclic TX pump failed")
            self._stop.wait(0.005)

    # ------------------------------------------------------------------------------------------------- buffers
    def open_buffer(self, dev_token: str, samples: int, mask: int, cyclic: bool) -> Device:
        """Validate an OPEN; raises ENODEV/EINVAL/EBUSY. Opening the TX buffer resets the TX state."""
        dev = self._device(dev_token)
        scan = dev.scan_channels
        if not scan:
            raise CommandError(errno.ENODEV, f"{dev.name} has no buffer")
        if mask == 0 or mask >> len(scan):
            raise CommandError(errno.EINVAL, f"mask {mask:#x} selects no or non-existent channels of {dev.name}")
        if cyclic and dev.id != TXDAC:
            raise CommandError(errno.EINVAL, f"{dev.name}: only TX buffers can be cyclic")
        with self.lock:
            if dev.id in self.open_buffers:
                raise CommandError(errno.EBUSY, f"{dev.name}: buffer already open")
            self.open_buffers[dev.id] = cyclic
            if dev.id == TXDAC:
                self._reset_tx()
        return dev

    def close_buffer(self, dev: Device) -> None:
        """Close a buffer; closing the TX buffer stops a cyclic transmission and drops unread loopback data."""
        with self.lock:
            self.open_buffers.pop(dev.id, None)
            if dev.id == TXDAC:
                self._reset_tx()

    def _reset_tx(self) -> None:
        self._cyclic = self._cyclic_air = None
        self._segments.clear()
        self._segment_samples = 0
        if self._cyc_next > self._tx_next:
            self._tx_next = self._cyc_next

    @staticmethod
    def _sample_bytes(mask: int) -> int:
        return 2 * bin(mask & 0b11).count("1")

    def write_buffer(self, dev: Device, mask: int, data: bytes, cyclic: bool) -> None:
        """Take a TX buffer of int16 words (the channels in ``mask``, interleaved) and transmit it."""
        if dev.id != TXDAC:
            raise CommandError(errno.EINVAL, f"{dev.name} is not an output device")
        step = self._sample_bytes(mask)
        if len(data) % step:
            raise CommandError(errno.EINVAL, f"buffer of {len(data)} bytes is not a whole number of samples")
        words = np.frombuffer(data, dtype="<i2").reshape(-1, step // 2).astype(np.float32)
        iq = np.zeros((words.shape[0], 2), dtype=np.float32)
        iq[:, [i for i in range(2) if mask >> i & 1]] = words
        dac = iq.view(np.complex64).ravel()
        if dac.size == 0:
            return
        with self.lock:
            start = max(self._tx_next, self.device_now() + self.settings.tx_latency_samples)
            self.stats["tx_samples"] += dac.size
            if cyclic:
                self._cyclic = (start, dac)
                self._cyclic_air = (dac * np.float32(self._tx_scale())).astype(np.complex64)
                self._cyc_next = start
                self._top_up_cyclic(start + max(dac.size, self.settings.cyclic_horizon_samples))
                self._wake.set()
                return
            self._tx_next = start + dac.size
            if not self.loopback:   # to the air
                self._radio_tx((dac * np.float32(self._tx_scale())).astype(np.complex64), start)
                return
            self._segments.append((start, dac))   # kept for the loopback RX path only
            self._segment_samples += dac.size
            while self._segment_samples > MAX_LOOPBACK_SAMPLES and len(self._segments) > 1:
                self._segment_samples -= self._segments.popleft()[1].size

    def _dac_window(self, t: int, n: int) -> np.ndarray:
        """DAC words (complex64) the device transmits at times [t, t+n) — for the loopback modes."""
        out = np.zeros(n, dtype=np.complex64)
        for start, words in self._segments:   # sorted by start: stop at the first one after the window
            if start >= t + n:
                break
            lo, hi = max(t, start), min(t + n, start + words.size)
            if lo < hi:
                out[lo - t:hi - t] = words[lo - start:hi - start]
        if self._cyclic is not None:
            start, words = self._cyclic
            times = np.arange(max(t, start), t + n, dtype=np.int64)
            out[times - t] = words[(times - start) % words.size]
        while self._segments and self._segments[0][0] + self._segments[0][1].size <= t + n:
            self._segment_samples -= self._segments.popleft()[1].size
        return out

    def read_buffer(self, dev: Device, mask: int, nbytes: int) -> bytes:
        """Produce ``nbytes`` of RX data (int16 words of the channels in ``mask``, interleaved)."""
        if dev.id != RXADC:
            raise CommandError(errno.EINVAL, f"{dev.name} is not an input device")
        step = self._sample_bytes(mask)
        if nbytes % step:
            raise CommandError(errno.EINVAL, f"{nbytes} bytes is not a whole number of {step}-byte samples")
        n = nbytes // step
        with self.lock:
            mode = self.loopback
            if mode == 1:
                words = self._dac_window(self._loop_pos, n)
                self._loop_pos += n
            elif mode == 2:
                y = self._dac_window(self._loop_pos, n) * np.float32(self._tx_scale())
                self._loop_pos += n
                words = self._adc(y)
            else:
                y = self._rx_from_radio(n)
                words = self._adc(y)
            self.stats["rx_samples"] += n
        iq = words.view(np.float32).reshape(-1, 2)
        if mode == 1:
            iq = np.clip(iq, -32768, 32767)
        return iq[:, [i for i in range(2) if mask >> i & 1]].astype("<i2").tobytes()

    def _adc(self, y: np.ndarray) -> np.ndarray:
        """Received complex amplitude -> 12-bit ADC words (as complex64 of integers)."""
        v = np.rint(y.view(np.float32) * np.float32(self._rx_scale()))
        np.clip(v, -RX_FULL_SCALE, RX_FULL_SCALE - 1, out=v)
        return v.view(np.complex64)

    def _rx_from_radio(self, n: int) -> np.ndarray:
        if self.radio is None:
            self._rx_pos = (self._rx_pos or 0) + n
            return np.zeros(n, dtype=np.complex64)
        first = self._rx_pos is None and self.radio.capabilities.timed_rx
        start = self._epoch if first else (self._rx_pos if self._rx_pos is not None else self.radio.time_now())
        for peer in list(_PEERS.get(self.lock, ())):   # cyclic transmitters on the same air, this one included
            peer._top_up_cyclic(start + n)
        try:   # the first read starts at power-on: emulators created together have aligned RX clocks
            y, t0 = self.radio.rx(n, start) if first else self.radio.rx(n)
        except LateError:
            self.stats["rx_skips"] += 1
            y, t0 = self.radio.rx(n, self.radio.time_now())
        self._rx_pos = int(t0) + n
        return np.asarray(y, dtype=np.complex64)

    def close(self) -> None:
        """Stop the cyclic pump (the radio is left to its owner)."""
        self._stop.set()
        self._wake.set()
        with self.lock:
            self._cyclic = None
            _PEERS.get(self.lock, weakref.WeakSet()).discard(self)
        if self._pump.is_alive() and self._pump is not threading.current_thread():
            self._pump.join(timeout=1.0)


class _IiodHandler(socketserver.StreamRequestHandler):
    """One client connection: a command loop; a connection may own one open buffer."""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self.connection)
        self.buffer: tuple[Device, int, bool] | None = None   # (device, mask, cyclic)

    def finish(self) -> None:
        if self.buffer is not None:
            self.server.emulator.close_buffer(self.buffer[0])
            self.buffer = None
        self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def _reply(self, value: int | str) -> None:
        self.wfile.write(f"{value}\n".encode())

    def _read_exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if data is None or len(data) != n:
            raise ConnectionError("client closed the connection mid-transfer")
        return data

    def handle(self) -> None:
        while True:
            try:
                line = self.rfile.readline(MAX_LINE + 1)
            except OSError:          # connection reset by the client
                return
            if not line:
                return
            if len(line) > MAX_LINE and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):   # skip the rest of an overlong line
                    line = self.rfile.readline(MAX_LINE + 1)
                self._reply(-errno.EINVAL)
                continue
            text = line.strip()
            if not text:
                continue
            try:
                cmd = parse_command(text.decode("ascii"))
            except (CommandError, UnicodeDecodeError) as exc:
                self._reply(-getattr(exc, "code", errno.EINVAL))
                continue
            if cmd.name == "EXIT":
                return
            try:
                self._dispatch(cmd)
            except CommandError as exc:
                log.debug("iiod %s: %s", cmd.name, exc)
                self._reply(-exc.code)
            except (ConnectionError, BrokenPipeError, OSError):
                return
            except Exception:  # never let one bad request take the server down
                log.exception("emulated Pluto: error serving %s", cmd)
                try:
                    self._reply(-errno.EIO)
                except OSError:
                    return

    def _dispatch(self, cmd: Command) -> None:
        emu: PlutoEmulator = self.server.emulator
        name = cmd.name
        if name == "PRINT":
            xml = emu.xml.encode()
            self.wfile.write(f"{len(xml)}\n".encode() + xml + b"\n")
        elif name in ("ZPRINT", "BINARY"):
            self._reply(-errno.EINVAL)
        elif name == "VERSION":
            self.wfile.write(b"0.24.otalab\n")
        elif name == "HELP":
            self.wfile.write(b"emulated iiod: PRINT ZPRINT VERSION TIMEOUT READ WRITE OPEN CLOSE READBUF WRITEBUF "
                             b"GETTRIG SETTRIG SET EXIT\n")
        elif name == "TIMEOUT":
            self._reply(0)
        elif name == "READ":
            value = emu.read_attr(cmd).encode()[:1022] + b"\0"
            self.wfile.write(f"{len(value)}\n".encode() + value + b"\n")
        elif name == "WRITE":
            if cmd.size > MAX_WRITE:
                raise CommandError(errno.EINVAL, f"attribute write of {cmd.size} bytes exceeds {MAX_WRITE}")
            raw = self._read_exact(cmd.size)
            emu.write_attr(cmd, raw)
            self._reply(cmd.size)
        elif name == "GETTRIG":
            emu._device(cmd.dev)
            raise CommandError(errno.ENOENT, "no trigger")
        elif name == "SETTRIG":
            emu._device(cmd.dev)
            if cmd.attr is not None:
                raise CommandError(errno.ENOENT, f"no trigger {cmd.attr!r}")
            self._reply(0)
        elif name == "SET":
            emu._device(cmd.dev)
            self._reply(0)
        elif name == "OPEN":
            if self.buffer is not None:
                raise CommandError(errno.EBUSY, "this connection already has an open buffer")
            dev = emu.open_buffer(cmd.dev, cmd.size, cmd.mask, cmd.cyclic)
            self.buffer = (dev, cmd.mask, cmd.cyclic)
            self._reply(0)
        elif name == "CLOSE":
            dev = emu._device(cmd.dev)
            if self.buffer is None or self.buffer[0].id != dev.id:
                raise CommandError(errno.EBADF, f"no open buffer on {dev.name}")
            emu.close_buffer(dev)
            self.buffer = None
            self._reply(0)
        elif name in ("READBUF", "WRITEBUF"):
            dev = emu._device(cmd.dev)
            if self.buffer is None or self.buffer[0].id != dev.id:
                raise CommandError(errno.EBADF, f"no open buffer on {dev.name}")
            if cmd.size > MAX_BUFFER_BYTES:
                raise CommandError(errno.EINVAL, f"{cmd.size} bytes exceeds {MAX_BUFFER_BYTES}")
            _, mask, cyclic = self.buffer
            if name == "READBUF":
                data = emu.read_buffer(dev, mask, cmd.size)
                self.wfile.write(f"{len(data)}\n{mask:08x}\n".encode() + data)
            else:
                if dev.id != TXDAC:
                    raise CommandError(errno.EINVAL, f"{dev.name} is not an output device")
                self._reply(0)
                data = self._read_exact(cmd.size)
                emu.write_buffer(dev, mask, data, cyclic)
                self._reply(cmd.size)
        else:  # parse_command only returns the names above
            raise CommandError(errno.EINVAL, f"unsupported command {name}")


class IiodServer(socketserver.ThreadingTCPServer):
    """Threaded TCP server for one :class:`PlutoEmulator` (one thread per connection; buffers use their own)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, emulator: PlutoEmulator, host: str = "127.0.0.1", port: int = 0):
        self.emulator = emulator
        self.connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _IiodHandler)

    def handle_error(self, request, client_address) -> None:
        """A connection that died mid-request is the client's business: log it, keep serving."""
        log.debug("emulated Pluto: connection from %s ended with an error", client_address, exc_info=True)

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with port 0)."""
        return self.server_address[1]

    @property
    def uri(self) -> str:
        """libiio URI of this emulator, e.g. ``ip:127.0.0.1:40123``."""
        return f"ip:{self.server_address[0]}:{self.port}"

    def start(self) -> "IiodServer":
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"iiod-emulator-{self.port}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, drop all client connections and stop the emulator. Idempotent."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=2.0)
            self._thread = None
        for conn in list(self.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
        self.emulator.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_emulated_pluto(radio: Radio | None, port: int = 0, *, host: str = "127.0.0.1",
                         settings: EmulatorSettings | None = None,
                         lock: threading.RLock | None = None) -> tuple[IiodServer, str]:
    """Start an emulated Pluto whose RF side is ``radio``; returns ``(server, uri)`` (``server.close()`` stops it).

    ``port`` 0 picks a free port (read it back from the URI). Emulators whose radios share one Air must share one
    ``lock``.
    """
    settings = settings or EmulatorSettings()
    server = IiodServer(PlutoEmulator(radio, settings, lock), host, port).start()
    return server, server.uri
