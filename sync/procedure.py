"""The synchronization procedure for over-the-air computation, run over any set of radios.

One parameter server (PS) and K devices, each behind a :class:`radio.base.Radio` with its own clock. The PS's clock is
the reference; every schedule below is in PS sample time, and devices convert it to their clocks with their beacon
tracker. The procedure, in the order it runs::

    access   beacon × B → PRACH slot → RAR (TA, msg3 slot) → msg3 (device IDs) → msg4 (contention resolution, cover
             code) … repeated with random backoff for devices that were not resolved, up to max_access_attempts
    round r  beacon → [uplink pilots (code-multiplexed) → feedback (CSI, alpha, TA update)] every pilot_period
             rounds → data: all active devices send alpha·x_k/H_k at once, the PS receives alpha·Σ x_k + noise

Single-threaded: each phase schedules every transmission first, then the PS reads the phase's samples (which moves the
simulated air), then every device reads what it has received up to now. Phases are separated by a guard of the largest
round trip plus the delay spread, so nobody's late signal spills into the next phase. This runs unchanged on the
in-process air and on ZeroMQ endpoints; on hardware each node would run its half in its own process.

Air time and transmitted samples are booked per phase kind (beacon, prach, rar, msg3, msg4, pilots, feedback, data,
guard) so that experiments can report what synchronization costs.
"""

from __future__ import annotations

import math
import struct
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from phy.frame import FrameBuilder
from phy.ofdm import OfdmConfig, grid_to_time, time_to_grid
from phy.receiver import Receiver, RxFrame
from radio.base import LateError, Radio
from sync.beacon import BeaconSource, BeaconTracker
from sync.config import SyncConfig
from sync.precomp import cfo_precompensate, fractional_delay, regularized_inverse, truncated_inversion
from sync.prach import PrachConfig, PrachDetector, PrachWaveform, delay_crlb_samples
from sync.timing_advance import (TimingAdvanceCommand, TimingAdvanceLoop, quantize_ta, ta_step_samples)
from sync.uplink import UplinkEstimator, decode_feedback, delay_basis, encode_feedback

_RAR = struct.Struct("<HhHB")     # preamble index, TA steps, msg3 slot, flags (1 = collision)
_MSG3 = struct.Struct("<4sHH")    # magic, device id, preamble index
_MSG4 = struct.Struct("<HH")      # device id, cover code
_MAGIC = {b"OTAR": "rar", b"OTA3": "msg3", b"OTA4": "msg4", b"OTAF": "feedback"}


def _control(kind: str, body: bytes) -> bytes:
    magic = {v: k for k, v in _MAGIC.items()}[kind]
    return magic + body


def _parse_control(payload: bytes | None) -> tuple[str, bytes] | None:
    if payload is None or len(payload) < 4 or payload[:4] not in _MAGIC:
        return None
    return _MAGIC[payload[:4]], payload[4:]


@dataclass
class DeviceNode:
    """A device's state. ``answers`` False: it never transmits (a dead or deaf device); ``alive_until_round``: it
    drops out from that round on."""

    index: int
    radio: Radio
    preamble: int
    answers: bool = True
    alive_until_round: int | None = None
    state: str = "searching"          # searching → synced → connected (or failed)
    attempts: int = 0
    backoff: int = 0
    code: int | None = None           # pilot cover code assigned by msg4
    pending_ta: float | None = None   # TA from the RAR, applied once msg4 resolves the contention
    msg3_slot: int | None = None
    csi: np.ndarray | None = None     # complex64[n_used] uplink channel from the PS's feedback
    csi_round: int = -1               # the round that feedback belongs to
    csi_error_var: float = 0.0        # its estimation-error variance (for the regularized inverse)
    ta_refined: bool = False          # a closed-loop TA update followed its random access
    alpha: float = 0.0
    active: bool = False
    excluded: str | None = None
    last_tx_local: float | None = None  # device-clock time of the slot start of its last transmission
    prach_local: float | None = None    # device-clock time of its last PRACH transmission, and its PS slot
    prach_slot: int | None = None
    cursor: int | None = None
    tracker: BeaconTracker | None = None
    ta: TimingAdvanceLoop | None = None
    receiver: Receiver | None = None
    buf: np.ndarray = field(default_factory=lambda: np.zeros(0, np.complex64))
    buf_t0: int = 0


