"""Coded distributed gradient descent against stragglers: every scheme on the same problem (least squares, or
logistic regression on synthetic data or MNIST features), the same
N worker processes' delay model (shifted exponential per unit of work, some persistent stragglers), measured
completion time per iteration beside its theoretical expectation, and loss vs wall-clock time.

Result JSON: ``results`` has one record per scheme with scheme, mean_completion_s, theory_completion_s,
completion_ratio (measured / theory), time_to_target_s (wall time to reach the uncoded scheme's final loss; None if
never), final_loss, iterations, stalled, waited_on (histogram: which worker completed the iterations).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable

import numpy as np

from learning.coded.codes import SCHEMES, make_code
from learning.coded.delays import ShiftedExponential, with_message_overhead
from learning.coded.master import Cluster
from learning.coded.problem import LeastSquares, Logistic
from learning.coded.replay import replay_completion


def delay_models(workers: int, shift: float, rate: float, stragglers: list[int], slowdown: float
                 ) -> list[ShiftedExponential]:
    """Every worker ShiftedExponential(shift, rate); the persistent stragglers' shift and mean x ``slowdown``."""
    bad = [s for s in stragglers if not 0 <= s < workers]
    if bad:
        raise ValueError(f"stragglers {bad}: expected worker indices in 0..{workers - 1}")
    return [ShiftedExponential(shift * slowdown, rate / slowdown) if i in stragglers
            else ShiftedExponential(shift, rate) for i in range(workers)]


#: ``--problem`` choices: the synthetic least-squares problem, synthetic logistic regression, logistic regression
#: on MNIST features (digits >= 5 vs < 5, PCA; learning.coded.problem.Logistic.mnist)
PROBLEMS = ("least-squares", "logistic", "logistic-mnist")


def make_problem(name: str, rows: int, features: int, seed: int = 0, data_dir=None, l2: float = 1e-3):
    """The problem ``name`` (:data:`PROBLEMS`) with ``rows`` samples and ``features`` columns."""
    if name == "least-squares":
        return LeastSquares.synthetic(rows, features, seed=seed)
    if name == "logistic":
        return Logistic.synthetic(rows, features, seed=seed, l2=l2)
    if name == "logistic-mnist":
        return Logistic.mnist(rows, features, seed=seed, l2=l2, data_dir=data_dir)
    raise ValueError(f"problem {name!r}: unknown; expected one of {', '.join(PROBLEMS)}")


#: ``--runtime`` choices: worker processes over ZeroMQ on this host (learning.coded.master.Cluster), or Flower's
#: deployment runtime (lab.experiments.stragglers_flower: one SuperNode per worker host)
RUNTIMES = ("process", "flower")


