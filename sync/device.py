"""The device actor: one device of the cell, owning only its radio and its own state.

It hears the air as one continuous stream (every sample in order, from the moment it starts), feeds it to phy's
streaming receiver, gives every beacon to its :class:`sync.beacon.BeaconTracker` (PS time ↔ device time, CFO, SCO),
and keeps the control frames addressed to it (RAR, msg4, feedback). It transmits PRACH, msg3, uplink pilots and data
bursts at slots it is given in PS time (orchestration messages, :mod:`sync.messages`), converted to its own clock by
the tracker, advanced by its timing advance (:func:`sync.timing_advance.advanced_start`) and pre-compensated for its
CFO and sampling-clock offset (:mod:`sync.precomp`).

The radio is reached through :class:`RadioPort` (``time_now()``, ``tx(samples, at)``, ``rx(n, at)``): a
:class:`radio.base.Radio` satisfies it, and so does a client of a radio node that streams into a ring buffer. The
actor never blocks on the air: ``listen()`` reads what the radio has up to ``time_now()`` and returns. A slot that is
less than ``lead`` samples ahead of ``time_now()`` is not attempted; it is counted (``late``) and logged.

Stream memory is bounded: the actor keeps the samples it has just read plus ``hold`` samples before them (the longest
control frame plus one CP: the most the receiver can hand back a frame from the past), which is all the tracker needs
to re-correlate a beacon. A beacon whose samples are gone anyway is counted in ``tracker_misses``, never used.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from phy.frame import FrameBuilder
from phy.ofdm import OfdmConfig
from phy.receiver import Receiver
from radio.base import LateError
from sync.beacon import BeaconTracker
from sync.config import SyncConfig
from sync.layout import CellLayout
from sync.messages import (AccessSlot, Beacon, DataRound, DeviceStats, Feedback, Msg3, Msg3Window, Msg4, Rar,
                           RoundPlan, parse_payload, payload_kind, to_payload)
from sync.precomp import cfo_precompensate, fractional_delay, ofdm_burst, regularized_inverse
from sync.prach import PrachWaveform
from sync.timing_advance import TimingAdvanceCommand, TimingAdvanceLoop, advanced_start
from sync.uplink import delay_basis


class RadioPort(Protocol):
    """The part of a radio an actor uses (all times are integer samples on the radio's own clock)."""

    def time_now(self) -> int: ...

    def tx(self, samples: np.ndarray, at: int | None = None) -> int: ...

    def rx(self, n: int, at: int | None = None) -> tuple[np.ndarray, int]: ...


class DeviceActor:
    """Device ``index`` on ``radio`` (module docstring), in a cell laid out by ``layout`` (:class:`CellLayout`).

    ``preamble``: its PRACH preamble index. ``timing_advance`` False: never apply TA (the comparison run);
    ``cfo_precomp`` False: no uplink CFO pre-rotation. ``rng``: backoff draws. ``events``: list to log to.
    Fault injection for tests: ``answers`` False never transmits; ``alive_until_round`` silent from that round on.
    """

    def __init__(self, index: int, radio: RadioPort, layout: CellLayout, preamble: int, *,
                 timing_advance: bool = True, cfo_precomp: bool = True, rng: np.random.Generator | None = None,
                 events: list[str] | None = None):
        self.index, self.radio, self.layout, self.preamble = int(index), radio, layout, int(preamble)
        self.ofdm: OfdmConfig = layout.ofdm
        self.cfg: SyncConfig = layout.cfg
        self.fs = layout.sample_rate
        self.timing_advance, self.cfo_precomp = timing_advance, cfo_precomp
        self.rng = rng if rng is not None else np.random.default_rng(index)
        self.events = events if events is not None else []
        cfg = self.cfg
        self.answers = True
        self.alive_until_round: int | None = None
        self.state = "searching"          # searching → synced → connected (or failed)
        self.attempts = 0
        self.backoff = 0
        self.code: int | None = None      # pilot cover code (RAR contention-free, msg4 otherwise)
        self.pending_ta: float | None = None   # TA from the RAR, applied once access resolves
        self.msg3_slot: int | None = None
        self.csi: np.ndarray | None = None     # complex64[n_used] uplink channel from the PS's feedback
        self.csi_round = -1
        self.csi_error_var = 0.0
        self.alpha = 0.0
        self.active = False
        self.excluded: str | None = None
        self.round = 0
        self.last_tx_local: float | None = None
        self.prach_local: float | None = None
        self.prach_slot: int | None = None
        self.late = 0
        self.bad_frames = 0
        self.tracker_misses = 0
        self.tx_samples: dict[str, int] = {}
        self.tracker = BeaconTracker(self.ofdm, cfg.beacon_period, code_rate=cfg.control_code_rate,
                                     modem=cfg.control_modem, linewidth_hz=cfg.phase_noise_linewidth_hz,
                                     cfo_walk=cfg.cfo_random_walk)
        self.ta = TimingAdvanceLoop(layout.ta_step, cfg.time_alignment_timer)
        self.receiver = Receiver(self.ofdm)
        self.builder = FrameBuilder(self.ofdm)
        self.prach_wave = PrachWaveform(layout.prach)
        self.hold = layout.stream_hold
        self.cursor = radio.time_now()
        self.buf = np.zeros(0, np.complex64)
        self.buf_t0 = self.cursor
        self._inbox: list = []

    # ------------------------------------------------------------------ the stream
    def listen(self) -> None:
        """Read everything the radio has received since the last call (in order, no gaps), feed beacons to the
        tracker and keep control frames for the handlers below (bad or foreign frames are counted and dropped)."""
        now = self.radio.time_now()
        n = now - self.cursor
        if n <= 0:
            return
        x, t0 = self.radio.rx(n, at=self.cursor)
        self.cursor = t0 + n
        self.buf = np.concatenate([self.buf[-self.hold:] if self.hold else self.buf[:0], x])
        self.buf_t0 = self.cursor - self.buf.size
        for f in self.receiver.process(x, t0):
            if self.tracker.observe(f, self.buf, self.buf_t0):
                if self.state == "searching":
                    self.state = "synced"
                continue
            if f.crc_ok and Beacon.from_bytes(f.payload) is not None:
                self.tracker_misses += 1      # a beacon the tracker could not use (its samples gone): counted
                continue
            kind = payload_kind(f.payload if f.crc_ok else None)
            if kind is None:
                continue
            msg = parse_payload(f.payload)
            if msg is None:
                self.bad_frames += 1
                self.events.append(f"device {self.index}: bad {kind} frame dropped")
                continue
            self._inbox.append(msg)

    def _take(self, cls) -> list:
        """Control messages of type ``cls`` heard so far (removed from the inbox; other kinds are dropped)."""
        self.listen()
        out = [m for m in self._inbox if isinstance(m, cls)]
        self._inbox.clear()
        return out

    # ------------------------------------------------------------------ transmitting
    def _send(self, build, ps_slot: int, kind: str, apply_ta: bool = True) -> bool:
        """Transmit the burst ``build(frac)`` (samples delayed by ``frac`` ∈ [0, 1)) so that its slot starts at PS time
        ``ps_slot``, with TA and CFO pre-compensation. False (counted and logged) if it is too late for the radio."""
        local_slot = self.tracker.ps_to_local(ps_slot)
        advance = self.ta.advance if apply_ta and self.timing_advance else 0.0
        start, frac = advanced_start(local_slot, advance)
        x = build(frac)
        if self.cfo_precomp:
            x = cfo_precompensate(x, self.tracker.cfo_hz, self.fs, start)
        try:
            if self.cfg.lead and start < self.radio.time_now() + self.cfg.lead:
                raise LateError(f"{kind} of device {self.index}", start, self.radio.time_now() + self.cfg.lead)
            self.radio.tx(x, at=start)
        except LateError as exc:
            self.late += 1
            self.events.append(f"device {self.index}: {kind} late ({exc})")
            return False
        self.tx_samples[kind] = self.tx_samples.get(kind, 0) + x.size
        self.last_tx_local = local_slot - advance
        return True

    def _control_frame(self, msg, seq: int) -> np.ndarray:
        return self.builder.build_digital(to_payload(msg), seq=seq & 0xFFFF, modem=self.cfg.control_modem,
                                          code_rate=self.cfg.control_code_rate)

    def alive(self) -> bool:
        """False for a device made deaf/dead for a test (``answers``) or dropped out (``alive_until_round``)."""
        return self.answers and (self.alive_until_round is None or self.round < self.alive_until_round)

    # ------------------------------------------------------------------ random access
    @property
    def contending(self) -> bool:
        """Synced, not connected, and its backoff over: it sends a PRACH in the next access slot."""
        return self.state == "synced" and self.backoff == 0

    def send_prach(self, slot: AccessSlot) -> None:
        """Send this device's preamble in the PRACH slot at PS time ``slot.at`` (no TA yet: it measures the round
        trip)."""
        if not self.answers:
            self.attempts += 1
            if self.attempts >= self.cfg.max_access_attempts:
                self.state = "failed"
            return
        if self._send(lambda frac: self.prach_wave.preamble(self.preamble, advance=-frac), slot.at, "prach",
                      apply_ta=False):
            self.prach_local, self.prach_slot = self.last_tx_local, slot.at

    def take_rar(self, window: Msg3Window | None) -> bool:
        """Read the RAR: note the TA and the msg3 slot (or, contention-free, the cover code: connected at once).
        Contention-based, send msg3 in its slot of ``window``. True if a RAR entry for this preamble arrived."""
        got = False
        for rar in self._take(Rar):
            for e in rar.entries:
                if e.preamble == self.preamble and not e.collision:
                    self.pending_ta = e.ta_steps * self.layout.ta_step
                    self.msg3_slot = e.slot
                    got = True
        if window is None:               # contention-free: the RAR is the end of access
            if got:
                self._connect(self.msg3_slot)
            else:
                self.access_failed()
            return got
        if got:
            msg = self._control_frame(Msg3(self.index, self.preamble), seq=self.index)
            advance = self.pending_ta if self.timing_advance else 0.0
            saved = self.ta.advance
            self.ta.advance = advance
            self._send(lambda frac: fractional_delay(msg, frac), window.at + self.msg3_slot * window.slot_len, "msg3")
            self.ta.advance = saved
        return got

    def take_msg4(self) -> bool:
        """Read msg4: connected with its cover code if it names this device, else the attempt failed."""
        won = False
        for m4 in self._take(Msg4):
            for dev, code in m4.entries:
                if dev == self.index and self.pending_ta is not None:
                    self._connect(code)
                    won = True
        if not won:
            self.access_failed()
        return won

    def _connect(self, code: int) -> None:
        """Random access succeeded: apply the RAR's absolute TA, take the pilot cover code, start the TA timer."""
        self.code = code
        steps = int(round(self.pending_ta / self.layout.ta_step))
        self.ta.apply(TimingAdvanceCommand(self.index, steps, self.layout.ta_step, absolute=True),
                      self.radio.time_now())
        self.state = "connected"
        self.pending_ta = None

    def access_failed(self) -> None:
        """No RAR (or a collision, or no contention resolution): back off, or give up after the last attempt."""
        self.pending_ta = None
        self.attempts += 1
        if self.attempts >= self.cfg.max_access_attempts:
            self.state = "failed"
        else:
            self.backoff = int(self.rng.integers(0, self.cfg.backoff_window))
            self.events.append(f"device {self.index}: access attempt {self.attempts} failed, backoff {self.backoff}")

    def access_over(self) -> None:
        """Access phase ended: a device that is not connected is excluded, with the reason."""
        if self.state != "connected" and self.excluded is None:
            self.excluded = ("no beacon received" if self.state == "searching" else
                             "random access failed" if self.answers else "never answered random access")

    # ------------------------------------------------------------------ rounds
    def send_pilots(self, plan: RoundPlan) -> bool:
        """Code-multiplexed uplink pilots at PS time ``plan.pilots_at`` (connected and alive devices only)."""
        self.round = plan.round
        if self.state != "connected" or not self.alive() or plan.pilots_at is None:
            return False
        pilots = self.layout.pilot_grid(self.code)
        return self._send(lambda frac: ofdm_burst(self.ofdm, pilots, frac, self.tracker.sco_ppm), plan.pilots_at,
                          "pilots")

    def take_feedback(self, plan: RoundPlan) -> bool:
        """Read the PS's feedback: apply the TA update and keep CSI (advanced by the update), alpha and the active
        flag for this round. A feedback frame that does not decode is counted, logged and dropped."""
        self.round = plan.round
        got = False
        of = self.ofdm
        for fb in self._take(Feedback):
            if self.state != "connected":
                continue
            if self.index >= fb.ta_steps.size:
                self.bad_frames += 1
                self.events.append(f"device {self.index}: bad feedback (covers {fb.ta_steps.size} devices)")
                continue
            steps = int(fb.ta_steps[self.index]) if self.timing_advance else 0   # without TA: commands ignored
            cmd = TimingAdvanceCommand(self.index, steps, self.layout.ta_step, absolute=False)
            self.ta.apply(cmd, self.radio.time_now())
            # advancing by Δ samples multiplies the channel the PS will see by exp(+j 2 pi m Δ / N)
            m = np.asarray(of.used_subcarriers, dtype=np.float64)
            h = (delay_basis(m, of.fft_size, fb.first_delay, fb.taps.shape[1]) @ fb.taps[self.index]) \
                * np.exp(-2j * np.pi * m * fb.shift[self.index] / of.fft_size)
            self.csi = (h * np.exp(2j * np.pi * m * cmd.samples / of.fft_size)).astype(np.complex64)
            self.alpha, self.active, self.csi_round = fb.alpha, bool(fb.active[self.index]), plan.round
            self.csi_error_var = float(fb.error_var[self.index])
            got = True
        return got

    def silent_reason(self) -> str | None:
        """Why this device does not send in this round's data burst (None: it sends)."""
        if self.state != "connected":
            return f"not connected ({self.state})"
        if not self.alive():
            return "dropped out"
        if self.csi is None or self.round - self.csi_round >= self.cfg.pilot_period:
            return "missed the latest feedback"  # stays silent rather than use stale CSI
        if not self.active:
            return "not active this round"
        return None

    def send_data(self, msg: DataRound, values: np.ndarray) -> DeviceStats:
        """The data burst of round ``msg.round`` at PS time ``msg.slot``: alpha·x/H on the data subcarriers (``values``
        complex[n], n ≤ data_symbols · n_data, zero-padded) and 1/H on the pilot subcarriers (the PS's common-phase
        reference); returns what happened as :class:`DeviceStats`."""
        self.round = msg.round
        lay, of = self.layout, self.ofdm
        why = self.silent_reason()
        sent = False
        if why is None:
            cap = lay.data_symbols * of.n_data
            values = np.asarray(values)
            if values.ndim != 1 or values.size > cap:
                raise ValueError(f"values must be complex[≤{cap}], got shape {values.shape}")
            grid = np.zeros((lay.data_symbols, of.n_used), np.complex64)
            v = np.zeros(cap, np.complex64)
            v[:values.size] = values
            grid[:, lay.data_pos] = v.reshape(lay.data_symbols, of.n_data)
            grid[:, lay.pilot_pos] = lay.sum_pilot
            with np.errstate(all="ignore"):
                pre = np.nan_to_num(self.alpha * regularized_inverse(self.csi, self.csi_error_var)).astype(np.complex64)
            grid *= pre[None, :]
            sent = self._send(lambda frac: ofdm_burst(of, grid, frac, self.tracker.sco_ppm), msg.slot, "data")
            if not sent:
                why = "data burst late"
        return DeviceStats(device=self.index, round=msg.round, state=self.state, sent=sent,
                           tx_local=self.last_tx_local if sent else None, late=self.late, bad_frames=self.bad_frames,
                           silent_reason=why, tx_samples=dict(self.tx_samples))
