"""Benchmark of the cell's control plane: Flower's latency per round and its share of the run's wall time.

``otalab bench cell [--devices 4,16] [--rounds 3] [--config hw_configs/cell-zmq.yaml] [--rate 100k] [--poll-s 0.2]
[--json PATH]``
runs ``otalab cell --task probe`` (:func:`lab.experiments.cell.run_cell`) once per device count: every device is its
own radio-node process and its own Flower SuperNode, and each round the PS (ServerApp) sends every device its
instruction and waits for all answers. The air is slowed to ``--rate`` (the probe moves no samples over it; a lower
rate keeps K+1 streaming nodes from starving the host).

Per device count and SuperNode idle poll (``--poll-s 3,0.2`` compares Flower's own 3 s with the shortened one,
:mod:`lab.flower.supernode`): ``control_plane_s`` (mean / median / max over rounds of the ServerApp's send-and-receive time),
``delivery_s_max`` (mean over rounds of the slowest device's PS-send -> ClientApp-start time, same host clock),
``share_of_wall`` (control-plane time / the ServerApp's wall time), ``startup_s`` (launch to the PS's first
round), the machine's load averages before and after, and the CPU count. Prints
``{"benchmark": "cell", "results": [...], ...}`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    from lab.config import parse_si
    from lab.experiments.cell import CellOptions, run_cell

    p = argparse.ArgumentParser(prog="otalab bench cell", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None, help="write the record here too ('-': stdout only)")
    p.add_argument("--devices", default="4,16", help="comma list of device-process counts")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--config", default="hw_configs/cell-zmq.yaml")
    p.add_argument("--rate", default="100k", help="air sample rate (S/s, SI suffixes)")
    p.add_argument("--poll-s", default="0.2", help="comma list of SuperNode idle polls to compare (s; 3 is "
                                                   "Flower's own SuperNode)")
    a = p.parse_args(argv)
    rate = parse_si(a.rate, "--rate")
    results = []
    for k, poll_s in [(int(v), float(q)) for v in a.devices.split(",") for q in a.poll_s.split(",")]:
        load0 = list(os.getloadavg())
        cpu0 = os.times()
        t0 = time.monotonic()
        rec = run_cell(CellOptions(config=a.config, sets=[f"radio.sample_rate={rate}"], devices=k, task="probe",
                                   rounds=a.rounds, slot_lead_s=max(30.0, 6.0 * k), reply_timeout_s=max(90.0, 15.0 * k),
                                   startup_timeout_s=max(120.0, 15.0 * k), poll_s=poll_s))
        wall = time.monotonic() - t0
        cpu1 = os.times()
        rounds = rec.get("rounds", [])
        cp = np.array([r["control_plane_s"] for r in rounds], dtype=float)
        dl = np.array([r["delivery_s_max"] for r in rounds if r.get("delivery_s_max") is not None], dtype=float)
        results.append({
            "devices": k, "poll_s": poll_s, "rounds": len(rounds), "error": rec.get("error"),
            "processes": len(rec.get("processes", [])),
            "control_plane_s": ({"mean": float(cp.mean()), "median": float(np.median(cp)), "max": float(cp.max())}
                                if cp.size else None),
            "delivery_s_max": float(dl.mean()) if dl.size else None,
            "share_of_wall": (rec.get("overhead_fraction") or {}).get("control_plane_share_of_wall"),
            "ps_wall_s": rec.get("ps_wall_s"), "total_wall_s": wall,
            "startup_s": (wall - rec["ps_wall_s"] - rec.get("teardown_s", 0.0)) if rec.get("ps_wall_s") else None,
            "excluded": [e["device"] for e in rec.get("excluded_devices", [])],
            "overflows": rec.get("overflows"), "leftover_pids": rec.get("leftover_pids"),
            "launcher_cpu_s": (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system),
            "load_before": load0, "load_after": list(os.getloadavg()),
        })
    record = {"benchmark": "cell", "rate": rate, "rounds": a.rounds, "config": a.config, "results": results,
              "cpu_count": os.cpu_count()}
    print(json.dumps(record, indent=1))
    if a.json and a.json != "-":
        from lab.results import write_json
        write_json(a.json, record)
    return record
