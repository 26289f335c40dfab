"""A long-lived device actor inside its radio node's process (``otalab node --actor device``).

Flower starts a fresh ClientApp process for every message, so a device's state (beacon tracker, timing advance,
CSI, the stream it has read) cannot live in a ClientApp. It lives here: :class:`DeviceHost` keeps one
:class:`sync.device.DeviceActor` whose radio is the node's own :class:`radio.node.node.RadioNode` (through
:class:`radio.node.port.NodePort`: time_now, TX at a time at least ``lead`` ahead, RX from the ring), and serves it
on the node's endpoint as the ``actor`` op (``NodeServer(ops={"actor": host.handle})``). The ClientApp is a thin
forwarder: it hands the PS's orchestration messages to this op, adds the values it computed (A-DSGD: its analog
update; sync task: random vectors) as the payload frame, and returns the answer to the PS.

Between requests a listener thread reads the stream every ``listen_s`` (:meth:`DeviceActor.listen`): the tracker
sees every beacon as it arrives and the ring only has to hold a fraction of a second, however long the control plane
takes between two messages. The actor is used under one lock (listener and requests never interleave).

Request (``header["body"]``: a JSON object) — ``{"do": [step, ...]}``, steps run in order, each a dict with ``op``
and optionally ``after`` (PS time: the step waits until the radio has received that far, e.g. the feedback of a
round whose data slot was announced with its pilots):

===========  ==========================================  ===================================================
op           fields                                      what the actor does (sync.procedure order)
===========  ==========================================  ===================================================
setup        setup (CellSetup), index, preamble, seed,   builds the layout and a new DeviceActor (any old
             timing_advance, cfo_precomp                 one is dropped); starts the listener
prach        slot (AccessSlot)                           if contending: send_prach; notes who waits (backoff)
rar          window (Msg3Window or null)                 if it sent a PRACH: take_rar; contention-free: the
                                                         access cycle ends (waiting devices count down)
msg4         —                                           if it sent a PRACH: take_msg4; the cycle ends
access_over  —                                           access_over (not connected: excluded, with reason)
pilots       plan (RoundPlan)                            send_pilots
feedback     plan (RoundPlan)                            take_feedback
data         msg (DataRound), n (values in the payload)  send_data with the payload's complex64[n] values
===========  ==========================================  ===================================================

Reply ``body``: ``{"state": {...}, "steps": [per-step result], "error": str|None}``; ``state`` is what the PS may
know of a device and what a measurement needs: state, contending/waiting, excluded, TX counters, the tracker's CFO
estimate, the last data burst's device-clock start (``DeviceStats``).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import traceback

import numpy as np

from phy.frame import FrameBuilder
from phy.receiver import Receiver
from radio.node.port import NodePort
from sync.config import SyncConfig
from sync.device import DeviceActor
from sync.layout import CellLayout
from sync.messages import AccessSlot, CellSetup, DataRound, Msg3Window, RoundPlan


def warm_up(ofdm, sync: SyncConfig | None) -> None:
    """Build one uplink control frame and receive it: the LDPC encoder's and decoder's imports and the detector's
    compiled kernel take seconds on a loaded host, holding the GIL. Done in a node process before its radio opens,
    and again at setup (cheap then), so that none of it stalls the node's streaming threads (in a Pluto cell, an
    actor's first setup stalled its node's TX feeder for 0.4 s and its RX for over 1 s: the DAC ran dry, the TX
    offset moved, and random access never found the device) nor falls between a slot's announcement and its
    transmission."""
    sync = sync or SyncConfig()
    frame = FrameBuilder(ofdm).build_digital(bytes(4), seq=0, modem=sync.control_modem,
                                             code_rate=sync.control_code_rate)
    pad = np.zeros(4 * ofdm.symbol_len, np.complex64)
    Receiver(ofdm).process(np.concatenate([pad, frame, pad, pad]), 0)


class DeviceHost:
    """Hosts one device actor on ``node`` (a started RadioNode) for the cell described by ``ofdm`` (OfdmConfig) and
    ``sync`` (SyncConfig; its ``lead`` is replaced by the node's). ``listen_s``: listener period (seconds)."""

    def __init__(self, node, ofdm, sync: SyncConfig | None, *, listen_s: float = 0.1):
        self.node, self.ofdm = node, ofdm
        self.port = NodePort(node, lead=int(round(node.lead_s * node.sample_rate)))
        self.sync = dataclasses.replace(sync or SyncConfig(), lead=self.port.lead)
        self.listen_s = float(listen_s)
        self.actor: DeviceActor | None = None
        self.events: list[str] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._contended = False
        self._waiting = False
        self._thread: threading.Thread | None = None
        self.listen_errors = 0

    # ------------------------------------------------------------------ the listener
    def _listen_loop(self) -> None:
        while not self._stop.wait(self.listen_s):
            with self._lock:
                if self.actor is None:
                    continue
                try:
                    self.actor.listen()
                except Exception as exc:  # noqa: BLE001 (a read the ring no longer holds: counted, the stream goes on)
                    self.listen_errors += 1
                    self.events.append(f"listen: {type(exc).__name__}: {exc}")
                    self.actor.cursor = self.port.time_now()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.port.close()

    # ------------------------------------------------------------------ requests
    def handle(self, header: dict, payload) -> tuple[dict, None]:
        """The ``actor`` op (module docstring); never raises: errors come back in the reply's ``error``."""
        self.requests += 1
        body = header.get("body")
        out: dict = {"steps": [], "error": None}
        try:
            if isinstance(body, str):
                body = json.loads(body)
            if not isinstance(body, dict) or not isinstance(body.get("do"), list):
                raise ValueError(f"actor request body = {str(body)[:80]!r}: expected {{'do': [steps]}}")
            for step in body["do"]:
                if step.get("after") is not None:
                    self._wait_for(int(step["after"]))
                with self._lock:
                    out["steps"].append(self._step(step, payload))
            with self._lock:
                out["state"] = self.state()
        except Exception as exc:  # noqa: BLE001 (the PS reads the reason and excludes the device)
            out["error"] = f"{type(exc).__name__}: {exc}"
            out["traceback"] = traceback.format_exc(limit=3)
        return {"op": "ok", "body": out}, None

    def _wait_for(self, ps_time: int) -> None:
        """Block (the listener keeps reading) until the radio has received PS time ``ps_time`` (converted with the
        beacon tracker; a device that is not synced does not wait)."""
        with self._lock:
            d = self.actor
            if d is None or not d.tracker.synced:
                return
            local = int(np.ceil(d.tracker.ps_to_local(ps_time)))
        left = (local - self.port.time_now()) / self.port.sample_rate
        if left > 0:
            self.node.wait_until(local, timeout_s=left + 5.0)

    def _step(self, step: dict, payload) -> dict:
        op = step.get("op")
        if op == "setup":
            setup = CellSetup.from_dict(step["setup"])
            layout = CellLayout(self.ofdm, self.sync, setup)
            self.actor = DeviceActor(int(step["index"]), self.port, layout, int(step["preamble"]),
                                     timing_advance=bool(step.get("timing_advance", True)),
                                     cfo_precomp=bool(step.get("cfo_precomp", True)),
                                     rng=np.random.default_rng(int(step.get("seed", 0))), events=self.events)
            warm_up(self.ofdm, self.sync)       # (done before the radio opened too: then it costs little here)
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen_loop, name="DeviceHost listener", daemon=True)
                self._thread.start()
            return {"op": op, "now": self.port.time_now(), "lead": self.port.lead}
        d = self.actor
        if d is None:
            raise ValueError(f"step {op!r} before 'setup': this node hosts no device actor yet")
        d.listen()
        if op == "prach":
            self._contended = d.contending
            self._waiting = d.state == "synced" and d.backoff > 0
            if self._contended:
                d.send_prach(AccessSlot.from_dict(step["slot"]))
            return {"op": op, "contended": self._contended}
        if op == "rar":
            window = step.get("window")
            got = d.take_rar(Msg3Window.from_dict(window) if window else None) if self._contended else None
            if window is None:
                self._end_cycle()
            return {"op": op, "got": got}
        if op == "msg4":
            won = d.take_msg4() if self._contended else None
            self._end_cycle()
            return {"op": op, "won": won}
        if op == "access_over":
            d.access_over()
            return {"op": op}
        if op == "pilots":
            return {"op": op, "sent": d.send_pilots(RoundPlan.from_dict(step["plan"]))}
        if op == "feedback":
            plan = RoundPlan.from_dict(step["plan"])
            got = d.take_feedback(plan)
            # a feedback the PS sent later than planned may still be on its way: look again until ``until`` (PS
            # time; the data slot minus what sending it needs), never past it
            until = step.get("until")
            while not got and until is not None and d.tracker.synced and \
                    self.port.time_now() < d.tracker.ps_to_local(int(until)):
                self._lock.release()
                try:
                    time.sleep(0.02)
                finally:
                    self._lock.acquire()
                got = d.take_feedback(plan)
            return {"op": op, "got": got}
        if op == "data":
            n = int(step["n"])
            if payload is None:
                raise ValueError("'data' step without a payload frame (complex64 values)")
            values = np.frombuffer(payload, np.complex64)
            if values.size != n:
                raise ValueError(f"'data' payload holds {values.size} complex64 values, expected n={n}")
            stats = d.send_data(DataRound.from_dict(step["msg"]), values)
            return {"op": op, "stats": stats.to_dict()}
        raise ValueError(f"actor step op = {op!r}: expected setup, prach, rar, msg4, access_over, pilots, feedback, "
                         f"data")

    def _end_cycle(self) -> None:
        """An access cycle is over: devices that were backing off at its start count one slot down."""
        if self._waiting and self.actor is not None and self.actor.backoff > 0:
            self.actor.backoff -= 1
        self._contended = self._waiting = False

    def state(self) -> dict:
        """What the PS learns of this device after a request (module docstring)."""
        d = self.actor
        if d is None:
            return {"state": "no actor"}
        return {"index": d.index, "state": d.state, "contending": d.contending,
                "waiting": d.state == "synced" and d.backoff > 0, "excluded": d.excluded, "late": d.late,
                "bad_frames": d.bad_frames, "tracker_misses": d.tracker_misses, "tx_samples": dict(d.tx_samples),
                "cfo_hz": float(d.tracker.cfo_hz) if d.tracker.synced else None,
                "cfo_std_hz": float(d.tracker.cfo_std_hz) if d.tracker.synced else None,
                "sco_ppm": float(d.tracker.sco_ppm) if d.tracker.synced else None,
                "ta_samples": float(d.ta.advance), "last_tx_local": d.last_tx_local,
                "prach_local": d.prach_local, "prach_slot": d.prach_slot, "preamble": d.preamble,
                "node_tx": dict(self.port.tx_states), "gap_samples": self.port.gap_samples,
                "listen_errors": self.listen_errors, "events": self.events[-20:]}
