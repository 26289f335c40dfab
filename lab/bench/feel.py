"""Benchmark of the symbol-level FEEL path: rounds/s and device-updates/s for M = 10 ... 10,000 devices.

One round = all M devices' local gradients (closed form for the softmax model: two matrix products), screening, the
scheme's encoder (A-DSGD: error-compensated top-k in one fused pass per device, learning.feel.sparsify; the power
scaling), the symbol-level sum channel (A-DSGD: ONE projection of the power-scaled sum of the sparse updates,
``SymbolChannel.transmit_linear``), the server's decoder (A-DSGD: AMP) and the ADAM step plus a test-set evaluation.
MNIST single-layer model (d = 7,850), s = d/2, B = min(1000, 60000 // M) samples per device. A-DSGD runs once per
``--power-norm``: "projected" (the paper's alpha_m from ||A g_sp||: one projection per device for the norms) and
"sparse" (alpha_m from ||g_sp||: no per-device projection).
Prints and returns ``{"benchmark": "feel", "results": [...]}`` with wall and CPU seconds and a per-stage breakdown.
"""

from __future__ import annotations

from lab.bench import report
import argparse
import json
import os
import platform
import time



def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="otalab bench feel", description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="10,100,1000,10000", help="comma list of M")
    ap.add_argument("--power-norm", default="projected,sparse", help="A-DSGD power normalisations (comma list)")
    ap.add_argument("--scheme", default="analog", help="analog, digital, ideal")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per M (after one warm-up round)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=None, help="also write the JSON here")
    ap.add_argument("--amp-vs-linear", default=None, metavar="ROUNDS",
                    help="instead: compare AMP with LS/LMMSE reconstruction on real A-DSGD rounds (comma list of "
                         "rounds, M = 25, B = 1000, P from --power)")
    ap.add_argument("--power", default="200,1000", help="powers for --amp-vs-linear")
    args = ap.parse_args(argv)

    import torch
    if args.amp_vs_linear:
        torch.set_num_threads(args.threads)
        return _amp_vs_linear([int(r) for r in args.amp_vs_linear.split(",")],
                              [float(p) for p in args.power.split(",")], args)

    from learning.feel.runner import FeelConfig, FeelExperiment
    torch.set_num_threads(args.threads)
    results = []
    norms = [v for v in args.power_norm.split(",")] if args.scheme == "analog" else ["projected"]
    for m in (int(v) for v in args.devices.split(",")):
        for norm in norms:
            b = min(1000, 60000 // m)
            cfg = FeelConfig(scheme=args.scheme, devices=m, samples_per_device=b, rounds=args.rounds + 1,
                             power=1000.0, power_norm=norm)
            exp = FeelExperiment(cfg, args.data_dir)
            exp.step()  # warm-up: vmap tracing, projection matrix
            stages = {k: 0.0 for k in exp.last_timing}
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.rounds):
                exp.step()
                for k, v in exp.last_timing.items():
                    stages[k] += v
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            results.append({"devices": m, "samples_per_device": b, "scheme": args.scheme, "power_norm": norm,
                            "d": exp.model.dim, "channel_uses": exp.s, "rounds": args.rounds,
                            "rounds_per_s": args.rounds / elapsed, "cpu_s_per_round": cpu / args.rounds,
                            "rounds_per_cpu_s": args.rounds / cpu,
                            "device_updates_per_s": m * args.rounds / elapsed,
                            "final_accuracy": exp.records[-1]["accuracy"],
                            "stage_s_per_round": {k: v / args.rounds for k, v in stages.items()}})
            print(json.dumps(results[-1]), flush=True)
            del exp
    from learning.feel.sparsify import accelerated
    out = {"benchmark": "feel", "threads": args.threads, "cpu_count": os.cpu_count(),
           "top_k_kernel": "numba" if accelerated() else "numpy (pip install numba for the fused kernel)",
           "load_avg_1min": os.getloadavg()[0], "machine": platform.machine(), "torch": torch.__version__,
           "results": results}
    return report(out, args.json)


def _amp_vs_linear(rounds: list[int], powers: list[float], args) -> dict:
    """Reconstruction NMSE of AMP vs least squares and LMMSE on the superposed A-DSGD signal of Fig. 5's setting.

    The linear estimators use one eigendecomposition of A A^T (float64), so every (noise, prior) pair is cheap:
    LMMSE x = p A^T (p A A^T + s2 I)^-1 y with p the empirical mean square of the target, s2 = sigma^2 / y_s^2.
    """
    import torch

    from learning.feel.amp import amp_recover, nmse_db
    from learning.feel.device import report
    from learning.feel.runner import FeelConfig, FeelExperiment
    results, eig = [], None
    for power in powers:
        exp = FeelExperiment(FeelConfig(scheme="analog", power=power, rounds=max(rounds) + 1), args.data_dir)
        a = exp.scheme.projection
        if eig is None:
            a64 = a.double()
            lam, u = torch.linalg.eigh(a64 @ a64.T)
            eig = (lam, u, a64)
        lam, u, a64 = eig
        while exp.round <= max(rounds):
            if exp.round in rounds:
                upd = exp.fleet.local_update(exp.model, exp.server.broadcast(), exp.training)
                sched = exp.server.screen(report(upd))
                csi = exp.channel.csi(exp.round)
                tx, _ = exp.fleet.encode(exp.scheme, upd, sched, csi)
                y = exp.channel.transmit(tx.radiated(), csi).y
                target = (tx.weight @ tx.represented) / tx.weight.sum()
                yy = (y[:-1] / y[-1]).double()
                s2 = exp.channel.noise_var / float(y[-1]) ** 2
                p = float(target.double().pow(2).mean())
                uy = u.T @ yy
                ls = a64.T @ (u @ (uy / lam))
                lmmse = p * (a64.T @ (u @ (uy / (p * lam + s2))))
                amp = {name: amp_recover(y[:-1] / y[-1], a, exp.scheme.amp_iterations, name, tol=1e-3).x
                       for name in ("sure-scaled", "sure")}
                results.append({"power": power, "round": exp.round + 1, "nonzeros": int((target != 0).sum()),
                                "d": exp.model.dim, "measurements": a.shape[0],
                                "amp_nmse_db": nmse_db(amp["sure-scaled"], target),
                                "amp_soft_only_nmse_db": nmse_db(amp["sure"], target),
                                "ls_nmse_db": nmse_db(ls.float(), target),
                                "lmmse_nmse_db": nmse_db(lmmse.float(), target)})
                print(json.dumps(results[-1]))
            exp.step()
    return report({"benchmark": "feel-amp-vs-linear", "results": results}, args.json)
