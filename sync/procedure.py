"""The synchronization procedure in one process: one PS actor and K device actors on a shared air, driven phase by
phase. The actors are the one implementation (:mod:`sync.ps`, :mod:`sync.device`); this module only orchestrates.

One parameter server (PS) and K devices, each behind a radio with its own clock. The PS's clock is the reference;
every schedule is in PS sample time, and devices convert it to their clocks with their beacon tracker. The
procedure, in the order it runs::

    access   beacon × B → PRACH slot → RAR (TA, msg3 slot) → msg3 (device IDs) → msg4 (contention resolution, cover
             code) … repeated with random backoff for devices that were not resolved, up to max_access_attempts
    round r  beacon → [uplink pilots (code-multiplexed) → feedback (CSI, alpha, TA update)] every pilot_period
             rounds → data: all active devices send alpha·x_k/H_k at once, the PS receives alpha·Σ x_k + noise

Between the actors go only waveforms over the air and orchestration messages (:mod:`sync.messages`: the access
slot, the msg3 window, the round plan, the data slot; device stats back). :class:`SyncSession` hands those messages
over as Python calls, in the order a control plane would carry them: in every phase, every transmission is scheduled
first, then the PS reads the phase's samples (which moves the simulated air), then every device reads what it has
received up to now. This runs unchanged on the in-process air and on ZeroMQ endpoints; across processes and hosts,
the same actors run in their own processes and a control plane carries the same messages.

Air time and transmitted samples are booked per phase kind (beacon, prach, rar, msg3, msg4, pilots, feedback, data,
guard) so that experiments can report what synchronization costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phy.ofdm import OfdmConfig
from sync.config import SyncConfig
from sync.device import DeviceActor, RadioPort
from sync.layout import CellLayout
from sync.messages import DataRound, RoundPlan
from sync.ps import PsActor

#: a device's state, as experiments knew it before the actor split
DeviceNode = DeviceActor


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
    """Drives one :class:`sync.ps.PsActor` on ``ps`` and a :class:`sync.device.DeviceActor` per radio in ``devices``
    through the procedure (module docstring).

    ``timing_advance`` False: devices never apply TA (for the comparison run); ``cfo_precomp`` False: no uplink CFO
    pre-rotation. ``n_pilot_symbols``: code-multiplexed pilot symbols per refresh (≥ K + 1; default
    ``pilot_symbols_per_device`` · K). ``data_symbols``: OFDM symbols per round. ``max_delay_spread``: samples
    (default half a CP). ``preambles``: each device's PRACH preamble (default 0..K-1; all distinct → contention-free
    access unless ``contention_free`` says otherwise). ``rng``: the devices' backoff draws (shared in process).
    """

    def __init__(self, ps: RadioPort, devices: list[RadioPort], ofdm: OfdmConfig, cfg: SyncConfig, *,
                 preambles: list[int] | None = None, timing_advance: bool = True, cfo_precomp: bool = True,
                 n_pilot_symbols: int | None = None, data_symbols: int = 8, max_delay_spread: int | None = None,
                 contention_free: bool | None = None, rng: np.random.Generator | None = None):
        if not devices:
            raise ValueError("a sync session needs at least one device")
        self.ps, self.ofdm, self.cfg = ps, ofdm, cfg
        self.k = len(devices)
        self.fs = ps.sample_rate
        pre = list(range(self.k)) if preambles is None else list(preambles)
        self.setup = CellLayout.setup_for(ofdm, cfg, self.k, self.fs, preambles=pre, n_pilot_symbols=n_pilot_symbols,
                                          data_symbols=data_symbols, max_delay_spread=max_delay_spread,
                                          contention_free=contention_free)
        self.layout = CellLayout(ofdm, cfg, self.setup)
        n_pre = self.layout.prach.n_preambles
        if len(pre) != self.k or any(not 0 <= p < n_pre for p in pre):
            raise ValueError(f"preambles must list {self.k} indices in 0..{n_pre - 1}, got {pre}")
        self.rng = rng or np.random.default_rng(0)
        self.timing_advance, self.cfo_precomp = timing_advance, cfo_precomp
        self.data_symbols = self.layout.data_symbols
        self.contention_free = self.setup.contention_free
        self.events: list[str] = []
        self.devices = [DeviceActor(i, r, self.layout, pre[i], timing_advance=timing_advance, cfo_precomp=cfo_precomp,
                                    rng=self.rng, events=self.events) for i, r in enumerate(devices)]
        self.ps_actor = PsActor(ps, self.layout, pre, events=self.events)
        self._prepared = False

    # ------------------------------------------------------------------ what experiments read
    prach = property(lambda self: self.layout.prach, doc="PRACH numerology of the cell")
    tail = property(lambda self: self.layout.tail, doc="samples read past a phase's end")
    guard = property(lambda self: self.layout.guard, doc="samples between phases")
    backoff = property(lambda self: self.layout.backoff, doc="PS FFT-window back-off (samples before the CP end)")
    ta_step = property(lambda self: self.layout.ta_step, doc="TA granularity (samples)")
    n_pilot = property(lambda self: self.layout.n_pilot, doc="pilot symbols per refresh")
    air_time = property(lambda self: self.ps_actor.air_time, doc="air time per phase kind (samples, PS booked)")
    round = property(lambda self: self.ps_actor.round, doc="rounds started")
    plan = property(lambda self: self.ps_actor.plan, doc="the latest truncated-inversion plan")
    noise_var = property(lambda self: self.ps_actor.noise_var, doc="PS noise variance per subcarrier (pilots)")
    pilot_delay = property(lambda self: self.ps_actor.pilot_delay, doc="device → pilot timing error (samples)")
    prach_snr = property(lambda self: self.ps_actor.prach_snr, doc="preamble → PRACH SNR per subcarrier")
    prach_estimates = property(lambda self: self.ps_actor.prach_estimates,
                               doc="(slot, preamble) → delay after the slot start")
    beacons_sent = property(lambda self: self.ps_actor.beacons_sent, doc="beacon counter")
    t = property(lambda self: self.ps_actor.t, doc="earliest start of the next phase (PS time)")

    @property
    def lost_beacons(self) -> set[int]:
        """Beacon numbers the PS skips (a beacon lost, for tests)."""
        return self.ps_actor.lost_beacons

    @lost_beacons.setter
    def lost_beacons(self, value) -> None:
        self.ps_actor.lost_beacons = set(value)

    @property
    def tx_samples(self) -> dict[str, int]:
        """Transmitted samples per phase kind, PS and devices together."""
        out: dict[str, int] = dict(self.ps_actor.tx_samples)
        for d in self.devices:
            for kind, n in d.tx_samples.items():
                out[kind] = out.get(kind, 0) + n
        return out

    # ------------------------------------------------------------------ phases
    def send_beacons(self, count: int, ladder: int = 0) -> None:
        """The PS sends ``count`` beacons (and ``ladder`` more, :meth:`sync.ps.PsActor.send_beacons`); every device
        reads its stream (and tracks them)."""
        self.ps_actor.send_beacons(count, ladder)
        for d in self.devices:
            d.listen()

    def access(self, beacons: int | None = None) -> None:
        """Random access until every device is connected or has used its attempts."""
        self.send_beacons(beacons or self.cfg.beacons_before_access, self.cfg.beacon_ladder or 0)
        while True:
            contenders = [d for d in self.devices if d.contending]
            waiting = [d for d in self.devices if d.state == "synced" and d.backoff > 0]
            if not contenders and not waiting:
                break
            self._access_cycle(contenders)
            for d in waiting:
                d.backoff -= 1
            self.send_beacons(1)
        for d in self.devices:
            d.access_over()

    def _access_cycle(self, contenders: list[DeviceActor]) -> None:
        slot = self.ps_actor.access_slot()                 # orchestration: PRACH slot (PS time)
        for d in contenders:
            d.send_prach(slot)
        window = self.ps_actor.receive_prach(slot)         # PRACH detection, RAR over the air; msg3 window
        for d in contenders:
            d.take_rar(window)                             # contention-free: connected or failed; else msg3
        if window is None:
            return
        self.ps_actor.resolve_contention()                 # msg3 reception, msg4 over the air
        for d in contenders:
            d.take_msg4()

    def refresh_channels(self, plan: RoundPlan | None = None) -> None:
        """Uplink pilots from every connected device, then feedback: CSI, common amplitude and a TA update."""
        plan = plan or self.ps_actor.plan_pilots()
        for d in self.devices:
            d.send_pilots(plan)
        self.ps_actor.receive_pilots(plan)
        for d in self.devices:
            d.take_feedback(plan)

    def prepare_round(self) -> list[int]:
        """Start the next round: its beacon and, every ``pilot_period`` rounds, uplink pilots and feedback. Returns
        the devices the PS expects in this round's sum (the scheme can encode for exactly them). ``data_round``
        calls it when it was not called first."""
        if self.ps_actor.begin_round():
            self.send_beacons(1)
            self.refresh_channels()
        self._prepared = True
        return [int(i) for i in np.flatnonzero(self.plan.active)] if self.plan is not None else []

    def data_round(self, values: np.ndarray, *, seed: int | None = None, power_scale: float = 1.0) -> RoundResult:
        """One over-the-air sum of ``values`` (complex[K, n], n ≤ data_symbols · n_data; row k is device k's)."""
        of = self.ofdm
        values = np.asarray(values)
        n_cap = self.data_symbols * of.n_data
        if values.ndim != 2 or values.shape[0] != self.k or values.shape[1] > n_cap:
            raise ValueError(f"values must be complex[{self.k}, ≤{n_cap}], got shape {values.shape}")
        if not self._prepared:
            self.prepare_round()
        self._prepared = False
        msg: DataRound = self.ps_actor.data_slot(seed=seed, power_scale=power_scale)   # orchestration: data slot
        stats = [d.send_data(msg, values[d.index]) for d in self.devices]
        est, noise_var, alpha, active = self.ps_actor.receive_data(msg, values.shape[1])
        plan = self.plan
        truth = values[active].sum(axis=0) if active else np.zeros(values.shape[1], values.dtype)
        excluded = {d.index: d.excluded or (plan.reasons.get(d.index) if plan else None) or "not active"
                    for d in self.devices if d.index not in active}
        return RoundResult(estimate=est, truth=truth, noise_var=noise_var, alpha=alpha, active=active,
                           excluded=excluded, slot=msg.slot, tx_local={s.device: s.tx_local for s in stats if s.sent},
                           pilot_delay=dict(self.pilot_delay))

    # ------------------------------------------------------------------ reporting
    def overhead(self) -> dict:
        """Fractions of air time and of transmitted samples spent on each phase kind (data is the useful part)."""
        air, tx = dict(self.air_time), self.tx_samples
        air_total, tx_total = sum(air.values()), sum(tx.values())
        return {"air_time": {k: v / air_total for k, v in sorted(air.items())} if air_total else {},
                "tx_samples": {k: v / tx_total for k, v in sorted(tx.items())} if tx_total else {},
                "air_time_samples": air, "tx_samples_count": tx,
                "overhead_fraction": 1 - air.get("data", 0) / air_total if air_total else float("nan")}

    def timing_crlb(self, index: int) -> float:
        """CRLB (samples) of the PRACH delay estimate of device ``index`` at its measured PRACH SNR."""
        return self.ps_actor.timing_crlb(self.devices[index].preamble)
