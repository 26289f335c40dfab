"""ADALM-PLUTO (AD9363) radio on pyadi-iio's ``adi.Pluto``, with host-side sample-count timing.

The Pluto has no hardware timestamps (capabilities ``timed_tx=False, timed_rx=False``), so this driver keeps the
clock on the host:

* **RX clock.** The driver counts every sample it has fetched from the device since it was opened; consecutive
  ``rx()`` calls read consecutive hardware buffers (``rx_buffer_size`` samples each) and hand out a contiguous
  stream, keeping the unread rest of a buffer for the next call. ``time_now()`` and every ``t0`` are these counts.
* **Timed TX on the host.** ``tx(samples, at)`` writes one continuous, non-cyclic TX stream in fixed-size buffers
  (``tx_buffer_size``): it prepends ``at − max(now, end of the queued stream)`` zeros, where *now* is the RX count,
  and pads the burst's tail with zeros to a whole buffer. A burst therefore leaves the antenna at ``at + L`` in RX-count
  time, where L is the device's TX→RX latency: unknown but constant on real hardware (DMA and FIFO depths), which is
  exactly what sync's timing advance measures and removes; ``radio.args.emulator.tx_latency_samples`` in the
  emulator (0 by default). ``at`` before *now*, or inside a burst still queued, raises :class:`LateError`.

**Streaming** (``radio.args.streaming``; on by default for a real Pluto and the emulator's wall-clock mode): the
clock and TX are run by :class:`radio.drivers.pluto_stream.PlutoStream`: a receive thread keeps fetching RX buffers
into a ring while the host is busy (``time_now()`` keeps tracking the device; overflows become flagged,
zero-filled gaps at their estimated place, never a shifted index), and a TX feeder keeps the DAC fed with zeros so
that TX and RX stay locked: TX stream sample k belongs to RX count ``t0 + k`` and leaves a constant, unknown number
of samples later. That constant is thousands of samples (the RX the kernel had queued when the stream started, the
TX buffers queued ahead, DMA and FIFO depths; ~7,000-13,000 on the emulator at 521 kS/s with 8 + 8 kernel buffers),
far outside a PRACH zone, so at open the driver measures it through the digital loopback and takes it out of every
later burst (:meth:`PlutoRadio.calibrate_tx`, ``radio.args.calibrate_tx``, on by default when streaming with the
loopback off): a burst for ``at`` then leaves at ``at`` plus the analog chain's fixed delay, which timing advance
absorbs. ``tx(samples, at)`` writes the burst into that stream: ``at`` must be at least ``min_lead_samples()``
ahead. A TX underflow (the DAC ran dry: the host was stalled longer than the TX
kernel buffers) is reported in ``tx_lock`` as a lost lock with a new epoch. Set-up order per open: rate, LO, FIR,
gains and loopback are configured once (never per burst), then the kernel buffer count
(``_rxadc.set_kernel_buffers_count``), then the RX buffer, then the first TX push.

**TDD engine** (``radio.args.tdd: true``): Pluto firmware >= 0.39 exposes ADI's TDD core (``iio-axi-tdd-0``,
pyadi-iio's ``adi.tddn``, pyadi-iio >= 0.0.18): frame timing and TX/RX DMA sync channels with an external trigger
(``sync_external``) — the route to trigger-aligned TX/RX across Plutos. The driver enables it with an external
sync; an older firmware (no TDD core) is a RadioError naming the requirement. Not verified on hardware here.

Without streaming (the emulator's default read-driven mode):

Accuracy: sample-exact against the emulator (:mod:`radio.servers.iiod_emulator`: RX is produced as it is read). On hardware
the device keeps filling its kernel RX buffers (libiio's default: 4) while the host is between ``rx()`` calls, so the
RX count can lag the device by up to ``4 · rx_buffer_size`` samples at the moment a TX is pushed — that is the
``timing_accuracy_samples`` this driver reports for hardware (a bound from the buffering model, not a measurement);
calling ``rx()`` steadily and scheduling ``at`` shortly ahead keeps the error small and constant. If the host falls
behind by more than the kernel buffers, samples are dropped (overflow) and the count no longer tracks device time.

Scaling: TX amplitude 1.0 ↔ int16 word ``TX_FULL_SCALE = 2**14`` (pyadi-iio's convention, 6 dB below the DAC's
full scale); RX words are 12-bit, so RX amplitude 1.0 ↔ ``RX_FULL_SCALE = 2**11``. In digital loopback (mode 1) the
RX words are the TX words unchanged (as the emulator returns them), so the driver divides by ``TX_FULL_SCALE`` and
``rx`` returns exactly what ``tx`` sent (up to the int16 rounding).

Install: ``apt install libiio0`` (Debian/Ubuntu; the C library), then ``pip install "pylibiio>=0.25,<1" pyadi-iio``
(or ``pip install otalab[pluto]``). ``adi`` and ``iio`` are imported only when a Pluto is opened.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from radio.base import LateError, Radio, RadioCapabilities, RadioError, TxStatus, as_samples
from radio.drivers.pluto_stream import PlutoStream, usb2_transfer_floor_s
from radio.servers.iiod_emulator import EmulatorSettings, IiodServer, start_emulated_pluto
from radio.servers.pluto_context import RX_FULL_SCALE, TX_FULL_SCALE
from radio.servers.pluto_process import EmulatorProcess

GAIN_CONTROL_MODES = ("manual", "slow_attack", "fast_attack")
INSTALL_HINT = ('PlutoSDR support needs libiio and pyadi-iio: install the C library (Debian/Ubuntu: '
                '"sudo apt install libiio0"), then "pip install \'pylibiio>=0.25,<1\' pyadi-iio" '
                '(or "pip install otalab[pluto]")')
#: how many RX buffers libiio's kernel side queues by default (bounds the host-side timing error on hardware)
KERNEL_RX_BUFFERS = 4


@dataclass
class PlutoArgs:
    """``radio.args`` of driver "pluto" (YAML), validated on construction.

    ``tx_attenuation_db`` None takes ``-radio.tx_gain``; ``rf_bandwidth`` None takes the sample rate. ``emulate``
    true: instead of ``uri``, open an in-process emulated Pluto on the simulated air (``air`` section) with
    ``emulator`` settings (see :class:`radio.servers.iiod_emulator.EmulatorSettings`).
    """

    uri: str = "ip:192.168.2.1"
    rf_bandwidth: float | None = None
    gain_control_mode: Literal["manual", "slow_attack", "fast_attack"] = "manual"
    tx_attenuation_db: float | None = None
    rx_buffer_size: int = 16384
    tx_buffer_size: int = 4096
    tx_cyclic_buffer: bool = False
    loopback: Literal[0, 1, 2] = 0
    kernel_buffers: int = KERNEL_RX_BUFFERS
    tx_kernel_buffers: int | None = None
    streaming: bool | None = None
    ring_samples: int = 1 << 22
    tdd: bool = False
    calibrate_tx: bool | None = None
    emulate: bool = False
    emulator: EmulatorSettings = field(default_factory=EmulatorSettings)

    @property
    def calibrates_tx(self) -> bool:
        """TX offset calibration at open in force: as set, else on whenever streaming with loopback off."""
        return self.streams and self.loopback == 0 if self.calibrate_tx is None else bool(self.calibrate_tx)

    @property
    def streams(self) -> bool:
        """Streaming in force: as set, else on for a real Pluto and for the emulator's wall-clock mode (an emulator
        reached by URI says which in its context attribute ``otalab,emulator_wallclock``)."""
        if self.streaming is not None:
            return bool(self.streaming)
        return not self.emulate or self.emulator.wallclock

    def __post_init__(self):
        if not isinstance(self.uri, str) or ":" not in self.uri:
            raise ValueError(f"uri must be a libiio URI such as 'ip:192.168.2.1' or 'usb:1.2.5', got {self.uri!r}")
        if self.gain_control_mode not in GAIN_CONTROL_MODES:
            raise ValueError(f"gain_control_mode must be one of {GAIN_CONTROL_MODES}, got {self.gain_control_mode!r}")
        if self.tx_attenuation_db is not None and not 0 <= self.tx_attenuation_db <= 89.75:
            raise ValueError(f"tx_attenuation_db must be 0..89.75 dB, got {self.tx_attenuation_db}")
        if self.rf_bandwidth is not None and not 200e3 <= self.rf_bandwidth <= 56e6:
            raise ValueError(f"rf_bandwidth must be 200 kHz..56 MHz, got {self.rf_bandwidth}")
        for name in ("rx_buffer_size", "tx_buffer_size"):
            if not 16 <= getattr(self, name) <= 1 << 24:
                raise ValueError(f"{name} must be 16..16777216 samples, got {getattr(self, name)}")
        if self.loopback not in (0, 1, 2) or isinstance(self.loopback, bool):
            raise ValueError(f"loopback must be 0 (off), 1 (digital) or 2 (RF), got {self.loopback!r}")
        if not 1 <= self.kernel_buffers <= 64:
            raise ValueError(f"kernel_buffers must be 1..64, got {self.kernel_buffers}")
        if self.tx_kernel_buffers is not None and not 1 <= self.tx_kernel_buffers <= 64:
            raise ValueError(f"tx_kernel_buffers must be 1..64 or null (= kernel_buffers), got {self.tx_kernel_buffers}")
        if self.ring_samples < 1 << 16:
            raise ValueError(f"ring_samples must be >= 65536, got {self.ring_samples}")
        if self.calibrate_tx and not self.streams:
            raise ValueError("calibrate_tx needs streaming (the offset it measures is the locked TX stream's)")
        if self.streams and self.tx_cyclic_buffer:
            raise ValueError("tx_cyclic_buffer needs streaming: false (streaming keeps the TX stream fed itself)")


def _dac_words(x: np.ndarray) -> np.ndarray:
    """complex64 amplitudes (1.0 = TX_FULL_SCALE) as the DAC's int16 I/Q words, rounded and clipped, kept complex64."""
    return np.clip(np.rint(x.view(np.float32) * TX_FULL_SCALE), -32768, 32767).view(np.complex64)


