"""Benchmark of random access + timing advance: PS-side estimation cost for K = 8, 64, 512 devices.

``otalab bench sync [--json PATH] [--quick] [--repeat R]``. For each K, a small cell (90 m: cyclic-shift zones of the
round trip, 32 per ZC root), devices spread over ceil(K/32) PRACH slots of one root each (as LTE spreads random-access
load), each window holding its devices' preambles at random delays and gains (±3 dB) at 10 dB SNR; then the PS's work:
detection and ML delay estimation of every preamble (:class:`sync.prach.PrachDetector`) and the TA command of each
(:func:`sync.timing_advance.quantize_ta`). The estimation must grow no worse than linearly in K (``per_device_us``
stays flat). With ``--procedure`` it also times the
whole simulated access (beacons, PRACH, RAR over the in-process air) for the smaller K, which includes simulating
every device's radio and receiver.

Prints ``{"benchmark": "sync", "results": [{"devices", "access_ta_s", "per_device_us", "detected", ...}]}``.
"""

from __future__ import annotations

from lab.bench import report
import argparse
import math
import os
import time

import numpy as np


def _estimate(k: int, rng: np.random.Generator, repeat: int) -> dict:
    from sync.prach import PrachConfig, PrachDetector, PrachWaveform
    from sync.timing_advance import quantize_ta, ta_step_samples
    rtt = 12.0                                   # a ~90 m cell at 20 MS/s: small zones, many preambles per root
    cfg = PrachConfig.for_cell(64, 52 / 64, 20e6, rtt, 4, n_roots=1)
    per_slot = cfg.shifts_per_root               # one root per slot: its cyclic shifts keep the devices orthogonal
    slots = math.ceil(k / per_slot)              # more devices → more access slots (as LTE spreads RACH load)
    wf, det = PrachWaveform(cfg), PrachDetector(cfg, false_alarm_rate=1e-4)
    step = ta_step_samples(64)
    windows, truth = [], []
    for s in range(slots):
        n = min(per_slot, k - s * per_slot)
        delays = rng.uniform(0, rtt, n)
        gains = 10 ** (rng.uniform(-3, 3, n) / 20) * np.exp(2j * np.pi * rng.random(n))
        w = sum(gains[i] * wf.preamble(i, advance=-delays[i])[cfg.cp_len:] for i in range(n))
        w = w + (rng.standard_normal(cfg.fft_size) + 1j * rng.standard_normal(cfg.fft_size)) * math.sqrt(0.05)
        windows.append(w)
        truth.append(delays)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        found = [det.detect(w) for w in windows]
        cmds = [quantize_ta(d.delay, step) for f in found for d in f]
        times.append(time.perf_counter() - t)
    errs = np.array([d.delay - truth[s][d.index] for s, f in enumerate(found) for d in f if d.index < truth[s].size])
    best = min(times)
    return {"devices": k, "access_ta_s": best, "per_device_us": best / k * 1e6, "prach_slots": slots,
            "detected": sum(len(f) for f in found), "ta_commands": len(cmds), "shifts_per_root": per_slot,
            "prach_fft": cfg.fft_size, "snr_db": 10.0,
            "delay_rmse_samples": float(np.sqrt(np.mean(errs ** 2))) if errs.size else None}


def _procedure(k: int, seed: int) -> float:
    """Wall time of beacons + random access + TA for K devices on the in-process air (simulation included)."""
    from lab.factory import Scenario, build_cell
    from sync.config import SyncConfig
    from sync.procedure import SyncSession
    scn = Scenario(devices=k, max_delay_cp=0.5, profile="none")
    cfg = SyncConfig(cell_radius_m=scn.cell_radius_m())
    cell = build_cell(scn, cfg, seed)
    t = time.perf_counter()
    session = SyncSession(cell.ps, cell.radios, scn.ofdm(), cell.cfg, preambles=cell.preambles,
                          rng=np.random.default_rng(seed))
    session.access()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print its JSON (see module docstring)."""
    p = argparse.ArgumentParser(prog="otalab bench sync", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", help="also write the JSON here")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--repeat", type=int, default=5, help="repetitions per K (best time is reported)")
    p.add_argument("--procedure", action="store_true", help="also time the simulated access for K = 8 and 64")
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    repeat = 2 if a.quick else a.repeat
    results = [_estimate(k, rng, repeat) for k in (8, 64, 512)]
    if a.procedure:
        for r in results:
            if r["devices"] <= 64:
                r["simulated_access_s"] = _procedure(r["devices"], 1)
    per = [r["per_device_us"] for r in results]
    out = {"benchmark": "sync", "cpu_count": os.cpu_count(), "results": results,
           "growth_per_device_512_vs_8": per[-1] / per[0]}
    return report(out, a.json)


if __name__ == "__main__":
    main()
