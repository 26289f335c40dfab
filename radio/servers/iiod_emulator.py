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

* DDS (``cf-ad9361-dds-core-lpc`` ``altvoltage0..3``: ``frequency``, ``scale``, ``phase``, ``raw``): while no TX
  buffer is open the DAC sends the DDS tones (:func:`radio.servers.pluto_dma.dds_words`), to the air and to the
  loopback paths.
* Sample rates: below 2.083 MS/s only with the FIR enabled, down to 2.083 MS/s divided by the loaded FIR's decimation
  (pyadi-iio loads a decimate-by-4 FIR: about 521 kS/s), as the AD9361 driver; ``rx_path_rates``/``tx_path_rates``
  show the FIR's factor.
* Status registers (``direct_reg_access``, what GNU Radio's gr-iio polls): 0x80000088 of ``cf-ad9361-lpc`` has bit 2
  set after an RX overflow, of ``cf-ad9361-dds-core-lpc`` bit 0 after a TX underflow; writing the bits clears them.

**Wall-clock DMA mode** (``EmulatorSettings.wallclock``): the device runs on its own free-running sample clock
(:class:`radio.servers.pluto_dma.DeviceClock`: a random power-on count ``epoch_samples`` and a ``ppm`` error against
the host) whether anybody reads or not:

* RX: a DMA thread fills the client's kernel buffers (``kernel_buffers``, or what the client SETs with
  ``BUFFERS_COUNT``; each the size the buffer was OPENed with) in real time. When all are full and the host has not
  taken one, the DMA stops and data is lost until the host takes a buffer: the next buffer starts at that moment (a
  gap the client cannot see in the data, only in the overflow bit and its own clock), as on hardware. READBUF waits
  until a whole buffer is there.
* TX: buffers queue for the DAC (at most ``kernel_buffers``; a push into a full queue waits, as ``iio_buffer_push``
  does); the DAC plays them back to back. A buffer pushed after the queue ran dry underflows: the DAC sent zeros
  meanwhile, the underflow bit is set, and the buffer goes out when it arrives plus a push-latency jitter
  (``push_jitter_s``, uniform). TX sample k leaves ``tx_latency_samples`` after the RX sample taken at the same DAC
  time (the device's constant, unknown TX→RX latency).
* The RF side is read and written at the device clock (an Air shared by several emulators runs on one host-derived
  timeline; each device's count is the air's time plus its own epoch); ``ppm`` needs ``radio=None`` (the air has one
  sample grid). The DMA takes the RF side's samples when the kernel buffer being filled is complete (at least every
  ``RF_CHUNK_S``); an RF side of the emulator's own is read outside its lock. On an RF side that runs on the wall
  clock itself (the realtime ZeroMQ air, across a socket) RX is taken as soon as the air has it (the broker releases
  samples once due and refuses TX that comes later), and the device's TX->RX latency includes ``AIR_TX_MARGIN_S``
  so that the DAC's samples reach the air before their time; a TX the air still refuses counts as an underflow
  (lost samples, status bit), never a burst sent at another time.
* :meth:`PlutoEmulator.stall_host` makes the next buffer transfers wait, as a host busy elsewhere would.

Without wall-clock mode the emulator has no wall clock: RX samples are produced when the client reads them, nothing
overflows and the device time advances only by reading (the RX stream is contiguous across reads and buffers); a TX
stream more than ``max_tx_ahead_samples`` ahead of the device is dropped and counted (a DMA with nowhere to put it).

Other differences from hardware, on purpose: attribute values are stored exactly (the real driver quantises LO, rate
and gains); with an RF side the sample rate is the radio's, whatever ``sampling_frequency`` the client writes; the
DDS is silent at power-on until a client writes one of its attributes (a real Pluto sends its default tone: that
would leak into every simulated air); a connection holding a buffer and idle for ``idle_timeout_s`` is closed.

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
import time
import weakref
from collections import deque
from dataclasses import dataclass

import numpy as np

from radio.base import LateError, Radio, RadioError
from radio.servers.pluto_context import (GAIN_MODES, PHY, RX_FULL_SCALE, RXADC, TX_FULL_SCALE, TXDAC, Device,
                                         context_xml, default_values, path_rates, pluto_devices)
from radio.servers.pluto_dma import DDS_TONES, DdsTone, DeviceClock, dds_words
from radio.thread_priority import raise_thread_priority

log = logging.getLogger(__name__)

MAX_LINE = 4096              # longest command line accepted (bytes)
MAX_WRITE = 1 << 20          # longest attribute write accepted (bytes)
MAX_BUFFER_BYTES = 1 << 27   # largest READBUF/WRITEBUF accepted (bytes)
MAX_LOOPBACK_SAMPLES = 1 << 23  # TX samples kept for digital loopback before the oldest are dropped

