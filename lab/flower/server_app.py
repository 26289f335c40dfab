"""The PS's ServerApp: drives the cell's rounds over Flower and owns (through its node) the PS radio only.

Run config (``lab/flower/app/pyproject.toml``, filled by ``otalab cell``): ``task``, ``rounds``, ``devices`` (how many
SuperNodes to wait for), ``ps-endpoint`` (the PS radio node's local API), ``out`` (result JSON, written atomically),
``join-timeout-s``, ``reply-timeout-s``, ``slot-lead-s``, ``seed``.

Each round the PS reads its radio's clock, sets the round's slot ``slot-lead-s`` ahead of it (PS samples), and sends
every active device the round, the slot, the round's A-DSGD projection seed and the power scale. A device that does
not answer within ``reply-timeout-s``, or answers with an error (its radio node is gone), is excluded from the
following rounds and listed in ``excluded_devices`` with the reason; the run finishes with the others.

Flower starts one ClientApp process per message and a SuperNode polls the SuperLink for work every few seconds, so a
round's control-plane time is seconds: the slot lead has to cover it (``slot_margin_s`` in each round says what was
left when the last device had its instruction). ``otalab bench cell`` measures it.
"""

from __future__ import annotations

import os
import time
import traceback

import numpy as np
from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp

from lab.flower import protocol

app = ServerApp()


def wait_for_nodes(grid: Grid, count: int, timeout_s: float) -> list[int]:
    """The ids of ``count`` SuperNodes once that many are connected; RuntimeError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(nodes)} of {count} SuperNodes connected within {timeout_s} s")
        time.sleep(0.2)


def probe_rounds(grid: Grid, cfg: dict, ps, record: dict) -> None:
    """The probe task: every round, every active device reads its node's clock and status (module docstring)."""
    nodes = wait_for_nodes(grid, int(cfg["devices"]), float(cfg["join-timeout-s"]))
    record["node_ids"] = nodes
    fs = ps.sample_rate
    names: dict[int, str] = {}
    active = list(nodes)
    excluded: dict[int, str] = {}
    rng = np.random.default_rng(int(cfg["seed"]))
    lead = int(float(cfg["slot-lead-s"]) * fs)
    for r in range(int(cfg["rounds"])):
        if not active:
            record["events"].append(f"round {r}: no active device left; stopping")
            break
        slot = ps.time_now() + lead
        body = {"round": r, "slot": int(slot), "seed": int(rng.integers(1 << 31)), "power_scale": 1.0,
                "sent_wall": time.time()}
        messages = [Message(protocol.pack(body), dst_node_id=n, message_type=protocol.PROBE) for n in active]
        t0 = time.monotonic()
        replies = list(grid.send_and_receive(messages, timeout=float(cfg["reply-timeout-s"])))
        cp = time.monotonic() - t0
        answered, margins, latencies = [], [], []
        for reply in replies:
            src = reply.metadata.src_node_id
            if reply.has_error():
                excluded[src] = f"round {r}: Flower error {reply.error.code}: {reply.error.reason}"
                continue
            try:
                ans = protocol.unpack(reply)
            except ValueError as exc:
                excluded[src] = f"round {r}: {exc}"
                continue
            names[src] = ans.get("device", str(src))
            if ans.get("error"):
                excluded[src] = f"round {r}: {ans['error']}"
                continue
            answered.append(src)
            margins.append(ans["slot_margin_samples"] / fs)
            latencies.append(ans["received_wall"] - body["sent_wall"])
        for n in active:
            if n not in answered and n not in excluded:
                excluded[n] = f"round {r}: no answer within reply-timeout-s={cfg['reply-timeout-s']}"
        for n, why in excluded.items():
            if n in active:
                active.remove(n)
                record["events"].append(f"round {r}: {names.get(n, n)} excluded ({why})")
        record["rounds"].append({"round": r, "devices": len(answered), "control_plane_s": cp,
                                 "delivery_s_max": max(latencies) if latencies else None,
                                 "slot_margin_s_min": min(margins) if margins else None,
                                 "slot": int(slot)})
    record["device_names"] = {str(n): names.get(n, "?") for n in nodes}
    record["excluded_devices"] = [{"device": names.get(n, str(n)), "node_id": n, "reason": why}
                                  for n, why in excluded.items()]


def run_ps(grid: Grid, cfg: dict) -> dict:
    """Run the task named in ``cfg`` (the run config as a dict); returns the PS's result record."""
    from radio.node.server import NodeClient

    record: dict = {"task": cfg["task"], "rounds": [], "events": [], "excluded_devices": [], "pid": os.getpid()}
    ps = NodeClient(str(cfg["ps-endpoint"]), timeout_s=10.0)
    try:
        start = time.monotonic()
        if cfg["task"] == "probe":
            probe_rounds(grid, cfg, ps, record)
        else:
            raise ValueError(f"task = {cfg['task']!r}: this ServerApp runs 'probe' (sync/feel/jscc need the PS and "
                             f"device actors, see docs/cell.md)")
        record["wall_s"] = time.monotonic() - start
        record["ps_status"] = ps.status()
    finally:
        ps.close()
    return record


@app.main()
def main(grid: Grid, context: Context) -> None:
    from lab.results import write_json

    cfg = dict(context.run_config)
    try:
        record = run_ps(grid, cfg)
    except Exception as exc:  # noqa: BLE001 (the launcher reads the reason from the result file instead of a log)
        record = {"task": cfg.get("task"), "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(limit=4)}
    if cfg.get("out"):
        write_json(str(cfg["out"]), record)