def _import_adi():
    """Import pyadi-iio lazily; a missing package or C library becomes a RadioError with the install command."""
    try:
        import adi  # noqa: PLC0415  (heavy, optional)
        import iio  # noqa: PLC0415
    except (ImportError, OSError) as exc:
        raise RadioError(f"{INSTALL_HINT} ({type(exc).__name__}: {exc})") from None
    return adi, iio


_AIR_LOCKS: "weakref.WeakKeyDictionary[object, threading.RLock]" = weakref.WeakKeyDictionary()


def air_lock(air) -> threading.RLock:
    """The one lock that every emulated Pluto on ``air`` must share (the Air is not thread-safe)."""
    lock = _AIR_LOCKS.get(air)
    if lock is None:
        lock = _AIR_LOCKS[air] = threading.RLock()
    return lock


class _Resources:
    """What a PlutoRadio must release, in libiio's order: buffers, then the context; then an owned emulator and the
    air endpoint radio behind it. Every step runs even if an earlier one fails."""

    def __init__(self):
        self.sdr = None
        self.stream: PlutoStream | None = None
        self.tdd = None
        self.server: IiodServer | EmulatorProcess | None = None
        self.rf: Radio | None = None

    def release(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.close()
        self.tdd = None
        sdr, self.sdr = self.sdr, None
        if sdr is not None:
            for step in (sdr.tx_destroy_buffer, sdr.rx_destroy_buffer):
                try:
                    step()
                except Exception:
                    pass
            sdr._ctx = None
        server, self.server = self.server, None
        if server is not None:
            server.close()
        rf, self.rf = self.rf, None
        if rf is not None:
            rf.close()


def find_probe(y: np.ndarray, probe: np.ndarray) -> tuple[int, float]:
    """Where ``probe`` (complex64[m]) starts in ``y`` (complex64[n], n ≥ m) by correlation, and the peak's ratio to
    the largest correlation more than two samples from it. A window with no probe in it (all zeros: the DAC played
    zeros in loopback, measured once in a cell at load ~8) gives ratio 0, never a peak."""
    m = probe.size
    n = 1 << int(np.ceil(np.log2(y.size + m)))
    c = np.abs(np.fft.ifft(np.fft.fft(y, n) * np.conj(np.fft.fft(probe, n))))[:y.size - m + 1]
    i = int(np.argmax(c))
    side = float(np.max(np.concatenate([c[:max(0, i - 2)], c[i + 3:]]))) if c.size > 5 else 0.0
    peak = float(c[i])
    if peak <= 1e-6 * m * float(np.mean(np.abs(probe) ** 2)):     # nothing there (a float FFT of zeros: ~1e-9)
        return i, 0.0
    return i, (peak / side if side > 0 else float("inf"))


class PlutoRadio(Radio):
    """A PlutoSDR through libiio (real, or the emulator), with a host-side sample-count clock (module docstring).

    ``sample_rate`` (S/s), ``center_freq`` (Hz, both LOs), ``tx_gain`` (dB, the TX hardwaregain: 0 or negative, i.e.
    minus the attenuation), ``rx_gain`` (dB, the manual RX hardwaregain). ``uri`` overrides ``args.uri``.
    """

    driver = "pluto"

    def __init__(self, args: PlutoArgs | None = None, *, sample_rate: float = 2e6, center_freq: float = 2.4e9,
                 tx_gain: float = -10.0, rx_gain: float = 30.0, uri: str | None = None):
        self.args = args = args or PlutoArgs()
        self.uri = uri or args.uri
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, self._res.release)   # also at interpreter exit: libiio order
        self._loopback = 0
        adi, iio = _import_adi()
        try:
            ctx = iio.Context(self.uri)
        except Exception as exc:  # libiio raises OSError with errno, or plain Exception for bad URIs
            raise RadioError(f"could not open PlutoSDR at uri {self.uri!r}: {exc} (is it plugged in and "
                             f"reachable? a USB Pluto is usually ip:192.168.2.1; see `iio_info -s`)") from None
        try:
            self._sdr = adi.Pluto(uri_ctx=ctx)
        except Exception as exc:
            raise RadioError(f"the device at uri {self.uri!r} is not a PlutoSDR (no ad9361-phy / cf-ad9361-lpc "
                             f"devices): {exc}") from None
        self._rx_next = 0                      # sample time of the next sample rx() hands out
        self._hw_next = 0                      # samples fetched from the device so far (the clock)
        self._pending = np.zeros(0, np.complex64)   # fetched but not yet handed out: times [_hw_next-len, _hw_next)
        self._tx_end = 0                       # end (RX-count time) of the queued TX stream
        self._rx_started = False               # streaming: rx(at=None) has been called
        self._tx_offset = 0                    # streaming: measured TX stream -> RX count offset (calibrate_tx)
        self.tx_calibration: dict | None = None
        self._cal_lock = threading.Lock()      # tx waits while the offset is being measured again
        self._deaf: list[list[int]] = []       # [start, end) RX counts heard in digital loopback (recalibrations)
        #: calibrations after a TX slip: {"epoch", "old_offset", "offset", "deaf": [start, end)}
        self.tx_recalibrations: list[dict] = []
        try:
            self._sdr.rx_enabled_channels = [0]
            self._sdr.tx_enabled_channels = [0]
            self._sdr.rx_buffer_size = args.rx_buffer_size
            self.sample_rate = sample_rate
            self.center_freq = center_freq
            self.rf_bandwidth = args.rf_bandwidth if args.rf_bandwidth is not None else \
                min(max(sample_rate, 200e3), 56e6)
            self.gain_control_mode = args.gain_control_mode
            if args.gain_control_mode == "manual":
                self.rx_gain = rx_gain
            self.tx_gain = -args.tx_attenuation_db if args.tx_attenuation_db is not None else tx_gain
            self.loopback = args.loopback
            self._sdr.tx_cyclic_buffer = bool(args.tx_cyclic_buffer)
            self._sdr._rxadc.set_kernel_buffers_count(int(args.kernel_buffers))
            self._sdr._txdac.set_kernel_buffers_count(int(args.tx_kernel_buffers or args.kernel_buffers))
            if args.tdd:
                self._open_tdd(ctx)
            wall = ctx.attrs.get("otalab,emulator_wallclock")   # an otalab emulator says whether it has a clock
            streams = args.streams if args.streaming is not None or wall is None else wall == "1"
            if streams:   # the RX buffer first, then the TX stream (PlutoStream)
                # a real Pluto's RX buffers cross its USB 2.0 port (an emulator's, a local socket; on the device
                # itself, none): no arrival stamp is earlier than that transfer after the buffer was complete
                usb = wall is None and ctx.name != "local"
                self._res.stream = PlutoStream(self._sdr, self.sample_rate, self._to_amplitude, args.tx_buffer_size,
                                               args.kernel_buffers, args.ring_samples,
                                               tx_kernel_buffers=args.tx_kernel_buffers or args.kernel_buffers,
                                               link_floor_s=usb2_transfer_floor_s(args.rx_buffer_size) if usb else 0.0)
                if args.calibrates_tx:
                    self.calibrate_tx()
        except Exception:
            self.close()
            raise

    def _open_tdd(self, ctx) -> None:
        """ADI's TDD engine (module docstring); needs Pluto firmware >= 0.39."""
        if ctx.find_device("iio-axi-tdd-0") is None:
            raise RadioError(f"PlutoSDR at {self.uri!r}: radio.args.tdd needs the TDD engine (device "
                             f"iio-axi-tdd-0) of Pluto firmware >= 0.39 with pyadi-iio >= 0.0.18 (adi.tddn); this "
                             f"device's firmware ({ctx.attrs.get('fw_version', 'unknown')}) has none: update it "
                             f"or set tdd: false")
        adi, _ = _import_adi()
        tdd = adi.tddn(self.uri)
        tdd.sync_external = True    # TX/RX DMA start on the external trigger
        tdd.enable = True
        self._res.tdd = tdd

    # ------------------------------------------------------------------------------------------- construction
    @classmethod
    def emulated(cls, rf: Radio | None, args: PlutoArgs | None = None, *, lock: threading.RLock | None = None,
                 port: int = 0, process: bool = False, **kwargs) -> "PlutoRadio":
        """Start an in-process emulated Pluto whose RF side is ``rf`` (e.g. a LoopbackRadio) on ``port`` (0: a free
        one; ``args.emulator.port`` is for ``otalab emulate`` only) and connect to it; ``close()`` stops both.

        ``kwargs`` are the constructor's (sample_rate, center_freq, tx_gain, rx_gain). Emulators whose ``rf``
        radios share one Air must share ``lock`` (see :func:`air_lock`). ``process`` true: the emulator runs in a
        process of its own (:class:`radio.servers.pluto_process.EmulatorProcess`; ``rf`` must be None: loopback
        modes and DDS only, or the ZeroMQ air when ``args.emulator.air`` is "zmq"), as a real Pluto is a device of
        its own: its DMA threads then never take the client's GIL, and a late push is the client's lateness alone
        (:attr:`emulator_process` reaches it).
        """
        args = args or PlutoArgs(emulate=True)
        if process:
            if rf is not None:
                raise ValueError("PlutoRadio.emulated(process=True) needs rf=None: an RF side on an in-process air "
                                 "cannot cross into the emulator's process (for an air across processes set "
                                 "args.emulator.air='zmq' and its address)")
            proc = EmulatorProcess(replace(args.emulator, port=port))   # (emulator.port: `otalab emulate` only)
            try:
                rf_rate, rate = proc.rf_rates[0], kwargs.get("sample_rate")
                if rf_rate is not None and rate is not None and abs(rf_rate - rate) > 1e-6 * rf_rate:
                    raise RadioError(f"emulated Pluto {args.emulator.endpoint!r}: radio.sample_rate = {rate:g} S/s "
                                     f"but its air (the ZeroMQ broker at {args.emulator.address}) runs at "
                                     f"{rf_rate:g} S/s: set the same rate for both")
                radio = cls(replace(args, uri=proc.uri), uri=proc.uri, **kwargs)
            except Exception:
                proc.close()
                raise
            radio._server = proc
            return radio
        server, uri = start_emulated_pluto(rf, port, host=args.emulator.host, settings=args.emulator, lock=lock)
        try:
            radio = cls(replace(args, uri=uri), uri=uri, **kwargs)
        except Exception:
            server.close()
            raise
        radio._server = server
        return radio

    @classmethod
    def from_config(cls, section, args: PlutoArgs, air=None, endpoint: str | None = None,
                    uri: str | None = None) -> "PlutoRadio":
        """Open from a config's ``radio`` section (:class:`lab.config.RadioSection`) and its PlutoArgs.

        ``args.emulate`` false: connect to ``uri`` (default ``args.uri``; a link of two real Plutos passes each its
        own). True: put an emulated Pluto on ``air`` (a :class:`radio.sim.air.Air`) at endpoint ``endpoint`` (default
        ``args.emulator.endpoint``; give each radio of a link its own) on a free local port, and connect to it through
        libiio; with ``args.emulator.air`` "zmq" the emulator runs in a process of its own as endpoint ``endpoint``
        on the ZeroMQ broker at ``args.emulator.address`` (``air`` is not used)."""
        kwargs = dict(sample_rate=section.sample_rate, center_freq=section.center_freq, tx_gain=section.tx_gain,
                      rx_gain=section.rx_gain)
        if not args.emulate:
            return cls(args, uri=uri, **kwargs)
        if args.emulator.air == "zmq":   # an endpoint on the ZeroMQ air, the emulator in a process of its own
            name = endpoint or args.emulator.endpoint
            return cls.emulated(None, replace(args, emulator=replace(args.emulator, endpoint=name)), process=True,
                                **kwargs)
        if air is None:
            raise RadioError("radio.args.emulate is true but no simulated air was given to put the emulated Pluto on")
        from radio.drivers.loopback import LoopbackRadio  # noqa: PLC0415  (only the emulated path needs the air)
        with air_lock(air):
            name = endpoint or args.emulator.endpoint
            rf = LoopbackRadio(air, name)   # adds the endpoint (with the air's noise) if needed
        args = replace(args, emulator=replace(args.emulator, endpoint=name))
        try:
            radio = cls.emulated(rf, args, lock=air_lock(air), **kwargs)
        except Exception:
            rf.close()
            raise
        radio._owned_rf = rf
        return radio

    # ------------------------------------------------------------------------------------------------ settings
    def _get(self, name: str):
        try:
            return getattr(self._sdr, name)
        except Exception as exc:
            raise RadioError(f"PlutoSDR at {self.uri!r}: reading {name} failed: {exc}") from None

    def _set(self, name: str, value, expected: str) -> None:
        try:
            setattr(self._sdr, name, value)
        except Exception as exc:
            raise RadioError(f"PlutoSDR at {self.uri!r}: setting {name} = {value!r} failed ({exc}); "
                             f"expected {expected}") from None

    @property
    def sample_rate(self) -> float:
        """Baseband sample rate (S/s) of RX and TX."""
        return float(self._get("sample_rate"))

    @sample_rate.setter
    def sample_rate(self, value: float) -> None:
        if not 521e3 <= value <= 61.44e6:
            raise ValueError(f"sample_rate must be 521 kS/s..61.44 MS/s for a PlutoSDR, got {value}")
        self._set("sample_rate", int(round(value)), "521e3..61.44e6 S/s")

    @property
    def center_freq(self) -> float:
        """Carrier frequency (Hz): the RX LO (the setter tunes both LOs)."""
        return self.rx_lo

    @center_freq.setter
    def center_freq(self, value: float) -> None:
        self.rx_lo = value
        self.tx_lo = value

    @property
    def rx_lo(self) -> float:
        """RX local oscillator (Hz)."""
        return float(self._get("rx_lo"))

    @rx_lo.setter
    def rx_lo(self, value: float) -> None:
        self._set("rx_lo", int(round(value)), "70 MHz..6 GHz (325 MHz..3.8 GHz on a stock AD9363)")

    @property
    def tx_lo(self) -> float:
        """TX local oscillator (Hz)."""
        return float(self._get("tx_lo"))

    @tx_lo.setter
    def tx_lo(self, value: float) -> None:
        self._set("tx_lo", int(round(value)), "70 MHz..6 GHz (325 MHz..3.8 GHz on a stock AD9363)")

    @property
    def rf_bandwidth(self) -> float:
        """Analog filter bandwidth (Hz) of the RX path (the setter sets RX and TX)."""
        return float(self._get("rx_rf_bandwidth"))

    @rf_bandwidth.setter
    def rf_bandwidth(self, value: float) -> None:
        self._set("rx_rf_bandwidth", int(round(value)), "200 kHz..56 MHz")
        self._set("tx_rf_bandwidth", int(round(min(value, 40e6))), "200 kHz..40 MHz")

    @property
    def gain_control_mode(self) -> str:
        """RX AGC mode: "manual", "slow_attack" or "fast_attack"."""
        return str(self._get("gain_control_mode_chan0"))

    @gain_control_mode.setter
    def gain_control_mode(self, value: str) -> None:
        if value not in GAIN_CONTROL_MODES:
            raise ValueError(f"gain_control_mode must be one of {GAIN_CONTROL_MODES}, got {value!r}")
        self._set("gain_control_mode_chan0", value, f"one of {GAIN_CONTROL_MODES}")

    @property
    def rx_gain(self) -> float:
        """RX hardware gain (dB); settable in manual gain control mode only."""
        return float(self._get("rx_hardwaregain_chan0"))

    @rx_gain.setter
    def rx_gain(self, value: float) -> None:
        if self.gain_control_mode != "manual":
            raise RadioError(f"PlutoSDR at {self.uri!r}: rx_gain = {value} needs gain_control_mode 'manual' "
                             f"(it is {self.gain_control_mode!r})")
        self._set("rx_hardwaregain_chan0", float(value), "-1..73 dB")

    @property
    def tx_gain(self) -> float:
        """TX hardware gain (dB): 0 or negative, i.e. minus the TX attenuation."""
        return float(self._get("tx_hardwaregain_chan0"))

    @tx_gain.setter
    def tx_gain(self, value: float) -> None:
        if not -89.75 <= value <= 0:
            raise ValueError(f"tx_gain (TX hardwaregain) must be -89.75..0 dB, got {value}")
        self._set("tx_hardwaregain_chan0", float(value), "-89.75..0 dB")

    @property
    def tx_attenuation_db(self) -> float:
        """TX attenuation (dB, 0..89.75) = ``-tx_gain``."""
        return -self.tx_gain

    @tx_attenuation_db.setter
    def tx_attenuation_db(self, value: float) -> None:
        self.tx_gain = -value

    @property
    def rx_buffer_size(self) -> int:
        """Samples per hardware RX buffer (a new size takes effect with a new buffer)."""
        return int(self._sdr.rx_buffer_size)

    @rx_buffer_size.setter
    def rx_buffer_size(self, value: int) -> None:
        if self._stream is not None:
            raise RadioError("rx_buffer_size cannot change while streaming: set radio.args.rx_buffer_size")
        if not 16 <= value <= 1 << 24:
            raise ValueError(f"rx_buffer_size must be 16..16777216 samples, got {value}")
        if value != self._sdr.rx_buffer_size:
            self._sdr.rx_destroy_buffer()
            self._sdr.rx_buffer_size = int(value)

    @property
    def tx_cyclic_buffer(self) -> bool:
        """True: ``tx()`` replaces the transmission with ``samples`` repeated forever (until :meth:`stop_tx`)."""
        return bool(self._sdr.tx_cyclic_buffer)

    @tx_cyclic_buffer.setter
    def tx_cyclic_buffer(self, value: bool) -> None:
        self.stop_tx()
        self._sdr.tx_cyclic_buffer = bool(value)

    @property
    def loopback(self) -> int:
        """AD9361 loopback: 0 off, 1 digital (TX words → RX), 2 RF (inside the chip)."""
        return int(self._get("loopback"))

    @loopback.setter
    def loopback(self, value: int) -> None:
        if value not in (0, 1, 2) or isinstance(value, bool):
            raise ValueError(f"loopback must be 0 (off), 1 (digital) or 2 (RF), got {value!r}")
        self._set("loopback", int(value), "0, 1 or 2")
        self._loopback = int(value)

    @property
    def emulator(self):
        """The in-process :class:`radio.servers.iiod_emulator.PlutoEmulator` behind this radio (its ``stats`` count TX/RX
        samples, late TX and cyclic gaps), or None for a real device."""
        return self._server.emulator if isinstance(self._server, IiodServer) else None

    @property
    def emulator_process(self) -> EmulatorProcess | None:
        """The emulator's own process, when opened with ``emulated(process=True)`` (its ``state()`` has the device's
        clock and counters)."""
        return self._server if isinstance(self._server, EmulatorProcess) else None

    @property
    def tx_lock(self) -> dict:
        """How TX is locked to RX (streaming): ``locked``, ``epoch`` (bumped at every slip), ``since`` (RX count),
        ``how``; without streaming: ``{"locked": False, "how": "no continuous TX stream"}``."""
        if self._stream is None:
            return {"locked": False, "epoch": 0, "how": "no continuous TX stream (streaming: false)"}
        return dict(self._stream.lock)

    @property
    def gaps(self) -> list[tuple[int, int]]:
        """RX gaps (first missing RX count, length) placed after overflows (streaming), oldest first."""
        return list(self._stream.gaps) if self._stream is not None else []

    def rx_arrivals(self) -> tuple[list[tuple[int, float]], float] | None:
        """Streaming: when each libiio refill returned its block (less a real Pluto's USB transfer floor), and the
        shortest refill, which the node reports only (:meth:`radio.drivers.pluto_stream.PlutoStream.arrivals`); None
        otherwise."""
        return self._stream.arrivals() if self._stream is not None else None

    def rx_gaps(self) -> list[tuple[int, int]]:
        """:attr:`gaps` as ``[start, end)`` intervals (the contract's :meth:`radio.base.Radio.rx_gaps`), and the
        intervals a recalibration heard the digital loopback instead of the air (:meth:`_recalibrate_after_slip`)."""
        return sorted([(s, s + n) for s, n in self.gaps] + [(a, b) for a, b in self._deaf])

    def _recalibrate_after_slip(self) -> None:
        """A calibrated stream whose TX slipped (a new lock epoch: its DAC ran dry, or an RX gap's estimate moved
        the RX count) plays every later burst at another offset, by up to the dry time (measured: thousands to a
        hundred thousand samples), and nothing on the host can tell it to the sample. So once the stream is locked
        again, the next ``tx`` measures the offset again (:meth:`calibrate_tx`), as at open. Meanwhile the radio
        hears its own TX (digital loopback): that interval, from the RX count when it began to the count when it
        ended plus the kernel's RX queue (what was captured before the switch back but fetched after), is reported
        as lost in :meth:`rx_gaps`; a node flags it."""
        cal = self.tx_calibration
        lock = self._stream.lock
        if cal is None or not self.args.calibrates_tx or not lock["locked"] or lock["epoch"] == cal["lock_epoch"]:
            return
        old, epoch = cal["offset_samples"], lock["epoch"]
        deaf = [self._stream.end, 1 << 62]                # open until the loopback is off again
        self._deaf.append(deaf)
        try:
            self.calibrate_tx()
        finally:
            deaf[1] = self._stream.end + int(self.args.kernel_buffers) * int(self.args.rx_buffer_size)
        self.tx_recalibrations.append({"epoch": epoch, "old_offset": old,
                                       "offset": self.tx_calibration["offset_samples"], "deaf": list(deaf)})

    def timing_state(self) -> dict | None:
        """Streaming: the TX lock (epoch, since), the TX offset calibration (and the epoch it was measured in), the
        RX gaps and the stream's counters (underflows, overflows, bursts dropped); None otherwise."""
        if self._stream is None:
            return None
        out = {"tx_lock": dict(self._stream.lock), "tx_calibration": self.tx_calibration,
               "tx_recalibrations": self.tx_recalibrations[-8:],
               "rx_gaps": [list(g) for g in self._stream.gaps][-8:], "stream": dict(self._stream.stats)}
        if self.emulator_process is not None:     # the emulated device's own account of its DAC running dry
            st = self.emulator_process.state()
            out["emulator"] = {"tx_slips": st["tx_slips"][-16:], "tx_slip_count": len(st["tx_slips"]),
                               "stats": st["stats"]}
        return out

    def tx_status(self, at: int, timeout_s: float = 0.0) -> TxStatus:
        """Streaming: "on_time" once the burst is in the TX stream and no slip was reported since it was scheduled
        (it left at the lock's constant offset), "underflow" if the stream slipped; otherwise "unknown"."""
        if self._stream is None:
            return super().tx_status(at, timeout_s)
        pos = int(at) - self._tx_offset
        state, detail = self._stream.status(pos, timeout_s)
        return TxStatus(int(at), state, detail, self._stream.epoch_of(pos) if state == "on_time" else None)

    def min_lead_samples(self) -> int:
        """How far ahead of ``time_now()`` a burst must be scheduled (streaming: the TX buffers queued ahead plus the
        calibrated TX offset; 0 otherwise)."""
        return self._stream.min_lead() + self._tx_offset if self._stream is not None else 0

    def calibrate_tx(self, attempts: int = 3, probe_samples: int = 2048) -> dict:
        """Measure the locked TX stream's constant offset against the RX count through the AD9361's digital
        loopback, and take it out of every later ``tx``: afterwards a burst for ``at`` is received at ``at`` by this
        Pluto's own RX in digital loopback, and it leaves the antenna at ``at`` plus only the analog chain's fixed
        delay (tens of samples at most).

        Why: TX stream sample k is labelled RX count ``t0 + k`` when the feeder starts, but the DAC plays it later,
        by the RX samples the kernel had already queued plus the TX buffers queued ahead plus the DMA/FIFO depths:
        thousands of samples (measured on the emulator: ~10,000 at 521 kS/s with 8 + 8 kernel buffers), constant
        while the lock holds, unknown, and different at every open. Timing advance absorbs a constant, but random
        access cannot find a preamble that far outside its guard. The digital loopback (debug attribute
        ``loopback`` = 1) returns the TX words through the same DMA pipelines without the air; the switch takes
        effect for what the DAC plays next, so the probe is scheduled one TX queue ahead, found by correlation in
        RX, and the loopback is switched off again (the radio hears the air again ~lead later).

        A probe whose RX saw a gap, or a TX slip, or no clear peak, is retried (``attempts``); then RadioError. Sets
        and returns :attr:`tx_calibration` (offset, epoch, peak-to-sidelobe ratio, attempts)."""
        if self._stream is None:
            raise RadioError("calibrate_tx needs streaming (radio.args.streaming): without it TX is not locked to RX")
        # the constant exists only once the feeder has filled the DAC's queue: while it starts, the DAC may run dry
        # once (the stream does not count that as a slip), which moves the offset. Measured before that, under a
        # busy host's start-up (a whole cell opening at once), the offset was wrong by a constant of its own per
        # device (38,287 and 97,142 samples in one run); so wait for the lock to be primed
        deadline = time.monotonic() + 10.0
        while not self._stream.lock.get("primed"):
            if time.monotonic() > deadline or self._stream.error is not None:
                raise RadioError(f"PlutoSDR at {self.uri!r}: the TX stream did not settle within 10 s "
                                 f"({self._stream.error or 'not primed'}): its offset cannot be calibrated")
            time.sleep(0.01)
        rng = np.random.default_rng(0x9A1)   # a fixed random-phase probe: flat spectrum, sharp autocorrelation
        probe = (0.5 * np.exp(2j * np.pi * rng.random(probe_samples))).astype(np.complex64)
        old, self._tx_offset = self._tx_offset, 0
        mode, tried = self._loopback, []
        try:
            self.loopback = 1
            for attempt in range(1, attempts + 1):
                lead = self._stream.min_lead()
                at = self._stream.end + 2 * lead
                epoch = self._stream.lock["epoch"]
                # the offset is below what was queued when it was labelled; after a slip's realignment it may be
                # negative (the stream was put ahead of where the DAC resumed): look on both sides
                back = 2 * lead if self.tx_calibration is not None else 0
                window = back + 4 * lead + probe_samples
                self._stream.schedule(_dac_words(probe), at)
                y, _ = self._stream.read(window, at - back,
                                         timeout=window / self.sample_rate + 2.0 + lead / self.sample_rate)
                i, psr = find_probe(y, probe)
                k = i - back
                gap = any(s < at - back + window and s + g > at - back for s, g in self._stream.gaps)
                slipped = self._stream.lock["epoch"] != epoch
                tried.append({"offset": k, "peak_to_sidelobe": round(psr, 2), "gap": gap, "slip": slipped})
                if psr >= 8.0 and not gap and not slipped:
                    self._tx_offset = k
                    self.tx_calibration = {"offset_samples": k, "lock_epoch": epoch, "primed": True,
                                           "peak_to_sidelobe": psr,
                                           "attempts": attempt, "how": "digital loopback probe"}
                    return self.tx_calibration
            raise RadioError(f"PlutoSDR at {self.uri!r}: TX offset calibration failed in {attempts} attempts "
                             f"(digital loopback probe: {tried}); the TX stream's offset against RX is unknown")
        except Exception:
            self._tx_offset = old
            raise
        finally:
            self.loopback = mode

    @property
    def capabilities(self) -> RadioCapabilities:
        if self._stream is not None:   # locked TX: a constant offset (absorbed by timing advance), no jitter
            accuracy = 0.0
        else:   # TX is timed by the count of RX samples this host fetched: off by what it has not fetched yet, up to
            # the kernel's RX buffers — emulated or not (the emulator moves the air as a Pluto's DMA does)
            accuracy = float(KERNEL_RX_BUFFERS * self.args.rx_buffer_size)
        return RadioCapabilities(timed_tx=False, timed_rx=False, full_duplex=True,
                                 simulated=self._server is not None, timing_accuracy_samples=accuracy,
                                 wall_clock=self._stream is not None)

    @property
    def thread_safe(self) -> bool:
        """Streaming: rx and tx only touch the ring and the TX schedule (under their lock)."""
        return self._stream is not None

    def settings(self) -> dict:
        s = super().settings()
        s.update(uri=self.uri, rf_bandwidth=self.rf_bandwidth, gain_control_mode=self.gain_control_mode,
                 loopback=self.loopback, rx_buffer_size=self.rx_buffer_size, tx_buffer_size=self.args.tx_buffer_size,
                 tx_cyclic_buffer=self.tx_cyclic_buffer, emulated=self._server is not None,
                 streaming=self._stream is not None, kernel_buffers=self.args.kernel_buffers)
        if self._stream is not None:
            s.update(tx_locked=self._stream.lock["locked"], tx_lock_epoch=self._stream.lock["epoch"],
                     tx_calibration=self.tx_calibration,
                     **{f"stream_{k}": v for k, v in self._stream.stats.items()})
        return s

    # --------------------------------------------------------------------------------------------- streaming
    def time_now(self) -> int:
        """Samples fetched from the device since the radio was opened (the host-side clock; streaming: kept up to
        date by the receive thread)."""
        return self._stream.end if self._stream is not None else self._hw_next

    def _to_amplitude(self, raw) -> np.ndarray:
        scale = TX_FULL_SCALE if self._loopback == 1 else RX_FULL_SCALE
        return (np.asarray(raw) / scale).astype(np.complex64)

    def _fetch(self) -> np.ndarray:
        """One hardware RX buffer as complex64 full-scale amplitudes."""
        try:
            raw = self._sdr.rx()
        except Exception as exc:
            raise RadioError(f"PlutoSDR at {self.uri!r}: RX buffer refill failed: {exc}") from None
        return self._to_amplitude(raw)

    def rx(self, n: int, at: int | None = None) -> tuple[np.ndarray, int]:
        """Receive ``n`` samples (complex64 [n]) starting at ``at`` (None: where the last rx ended); returns
        (samples, t0). Samples before the current stream position are gone (LateError)."""
        if n < 0:
            raise ValueError(f"rx: n must be >= 0 samples, got {n}")
        if self._stream is not None:
            if at is not None:
                start = int(at)
            else:   # continuing: from where the last read ended, or the oldest sample still held (a visible jump)
                start = self._rx_next if self._rx_started else self._stream.end
            timeout = max(0.0, (start + n - self._stream.end) / self.sample_rate) + 2.0
            out, start = self._stream.read(int(n), start, timeout, clamp=at is None)
            self._rx_next, self._rx_started = start + n, True
            return out, start
        start = self._rx_next if at is None else int(at)
        have_from = self._hw_next - self._pending.size
        if start < have_from:
            raise LateError("PlutoSDR rx", start, have_from)
        chunks, chunk_t0 = [self._pending], have_from
        end = self._hw_next
        while end < start + n:
            buf = self._fetch()
            if end + buf.size <= start:       # skipping ahead: drop whole buffers
                chunks, chunk_t0 = [], end + buf.size
            else:
                chunks.append(buf)
            end += buf.size
            self._hw_next = end
        data = np.concatenate(chunks) if len(chunks) != 1 else chunks[0]
        off = start - chunk_t0
        out = data[off:off + n].copy()
        self._pending = data[off + n:]
        self._rx_next = start + n
        return out, start

    def tx(self, samples: np.ndarray, at: int | None = None) -> int:
        """Transmit complex64 [N] (|amplitude| ≤ 1) at RX-count time ``at`` (None: as soon as the queued stream
        allows); returns the start time. In cyclic mode ``samples`` repeat until :meth:`stop_tx` (``at`` must be
        None)."""
        x = as_samples(samples)
        words = _dac_words(x)
        if self._stream is not None:   # the TX stream position is the RX count less the calibrated offset
            with self._cal_lock:
                self._recalibrate_after_slip()
                c = self._tx_offset
                pos = self._stream.end + self._stream.min_lead() if at is None else int(at) - c
                try:
                    return (self._stream.schedule(words, pos) if x.size else pos) + c
                except LateError as exc:
                    raise LateError("PlutoSDR tx (the TX stream is pushed ahead; schedule at least "
                                    "min_lead_samples() ahead of time_now)", exc.at + c, exc.now + c) from None
        if self._sdr.tx_cyclic_buffer:
            if at is not None:
                raise ValueError("tx: timed transmission (at=...) needs tx_cyclic_buffer=False")
            if x.size == 0:
                raise ValueError("tx: a cyclic buffer needs at least one sample")
            self.stop_tx()
            self._push(words)
            return self._hw_next
        ref = max(self._hw_next, self._tx_end)
        start = ref if at is None else int(at)
        if start < ref:
            what = "PlutoSDR tx" if start < self._hw_next else \
                f"PlutoSDR tx (the queued transmission runs until sample {self._tx_end})"
            raise LateError(what, start, ref)
        if x.size == 0:
            return start
        size = self.args.tx_buffer_size
        total = start - ref + x.size
        stream = np.zeros(-(-total // size) * size, dtype=np.complex64)
        stream[start - ref:total] = words
        for chunk in stream.reshape(-1, size):
            self._push(chunk)
        self._tx_end = ref + stream.size
        return start

    def _push(self, words: np.ndarray) -> None:
        try:
            self._sdr.tx(words)
        except Exception as exc:
            raise RadioError(f"PlutoSDR at {self.uri!r}: TX buffer push failed: {exc}") from None

    def stop_tx(self) -> None:
        """Stop transmitting: destroys the TX buffer (ends a cyclic transmission); streaming: drops the bursts not
        yet pushed (the TX stream itself goes on, with zeros)."""
        if self._stream is not None:
            self._stream.cancel()
            return
        if self._sdr is not None:
            self._sdr.tx_destroy_buffer()
        self._tx_end = self._hw_next

    def close(self) -> None:
        """Destroy the buffers, close the context and stop an owned emulator. Idempotent."""
        self._finalizer()

    # the device objects live in a holder that a finalizer can release without a reference to the radio
    _sdr = property(lambda self: self._res.sdr, lambda self, v: setattr(self._res, "sdr", v))
    _stream = property(lambda self: self._res.stream)
    _server = property(lambda self: self._res.server, lambda self, v: setattr(self._res, "server", v))
    _owned_rf = property(lambda self: self._res.rf, lambda self, v: setattr(self._res, "rf", v))

    def __repr__(self) -> str:
        if self._sdr is None:
            return f"PlutoRadio(uri={self.uri!r}, closed)"
        return super().__repr__()