#: AXI DAC/ADC core status register, polled by GNU Radio's gr-iio (write 1 to clear)
DMA_STATUS_REGISTER = 0x80000088
#: its bits: RX overflow (ADC core), TX underflow (DAC core)
STATUS_OVERFLOW, STATUS_UNDERFLOW = 0x4, 0x1
#: lowest baseband rate without the FIR (25 MHz / 12, the AD9361 driver's limit)
MIN_RATE_NO_FIR = 2_083_333
#: wall-clock mode: the DMA thread's period (s) and how far behind the device's now RX is taken off the RF side
DMA_TICK_S = 0.005
RX_GUARD_S = 0.002
#: wall-clock mode: the DMA takes the RF side's samples when the kernel buffer being filled is complete, and at least
#: every RF_CHUNK_S (each take is a request to the air: on the ZeroMQ air, one broker step; taking them every tick
#: cost the broker a third of a core per 521 kS/s device)
RF_CHUNK_S = 0.02
#: wall-clock mode on an RF side that runs on the wall clock itself (the realtime ZeroMQ air, across a socket): how
#: far ahead of the air's now the emulated DAC's samples must reach it; added to the device's TX->RX latency (a
#: larger unknown constant, which timing advance absorbs like the rest), so a DAC that has not run dry is always in
#: time for the air
AIR_TX_MARGIN_S = 0.003

#: emulators sharing one lock (i.e. one Air): before any of them reads RX, all top up their cyclic TX
_PEERS: "weakref.WeakKeyDictionary[object, weakref.WeakSet]" = weakref.WeakKeyDictionary()
#: wall-clock emulators sharing one lock (one Air) share one timeline: lock -> (monotonic m0, air time at m0)
_WALL_REF: "weakref.WeakKeyDictionary[object, tuple[float, int]]" = weakref.WeakKeyDictionary()


def _anchor(radio: Radio, tries: int = 7) -> tuple[float, int]:
    """(monotonic s, the radio's sample time then): the reading with the shortest round trip of ``tries``, stamped
    at its midpoint (a radio across a socket, e.g. the realtime ZeroMQ air, answers after a round trip; the error
    is at most half the shortest one)."""
    best = None
    for _ in range(tries):
        m1 = time.monotonic()
        t = int(radio.time_now())
        m2 = time.monotonic()
        if best is None or m2 - m1 < best[0]:
            best = (m2 - m1, 0.5 * (m1 + m2), t)
    return best[1], best[2]


