"""The parameter-server (PS) actor: the cell's reference clock, owning only its radio and its own state.

Its radio's sample clock is the cell's time: every slot it announces (orchestration messages, :mod:`sync.messages`)
is in PS samples. Phase by phase it

- sends beacons (PS time + counter) every ``beacon_period``;
- opens PRACH slots, detects the preambles and estimates their delays (:class:`sync.prach.PrachDetector`), answers
  with a RAR (absolute TA; contention-free: the pilot cover code; contention-based: a msg3 slot), receives msg3 and
  resolves contention with msg4;
- receives the code-multiplexed uplink pilots, estimates every granted device's channel and timing
  (:class:`sync.uplink.UplinkEstimator`), plans truncated channel inversion and feeds back CSI, the common amplitude
  and a relative TA update;
- receives the data burst and returns the over-the-air sum estimate Σ_k x_k (common phase from the sum pilots).

Scheduling: each phase starts at ``max(radio.time_now() + lead, earliest)``: ``earliest`` is the end of the previous
phase plus the air's guard (:class:`sync.layout.CellLayout`) plus the turnaround budget the phase owes to a decode
(``ps_turnaround`` after an uplink the PS decodes, ``device_turnaround`` after a downlink the devices decode; both
``SyncConfig`` fields). The PS reads every phase up to ``tail`` after its end (all echoes are in), which on the
simulated air is also what moves the air forward. Air time and transmitted samples are booked per phase kind.

What the PS knows about the devices is only what it was told or heard: their dedicated preambles (contention-free),
the devices it granted access (RAR/msg4) and their cover codes, and what the pilots show.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from phy.frame import FrameBuilder
from phy.ofdm import time_to_grid
from phy.receiver import Receiver
from radio.base import LateError
from sync.beacon import BeaconSource
from sync.device import RadioPort
from sync.layout import CellLayout
from sync.messages import (AccessSlot, DataRound, Feedback, Msg3, Msg3Window, Msg4, Rar, RarEntry, RoundPlan,
                           parse_payload, to_payload)
from sync.precomp import InversionPlan, truncated_inversion
from sync.prach import PrachDetector, PrachWaveform, delay_crlb_samples
from sync.timing_advance import quantize_ta
from sync.uplink import UplinkEstimator


#: the access beacons' ladder stops before a gap longer than this (s): a rung that far out sharpens a CFO estimate to
#: ~1e-3 Hz at 20 dB, which bridges the tens of seconds between a cell's rounds, and a longer one only delays access
LADDER_MAX_GAP_S = 1.0


def beacon_offsets(count: int, ladder: int, period: int, sample_rate: float) -> list[int]:
    """Sample offsets of ``count`` beacons ``period`` apart and then of up to ``ladder`` rungs, each 10x the gap before
    it (10, 100, ... periods), as long as a gap is at most :data:`LADDER_MAX_GAP_S`."""
    offsets = [i * period for i in range(count)]
    for k in range(1, ladder + 1):
        if period * 10 ** k > LADDER_MAX_GAP_S * sample_rate:
            break
        offsets.append(offsets[-1] + period * 10 ** k)
    return offsets


class PsActor:
    """The PS on ``radio`` (module docstring) in a cell laid out by ``layout``.

    ``preambles``: the dedicated preamble of each device (index = device); used contention-free, where the PS hands
    them out and so knows them. ``events``: list to log to.
    """

    def __init__(self, radio: RadioPort, layout: CellLayout, preambles: list[int], *, events: list[str] | None = None):
        self.radio, self.layout = radio, layout
        self.ofdm, self.cfg = layout.ofdm, layout.cfg
        self.k = layout.k
        self.events = events if events is not None else []
        cfg, of = self.cfg, self.ofdm
        self.contention_free = bool(layout.setup.contention_free)
        #: contention-free: preamble → cover code (= device index); the PS handed them out
        self._codes: dict[int, int] = {p: i for i, p in enumerate(preambles)} if self.contention_free else {}
        #: device → pilot cover code, for every device the PS granted access (RAR contention-free, msg4 otherwise)
        self.granted: dict[int, int] = {}
        self._ta_refined: set[int] = set()
        self.uplink = UplinkEstimator(of.used_subcarriers, of.fft_size, self.k, layout.n_pilot,
                                      taps=layout.pilot_taps, first_delay=layout.pilot_first_delay)
        self.prach_det = PrachDetector(layout.prach, cfg.prach_false_alarm)
        self.beacon = BeaconSource(of, cfg.control_code_rate, cfg.control_modem)
        self.builder = FrameBuilder(of)
        self.receiver = Receiver(of)
        self.cursor = radio.time_now()
        self.t = self.cursor + layout.guard         # earliest start of the next phase (air guard included)
        self._owed = 0                              # turnaround budget the next phase owes to a decode
        self.air_time: dict[str, int] = defaultdict(int)
        self.tx_samples: dict[str, int] = defaultdict(int)
        self.round = 0
        self.plan: InversionPlan | None = None
        self.noise_var: float | None = None
        self._silent_why: dict[int, str] = {}      # device -> why the last plan left it silent
        self.pilot_delay: dict[int, float] = {}
        self.prach_snr: dict[int, float] = {}
        self.prach_estimates: dict[tuple[int, int], float] = {}  # (slot, preamble) -> delay after the slot start
        self.lost_beacons: set[int] = set()        # beacon numbers not sent (a beacon lost, for tests)
        self.beacons_sent = 0
        self.pushed = 0                             # phases the radio's lead pushed past their plan
        self.late = 0                               # bursts the radio refused as late (not sent; see _send)
        self._msg3: Msg3Window | None = None
        self._msg3_slots = 0

    # ------------------------------------------------------------------ scheduling and bookkeeping
    _OWES = {"prach": "ps_turnaround", "msg3": "ps_turnaround", "pilots": "ps_turnaround",
             "beacon": "device_turnaround", "rar": "device_turnaround", "feedback": "device_turnaround"}

    def anchor(self, lead: int | None = None) -> int:
        """Start of the next phase: ``max(time_now() + lead, end of the last phase + guard + owed turnaround)``.
        ``lead`` (samples, default ``cfg.lead``): a phase the devices are told about over a slow control plane is
        anchored that much further ahead (its announcement must reach them before it); only a push by the radio's
        own ``cfg.lead`` is counted in ``pushed``."""
        earliest = self.t + self._owed
        if lead is not None and lead > self.cfg.lead:
            return max(self.radio.time_now() + int(lead), earliest)
        now = self.radio.time_now() + self.cfg.lead
        if now > earliest:
            self.pushed += 1
            self.events.append(f"PS: phase pushed {now - earliest} samples past its plan by the radio's lead")
        return max(now, earliest)

    def _book(self, kind: str, start: int, end: int) -> None:
        self.air_time[kind] += end - start
        self.air_time["guard"] += self.layout.guard
        self.t = end + self.layout.guard
        self._owed = getattr(self.cfg, self._OWES[kind]) if kind in self._OWES else 0

    def _read(self, start: int, end: int) -> np.ndarray:
        """PS samples of [start, end + tail) (the tail catches late arrivals)."""
        if start < self.cursor:
            raise RuntimeError(f"PS read at {start} before its cursor {self.cursor}")
        n = end + self.layout.tail - start
        x, t0 = self.radio.rx(n, at=start)
        self.cursor = t0 + n
        return x

    def _send(self, x: np.ndarray, at: int, kind: str) -> None:
        """Transmit ``x`` at ``at``; a burst the radio refuses as late (a PS starved between its anchor and here, on a
        radio on the wall clock) is counted in ``late`` and logged, not sent: the devices miss that phase (no beacon,
        RAR or feedback: they stay silent) and the procedure goes on."""
        try:
            self.radio.tx(x, at=at)
        except LateError as exc:
            self.late += 1
            self.events.append(f"PS: {kind} burst late, not sent ({exc})")
            return
        self.tx_samples[kind] += x.size

    def _control_frame(self, msg, seq: int = 0) -> np.ndarray:
        return self.builder.build_digital(to_payload(msg), seq=seq & 0xFFFF, modem=self.cfg.control_modem,
                                          code_rate=self.cfg.control_code_rate)

    def _send_control(self, msg, kind: str, seq: int) -> None:
        at = self.anchor()
        frame = self._control_frame(msg, seq)
        self._send(frame, at, kind)
        self._read(at, at + frame.size)
        self._book(kind, at, at + frame.size)

    # ------------------------------------------------------------------ beacons
    def send_beacons(self, count: int, ladder: int = 0) -> None:
        """``count`` beacons, one every beacon_period from the next anchor, then up to ``ladder`` more at 10, 100,
        1000, ... beacon periods after the one before, as long as that gap is at most :data:`LADDER_MAX_GAP_S`
        (:attr:`sync.config.SyncConfig.beacon_ladder`). Beacon numbers in ``lost_beacons`` are not sent (a beacon
        lost to noise, as far as the devices can tell)."""
        start = self.anchor()
        offsets = beacon_offsets(count, ladder, self.cfg.beacon_period, self.ofdm.sample_rate)
        for off in offsets:
            at = start + off
            number = self.beacons_sent
            self.beacons_sent += 1
            if number in self.lost_beacons:
                self.events.append(f"beacon {number} lost")
                continue
            self._send(self.beacon.waveform(at, number), at, "beacon")
        end = start + offsets[-1] + self.beacon.length
        self._read(start, end)
        self.air_time["beacon"] += len(offsets) * self.beacon.length
        self.air_time["idle"] += end - start - len(offsets) * self.beacon.length
        self.air_time["guard"] += self.layout.guard
        self.t = end + self.layout.guard
        self._owed = self.cfg.device_turnaround

    # ------------------------------------------------------------------ random access
    def access_slot(self, lead: int | None = None) -> AccessSlot:
        """The next PRACH slot (announced to the devices; ``lead``: see :meth:`anchor`)."""
        return AccessSlot(at=self.anchor(lead))

    def receive_prach(self, slot: AccessSlot) -> Msg3Window | None:
        """Detect the preambles of PRACH slot ``slot``, send the RAR; contention-based access: returns the msg3 window
        the RAR's slot indices refer to (None contention-free: access ends with the RAR)."""
        pr = self.layout.prach
        window = self._read(slot.at, slot.at + pr.slot_len)
        previous = self.t - self.layout.guard       # the end of the phase before this slot
        self._book("prach", slot.at, slot.at + pr.slot_len)
        dets = self.prach_det.detect(window[pr.cp_len:pr.cp_len + pr.fft_size])
        entries = []
        for j, det in enumerate(dets):
            steps = quantize_ta(det.delay, self.layout.ta_step, absolute=True, max_steps=1 << 15)
            if self.contention_free:
                if det.index not in self._codes:   # nobody was given this preamble: a false alarm
                    continue
                j = self._codes[det.index]
                if not det.collision:
                    self.granted[j] = j
            entries.append(RarEntry(det.index, steps, j, bool(det.collision)))
            self.prach_snr[det.index] = det.power / max(self._noise_from_prach(window), 1e-30)
            self.prach_estimates[(slot.at, det.index)] = det.delay
        if not entries:
            self.events.append(self._prach_miss(slot, previous))
        self._send_control(Rar(tuple(entries)), "rar", seq=self.round)
        if self.contention_free:
            return None
        msg3_len = self.builder.frame_len(n_bytes=Msg3.size(), modem=self.cfg.control_modem,
                                          code_rate=self.cfg.control_code_rate)
        self._msg3 = Msg3Window(at=self.anchor(), slot_len=msg3_len + 2 * self.ofdm.cp_len)
        self._msg3_slots = max(len(dets), 1)
        return self._msg3

    def _prach_miss(self, slot: AccessSlot, previous: int) -> str:
        """What a PRACH slot without a detection saw: the strongest of the expected preambles, by cross-correlation,
        and its delay, in the samples from the end of the phase before (``previous``; at most 0.25 s before the slot)
        to 0.5 s (at least 8 slots) after the slot's start, as far as the radio has them. A radio whose TX→RX offset is not
        calibrated (a Pluto without ``calibrate_tx``) or a cell radius set too small shows up as a strong preamble
        far outside the zone; a device that did not send, or sent at another time, as no peak at all."""
        pr = self.layout.prach
        fs = self.ofdm.sample_rate
        # only what the radio already holds: a radio with a ring (a node) serves the past; reading past its "now"
        # would move a simulated air's clock, and what it no longer holds raises
        end = min(slot.at + max(8 * pr.slot_len, int(0.5 * fs)), self.radio.time_now())
        x = None
        for start in (max(slot.at - int(0.25 * fs), previous, 0), slot.at):
            if end - start < pr.slot_len:
                continue
            try:
                x, _ = self.radio.rx(end - start, at=start)
                break
            except Exception:   # noqa: BLE001  (a diagnostic: what the radio cannot serve it does not look at)
                continue
        if x is None:
            return f"PS: PRACH slot at {slot.at}: no preamble detected"
        before, span = slot.at - start, end - start
        wave = PrachWaveform(pr)
        n = 1 << int(np.ceil(np.log2(span + pr.slot_len)))
        fx = np.fft.fft(x, n)
        best = (0.0, -1, 0)
        for p in (self._codes or range(pr.n_preambles)):
            ref = wave.preamble(p)
            c = np.abs(np.fft.ifft(fx * np.conj(np.fft.fft(ref, n)))[:span - ref.size + 1]) ** 2
            k = int(np.argmax(c))
            metric = float(c[k] / (np.median(c) / math.log(2) + 1e-30))
            if metric > best[0]:
                best = (metric, p, k)
        metric, p, k = best
        k -= before
        where = "inside" if 0 <= k <= pr.cp_len else "outside"
        return (f"PS: PRACH slot at {slot.at}: no preamble detected; the strongest expected one (preamble {p}) "
                f"correlates {10 * math.log10(max(metric, 1e-30)):.1f} dB above the median at {k:+d} samples from the "
                f"slot start ({where} the {pr.cp_len}-sample zone; a radio's uncalibrated TX offset, or a device that "
                f"sent at another time, shows as a strong peak far outside it)")

    def resolve_contention(self) -> Msg4:
        """Receive the msg3 window, resolve contention and send msg4 (device → cover code)."""
        w = self._msg3
        end = w.at + self._msg3_slots * w.slot_len
        x = self._read(w.at, end)
        self._book("msg3", w.at, end)
        resolved = {}
        for f in self.receiver.process(x, w.at) + self.receiver.flush():
            msg = parse_payload(f.payload if f.crc_ok else None)
            if isinstance(msg, Msg3):
                resolved[msg.device] = msg.preamble
        self.receiver.reset()
        for dev in resolved:
            self.granted.pop(dev, None)
        free = [c for c in range(self.k) if c not in set(self.granted.values())]
        pairs = tuple((dev, free.pop(0)) for dev in sorted(resolved) if free)
        self.granted.update(dict(pairs))
        m4 = Msg4(pairs)
        self._send_control(m4, "msg4", seq=self.round)
        return m4

    def _noise_from_prach(self, window: np.ndarray) -> float:
        """Per-sample noise power from the PRACH guard (after the preamble and the largest round trip)."""
        pr = self.layout.prach
        tail = window[pr.cp_len + pr.fft_size + int(self.cfg.max_rtt_samples(self.layout.sample_rate))
                      + self.ofdm.cp_len:]
        return float(np.mean(np.abs(tail) ** 2)) if tail.size > 16 else float("nan")

    def timing_crlb(self, preamble: int) -> float:
        """CRLB (samples) of the PRACH delay estimate of ``preamble`` at its measured PRACH SNR."""
        snr = self.prach_snr.get(preamble)
        if not snr or not np.isfinite(snr):
            return float("nan")
        return delay_crlb_samples(snr, self.layout.prach.subcarriers, self.layout.prach.fft_size)

    # ------------------------------------------------------------------ rounds
    def begin_round(self) -> bool:
        """Start the next round; True when it refreshes the channels: then the PS sends a beacon
        (:meth:`send_beacons`), plans the pilots (:meth:`plan_pilots`), receives them and feeds back
        (:meth:`receive_pilots`) before the data slot. Otherwise the round reuses the last CSI."""
        self.round += 1
        return self.plan is None or (self.round - 1) % self.cfg.pilot_period == 0

    def plan_pilots(self, lead: int | None = None) -> RoundPlan:
        """This round's pilot slot and the planned feedback time (PS time; ``lead``: see :meth:`anchor`)."""
        at = self.anchor(lead)
        end = at + self.layout.n_pilot * self.ofdm.symbol_len
        return RoundPlan(round=self.round, pilots_at=at, n_pilot_symbols=self.layout.n_pilot,
                         feedback_at=end + self.layout.guard + self.cfg.ps_turnaround)

    def _windows(self, x: np.ndarray, n_sym: int) -> np.ndarray:
        """FFT of ``n_sym`` symbols of a slot read from its start, each window ``backoff`` samples before the CP end
        (the samples before the slot only fall in the discarded CP, so zeros stand in for them)."""
        b = self.layout.backoff
        shifted = np.concatenate([np.zeros(b, np.complex64), x])[:x.size]
        return time_to_grid(self.ofdm, shifted, n_sym, start=0)

    def receive_pilots(self, plan: RoundPlan) -> Feedback:
        """Receive the pilots of ``plan``, estimate every granted device's channel and timing, plan truncated
        inversion and send the feedback (CSI taps, alpha, active flags, relative TA)."""
        cfg, of, lay = self.cfg, self.ofdm, self.layout
        slot = plan.pilots_at
        n = lay.n_pilot * of.symbol_len
        x = self._read(slot, slot + n)
        self._book("pilots", slot, slot + n)
        grid = self._windows(x, lay.n_pilot)
        est = self.uplink.estimate(grid[:, of.used_bins])
        granted = sorted(self.granted.items())
        chans = np.zeros((self.k, of.n_used), np.complex64)
        present = np.zeros(self.k, bool)
        ta_steps = np.zeros(self.k, int)
        err = np.zeros(self.k)
        taps = np.zeros((self.k, self.uplink.taps), np.complex64)
        shift = np.zeros(self.k)
        self.pilot_delay = {}
        for dev, c in granted:
            present[dev] = est.present[c]
            chans[dev] = est.channel[c]
            self.pilot_delay[dev] = float(est.delay[c] - lay.backoff)
            # closed-loop TA: centre the device's paths (first..last) in what the CP tolerates, [-b, cp - b] in arrival
            # error; right after access (the PRACH only saw the strongest path) and every ta_update_period rounds
            e = float(np.mean(est.span[c])) - lay.backoff - (of.cp_len - 2 * lay.backoff) / 2
            due = dev not in self._ta_refined or (cfg.ta_update_period and self.round % cfg.ta_update_period == 0)
            if due and est.present[c]:
                ta_steps[dev] = quantize_ta(e, lay.ta_step, absolute=False, max_steps=127)
                self._ta_refined.add(dev)
            err[dev], taps[dev], shift[dev] = est.error_var[c], est.taps[c], est.shift[c]
        self.noise_var = self.uplink.last_noise_var
        self.plan = truncated_inversion(np.where(present[:, None], chans, np.nan), cfg.power, cfg.gain_threshold,
                                        error_var=err)
        for dev, _ in granted:
            if not present[dev]:
                self.plan.reasons[dev] = "no uplink pilot received (device silent or dropped out)"
        for dev, why in sorted(self.plan.reasons.items()):   # said once, when a device's reason changes
            if self._silent_why.get(dev) != why:
                self.events.append(f"PS: device {dev} not active from round {self.round}: {why}")
        self._silent_why = dict(self.plan.reasons)
        fb = Feedback(self.plan.alpha, taps, self.uplink.first_delay, ta_steps, self.plan.active, err, shift,
                      bits=cfg.feedback_bits)
        self._send_control(fb, "feedback", seq=self.round)
        return fb

    def data_slot(self, seed: int | None = None, power_scale: float = 1.0, lead: int | None = None) -> DataRound:
        """This round's data slot (announced to the devices with the round's learning parameters; ``lead``: see
        :meth:`anchor`)."""
        return DataRound(round=self.round, slot=self.anchor(lead), seed=seed, power_scale=power_scale)

    def receive_data(self, msg: DataRound, n_values: int) -> tuple[np.ndarray, float, float, list[int]]:
        """Receive the data burst of ``msg``: returns (estimate of Σ_k x_k over the active devices complex[n_values],
        its noise variance per value, alpha, the active devices)."""
        of, lay = self.ofdm, self.layout
        n = lay.data_symbols * of.symbol_len
        x = self._read(msg.slot, msg.slot + n)
        self._book("data", msg.slot, msg.slot + n)
        y = self._windows(x, lay.data_symbols)[:, of.used_bins]
        plan = self.plan
        alpha = plan.alpha if plan is not None and plan.alpha > 0 else float("nan")
        active = [int(i) for i in np.flatnonzero(plan.active)] if plan is not None else []
        # common phase per symbol from the sum pilots (the PS's own phase noise is common to every device)
        if active:
            cpe = y[:, lay.pilot_pos] @ np.conj(lay.sum_pilot)
            y = y * np.exp(-1j * np.angle(cpe))[:, None]
        est = (y[:, lay.data_pos] / alpha).reshape(-1)[:n_values]
        return est, (self.noise_var or float("nan")) / alpha ** 2, alpha, active