def run_stragglers(schemes: list[str] | None = None, workers: int = 8, iterations: int = 200, shift: float = 0.005,
                   rate: float = 200.0, stragglers: list[int] | None = None, slowdown: float = 10.0,
                   tolerate: int = 1, rows: int = 960, features: int = 40, seed: int = 0,
                   kill_at: tuple[int, int] | None = None, stall_timeout_s: float = 2.0,
                   on_scheme: Callable[[dict], None] | None = None, problem: str = "least-squares",
                   data_dir=None, runtime: str = "process", flower: dict | None = None) -> dict:
    """Run every scheme for ``iterations`` GD iterations (step 1/L); returns the result dict (module docstring).

    tolerate: s, the stragglers the codes are designed for (gradient coding s, wait-k k = N - s, LCC K with
    2K - 1 <= N - s, multi-message r = s + 2 messages per worker). kill_at (iteration, worker): SIGKILL a worker
    (on Flower: its SuperNode and everything under it).
    problem: one of :data:`PROBLEMS`; by default the schemes that cannot decode its gradient (LCC for logistic
    regression) are left out, and naming one explicitly is a ValueError.
    runtime: one of :data:`RUNTIMES`; ``flower``: keyword arguments of
    :class:`lab.experiments.stragglers_flower.FlowerStragglers` (run_dir, superlink, startup_timeout_s,
    run_timeout_s, monitor).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    problem_name = problem
    problem = make_problem(problem_name, rows, features, seed, data_dir)
    skipped = {}
    if schemes is None:
        schemes = []
        for s in SCHEMES:
            kinds = make_code(s, workers, stragglers=tolerate, seed=seed).kinds
            if problem.kind in kinds:
                schemes.append(s)
            else:
                skipped[s] = f"decodes only {', '.join(kinds)} gradients"
    schemes = list(schemes)
    stragglers = [workers - 1] if stragglers is None else list(stragglers)
    delays = delay_models(workers, shift, rate, stragglers, slowdown)
    lr = 1.0 / problem.lipschitz()
    opt_loss = problem.loss(problem.optimum())
    codes = {}
    for name in schemes:     # every scheme checked before any process starts
        codes[name] = make_code(name, workers, stragglers=tolerate, seed=seed)
        if problem.kind not in codes[name].kinds:
            raise ValueError(f"scheme {name!r} cannot decode a {problem.kind} gradient exactly; it applies to "
                             f"{', '.join(codes[name].kinds)} problems")
    records, curves = [], {}
    extra_out: dict = {}
    if runtime == "flower":
        from lab.experiments.stragglers_flower import FlowerStragglers
        base = {"workers": workers, "iterations": iterations, "tolerate": tolerate, "problem": problem_name,
                "rows": rows, "features": features, "data-dir": str(data_dir or ""), "seed": seed, "shift-s": shift,
                "rate-per-s": rate, "stragglers": ",".join(str(i) for i in stragglers), "slowdown": slowdown,
                "stall-timeout-s": stall_timeout_s}
        runner = FlowerStragglers(base, workers, kill_at=kill_at, **(flower or {}))
    else:
        runner = None
    with contextlib.ExitStack() as stack:      # the Flower runtime's processes are stopped however this ends
        if runner is not None:
            stack.enter_context(runner)
        for name in schemes:
            code = codes[name]
            cpu = time.process_time()
            if runner is None:
                with Cluster(code, problem, delays, seed=seed) as cluster:
                    run = cluster.run(iterations, lr, stall_timeout_s=stall_timeout_s, kill_at=kill_at)
                flower_extra = None
            else:
                run, flower_extra = runner.run(name)
            rec = _record(code, problem, delays, seed, run, kill_at)
            rec["master_cpu_s"] = time.process_time() - cpu
            if flower_extra is not None:
                c = flower_extra["overhead_s_per_message"]
                load = code.tasks(problem.partitions(code.n))[0][0].load
                rec["flower"] = flower_extra
                rec["theory_with_overhead_s"] = (code.theory_completion(with_message_overhead(delays, max(c, 0.0),
                                                                                              load))
                                                 if c is not None else None)
                rec["completion_ratio_with_overhead"] = (rec["mean_completion_s"] / rec["theory_with_overhead_s"]
                                                         if rec["mean_completion_s"] and c is not None else None)
            records.append(rec)
            curves[name] = {"wall_s": run.wall_s, "loss": run.loss, "completion_s": run.completion_s}
            if on_scheme:
                on_scheme(rec)
    if runner is not None:
        extra_out = {"runtime_processes": runner.processes, "leftover_pids": runner.leftover_pids}
    target = next((r["final_loss"] for r in records if r["scheme"] == "uncoded" and r["stalled"] is None), None)
    for rec in records:
        c = curves[rec["scheme"]]
        hit = (next((i for i, v in enumerate(c["loss"]) if v <= target * (1 + 1e-9)), None)
               if target is not None else None)
        rec["time_to_target_s"] = c["wall_s"][hit] if hit is not None else None
    base_t = next((r["time_to_target_s"] for r in records if r["scheme"] == "uncoded"), None)
    for rec in records:
        rec["speedup_vs_uncoded"] = (base_t / rec["time_to_target_s"]
                                     if base_t and rec["time_to_target_s"] else None)
    return {"experiment": "stragglers", "runtime": runtime, "workers": workers, "iterations": iterations,
            "tolerate": tolerate,
            "delay": {"shift_s": shift, "rate_per_s": rate, "stragglers": stragglers, "slowdown": slowdown},
            "problem": {"name": problem_name, "kind": problem.kind, "rows": rows, "features": features, "l2": problem.l2,
                        "lr": lr, "optimal_loss": opt_loss},
            "skipped": skipped,
            "target_loss": target, "seed": seed, "kill_at": list(kill_at) if kill_at else None,
            "results": records, "curves": curves, **extra_out}


def _record(code, problem, delays, seed: int, run, kill_at) -> dict:
    """One scheme's result record: measured completion beside theory (order statistics) and beside the replay of
    the delays the workers drew (``model_completion_s``: the same draws with no runtime cost, learning.coded.replay;
    ``runtime_overhead_s``: measured minus replayed, per iteration, averaged)."""
    comp = np.array(run.completion_s)
    theory = code.theory_completion(delays)
    loads = [[t.load for t in ts] for ts in code.tasks(problem.partitions(code.n))]
    replay = []
    for t in range(len(comp)):
        dead = frozenset(run.killed) if kill_at is not None and t >= kill_at[0] else frozenset()
        replay.append(replay_completion(code, loads, delays, seed, t, dead))
    model = np.array([np.nan if r is None else r for r in replay], dtype=np.float64)
    return {"scheme": code.name, "exact_gradient": code.exact, "iterations": len(comp),
            "mean_completion_s": float(comp.mean()) if len(comp) else None,
            "theory_completion_s": theory,
            "completion_ratio": float(comp.mean()) / theory if len(comp) else None,
            "completion_se_s": float(comp.std(ddof=1) / np.sqrt(len(comp))) if len(comp) > 1 else None,
            "model_completion_s": float(np.nanmean(model)) if np.isfinite(model).any() else None,
            "runtime_overhead_s": float(np.nanmean(comp - model)) if np.isfinite(model).any() else None,
            "final_loss": run.loss[-1] if run.loss else None, "wall_s": run.wall_s[-1] if run.wall_s else None,
            "stalled": run.stalled, "killed": run.killed,
            "waited_on": {str(w): int(c) for w, c in zip(*np.unique(run.waited_on, return_counts=True))}}


def plot_stragglers(result: dict, path: str | Path) -> Path:
    """Two panels: loss - optimum vs wall-clock time per scheme; measured vs theoretical mean completion time."""
    from lab.plots import save_figure, subplots
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = subplots(1, 2, figsize=(11, 4))
    opt = result["problem"]["optimal_loss"]
    for name, c in result["curves"].items():
        if c["loss"]:
            ax1.semilogy(c["wall_s"], np.maximum(np.array(c["loss"]) - opt, 1e-16), label=name)
    if result.get("target_loss") is not None:
        ax1.axhline(result["target_loss"] - opt, color="gray", ls="--", lw=0.8, label="uncoded final loss")
    ax1.set_xlabel("wall-clock time [s]")
    ax1.set_ylabel("loss - optimal loss")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    recs = [r for r in result["results"] if r["mean_completion_s"] is not None]
    x = np.arange(len(recs))
    over = [r.get("theory_with_overhead_s") for r in recs]
    bw = 0.27 if any(v is not None for v in over) else 0.4
    ax2.bar(x - bw / 2 if bw == 0.4 else x - bw, [1e3 * r["mean_completion_s"] for r in recs], bw, label="measured")
    ax2.bar(x + bw / 2 if bw == 0.4 else x, [1e3 * r["theory_completion_s"] for r in recs], bw,
            label="theory (order statistics)")
    if bw != 0.4:
        ax2.bar(x + bw, [1e3 * (v or 0.0) for v in over], bw, label="theory + measured overhead per message")
    ax2.set_xticks(x, [r["scheme"].replace("gradient-coding", "GC") for r in recs], rotation=30, fontsize=7)
    ax2.set_ylabel("mean completion per iteration [ms]")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3, axis="y")
    d = result["delay"]
    prob = result["problem"]
    fig.suptitle(f"{prob.get('name', 'least-squares')} ({prob['rows']} x {prob['features']}), "
                 f"runtime {result.get('runtime', 'process')}, "
                 f"{result['workers']} workers, shifted exponential ({1e3 * d['shift_s']:g} ms + Exp mean "
                 f"{1e3 / d['rate_per_s']:g} ms per partition), stragglers {d['stragglers']} x{d['slowdown']:g}",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    return path