@dataclass
class EmulatorSettings:
    """Settings of the emulated Pluto (YAML ``radio.args.emulator`` of driver "pluto"); see the module docstring.

    ``tx_latency_samples`` is the constant TX→RX latency the emulated device adds (a real Pluto has an unknown but
    constant one; sync's timing advance measures it). ``rx_gain_ref_db`` is the manual RX gain at which the air's
    amplitude maps one-to-one onto ADC full scale. ``hear_self``: ``otalab emulate pluto`` links the device to itself
    through the air so that a lone client hears its own transmission.

    ``air``: where the RF side is when the emulator is opened from a config (:meth:`radio.drivers.pluto.PlutoRadio.
    from_config`): ``"sim"`` an endpoint of an in-process simulated air (the config's ``air:`` section); ``"zmq"`` an
    endpoint named ``endpoint`` on the ZeroMQ air's broker at ``address`` (``otalab air``; realtime pacing for the
    wall-clock mode), with the emulator in a process of its own (:mod:`radio.servers.pluto_process`), as a real
    Pluto is a device of its own.
    """

    host: str = "127.0.0.1"
    port: int = 0
    endpoint: str = "pluto0"
    tx_latency_samples: int = 0
    rx_gain_ref_db: float = 0.0
    cyclic_horizon_samples: int = 1 << 17
    hear_self: bool = True
    wallclock: bool = False
    kernel_buffers: int = 4
    epoch_samples: int | None = None
    ppm: float = 0.0
    push_jitter_s: float = 0.0
    seed: int | None = None
    idle_timeout_s: float = 30.0
    max_tx_ahead_samples: int = 1 << 20
    air: str = "sim"
    address: str = "tcp://127.0.0.1:5555"

    def __post_init__(self):
        if self.air not in ("sim", "zmq"):
            raise ValueError(f"emulator air must be 'sim' (an in-process simulated air) or 'zmq' (an endpoint on the "
                             f"ZeroMQ broker at emulator.address), got {self.air!r}")
        if self.air == "zmq" and not str(self.address).startswith(("tcp://", "ipc://")):
            raise ValueError(f"emulator address must be the ZeroMQ broker's tcp://HOST:PORT or ipc://PATH, "
                             f"got {self.address!r}")
        if not 1 <= self.kernel_buffers <= 64:
            raise ValueError(f"kernel_buffers must be 1..64, got {self.kernel_buffers}")
        if self.epoch_samples is not None and self.epoch_samples < 0:
            raise ValueError(f"epoch_samples must be >= 0 or null (random), got {self.epoch_samples}")
        if not -1000 <= self.ppm <= 1000:
            raise ValueError(f"ppm must be within ±1000, got {self.ppm}")
        if not 0 <= self.push_jitter_s <= 1:
            raise ValueError(f"push_jitter_s must be 0..1 s, got {self.push_jitter_s}")
        if not self.idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be > 0 s, got {self.idle_timeout_s}")
        if self.max_tx_ahead_samples < 1:
            raise ValueError(f"max_tx_ahead_samples must be >= 1, got {self.max_tx_ahead_samples}")
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
        # the RF side is this emulator's alone and takes concurrent calls: the DMA reads it outside the lock
        self._rf_apart = lock is None and radio is not None and bool(getattr(radio, "thread_safe", False))
        self.devices: dict[str, Device] = {d.id: d for d in pluto_devices()}
        self._by_name = {d.name: d for d in self.devices.values()}
        self.values = default_values()
        self.xml = context_xml(list(self.devices.values()), wallclock=self.settings.wallclock)
        self.open_buffers: dict[str, bool] = {}       # device id -> cyclic
        self.registers: dict[str, dict[int, int]] = {}  # device id -> {address: value} (direct_reg_access)
        self.stats = {"tx_samples": 0, "rx_samples": 0, "late_tx": 0, "rx_skips": 0, "rf_errors": 0, "cyclic_gaps": 0,
                      "rx_overflows": 0, "rx_dropped_samples": 0, "tx_underflows": 0, "tx_dropped_samples": 0}
        self.kernel_buffers = {RXADC: self.settings.kernel_buffers, TXDAC: self.settings.kernel_buffers}
        self.dds = {name: DdsTone(phase=90000 if "_I_" in name else 0) for name in DDS_TONES}
        self._dds_armed = False                        # a client wrote a DDS attribute (module docstring)
        self._dds_next: int | None = None              # wall/air: DDS scheduled on the radio up to here
        self._fir_dec = 1                              # decimation of the loaded FIR
        self._rng = np.random.default_rng(self.settings.seed)
        self._rx_pos: int | None = None                # device time of the next RX sample (None: not read yet)
        self._epoch = int(radio.time_now()) if radio is not None else 0   # the device's power-on time
        self._offset = 0                               # device time minus the RF side's time
        self._stall_until = 0.0                        # monotonic time until which buffer transfers wait
        self._wall = self.settings.wallclock
        if self._wall:
            self._init_wallclock()
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
        self._pump = threading.Thread(target=self._dma_loop if self._wall else self._pump_loop,
                                      name="pluto-emulator-dma" if self._wall else "pluto-emulator-cyclic",
                                      daemon=True)
        self._pump.start()

    # ------------------------------------------------------------------------------------------ wall clock
    def _init_wallclock(self) -> None:
        st = self.settings
        epoch = st.epoch_samples if st.epoch_samples is not None else int(self._rng.integers(1 << 20, 1 << 40))
        if self.radio is not None:
            if st.ppm:
                raise ValueError("emulator ppm needs radio=None: a simulated air has one sample grid (put a "
                                 "frequency offset on the air's link instead)")
            with self.lock:
                ref = _WALL_REF.get(self.lock)
                if ref is None:   # the first wall-clock emulator on this air fixes its timeline
                    ref = _WALL_REF[self.lock] = _anchor(self.radio)
            m0, air0 = ref
            self._clock = DeviceClock(self.radio.sample_rate, epoch, 0.0, m0)
            self._offset = epoch - air0
        else:
            self._clock = DeviceClock(float(self.values[(PHY, "in_voltage_sampling_frequency")]), epoch, st.ppm)
        self._rf_pos = self._clock.now()               # RF side read (and DMA fed) up to here
        self._rf_chunk = max(1, int(RF_CHUNK_S * self._clock.rate))
        wall_air = self.radio is not None and self.radio.capabilities.wall_clock
        #: the device's TX->RX latency (samples): the configured one, plus AIR_TX_MARGIN_S on an air on the wall clock
        self._tx_latency = st.tx_latency_samples + (int(AIR_TX_MARGIN_S * self._clock.rate) if wall_air else 0)
        # RX is taken off an in-process air RX_GUARD_S behind now so that the air's other transmitters have written
        # it; without an RF side (radio None: digital/RF loopback, DDS) nothing else writes, and an air on the wall
        # clock (the realtime ZeroMQ broker) computes samples only once they are due and refuses later TX itself: a
        # buffer is released as soon as its last sample was taken, as the hardware's DMA does
        self._guard = max(1, int(RX_GUARD_S * self._clock.rate)) if self.radio is not None and not wall_air else 1
        self._rxq: deque[tuple[int, np.ndarray]] = deque()    # filled RX blocks (start, ADC words)
        self._rx_ready = threading.Condition(self.lock)        # notified when a block is queued
        self._rx_left: tuple[int, np.ndarray] | None = None   # rest of a block a READBUF did not take
        self._rx_block = 0
        self._fill: list | None = None   # [start, words, filled, after an overflow] of the block being filled; None: stalled
        self._txq: deque[int] = deque()                # DAC end times of queued TX buffers
        self._stall_at = 0                             # device time the RX DMA stopped at (overflow)
        #: device time of the first sample of the RX buffer last opened (the client's RX count 0), for tests
        self.rx_opened_at: int | None = None
        #: the RX overflow gaps (device times [first lost, first kept)), newest last, for tests and diagnostics
        self.overflow_gaps: deque[tuple[int, int]] = deque(maxlen=256)
        self._tx_stream: int | None = None             # RX-index time where the queued TX stream ends
        self._tx_last_push = 0.0                       # monotonic time the last TX buffer was queued
        #: each TX underflow: device time, how long the DAC had run dry (samples), time since the previous push was
        #: queued and how long this push waited in the emulator (s), newest last, for diagnostics
        self.tx_slips: deque[dict] = deque(maxlen=256)
        #: the last TX pushes: (monotonic time it arrived, was queued, the DAC queue's slack then in samples)
        self.tx_pushes: deque[tuple[float, float, int | None]] = deque(maxlen=4096)

    def device_time(self) -> int:
        """The device's sample count now (wall-clock mode: its free-running clock; otherwise the next RX sample)."""
        return self._clock.now() if self._wall else self.device_now()

    def stall_host(self, seconds: float) -> None:
        """Make buffer transfers wait ``seconds`` from now, as a host busy elsewhere would (the DMA keeps running)."""
        self._stall_until = time.monotonic() + float(seconds)

    def _wait_stall(self) -> None:
        delay = self._stall_until - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def _set_status(self, dev: str, bit: int) -> None:
        regs = self.registers.setdefault(dev, {})
        regs[DMA_STATUS_REGISTER] = regs.get(DMA_STATUS_REGISTER, 0) | bit

    def _dma_loop(self) -> None:
        """Wall-clock mode: the device runs, read or not: RX DMA, RF side, cyclic/DDS transmission. Wakes every
        DMA_TICK_S, and when the block being filled completes (so that a waiting READBUF gets it on time). An RF side
        of the emulator's own (its own lock: e.g. a ZeroMQ-air endpoint, which may wait for the broker's next block)
        is read outside the lock, so that the client's buffer transfers never wait on the air."""
        raise_thread_priority()    # a device's DMA is not slowed by the host's other work (where allowed)
        while not self._stop.is_set():
            wake = time.monotonic() + DMA_TICK_S
            try:
                if self._rf_apart:
                    with self.lock:
                        plan = self._dma_plan()
                    y = self._rf_read(plan)
                    with self.lock:
                        self._dma_finish(plan, y)
                        wake = self._dma_wake(wake)
                else:
                    with self.lock:
                        plan = self._dma_plan()
                        self._dma_finish(plan, self._rf_read(plan))
                        wake = self._dma_wake(wake)
            except Exception:  # a broken RF side must not kill the emulator
                log.exception("emulated Pluto: DMA step failed")
            self._stop.wait(max(0.0, wake - time.monotonic()))

    def _dma_wake(self, wake: float) -> float:
        if self._fill is not None and RXADC in self.open_buffers:
            start, words, _, _ = self._fill
            wake = min(wake, self._clock.mono_at(start + words.size + self._guard))
        return wake

    def _dma_plan(self) -> tuple[int, int, int, bool] | None:
        """One DMA step's work (under the lock): top up what the DAC generates, and say which RX times
        ``[a, a+n)`` to take now, in which loopback mode, and whether a buffer captures them; None: nothing yet."""
        d = self._clock.now()
        self._top_up_generated(d + self.settings.cyclic_horizon_samples,
                               d + int(3 * DMA_TICK_S * self._clock.rate))   # DDS: past the next tick
        end = d - self._guard
        if end <= self._rf_pos:
            return None
        capture = RXADC in self.open_buffers
        if end - self._rf_pos < self._rf_chunk and (
                not capture or self._fill is None or end < self._fill[0] + self._fill[1].size):
            return None     # taken when the kernel buffer being filled is complete, or RF_CHUNK_S at the latest
        a, n = self._rf_pos, end - self._rf_pos
        self._rf_pos = end
        return a, n, self.loopback, capture

    def _rf_read(self, plan) -> np.ndarray | None:
        """The RF side's samples for a plan's times (read even when nobody captures: the air moves on), or None
        (no RF side, or a loopback mode)."""
        if plan is None or plan[2] != 0 or self.radio is None:
            return None
        a, n = plan[0], plan[1]
        try:
            y, _ = self.radio.rx(n, a - self._offset)
        except LateError:   # the air dropped them (this process starved past its buffer): zeros, in place
            self.stats["rx_skips"] += 1
            return np.zeros(n, np.complex64)
        except RadioError as exc:   # the air is gone: the antenna hears nothing (said once), the index stays true
            if self.stats["rf_errors"] == 0:
                log.warning("emulated Pluto %s: its RF side failed (%s); receiving zeros", self.settings.endpoint, exc)
            self.stats["rf_errors"] += 1
            return np.zeros(n, np.complex64)
        return np.asarray(y, np.complex64)

    def _dma_finish(self, plan, y: np.ndarray | None) -> None:
        """Put a plan's ADC words (module docstring) into the kernel buffers when a buffer captures."""
        if plan is None or not plan[3]:
            return
        a, n, mode, _ = plan
        if y is not None:
            chunk = self._adc(y)
        elif mode == 1:
            chunk = self._dac_window(a, n)
        elif mode == 2:
            chunk = self._adc(self._dac_window(a, n) * np.float32(self._tx_scale()))
        else:
            chunk = np.zeros(n, np.complex64)
        self._dma_take(a, chunk)

    def _dma_take(self, a: int, chunk: np.ndarray) -> None:
        """Put RX words for times [a, a+len) into the kernel buffers (module docstring: drops when all are full)."""
        pos, end = a, a + chunk.size
        while pos < end:
            if self._fill is None:                          # no free buffer: the ADC data is lost
                self._set_status(RXADC, STATUS_OVERFLOW)
                self.stats["rx_dropped_samples"] += end - pos
                return
            start, words, k, after_overflow = self._fill
            if pos < start + k:                             # before the start: lost to an overflow, or not open yet
                if after_overflow:
                    self.stats["rx_dropped_samples"] += min(start + k, end) - pos
                pos = start + k
                continue
            m = min(words.size - k, end - pos)
            words[k:k + m] = chunk[pos - a:pos - a + m]
            k += m
            pos += m
            if k < words.size:
                self._fill[2] = k
                continue
            self._rxq.append((start, words))
            self._rx_ready.notify_all()
            if len(self._rxq) < self.kernel_buffers[RXADC]:
                self._fill = [pos, np.empty(self._rx_block, np.complex64), 0, False]
            else:
                self._fill = None
                self._stall_at = pos
                self.stats["rx_overflows"] += 1

    def _wall_read(self, n: int) -> np.ndarray:
        """READBUF in wall-clock mode: the next n samples of the kernel buffers, waiting until they are there."""
        self._wait_stall()
        out = np.empty(n, np.complex64)
        got = 0
        while got < n:
            with self.lock:
                if self._rx_left is None and self._rxq:
                    self._rx_left = self._rxq.popleft()
                    if self._fill is None:   # a buffer came free: the DMA starts again, now
                        restart = max(self._rf_pos, self._clock.now() - self._guard)
                        self._fill = [restart, np.empty(self._rx_block, np.complex64), 0, True]
                        self.overflow_gaps.append((self._stall_at, restart))
                if self._rx_left is not None:
                    t0, words = self._rx_left
                    m = min(words.size, n - got)
                    out[got:got + m] = words[:m]
                    got += m
                    self._rx_left = (t0 + m, words[m:]) if m < words.size else None
                    continue
                if self._stop.is_set():
                    raise CommandError(errno.EIO, "emulator stopped")
                self._rx_ready.wait(DMA_TICK_S)
        return out

    def _wall_tx(self, dac: np.ndarray) -> int:
        """WRITEBUF in wall-clock mode: queue for the DAC (waiting while the queue is full); returns the RX-index time
        the buffer's first sample is received at."""
        arrived = time.monotonic()
        self._wait_stall()
        L = self._tx_latency
        while True:
            with self.lock:
                d = self._clock.now()
                while self._txq and self._txq[0] <= d:
                    self._txq.popleft()
                if len(self._txq) < self.kernel_buffers[TXDAC]:
                    break
                wake = self._clock.mono_at(self._txq[0])
            if self._stop.is_set():
                raise CommandError(errno.EIO, "emulator stopped")
            time.sleep(min(max(wake - time.monotonic(), 0.0), 0.05) + 1e-4)
        if self.settings.push_jitter_s:
            time.sleep(float(self._rng.uniform(0.0, self.settings.push_jitter_s)))
        with self.lock:
            d = self._clock.now()
            m = time.monotonic()
            if self._tx_stream is not None:   # how far ahead of the DAC the queue still reached at this push
                slack = self._tx_stream - L - d
                self.stats["tx_slack_min_samples"] = min(self.stats.get("tx_slack_min_samples", slack), slack)
                if slack < 0:
                    self.tx_slips.append({"device_time": d, "dry_samples": -slack,
                                          "since_last_push_s": round(m - self._tx_last_push, 6),
                                          "arrived_s_before": round(m - arrived, 6)})
            self._tx_last_push = m
            self.tx_pushes.append((arrived, m, slack if self._tx_stream is not None else None))
            if self._tx_stream is None or self._tx_stream - L < d:   # the DAC ran dry: zeros went out meanwhile
                if self._tx_stream is not None:
                    self._set_status(TXDAC, STATUS_UNDERFLOW)
                    self.stats["tx_underflows"] += 1
                start = d + L
            else:
                start = self._tx_stream
            self._tx_stream = start + dac.size
            self._txq.append(start - L + dac.size)
            return start

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
                self._fir_dec = int(self.values[key].split("Rx: ")[1].split(",")[1].split()[0])
                self._update_path_rates()
            elif name.endswith("filter_fir_en"):
                if text not in ("0", "1"):
                    raise CommandError(errno.EINVAL, f"{name} {text!r}: expected 0 or 1")
                rate = int(self.values[(PHY, "in_voltage_sampling_frequency")])
                if text == "0" and rate < MIN_RATE_NO_FIR:
                    raise CommandError(errno.EINVAL, f"{name} = 0 at {rate} S/s: below {MIN_RATE_NO_FIR} S/s the "
                                                     f"FIR must stay enabled")
                self.values[key] = text
                self._update_path_rates()
            elif dev == TXDAC and name.startswith("out_altvoltage"):
                self._write_dds(key, text)
            else:
                self.values[key] = text

    def _write_dds(self, key: tuple[str, str], text: str) -> None:
        """A DDS tone attribute (``out_altvoltageK_TX1_I_F1_frequency`` ...), validated like the AXI DDS driver."""
        name = key[1]
        tone = next(t for t in DDS_TONES if f"_{t}_" in name)
        attr = name.split(f"_{tone}_", 1)[1]
        rate = float(self.values[(TXDAC, "out_voltage_sampling_frequency")])
        if attr == "frequency":
            value = int(self._number(text, name, 0, rate / 2, integer=True))
            self.dds[tone].frequency, text = value, str(value)
        elif attr == "scale":
            value = self._number(text, name, 0.0, 1.0)
            self.dds[tone].scale, text = value, f"{value:.6f}"
        elif attr == "phase":
            value = int(self._number(text, name, 0, 360000, integer=True))
            self.dds[tone].phase, text = value, str(value)
        elif attr == "raw":   # one enable for the whole DDS core (as the AXI DDS driver): every tone's raw follows
            if text not in ("0", "1"):
                raise CommandError(errno.EINVAL, f"{name} {text!r}: expected 0 or 1")
            for i, t in enumerate(DDS_TONES):
                self.dds[t].raw = int(text)
                self.values[(TXDAC, f"out_altvoltage{i}_{t}_raw")] = text
        self.values[key] = text
        self._dds_armed = True

    def _dds_active(self) -> bool:
        return self._dds_armed and TXDAC not in self.open_buffers and \
            any(t.raw and t.scale > 0 for t in self.dds.values())

    def _update_path_rates(self) -> None:
        rate = int(self.values[(PHY, "in_voltage_sampling_frequency")])
        dec = self._fir_dec if self._fir_enabled() else 1
        self.values[(PHY, "attr:rx_path_rates")], self.values[(PHY, "attr:tx_path_rates")] = path_rates(rate, dec)

    def _fir_enabled(self) -> bool:
        return "1" in (self.values[(PHY, "in_voltage_filter_fir_en")], self.values[(PHY, "in_out_voltage_filter_fir_en")],
                       self.values[(PHY, "out_voltage_filter_fir_en")])

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
                value = regs.get(addr, 0) & ~value      # write-1-to-clear
            regs[addr] = value
        self.values[(dev, "debug:direct_reg_access")] = hex(regs.get(addr, 0)) if value is None else hex(value)

    def preset(self, sample_rate: float | None = None, center_freq: float | None = None,
               tx_gain: float | None = None, rx_gain: float | None = None,
               gain_control_mode: str | None = None, rf_bandwidth: float | None = None) -> None:
        """Set power-on values (e.g. from a bench config) as a client would; raises ValueError on invalid ones."""
        phy_in = dict(dev=PHY, kind="INPUT", chan="voltage0")
        writes = []
        if sample_rate is not None:   # as libad9361's ad9361_set_bb_rate: a decimate-by-4 FIR below 20 MS/s
            dec = 4 if sample_rate <= 20e6 else 2
            fir = f"RX 3 GAIN -6 DEC {dec}\nTX 3 GAIN 0 INT {dec}\n" + "0,0\n" * 127 + "32767,32767\n"
            writes += [(Command("WRITE", dev=PHY, attr="filter_fir_config"), fir),
                       (Command("WRITE", dev=PHY, kind="INPUT", chan="out", attr="voltage_filter_fir_en"), "1"),
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
        if dev != PHY and (dev, name + "_available") not in self.values:   # e.g. a DDS tone's: follows the PHY
            raise CommandError(errno.EACCES, f"{name} is read-only (it follows the PHY's sampling_frequency)")
        if dev != PHY:  # the FPGA's decimate/interpolate-by-8 switch: only the listed rates
            avail = self.values[(dev, name + "_available")].split()
            if text not in avail:
                raise CommandError(errno.EINVAL, f"{name} {text}: expected one of {avail}")
            self.values[(dev, name)] = text
            return
        if rate < MIN_RATE_NO_FIR:
            if not self._fir_enabled():
                raise CommandError(errno.EINVAL, f"sampling_frequency {rate} < {MIN_RATE_NO_FIR} needs the FIR "
                                                 f"filter enabled")
            lowest = -(-MIN_RATE_NO_FIR // self._fir_dec)
            if rate < lowest:
                raise CommandError(errno.EINVAL, f"sampling_frequency {rate} < {lowest}: the loaded FIR decimates "
                                                 f"by {self._fir_dec} (load one that decimates by 4 for ~521 kS/s)")
        for k in ("in_voltage_sampling_frequency", "out_voltage_sampling_frequency"):
            self.values[(PHY, k)] = str(rate)
        for d, prefix in ((RXADC, "in"), (TXDAC, "out")):
            self.values[(d, f"{prefix}_voltage_sampling_frequency")] = str(rate)
            self.values[(d, f"{prefix}_voltage_sampling_frequency_available")] = f"{rate} {rate // 8}"
        for tone in DDS_TONES:
            self.values[(TXDAC, f"out_altvoltage{DDS_TONES.index(tone)}_{tone}_sampling_frequency")] = str(rate)
        self._update_path_rates()
        if self._wall and self.radio is None and rate != self._clock.rate:
            self._clock.retune(rate)   # (no RF side: no guard, a buffer is released when its last sample is taken)
            self._rf_chunk = max(1, int(RF_CHUNK_S * rate))

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
        power-on time and the radio's clock (wall-clock mode: its free-running clock)."""
        if self._wall:
            return self._clock.now()
        if self.loopback:
            return self._loop_pos
        if self._rx_pos is not None:
            return self._rx_pos
        return max(self._epoch, self.radio.time_now()) if self.radio is not None else self._loop_pos

    def _radio_tx(self, x: np.ndarray, at: int) -> None:
        """Send DAC output scaled for the air at device time ``at`` (converted to the radio's time)."""
        if self.radio is None:
            return
        if not self.radio.capabilities.timed_tx:
            self.radio.tx(x)
            return
        try:
            self.radio.tx(x, at - self._offset)
        except LateError as exc:
            self.stats["late_tx"] += 1
            if self._wall:   # the air moved past the DAC's samples (a stalled host): what it missed is lost, as
                # to the DAC that ran dry (the underflow bit tells the client); the rest goes out at its own time
                self._set_status(TXDAC, STATUS_UNDERFLOW)
                self.stats["tx_underflows"] += 1
                skip = exc.now - exc.at + int(AIR_TX_MARGIN_S * self._clock.rate)
                log.debug("emulated Pluto: TX late on the air (%s); %d samples lost", exc, skip)
                if skip < x.size:
                    try:
                        self.radio.tx(x[skip:], at - self._offset + skip)
                    except LateError:
                        pass
                return
            log.debug("emulated Pluto: TX late (%s); sending at the radio's now", exc)
            self.radio.tx(x, self.radio.time_now())

    def _top_up_generated(self, until: int, dds_until: int | None = None) -> None:
        """Keep what the DAC generates by itself scheduled on the radio: a cyclic buffer up to device time
        ``until``, the DDS up to ``dds_until`` (default ``until``; kept short so that new DDS settings take effect
        soon: what is scheduled on the air stays there)."""
        self._top_up_cyclic(until)
        until = until if dds_until is None else dds_until
        if self.radio is None or self.loopback or not self._dds_active():
            return
        now = self.radio.time_now() + self._offset
        start = now if self._dds_next is None else max(now, self._dds_next)   # never twice on the air
        if start < until:
            rate = float(self.values[(TXDAC, "out_voltage_sampling_frequency")])
            words = dds_words(self.dds, start, until - start, rate)
            self._radio_tx((words * np.float32(self._tx_scale())).astype(np.complex64), start)
            self._dds_next = until

    def _top_up_cyclic(self, until: int) -> None:
        """Schedule repetitions of the cyclic TX buffer on the radio up to device time ``until``."""
        if self._cyclic is None or self.radio is None or self.loopback:
            return
        x = self._cyclic_air
        n = x.size
        now = self.radio.time_now() + self._offset
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
            elif self._wall:   # the DMA starts filling the first kernel buffer now
                self._rx_block = int(samples)
                self._rxq.clear()
                self._rx_left = None
                start = max(self._rf_pos, self._clock.now() - self._guard)
                self.rx_opened_at = start
                self._fill = [start, np.empty(self._rx_block, np.complex64), 0, False]
        return dev

    def close_buffer(self, dev: Device) -> None:
        """Close a buffer; closing the TX buffer stops a cyclic transmission and drops unread loopback data."""
        with self.lock:
            self.open_buffers.pop(dev.id, None)
            if dev.id == TXDAC:
                self._reset_tx()        # the DDS takes over the DAC again
            elif self._wall:
                self._rxq.clear()
                self._rx_left = self._fill = None

    def _reset_tx(self) -> None:
        self._cyclic = self._cyclic_air = None
        self._segments.clear()
        self._segment_samples = 0
        if self._wall:
            self._txq.clear()
            self._tx_stream = None
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
        words = np.frombuffer(data, dtype="<i2")
        if mask & 0b11 == 0b11:       # I and Q (what every Pluto client streams): one conversion, no reshuffle
            dac = words.astype(np.float32).view(np.complex64)
        else:
            iq = np.zeros((words.size // (step // 2), 2), dtype=np.float32)
            iq[:, [i for i in range(2) if mask >> i & 1]] = words.reshape(-1, step // 2)
            dac = iq.view(np.complex64).ravel()
        if dac.size == 0:
            return
        wall_start = self._wall_tx(dac) if self._wall and not cyclic else None
        with self.lock:
            if wall_start is not None:
                start = wall_start
            else:
                start = max(self._tx_next, self.device_now() + self.settings.tx_latency_samples)
                if self._wall:
                    start = self.device_now() + self._tx_latency
                elif not cyclic and start - self.device_now() > self.settings.max_tx_ahead_samples:
                    # nowhere to put it: no wall clock consumes the queue (a TX-only client); drop like a DMA
                    self.stats["tx_dropped_samples"] += dac.size
                    return
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
        if self._dds_active():
            out += dds_words(self.dds, t, n, float(self.values[(TXDAC, "out_voltage_sampling_frequency")]))
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
        if self._wall:
            words = self._wall_read(n)
            with self.lock:
                mode = self.loopback
                self.stats["rx_samples"] += n
        else:
            words, mode = self._read_now(n)
        iq = words.view(np.float32).reshape(-1, 2)
        if mode == 1:
            iq = np.clip(iq, -32768, 32767)
        if mask & 0b11 == 0b11:       # I and Q: one conversion (the words are integers already, within int16)
            return iq.astype("<i2").tobytes()
        return iq[:, [i for i in range(2) if mask >> i & 1]].astype("<i2").tobytes()

    def _read_now(self, n: int) -> tuple[np.ndarray, int]:
        """Without a wall clock: produce the next n RX words now; returns (words, loopback mode)."""
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
        return words, mode

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
        for peer in list(_PEERS.get(self.lock, ())):   # cyclic/DDS transmitters on the same air, this one included
            peer._top_up_generated(start + n)
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
            dev = emu._device(cmd.dev)
            if dev.id in emu.kernel_buffers:     # iio_device_set_kernel_buffers_count: takes effect at the next OPEN
                if not 1 <= cmd.size <= 64:
                    raise CommandError(errno.EINVAL, f"BUFFERS_COUNT {cmd.size}: expected 1..64")
                emu.kernel_buffers[dev.id] = cmd.size
            self._reply(0)
        elif name == "OPEN":
            if self.buffer is not None:
                raise CommandError(errno.EBUSY, "this connection already has an open buffer")
            dev = emu.open_buffer(cmd.dev, cmd.size, cmd.mask, cmd.cyclic)
            self.buffer = (dev, cmd.mask, cmd.cyclic)
            threading.current_thread().name = f"iiod buffer {dev.name}"   # (per-thread CPU: radio.servers.child)
            self.connection.settimeout(emu.settings.idle_timeout_s)   # a stuck client must not hold the buffer
            self._reply(0)
        elif name == "CLOSE":
            dev = emu._device(cmd.dev)
            if self.buffer is None or self.buffer[0].id != dev.id:
                raise CommandError(errno.EBADF, f"no open buffer on {dev.name}")
            emu.close_buffer(dev)
            self.buffer = None
            self.connection.settimeout(None)
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
