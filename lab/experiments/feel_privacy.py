"""Accuracy vs differential privacy for over-the-air (A-DSGD) and digital (D-DSGD) FEEL: one FEEL run per
(scheme, target epsilon), every run clipped to the same C, reporting the epsilon it reached and its test accuracy.

A-DSGD devices add only the artificial noise the receiver noise lacks (their noise adds up on the air, and the PS
sees only the sum); D-DSGD devices add all of it (the PS decodes every device's message alone). A target of None
runs without added noise: A-DSGD then reports what the channel noise alone buys, D-DSGD an exact release
(epsilon infinite). See learning.privacy.mechanism for the mechanisms and docs/privacy.md for the results.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

SCHEME_LABELS = {"analog": "A-DSGD (over the air)", "digital": "D-DSGD (digital)"}


def privacy_sweep(targets: list[float | None], schemes: list[str], rounds: int, clip: float, delta: float,
                  seed: int = 0, data_dir: str | Path | None = None, base: dict | None = None,
                  on_run: Callable[[dict], None] | None = None) -> dict:
    """Run every (scheme, target) pair; returns {"experiment": "feel-privacy", "results": [...], "runs": [...]}.

    base: further FeelConfig fields (power, devices, samples_per_device, ...; default the paper's Fig. 5 setting).
    Each result: scheme, target_epsilon, epsilon (None = infinite), delta, final_accuracy, best_accuracy,
    noise_multiplier, artificial_energy (per device per round, vs P), local_noise_std, runtime_s.
    """
    from learning.feel.runner import FeelConfig, run_feel
    results, runs = [], []
    for scheme in schemes:
        for target in targets:
            cfg = FeelConfig(scheme=scheme, rounds=rounds, clip=clip, target_epsilon=target, dp_delta=delta,
                             seed=seed, **(base or {}))
            start = time.process_time()
            res = run_feel(cfg, None, None, data_dir=data_dir)
            accs = [r["accuracy"] for r in res["rounds"] if r.get("accuracy") is not None]
            last = res["rounds"][-1]
            rec = {"scheme": scheme, "target_epsilon": target, "epsilon": res["epsilon"], "delta": res["delta"],
                   "final_accuracy": res["final_accuracy"], "best_accuracy": max(accs) if accs else None,
                   "noise_multiplier": last.get("noise_multiplier"),
                   "artificial_energy": last.get("artificial_energy"), "power": cfg.power,
                   "local_noise_std": last.get("local_noise_std"), "cpu_s": time.process_time() - start}
            results.append(rec)
            runs.append({"config": dataclasses.asdict(cfg), "accuracy": [r.get("accuracy") for r in res["rounds"]],
                         "epsilon": [r.get("epsilon") for r in res["rounds"]]})
            if on_run:
                on_run(rec)
    return {"experiment": "feel-privacy", "rounds": rounds, "clip": clip, "delta": delta, "seed": seed,
            "base": base or {}, "results": results, "runs": runs}


def plot_privacy(result: dict, path: str | Path) -> Path:
    """Final test accuracy vs epsilon (log axis), one line per scheme; runs with infinite epsilon listed in the
    legend. Writes a PNG."""
    from lab.plots import save_figure, subplots
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = subplots(figsize=(5.5, 4))
    for scheme in dict.fromkeys(r["scheme"] for r in result["results"]):
        pts = sorted((r["epsilon"], r["final_accuracy"]) for r in result["results"]
                     if r["scheme"] == scheme and r["epsilon"] is not None)
        inf = [r["final_accuracy"] for r in result["results"] if r["scheme"] == scheme and r["epsilon"] is None]
        label = SCHEME_LABELS.get(scheme, scheme) + (f"; eps=inf: {inf[0]:.3f}" if inf else "")
        if pts:
            ax.semilogx([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
    ax.set_xlabel(f"epsilon after {result['rounds']} rounds (delta = {result['delta']:g})")
    ax.set_ylabel("final test accuracy")
    ax.set_title(f"MNIST FEEL, clip C = {result['clip']:g}: accuracy vs privacy")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    return path
