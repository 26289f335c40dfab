"""Benchmark of the symbol-level FEEL path: rounds/s and device-updates/s for M = 10, 100, 1,000 devices.

One round = all M devices' local gradients (one vmap), screening, the scheme's encoder (A-DSGD: top-k and one
batched projection matmul), the symbol-level sum channel, the server's decoder (A-DSGD: AMP) and the ADAM step plus a
test-set evaluation. MNIST single-layer model (d = 7,850), s = d/2, B = min(1000, 60000 // M) samples per device.
Prints and returns ``{"benchmark": "feel", "results": [...]}`` with a per-stage time breakdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="otalab bench feel", description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="10,100,1000", help="comma list of M")
    ap.add_argument("--scheme", default="analog", help="analog, digital, ideal")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per M (after one warm-up round)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    import torch

    from learning.feel.runner import FeelConfig, FeelExperiment
    torch.set_num_threads(args.threads)
    results = []
    for m in (int(v) for v in args.devices.split(",")):
        b = min(1000, 60000 // m)
        cfg = FeelConfig(scheme=args.scheme, devices=m, samples_per_device=b, rounds=args.rounds + 1, power=1000.0)
        exp = FeelExperiment(cfg, args.data_dir)
        exp.step()  # warm-up: vmap tracing, projection matrix
        stages = {k: 0.0 for k in exp.last_timing}
        start = time.perf_counter()
        for _ in range(args.rounds):
            exp.step()
            for k, v in exp.last_timing.items():
                stages[k] += v
        elapsed = time.perf_counter() - start
        results.append({"devices": m, "samples_per_device": b, "scheme": args.scheme, "d": exp.model.dim,
                        "channel_uses": exp.s, "rounds": args.rounds, "rounds_per_s": args.rounds / elapsed,
                        "device_updates_per_s": m * args.rounds / elapsed,
                        "stage_s_per_round": {k: v / args.rounds for k, v in stages.items()}})
    out = {"benchmark": "feel", "threads": args.threads, "cpu_count": os.cpu_count(),
           "load_avg_1min": os.getloadavg()[0], "machine": platform.machine(), "torch": torch.__version__,
           "results": results}
    text = json.dumps(out, indent=1, default=lambda o: float(o) if isinstance(o, np.floating) else str(o))
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text)
    return out