@dataclass
class RoundResult:
    """One over-the-air sum: the PS's estimate of Σ_k x_k over the active devices, what it should have been, and who
    took part. ``slot`` is the PS time of the data slot; ``tx_local`` maps device → device-clock slot start used."""

    estimate: np.ndarray
    truth: np.ndarray
    noise_var: float
    alpha: float
    active: list[int]
    excluded: dict[int, str]
    slot: int
    tx_local: dict[int, float]
    pilot_delay: dict[int, float]


class SyncSession:
    """Runs the procedure (module docstring) for one PS radio and K device radios.

    ``timing_advance`` False: devices never apply TA (for the comparison run); ``cfo_precomp`` False: no uplink CFO
    pre-rotation. ``n_pilot_symbols``: code-multiplexed pilot symbols per refresh (≥ K). ``data_symbols``: OFDM
    symbols per round. ``rng``: backoff and preamble draws.
    """

    def __init__(self, ps: Radio, devices: list[Radio], ofdm: OfdmConfig, cfg: SyncConfig, *,
                 preambles: list[int] | None = None, timing_advance: bool = True, cfo_precomp: bool = True,
                 n_pilot_symbols: int | None = None, data_symbols: int = 8, max_delay_spread: int | None = None,
                 contention_free: bool | None = None, rng: np.random.Generator | None = None):
        if not devices:
            raise ValueError("a sync session needs at least one device")
        self.ps, self.ofdm, self.cfg = ps, ofdm, cfg
        self.k = len(devices)
        self.fs = ps.sample_rate
        self.rng = rng or np.random.default_rng(0)
        self.timing_advance = timing_advance
        self.cfo_precomp = cfo_precomp
        self.data_symbols = int(data_symbols)
        spread = ofdm.cp_len // 2 if max_delay_spread is None else int(max_delay_spread)
        self.prach = PrachConfig.for_cell(ofdm.fft_size, ofdm.n_used / ofdm.fft_size, self.fs,
                                          cfg.max_rtt_samples(self.fs), spread, cfg.prach_oversampling,
                                          min_preambles=self.k + 1)
        if self.k > self.prach.n_preambles:
            raise ValueError(f"{self.k} devices but only {self.prach.n_preambles} PRACH preambles")
        one_way = int(math.ceil(cfg.max_rtt_samples(self.fs) / 2))
        # a phase's samples are read up to `tail` after its end (the farthest device has then heard all of it);
        # the next phase starts `guard` after the end: a device answering at once, advanced by its round trip,
        # must still find that time ahead of the air (turnaround ≥ 2 × one-way delay)
        self.tail = one_way + spread + ofdm.cp_len
        self.guard = self.tail + one_way + ofdm.cp_len
        self.backoff = cfg.window_backoff if cfg.window_backoff is not None else ofdm.cp_len // 2
        self.ta_step = ta_step_samples(ofdm.fft_size, cfg.nr_mu if cfg.ta_standard == "nr" else None)
        # > K symbols: the spare code space gives the noise level
        self.n_pilot = max(int(n_pilot_symbols or cfg.pilot_symbols_per_device * self.k), self.k + 1)
        # denoise the uplink estimates over the delays the CP tolerates (FFT-window coordinates 0 .. cp, i.e. arrival
        # errors -b .. cp - b), with a few samples of margin for the tails of fractional delays
        self.uplink = UplinkEstimator(ofdm.used_subcarriers, ofdm.fft_size, self.k, self.n_pilot,
                                      taps=ofdm.cp_len + 8, first_delay=-4)
        self.prach_wave = PrachWaveform(self.prach)
        self.prach_det = PrachDetector(self.prach, cfg.prach_false_alarm)
        self.beacon = BeaconSource(ofdm, cfg.control_code_rate, cfg.control_modem)
        self.builder = FrameBuilder(ofdm)
        self.ps_receiver = Receiver(ofdm)
        pre = list(range(self.k)) if preambles is None else list(preambles)
        if len(pre) != self.k or any(not 0 <= p < self.prach.n_preambles for p in pre):
            raise ValueError(f"preambles must list {self.k} indices in 0..{self.prach.n_preambles - 1}, got {pre}")
        #: dedicated preambles (all distinct): 2-step contention-free access; shared ones need msg3/msg4
        self.contention_free = len(set(pre)) == len(pre) if contention_free is None else contention_free
        #: contention-free: the PS handed out the dedicated preambles, so it knows them and their pilot codes
        self._codes: dict[int, int] = {p: i for i, p in enumerate(pre)} if self.contention_free else {}
        self.devices = [DeviceNode(i, r, pre[i]) for i, r in enumerate(devices)]
        for d in self.devices:
            d.tracker = BeaconTracker(ofdm, cfg.beacon_period, code_rate=cfg.control_code_rate,
                                      modem=cfg.control_modem)
            d.ta = TimingAdvanceLoop(self.ta_step, cfg.time_alignment_timer)
            d.receiver = Receiver(ofdm)
            d.cursor = d.radio.time_now()
            d.buf_t0 = d.cursor
        self.t = ps.time_now() + self.guard   # PS schedule cursor
        self.ps_cursor = ps.time_now()
        self.air_time: dict[str, int] = defaultdict(int)
        self.tx_samples: dict[str, int] = defaultdict(int)
        self.events: list[str] = []
        self.round = 0
        self._prepared = False
        self.plan = None
        self.prach_snr: dict[int, float] = {}
        self.prach_estimates: dict[tuple[int, int], float] = {}  # (slot, preamble) -> delay after the slot start
        self.lost_beacons: set[int] = set()          # beacon numbers the PS skips (a beacon lost, for tests)
        self.beacons_sent = 0
        self.noise_var = None

    # ------------------------------------------------------------------ bookkeeping
    def _book(self, kind: str, start: int, end: int) -> None:
        self.air_time[kind] += end - start
        self.air_time["guard"] += self.guard
        self.t = end + self.guard

    def _ps_read(self, start: int, end: int) -> np.ndarray:
        """PS samples of [start, end + tail) (the tail catches late arrivals); advances the air."""
        if start < self.ps_cursor:
            raise RuntimeError(f"PS read at {start} before its cursor {self.ps_cursor}")
        n = end + self.tail - start
        x, t0 = self.ps.rx(n, at=start)
        self.ps_cursor = t0 + n
        return x

    def _ps_send(self, x: np.ndarray, at: int, kind: str) -> None:
        self.ps.tx(x, at=at)
        self.tx_samples[kind] += x.size

    def _control_frame(self, kind: str, body: bytes, seq: int = 0) -> np.ndarray:
        return self.builder.build_digital(_control(kind, body), seq=seq & 0xFFFF, modem=self.cfg.control_modem,
                                          code_rate=self.cfg.control_code_rate)

    # ------------------------------------------------------------------ device side
    def _listen(self, d: DeviceNode) -> list[RxFrame]:
        """Read everything the device has received so far; feed beacons to its tracker; return control frames."""
        now = d.radio.time_now()
        n = now - d.cursor
        if n <= 0:
            return []
        x, t0 = d.radio.rx(n, at=d.cursor)
        d.cursor = t0 + n
        keep = 2 * max(self.cfg.beacon_period, self.beacon.length * 2)
        d.buf = np.concatenate([d.buf, x])[-keep:]
        d.buf_t0 = d.cursor - d.buf.size
        out = []
        for f in d.receiver.process(x, t0):
            if d.tracker.observe(f, d.buf, d.buf_t0):
                if d.state == "searching":
                    d.state = "synced"
            elif f.crc_ok and _parse_control(f.payload):
                out.append(f)
        return out

    def _device_send(self, d: DeviceNode, x_builder, ps_slot: int, kind: str, apply_ta: bool = True) -> bool:
        """Schedule a device transmission whose slot starts at PS time ``ps_slot``: x_builder(frac) returns samples
        delayed by ``frac`` ∈ [0, 1) samples. Applies TA and CFO pre-compensation. False if it was too late."""
        local = d.tracker.ps_to_local(ps_slot)
        if apply_ta and self.timing_advance:
            local -= d.ta.advance
        li = int(math.floor(local))
        x = x_builder(local - li)
        if self.cfo_precomp:
            x = cfo_precompensate(x, d.tracker.cfo_hz, self.fs, li)
        try:
            d.radio.tx(x, at=li)
        except LateError as exc:
            self.events.append(f"device {d.index}: {kind} late ({exc})")
            return False
        self.tx_samples[kind] += x.size
        d.last_tx_local = local
        return True

    def _ofdm_burst(self, grid_used: np.ndarray, frac: float, sco_ppm: float = 0.0) -> np.ndarray:
        """OFDM symbols from values on the used subcarriers (complex[n_sym, n_used]), delayed by ``frac`` samples.

        Sampling-clock pre-compensation: a device whose clock runs ``sco_ppm`` fast (as its beacon tracker measures)
        would compress the burst in PS time, so symbol s is delayed by a further sco_ppm·1e-6 · s · symbol_len samples
        (a per-symbol phase ramp: exact for the cyclic part, the drift inside one symbol is negligible)."""
        cfg = self.ofdm
        n_sym = grid_used.shape[0]
        grid = np.zeros((n_sym, cfg.fft_size), np.complex64)
        delay = frac + sco_ppm * 1e-6 * cfg.symbol_len * np.arange(n_sym)
        ramp = np.exp(-2j * np.pi * np.outer(delay, np.asarray(cfg.used_subcarriers)) / cfg.fft_size)
        grid[:, cfg.used_bins] = grid_used * ramp
        return grid_to_time(cfg, grid)

    # ------------------------------------------------------------------ phases
    def send_beacons(self, count: int) -> None:
        """PS sends ``count`` beacons, one every beacon_period; devices track them. Beacon numbers listed in
        ``lost_beacons`` are not sent (a beacon lost to noise, as far as the devices can tell)."""
        start = self.t
        period = self.cfg.beacon_period
        for i in range(count):
            at = start + i * period
            number = self.beacons_sent
            self.beacons_sent += 1
            if number in self.lost_beacons:
                self.events.append(f"beacon {number} lost")
                continue
            self._ps_send(self.beacon.waveform(at, number), at, "beacon")
        end = start + (count - 1) * period + self.beacon.length
        self._ps_read(start, end)
        for d in self.devices:
            self._listen(d)
        self.air_time["beacon"] += count * self.beacon.length
        self.air_time["idle"] += (count - 1) * period + self.beacon.length - count * self.beacon.length
        self.air_time["guard"] += self.guard
        self.t = end + self.guard

    def access(self, beacons: int | None = None) -> None:
        """Random access until every device is connected or has used its attempts."""
        self.send_beacons(beacons or self.cfg.beacons_before_access)
        while True:
            contenders = [d for d in self.devices if d.state == "synced" and d.backoff == 0]
            waiting = [d for d in self.devices if d.state == "synced" and d.backoff > 0]
            if not contenders and not waiting:
                break
            self._access_cycle(contenders)
            for d in waiting:
                d.backoff -= 1
            self.send_beacons(1)
        for d in self.devices:
            if d.state != "connected" and d.excluded is None:
                d.excluded = ("no beacon received" if d.state == "searching" else
                              "random access failed" if d.answers else "never answered random access")

    def _access_cycle(self, contenders: list[DeviceNode]) -> None:
        cfg, pr = self.cfg, self.prach
        slot = self.t
        for d in contenders:
            if not d.answers:
                d.attempts += 1
                if d.attempts >= cfg.max_access_attempts:
                    d.state = "failed"
                continue
            if self._device_send(d, lambda frac, d=d: self.prach_wave.preamble(d.preamble, advance=-frac), slot,
                                 "prach", apply_ta=False):
                d.prach_local, d.prach_slot = d.last_tx_local, slot
        window = self._ps_read(slot, slot + pr.slot_len)
        self._book("prach", slot, slot + pr.slot_len)
        dets = self.prach_det.detect(window[pr.cp_len:pr.cp_len + pr.fft_size])
        # RAR: TA (absolute) per detected preamble, and a msg3 slot (contention-based) or the pilot cover code
        # (contention-free: dedicated preambles, so the PS knows who sent each and no msg3/msg4 is needed)
        entries = []
        for j, det in enumerate(dets):
            steps = quantize_ta(det.delay, self.ta_step, absolute=True, max_steps=1 << 15)
            if self.contention_free:
                if det.index not in self._codes:   # nobody was given this preamble: a false alarm
                    continue
                j = self._codes[det.index]
            entries.append(_RAR.pack(det.index, steps, j, int(det.collision)))
            self.prach_snr[det.index] = det.power / max(self._noise_from_prach(window), 1e-30)
            self.prach_estimates[(slot, det.index)] = det.delay
        rar_at = self.t
        rar = self._control_frame("rar", b"".join(entries) or b"\0", seq=self.round)
        self._ps_send(rar, rar_at, "rar")
        self._ps_read(rar_at, rar_at + rar.size)
        self._book("rar", rar_at, rar_at + rar.size)
        msg3_len = self.builder.frame_len(n_bytes=_MSG3.size, modem=self.cfg.control_modem,
                                          code_rate=self.cfg.control_code_rate)
        msg3_start = self.t
        got_rar = set()
        for d in contenders:
            for f in self._listen(d):
                kind, body = _parse_control(f.payload)
                if kind != "rar":
                    continue
                for off in range(0, len(body) - _RAR.size + 1, _RAR.size):
                    idx, steps, mslot, flags = _RAR.unpack_from(body, off)
                    if idx == d.preamble and not flags & 1:
                        d.pending_ta = steps * self.ta_step
                        d.msg3_slot = mslot
                        got_rar.add(d.index)
        if self.contention_free:
            for d in contenders:
                if d.index in got_rar:
                    self._connect(d, d.msg3_slot)
                else:
                    self._access_failed(d)
            return
        # msg3: each device that got a RAR sends its ID in its slot, with the RAR's TA applied
        for d in contenders:
            if d.index not in got_rar:
                continue
            msg = self._control_frame("msg3", _MSG3.pack(b"ID__", d.index, d.preamble)[4:], seq=d.index)
            ps_slot = msg3_start + d.msg3_slot * (msg3_len + 2 * self.ofdm.cp_len)
            advance = d.pending_ta if self.timing_advance else 0.0
            saved = d.ta.advance
            d.ta.advance = advance
            self._device_send(d, lambda frac, m=msg: fractional_delay(m, frac), ps_slot, "msg3")
            d.ta.advance = saved
        n_slots = max(len(dets), 1)
        msg3_end = msg3_start + n_slots * (msg3_len + 2 * self.ofdm.cp_len)
        x = self._ps_read(msg3_start, msg3_end)
        self._book("msg3", msg3_start, msg3_end)
        resolved = {}
        for f in self.ps_receiver.process(x, msg3_start) + self.ps_receiver.flush():
            parsed = _parse_control(f.payload if f.crc_ok else None)
            if parsed and parsed[0] == "msg3" and len(parsed[1]) == _MSG3.size - 4:
                dev, idx = struct.unpack("<HH", parsed[1])
                resolved[dev] = idx
        self.ps_receiver.reset()
        # msg4: contention resolution with the cover code of each resolved device
        used_codes = {d.code for d in self.devices if d.code is not None}
        free = [c for c in range(self.k) if c not in used_codes]
        body = b"".join(_MSG4.pack(dev, free.pop(0)) for dev in sorted(resolved) if free)
        m4_at = self.t
        m4 = self._control_frame("msg4", body or b"\0", seq=self.round)
        self._ps_send(m4, m4_at, "msg4")
        self._ps_read(m4_at, m4_at + m4.size)
        self._book("msg4", m4_at, m4_at + m4.size)
        for d in contenders:
            won = False
            for f in self._listen(d):
                kind, b = _parse_control(f.payload)
                if kind != "msg4":
                    continue
                for off in range(0, len(b) - _MSG4.size + 1, _MSG4.size):
                    dev, code = _MSG4.unpack_from(b, off)
                    if dev == d.index and d.pending_ta is not None:
                        self._connect(d, code)
                        won = True
            if not won:
                self._access_failed(d)

    def _connect(self, d: DeviceNode, code: int) -> None:
        """Random access succeeded: apply the RAR's absolute TA, take the pilot cover code, start the TA timer."""
        d.code = code
        steps = int(round(d.pending_ta / self.ta_step))
        d.ta.apply(TimingAdvanceCommand(d.index, steps, self.ta_step, absolute=True), d.radio.time_now())
        d.state = "connected"
        d.pending_ta = None

    def _access_failed(self, d: DeviceNode) -> None:
        """No RAR (or a collision, or no contention resolution): back off, or give up after the last attempt."""
        d.pending_ta = None
        d.attempts += 1
        if d.attempts >= self.cfg.max_access_attempts:
            d.state = "failed"
        else:
            d.backoff = int(self.rng.integers(0, self.cfg.backoff_window))
            self.events.append(f"device {d.index}: access attempt {d.attempts} failed, backoff {d.backoff}")

    def _noise_from_prach(self, window: np.ndarray) -> float:
        """Per-sample noise power from the PRACH guard (after the preamble and the largest round trip)."""
        pr = self.prach
        tail = window[pr.cp_len + pr.fft_size + int(self.cfg.max_rtt_samples(self.fs)) + self.ofdm.cp_len:]
        return float(np.mean(np.abs(tail) ** 2)) if tail.size > 16 else float("nan")

    def refresh_channels(self) -> None:
        """Uplink pilots from every connected device, then feedback: CSI, common amplitude and a TA update."""
        cfg, of = self.cfg, self.ofdm
        slot = self.t
        connected = [d for d in self.devices if d.state == "connected"]
        for d in connected:
            if not self._alive(d):
                continue
            pilots = self.uplink.transmit_grid(d.code)
            self._device_send(d, lambda frac, p=pilots, d=d: self._ofdm_burst(p, frac, d.tracker.sco_ppm), slot,
                              "pilots")
        n = self.n_pilot * of.symbol_len
        x = self._ps_read(slot, slot + n)
        self._book("pilots", slot, slot + n)
        grid = self._windows(x, self.n_pilot)
        est = self.uplink.estimate(grid[:, of.used_bins])
        # channel per device (by code), timing error relative to the window reference (aligned → delay = backoff)
        chans = np.zeros((self.k, of.n_used), np.complex64)
        present = np.zeros(self.k, bool)
        ta_steps = np.zeros(self.k, int)
        self.pilot_delay = {}
        for d in connected:
            c = d.code
            present[d.index] = est.present[c]
            chans[d.index] = est.channel[c]
            self.pilot_delay[d.index] = float(est.delay[c] - self.backoff)
            # closed-loop TA: centre the device's paths (first..last) in what the CP tolerates, [-b, cp - b] in arrival
            # error; right after access (the PRACH only saw the strongest path) and every ta_update_period rounds
            err = float(np.mean(est.span[c])) - self.backoff - (self.ofdm.cp_len - 2 * self.backoff) / 2
            due = not d.ta_refined or (cfg.ta_update_period and self.round % cfg.ta_update_period == 0)
            if self.timing_advance and due and est.present[c]:
                ta_steps[d.index] = quantize_ta(err, self.ta_step, absolute=False, max_steps=127)
                d.ta_refined = True
        self.noise_var = self.uplink.last_noise_var
        err = np.zeros(self.k)
        taps = np.zeros((self.k, self.uplink.taps), np.complex64)
        shift = np.zeros(self.k)
        for d in connected:
            err[d.index], taps[d.index], shift[d.index] = est.error_var[d.code], est.taps[d.code], est.shift[d.code]
        self.plan = truncated_inversion(np.where(present[:, None], chans, np.nan), cfg.power, cfg.gain_threshold,
                                        error_var=err)
        for d in connected:
            if not present[d.index]:
                self.plan.reasons[d.index] = "no uplink pilot received (device silent or dropped out)"
        body = encode_feedback(self.plan.alpha, taps, self.uplink.first_delay, ta_steps, self.plan.active,
                               cfg.feedback_bits, error_var=err, shift=shift)
        fb_at = self.t
        fb = self._control_frame("feedback", body, seq=self.round)
        self._ps_send(fb, fb_at, "feedback")
        self._ps_read(fb_at, fb_at + fb.size)
        self._book("feedback", fb_at, fb_at + fb.size)
        for d in self.devices:
            for f in self._listen(d):
                kind, b = _parse_control(f.payload)
                if kind != "feedback" or d.state != "connected":
                    continue
                try:
                    alpha, taps, first, steps, act, err, shift = decode_feedback(b)
                except ValueError as exc:
                    self.events.append(f"device {d.index}: bad feedback ({exc})")
                    continue
                cmd = TimingAdvanceCommand(d.index, int(steps[d.index]), self.ta_step, absolute=False)
                d.ta.apply(cmd, d.radio.time_now())
                # advancing by Δ samples multiplies the channel the PS will see by exp(+j 2 pi m Δ / N)
                m = np.asarray(of.used_subcarriers, dtype=np.float64)
                h = (delay_basis(m, of.fft_size, first, taps.shape[1]) @ taps[d.index]) \
                    * np.exp(-2j * np.pi * m * shift[d.index] / of.fft_size)
                d.csi = (h * np.exp(2j * np.pi * m * cmd.samples / of.fft_size)).astype(np.complex64)
                d.alpha, d.active, d.csi_round = alpha, bool(act[d.index]), self.round
                d.csi_error_var = float(err[d.index])

    def _windows(self, x: np.ndarray, n_sym: int) -> np.ndarray:
        """FFT of ``n_sym`` symbols of a slot read from its start, each window ``backoff`` samples before the CP end
        (the samples before the slot only fall in the discarded CP, so zeros stand in for them)."""
        shifted = np.concatenate([np.zeros(self.backoff, np.complex64), x])[:x.size]
        return time_to_grid(self.ofdm, shifted, n_sym, start=0)

    def _alive(self, d: DeviceNode) -> bool:
        return d.answers and (d.alive_until_round is None or self.round < d.alive_until_round)

    def prepare_round(self) -> list[int]:
        """Start the next round: its beacon and, every ``pilot_period`` rounds, uplink pilots and feedback. Returns
        the devices the PS expects in this round's sum (the scheme can encode for exactly them). ``data_round``
        calls it when it was not called first."""
        self.round += 1
        if self.plan is None or (self.round - 1) % self.cfg.pilot_period == 0:
            self.send_beacons(1)
            self.refresh_channels()
        self._prepared = True
        return [int(i) for i in np.flatnonzero(self.plan.active)] if self.plan is not None else []

    def data_round(self, values: np.ndarray) -> RoundResult:
        """One over-the-air sum of ``values`` (complex[K, n], n ≤ data_symbols · n_data)."""
        of = self.ofdm
        values = np.asarray(values)
        n_cap = self.data_symbols * of.n_data
        if values.ndim != 2 or values.shape[0] != self.k or values.shape[1] > n_cap:
            raise ValueError(f"values must be complex[{self.k}, ≤{n_cap}], got shape {values.shape}")
        if not self._prepared:
            self.prepare_round()
        self._prepared = False
        slot = self.t
        data_pos = np.flatnonzero(np.isin(np.asarray(of.used_subcarriers), np.asarray(of.data_subcarriers)))
        pilot_pos = np.flatnonzero(np.isin(np.asarray(of.used_subcarriers), np.asarray(of.pilot_subcarriers)))
        sum_pilot = np.ones(pilot_pos.size, np.complex64)
        tx_local, sent = {}, []
        for d in self.devices:
            if (d.state != "connected" or not d.active or d.csi is None
                    or self.round - d.csi_round >= self.cfg.pilot_period or not self._alive(d)):
                continue  # a device that missed the latest feedback stays silent rather than use stale CSI
            grid = np.zeros((self.data_symbols, of.n_used), np.complex64)
            v = np.zeros(n_cap, np.complex64)
            v[:values.shape[1]] = values[d.index]
            grid[:, data_pos] = v.reshape(self.data_symbols, of.n_data)
            grid[:, pilot_pos] = sum_pilot
            with np.errstate(all="ignore"):
                pre = np.nan_to_num(d.alpha * regularized_inverse(d.csi, d.csi_error_var)).astype(np.complex64)
            grid *= pre[None, :]
            if self._device_send(d, lambda frac, g=grid, d=d: self._ofdm_burst(g, frac, d.tracker.sco_ppm), slot,
                                 "data"):
                tx_local[d.index] = d.last_tx_local
                sent.append(d.index)
        n = self.data_symbols * of.symbol_len
        x = self._ps_read(slot, slot + n)
        self._book("data", slot, slot + n)
        y = self._windows(x, self.data_symbols)[:, of.used_bins]
        plan = self.plan
        alpha = plan.alpha if plan is not None and plan.alpha > 0 else float("nan")
        active = [int(i) for i in np.flatnonzero(plan.active)] if plan is not None else []
        # common phase per symbol from the sum pilots (the PS's own phase noise is common to every device)
        if active:
            cpe = y[:, pilot_pos] @ np.conj(sum_pilot)
            y = y * np.exp(-1j * np.angle(cpe))[:, None]
        est = (y[:, data_pos] / alpha).reshape(-1)[:values.shape[1]]
        truth = values[active].sum(axis=0) if active else np.zeros(values.shape[1], values.dtype)
        excluded = {d.index: d.excluded or (plan.reasons.get(d.index) if plan else None) or "not active"
                    for d in self.devices if d.index not in active}
        return RoundResult(estimate=est, truth=truth, noise_var=(self.noise_var or float("nan")) / alpha ** 2,
                           alpha=alpha, active=active, excluded=excluded, slot=slot, tx_local=tx_local,
                           pilot_delay=dict(getattr(self, "pilot_delay", {})))

    # ------------------------------------------------------------------ reporting
    def overhead(self) -> dict:
        """Fractions of air time and of transmitted samples spent on each phase kind (data is the useful part)."""
        air_total = sum(self.air_time.values())
        tx_total = sum(self.tx_samples.values())
        return {"air_time": {k: v / air_total for k, v in sorted(self.air_time.items())} if air_total else {},
                "tx_samples": {k: v / tx_total for k, v in sorted(self.tx_samples.items())} if tx_total else {},
                "air_time_samples": dict(self.air_time), "tx_samples_count": dict(self.tx_samples),
                "overhead_fraction": 1 - self.air_time.get("data", 0) / air_total if air_total else float("nan")}

    def timing_crlb(self, index: int) -> float:
        """CRLB (samples) of the PRACH delay estimate of device ``index`` at its measured PRACH SNR."""
        snr = self.prach_snr.get(self.devices[index].preamble)
        if not snr or not np.isfinite(snr):
            return float("nan")
        return delay_crlb_samples(snr, self.prach.subcarriers, self.prach.fft_size)
