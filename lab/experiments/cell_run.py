"""The synchronization procedure across processes: the PS actor here, each device actor in its radio node, and a
control plane (Flower in ``otalab cell``) carrying the orchestration messages between them.

:class:`CellRun` reproduces :class:`sync.procedure.SyncSession`'s sequence with the same actors
(:class:`sync.ps.PsActor` on the PS radio's :class:`radio.node.port.NodePort`; :class:`sync.device.DeviceActor` in
each device's node, :mod:`lab.experiments.actor_host`). Every phase whose device side needs an orchestration message
costs one control-plane round (``control.send``), and that phase is anchored ``lead`` samples ahead of the PS
radio's clock so that the message reaches the devices before its slot::

    control   setup (CellSetup, index, preamble)                       [also measures the round trip]
    air       PS: beacons × B
    control   prach (AccessSlot)            air: devices' PRACH         PS: detect, RAR over the air
    control   rar (Msg3Window | None)       air: msg3 (contention-based) PS: msg3, msg4 over the air
    control   msg4                                                        (contention-based only)
    air       PS: beacon                                                  ... until nobody contends or waits
    round r:  air: PS beacon
              control (pushed, answered after the round): [access_over] + pilots (RoundPlan) + feedback (after the
                      planned feedback's end) + data (DataRound, the values; slot = feedback end + guard + device
                      turnaround)
              air: pilots; PS: estimate, feedback (ps_turnaround after the pilots); devices: take the feedback,
                   then every active device's burst at once; PS: the over-the-air sum

The data slot is announced together with the pilots, not in a control round of its own: a control round takes
seconds, and the channel the pilots measure must still hold when the data arrives (a residual CFO δf of each
device's beacon estimate turns its phase by 2π·δf·Δt: 0.05 Hz over a 30 s round trip is 9 rad, over the ~1 s of
two turnarounds 0.3 rad).

A PS phase that needs no device action (beacons, RAR, msg4, feedback) is anchored at the radio's own lead only.
The PS reads each phase after the control round that scheduled it, so the PS node's ring must hold ``lead`` plus a
round trip (``otalab cell`` sizes it); devices read their stream continuously (their host's listener).

``control.push({device: body}) -> handle`` and ``control.pull(handle) -> {device: reply body or error text}`` are
any control plane: Flower's Grid in the
ServerApp (:mod:`lab.flower.server_app`), or direct calls in a test. A device whose reply is missing or carries an
``error`` is dropped from later messages and listed in :attr:`CellRun.excluded` with the reason.

:func:`device_step` is the device side of a message (what a ClientApp does): forward the steps to its node's
``actor`` op, adding the values of a ``data`` step (random vectors for the sync task; the learning layer's analog
update for ``feel``) as the payload. Those values go to the node over the host-local socket and then over the air;
only in ``diagnostics`` mode does the device also return them, for the PS to measure the over-the-air sum's NMSE.
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import math
import time

import numpy as np

from phy.frame import FrameBuilder
from radio.node.port import NodePort
from sync.config import SyncConfig
from sync.layout import CellLayout
from sync.messages import DataRound, feedback_size
from sync.ps import PsActor


def random_values(seed: int, index: int, n: int) -> np.ndarray:
    """The sync task's data: complex64[n] unit-power circular Gaussian values of device ``index`` in the round of
    ``seed`` (drawn on the device; the PS sees them only in diagnostics mode)."""
    rng = np.random.default_rng([int(seed), int(index)])
    return ((rng.standard_normal(n) + 1j * rng.standard_normal(n)) / math.sqrt(2)).astype(np.complex64)


def encode_values(x: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(x, np.complex64).tobytes()).decode()


def decode_values(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), np.complex64)


def device_step(body: dict, call, values_fn=None) -> dict:
    """The device side of one control message: ``body`` = ``{"do": [steps], "diagnostics": bool}``; ``call(fields,
    payload) -> reply`` reaches the node's ``actor`` op. A ``data`` step with ``values`` = ``{"kind": "random",
    "seed": s, "n": n}`` gets :func:`random_values`, ``"jscc"`` the latent of an image
    (:func:`lab.experiments.cell_jscc.device_values`); other kinds go to ``values_fn(step) -> complex64[n]`` (the
    learning layer). Returns the node's reply body (plus ``values`` in diagnostics mode).

    The steps before the data step (pilots, feedback) go to the node at once, in a call of their own, while the
    values are made: a FEEL device's local training then runs during the pilots → feedback → data interval instead
    of before its pilots (measured at load ~4: training first left the pilots 0.4–1.4 s late, the round empty). The
    data step follows once both are done; if the first call fails, the data step is not sent."""
    steps = list(body["do"])
    k = next((i for i, s in enumerate(steps) if s.get("op") == "data"), None)
    if k is None:
        return call({"body": {"do": steps}}, None)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="device_step") as pool:
        pending = pool.submit(call, {"body": {"do": steps[:k]}}, None) if k else None
        try:
            payload = _values(steps[k], values_fn)
        finally:
            first = pending.result() if pending is not None else None
    if first is not None and first.get("error"):
        return first
    data = {key: v for key, v in steps[k].items() if key not in ("values", "index")} | {"n": int(payload.size)}
    reply = call({"body": {"do": [data] + steps[k + 1:]}}, payload)
    if first is not None:
        reply["steps"] = first.get("steps", []) + reply.get("steps", [])
    if body.get("diagnostics"):
        reply["values"] = encode_values(payload)
    return reply


def _values(step: dict, values_fn) -> np.ndarray:
    """The payload of a data step (:func:`device_step`)."""
    spec = step.get("values") or {}
    if spec.get("kind") == "random":
        return random_values(int(spec["seed"]), int(step["index"]), int(spec["n"]))
    if spec.get("kind") == "jscc":
        from lab.experiments.cell_jscc import device_values

        return device_values(spec)
    if values_fn is not None:
        return np.ascontiguousarray(values_fn(step), np.complex64)
    raise ValueError(f"data step with values {spec!r}: no producer for that kind")


#: what a turnaround budget holds beyond the radio's lead: reading the phase before and decoding it (s)
TURNAROUND_MARGIN_S = 0.5
#: rungs of the access beacons' ladder when the config leaves sync.beacon_ladder null: rounds here are seconds apart,
#: and a device's CFO estimate must bridge them for pre-compensation to hold from the pilots to the data
CELL_BEACON_LADDER = 3


@dataclasses.dataclass
class RoundRecord:
    round: int
    slot: int
    active: list
    estimate: np.ndarray
    noise_var: float
    alpha: float
    stats: dict                     # device -> DeviceStats dict
    values: dict                    # device -> complex64[n] (diagnostics) or absent
    control_s: float
    wall_s: float
    extra: dict = dataclasses.field(default_factory=dict)   # device -> what its ClientApp added (feel: "learner")


class CellRun:
    """The PS side of a cell across processes (module docstring).

    ``ps``: the PS radio (a NodePort, or a NodeClient/RadioNode it wraps); ``devices``: the control plane's device
    keys (node ids), index i = position; ``control``: the control plane; ``lead``: samples between a phase's
    announcement and its slot (None: 2 × the setup round trip, at least ``min_lead_s``); ``ps_lead``: the PS radio's
    own lead for phases only it acts in (default: its node's lead + 1 s: on this 2-core host at load ~10 the path
    ServerApp → PS node → broker stalled up to 1 s).
    ``ps_turnaround_s``/``device_turnaround_s``: the pilots → feedback and feedback → data budgets; ``cfo_precomp``,
    ``timing_advance``: the device actors' switches (``cfo_precomp`` off suits radios that share a frequency
    reference: no CFO to undo, and a beacon estimate's residual δf would turn the phase by 2π·δf·Δt between the
    pilots and the data)."""

    def __init__(self, ps, ofdm, sync: SyncConfig | None, devices: list, control, *, lead: int | None = None,
                 min_lead_s: float = 2.0, data_symbols: int = 8, seed: int = 0, diagnostics: bool = False,
                 ps_lead: int | None = None, max_lead_s: float | None = None, ps_turnaround_s: float = 1.5,
                 device_turnaround_s: float = 1.0, cfo_precomp: bool = True, timing_advance: bool = True):
        self.port = ps if isinstance(ps, NodePort) else NodePort(ps)
        self.fs = self.port.sample_rate
        self.events: list[str] = []
        ps_lead = ps_lead if ps_lead is not None else self.port.lead + int(1.0 * self.fs)
        ps_turnaround = int(ps_turnaround_s * self.fs)
        if ps_turnaround <= ps_lead:    # the feedback is built after the pilots are read: the radio's lead after it
            ps_turnaround = ps_lead + int(TURNAROUND_MARGIN_S * self.fs)
            self.events.append(f"PS turnaround {ps_turnaround_s} s raised to {ps_turnaround / self.fs:.2f} s: the PS "
                               f"radio's lead is {ps_lead / self.fs:.2f} s")
        self.cfg = dataclasses.replace(sync or SyncConfig(), lead=ps_lead, ps_turnaround=ps_turnaround,
                                       device_turnaround=int(device_turnaround_s * self.fs))
        self.ofdm, self.control, self.seed = ofdm, control, int(seed)
        self.devices = list(devices)
        self.k = len(self.devices)
        self.index = {d: i for i, d in enumerate(self.devices)}
        self.diagnostics = bool(diagnostics)
        self.cfo_precomp, self.timing_advance = bool(cfo_precomp), bool(timing_advance)
        self.lead, self.min_lead_s, self.max_lead_s = lead, float(min_lead_s), max_lead_s
        self._lead_given = lead is not None
        self.setup = CellLayout.setup_for(ofdm, self.cfg, self.k, self.fs, preambles=list(range(self.k)),
                                          data_symbols=data_symbols)
        self.layout = CellLayout(ofdm, self.cfg, self.setup)
        lay, cfg = self.layout, self.cfg
        fb_bytes = feedback_size(self.k, lay.pilot_taps, cfg.feedback_bits)
        #: the longest feedback frame (every tap kept, as CellLayout bounds it): the data slot is planned after it
        self.feedback_len = FrameBuilder(ofdm).frame_len(n_bytes=fb_bytes, modem=cfg.control_modem,
                                                         code_rate=cfg.control_code_rate)
        self.excluded: dict = {}
        self.state: dict = {}           # device -> its latest reported state
        self.control_rounds: list[dict] = []
        self.lost_rounds = 0            # data rounds whose slot the PS had read past (see data_round)
        self.ps: PsActor | None = None
        self._pending: list[dict] = []

    # ------------------------------------------------------------------ control plane
    @property
    def live(self) -> list:
        return [d for d in self.devices if d not in self.excluded]

    def _send(self, what: str, steps_for) -> dict:
        """One control round: ``steps_for(device) -> [steps]`` to every live device; replies by device."""
        return self._collect(self._push(what, steps_for))

    def _push(self, what: str, steps_for):
        bodies = {d: {"do": steps_for(d), "diagnostics": self.diagnostics} for d in self.live}
        return what, bodies, time.monotonic(), (self.control.push(bodies) if bodies else None)

    def _collect(self, pushed) -> dict:
        what, bodies, t0, handle = pushed
        replies = self.control.pull(handle) if bodies else {}
        dt = time.monotonic() - t0
        self.control_rounds.append({"what": what, "devices": len(bodies), "seconds": dt})
        out = {}
        for d in bodies:
            rep = replies.get(d)
            if rep is None:
                self._exclude(d, f"{what}: no answer over the control plane")
            elif isinstance(rep, str):
                self._exclude(d, f"{what}: {rep}")
            elif rep.get("error"):
                self._exclude(d, f"{what}: {rep['error']}")
            else:
                self.state[d] = rep.get("state", {})
                out[d] = rep
        return out

    def _exclude(self, d, why: str) -> None:
        if d not in self.excluded:
            self.excluded[d] = why
            name = getattr(self.control, "names", {}).get(d, d)     # the device's own name once it has answered
            self.events.append(f"device {self.index[d]} ({name}) excluded: {why}")

    # ------------------------------------------------------------------ phases
    def start(self) -> float:
        """Send every device the cell's setup (its index and preamble); returns the round trip (s) and, unless a
        ``lead`` was given, sets it to twice that (at least ``min_lead_s``, at most ``max_lead_s``)."""
        setup = self.setup.to_dict()
        self.ps = PsActor(self.port, self.layout, list(range(self.k)), events=self.events)
        # the first waveform builds the LDPC encoder (seconds of imports on a loaded host): not between an anchor
        # and its transmission
        self.ps.beacon.waveform(0, 0)
        t0 = time.monotonic()
        replies = self._send("setup", lambda d: [{"op": "setup", "setup": setup, "index": self.index[d],
                                        "preamble": self.index[d], "seed": self.seed + 1 + self.index[d],
                                        "cfo_precomp": self.cfo_precomp, "timing_advance": self.timing_advance}])
        rtt = time.monotonic() - t0
        # a device sends its data after decoding the feedback: its turnaround must cover its radio's lead (a
        # streaming Pluto's TX queue, about 0.6 s, against the default 1 s budget) and the decode
        leads = [int(r["lead"]) for rep in replies.values() for r in rep.get("steps", []) if "lead" in r]
        need = max(leads, default=0) + int(TURNAROUND_MARGIN_S * self.fs)
        if leads and self.cfg.device_turnaround < need:
            self.events.append(f"device turnaround {self.cfg.device_turnaround / self.fs:.2f} s raised to "
                               f"{need / self.fs:.2f} s: the longest device radio lead is {max(leads) / self.fs:.2f} s")
            self.cfg = dataclasses.replace(self.cfg, device_turnaround=need)
            self.layout = CellLayout(self.ofdm, self.cfg, self.setup)
            self.ps.layout, self.ps.cfg = self.layout, self.cfg
        if self.lead is None:
            lead_s = max(2 * rtt, self.min_lead_s)
            if self.max_lead_s is not None:
                lead_s = min(lead_s, self.max_lead_s)
            self.lead = int(lead_s * self.fs)
            self.events.append(f"control-plane round trip {rtt:.2f} s: phases anchored {lead_s:.2f} s ahead")
        return rtt

    def access(self) -> None:
        """Beacons, then access cycles until no device contends or backs off (SyncSession.access's order)."""
        ps, cfg = self.ps, self.cfg

        def missed() -> int:           # the PS's bursts its node sent late or refused as too late to send
            states = self.port.flush()
            return states.get("late", 0) + states.get("rejected", 0)

        for attempt in range(3):       # the PS knows when its own beacons left late (a stalled host): send again
            before = missed()
            ps.send_beacons(cfg.beacons_before_access, CELL_BEACON_LADDER if cfg.beacon_ladder is None
                            else cfg.beacon_ladder)
            if missed() == before:
                break
            self.events.append(f"access beacons left late or were refused (attempt {attempt + 1}): sent again")
        cycles = cfg.max_access_attempts * cfg.backoff_window + 1
        for _ in range(cycles):
            slot = ps.access_slot(self.lead)
            self._send("prach", lambda d: [{"op": "prach", "slot": slot.to_dict()}])
            window = ps.receive_prach(slot)
            if window is None:
                replies = self._send("rar", lambda d: [{"op": "rar", "window": None}])
            else:
                self._send("rar", lambda d: [{"op": "rar", "window": window.to_dict()}])
                ps.resolve_contention()
                replies = self._send("msg4", lambda d: [{"op": "msg4"}])
            ps.send_beacons(1)
            if not any(r["state"].get("contending") or r["state"].get("waiting") for r in replies.values()):
                break
        self._pending = [{"op": "access_over"}]
        self._adapt_lead()

    def _adapt_lead(self) -> None:
        """After access and after every data round, the lead becomes twice the slowest recent round trip (the setup
        round's and the last three rounds'; a feel round's ClientApp is as slow to forward its pilots as the setup
        round, and its local training, made meanwhile, may outlast the data slot (:func:`device_step`): the round
        then takes longer than its air phases, and the excess counts), within [min_lead_s, max_lead_s]; unless a
        lead was given. A data round's devices answer only once their burst has left, so the time its air phases
        were scheduled ahead (``air_wait_s``) is not control-plane time: counted, it made the lead feed on itself
        (every round then took the longest lead allowed, ~100 s, in a 4-device feel run)."""
        if self._lead_given:
            return
        recent = [c for c in self.control_rounds if c["what"] == "setup"] + self.control_rounds[-3:]
        rtts = [max(0.0, c["seconds"] - c.get("air_wait_s", 0.0)) for c in recent]
        if not rtts:
            return
        lead_s = max(2 * max(rtts), self.min_lead_s)
        if self.max_lead_s is not None:
            lead_s = min(lead_s, self.max_lead_s)
        self.lead = int(lead_s * self.fs)
        self.events.append(f"round trips up to {max(rtts):.2f} s: rounds anchored {lead_s:.2f} s ahead")

    def data_round(self, values: dict, *, seed: int | None = None, power_scale: float = 1.0) -> RoundRecord:
        """One over-the-air sum. ``values``: what the data step carries to the devices (e.g. ``{"kind": "random",
        "seed": s, "n": n}``; the device side makes the values, :func:`device_step`)."""
        ps, of = self.ps, self.ofdm
        t_start = time.monotonic()
        control_s = 0.0
        pre = list(self._pending)
        self._pending = []
        n = int(values.get("n", self.layout.data_symbols * of.n_data))
        n0 = len(self.control_rounds)
        now0 = self.port.time_now()      # the air phases below are scheduled ahead of this: not control-plane time
        if ps.begin_round():
            # pilots, feedback and data in one control round: the data slot follows the planned feedback by the
            # devices' turnaround only, so that the channel the pilots measured (phase included: a residual CFO
            # of δf turns it by 2π·δf per second) still holds when the data burst arrives
            ps.send_beacons(1)
            plan = ps.plan_pilots(self.lead)
            fb_end = plan.feedback_at + self.feedback_len
            msg = DataRound(round=ps.round, slot=fb_end + self.layout.guard + self.cfg.device_turnaround, seed=seed,
                            power_scale=power_scale)
            pushed = self._push("pilots+data", lambda d: pre + [
                {"op": "pilots", "plan": plan.to_dict()},
                {"op": "feedback", "plan": plan.to_dict(), "after": fb_end + self.layout.tail,
                 "until": msg.slot - self.port.lead - int(0.1 * self.fs)},
                {"op": "data", "msg": msg.to_dict(), "values": values, "index": self.index[d]}])
            ps.receive_pilots(plan)
            if ps.t + self.cfg.device_turnaround > msg.slot:
                self.events.append(f"round {ps.round}: feedback ended at {ps.t - self.layout.guard}, too late for "
                                   f"the data slot {msg.slot} announced with the pilots (PS turnaround "
                                   f"{self.cfg.ps_turnaround} samples too short)")
        else:
            msg = ps.data_slot(seed=seed, power_scale=power_scale, lead=self.lead)
            pushed = self._push("data", lambda d: pre + [{"op": "data", "msg": msg.to_dict(), "values": values,
                                                          "index": self.index[d]}])
        if msg.slot < ps.cursor:
            # the PS (starved on a loaded host) read past the data slot while it waited for the pilots or sent the
            # feedback late: the burst is gone from its stream, so the round is lost (counted), not the run
            self.events.append(f"round {ps.round}: the PS had read up to {ps.cursor}, past the data slot {msg.slot}: "
                               f"round lost")
            self.lost_rounds += 1
            est, noise_var, alpha, active = np.full(n, np.nan, np.complex64), float("nan"), float("nan"), []
        else:
            est, noise_var, alpha, active = ps.receive_data(msg, n)
        replies = self._collect(pushed)
        self.control_rounds[-1]["air_wait_s"] = max(0.0, (msg.slot - now0) / self.fs)
        control_s += sum(max(0.0, c["seconds"] - c.get("air_wait_s", 0.0)) for c in self.control_rounds[n0:])
        self._adapt_lead()      # a data round's ClientApps (feel: local training) may be the slowest round trip yet
        stats, vals, extra = {}, {}, {}
        for d, rep in replies.items():
            if "learner" in rep:
                extra[d] = {"learner": rep["learner"]}
            step = [s for s in rep.get("steps", []) if s.get("op") == "data"]
            if step:
                stats[d] = step[0]["stats"]
            if "values" in rep:
                vals[d] = decode_values(rep["values"])
        return RoundRecord(round=ps.round, slot=msg.slot, active=active, estimate=est, noise_var=noise_var,
                           alpha=alpha, stats=stats, values=vals, control_s=control_s,
                           wall_s=time.monotonic() - t_start, extra=extra)

    def close(self) -> dict:
        """Wait for the PS's queued bursts; returns their outcomes by state."""
        states = self.port.flush()
        self.port.close()
        return states


# ---------------------------------------------------------------------------------------------- measurement
def link_truth(config, role: str) -> dict:
    """What the simulated air of ``config`` knows about the uplink ``role -> ps`` and the downlink: one-way delay
    (samples), the downlink CFO a device should measure (Hz) and the realized-tap span; None where the air is not a
    simulation whose links are fixed by the config (multipath taps are drawn by the broker's air at run time).

    On the ZeroMQ air every node's clock is the broker's sample clock, so a device's clock offset to the PS is 0."""
    if config.radio.driver != "zmq" or config.air is None:
        return {}
    air = config.air
    if air.channel != "awgn" or air.doppler_hz:
        return {}
    base = config.radio_args.name
    up = air.link_params(f"{base}-{role}", f"{base}-ps")
    down = air.link_params(f"{base}-ps", f"{base}-{role}")
    if up.profile != "none" or down.profile != "none":
        return {}
    return {"delay_samples": float(up.delay_samples), "span": (0, 0), "clock_offset": 0, "sco_ppm": float(up.sco_ppm),
            "cfo_hz": float(down.cfo_ppm) * 1e-6 * float(config.radio.center_freq)}


def sum_error(rr: RoundRecord, run) -> tuple[float, float] | None:
    """(Σ|v̂ − Σ x_k|², Σ|Σ x_k|²) of one data round, the sum over the active devices that reported their burst sent:
    the accuracy of what the air carried. A device the PS planned for whose burst never left (late at its node, it
    missed the feedback) is missing from the air's sum: that is counted apart (``sent``, ``late_bursts``), not as
    error of the sum. None without the devices' values (diagnostics off) or with a non-finite estimate."""
    if not (run.diagnostics and rr.active and np.all(np.isfinite(rr.estimate))):
        return None
    sent = [run.devices[i] for i in rr.active if rr.stats.get(run.devices[i], {}).get("sent", True)]
    if not sent or not all(d in rr.values for d in sent):
        return None
    truth = sum(rr.values[d][:rr.estimate.size] for d in sent)
    return float(np.sum(np.abs(rr.estimate - truth) ** 2)), float(np.sum(np.abs(truth) ** 2))


def measure(run: CellRun, rounds: list[RoundRecord], truths: dict) -> dict:
    """The sync metrics of a finished run. ``truths``: device -> :func:`link_truth` (empty where unknown: the
    metric that needs it is then null, never invented).

    - ``within_cp_fraction``: over every data burst a device sent (device-rounds), the fraction whose true arrival
      error e = (tx_local − clock_offset + delay)/(1 + sco·1e-6) − slot keeps the PS's FFT window inside the CP:
      −b ≤ e + τ_first and e + τ_last ≤ cp − b (b: the window back-off; as :mod:`lab.experiments.sync_trials`);
    - ``timing_rmse_samples``: RMS of the PS's PRACH delay estimate minus the true round trip of each preamble;
    - ``cfo_residual_rms_hz``: RMS of each device's beacon CFO estimate minus the true downlink offset;
    - ``nmse_db``: Σ|estimate − Σ_sent x_k|² / Σ|Σ_sent x_k|² over the rounds where the devices returned their
      values (diagnostics mode), else null (:func:`sum_error`);
    - ``pilot_delay_samples``: the PS's own estimate of each device's arrival error from the last uplink pilots
      (no truth needed: what a hardware cell can report)."""
    lay, of = run.layout, run.ofdm
    b = lay.backoff
    timing, prach, cfo = [], [], []
    num = den = 0.0
    for rr in rounds:
        for d, st in rr.stats.items():
            t = truths.get(d)
            if not st.get("sent") or not t:
                continue
            arr = (st["tx_local"] - t["clock_offset"] + t["delay_samples"]) / (1 + t["sco_ppm"] * 1e-6)
            e = arr - rr.slot
            inside = (-b <= e + t["span"][0]) and (e + t["span"][1] <= of.cp_len - b)
            timing.append({"round": rr.round, "device": run.index[d], "error_samples": float(e),
                           "inside_cp": bool(inside)})
        err = sum_error(rr, run)
        if err is not None:
            num, den = num + err[0], den + err[1]
    for d, st in run.state.items():
        t = truths.get(d)
        if not t:
            continue
        est = run.ps.prach_estimates.get((st.get("prach_slot"), st.get("preamble")))
        if est is not None and st.get("prach_local") is not None:
            true_delay = (st["prach_local"] - t["clock_offset"] + t["delay_samples"]) / (1 + t["sco_ppm"] * 1e-6) \
                - st["prach_slot"]
            prach.append(float(est - true_delay))
        if st.get("cfo_hz") is not None:
            cfo.append(float(st["cfo_hz"] - t["cfo_hz"]))
    air = dict(run.ps.air_time)
    total = sum(air.values())
    return {
        "timing": timing,
        "within_cp_fraction": float(np.mean([t["inside_cp"] for t in timing])) if timing else None,
        "timing_rmse_samples": float(np.sqrt(np.mean(np.square(prach)))) if prach else None,
        "residual_timing_rms_samples": float(np.sqrt(np.mean([t["error_samples"] ** 2 for t in timing])))
        if timing else None,
        "cfo_residual_rms_hz": float(np.sqrt(np.mean(np.square(cfo)))) if cfo else None,
        "nmse_db": float(10 * np.log10(num / den)) if den > 0 and num > 0 else None,
        "pilot_delay_samples": {str(run.index[d]): v for d, v in
                                ((run.devices[i], v) for i, v in run.ps.pilot_delay.items())},
        "air_time_samples": air,
        "overhead_air_fraction": 1 - air.get("data", 0) / total if total else None,
        "lost_rounds": run.lost_rounds,
        "truth": "link delays and CFO from the config's air (one broker clock)" if truths else
                 "no truth available: within_cp_fraction, timing_rmse_samples and cfo_residual_rms_hz are null",
    }
