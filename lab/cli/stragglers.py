"""``otalab stragglers``: coded distributed gradient descent against stragglers (lab.experiments.stragglers)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lab.cli.common import JsonOpt, ProgressOpt, SeedOpt, emit_json, fail, out_option


def register(app: typer.Typer) -> None:
    """Add ``otalab stragglers``."""

    @app.command("stragglers")
    def stragglers_cmd(
        scheme: Optional[str] = typer.Option(None, help="comma list of schemes (default: every scheme that "
                                                        "decodes the problem's gradient)"),
        workers: int = typer.Option(8, help="worker processes N"),
        iterations: int = typer.Option(200, help="gradient-descent iterations per scheme"),
        shift_ms: float = typer.Option(5.0, help="delay model: shift per partition of work [ms]"),
        mean_ms: float = typer.Option(5.0, help="delay model: mean of the exponential part per partition [ms]"),
        straggler: list[int] = typer.Option([], help="persistent straggler worker index (repeatable; default the "
                                                     "last worker)"),
        slowdown: float = typer.Option(10.0, help="persistent stragglers' shift and mean multiplier"),
        tolerate: int = typer.Option(1, help="stragglers s the codes tolerate"),
        kill: Optional[str] = typer.Option(None, help="ITERATION:WORKER: SIGKILL that worker mid-run"),
        problem: str = typer.Option("least-squares", help="least-squares, logistic (synthetic) or logistic-mnist "
                                                          "(digits >= 5 vs < 5 on PCA features); LCC needs "
                                                          "least-squares"),
        rows: int = typer.Option(960, help="samples (a multiple of the workers and of LCC's blocks)"),
        features: int = typer.Option(40, help="features (logistic: including the intercept)"),
        data_dir: Optional[Path] = typer.Option(None, help="data directory for logistic-mnist (else OTALAB_DATA_DIR, "
                                                           "../shared/data, the torchvision cache)"),
        runtime: str = typer.Option("process", help="process: worker processes over ZeroMQ on this host; flower: "
                                                    "Flower's deployment runtime (a SuperLink, one SuperNode per "
                                                    "worker; docs/stragglers.md)"),
        superlink: Optional[str] = typer.Option(None, help="--runtime flower: submit to this running SuperLink "
                                                           "(HOST:PORT of its Control API, insecure) whose SuperNodes "
                                                           "were started with --node-config worker=I, instead of "
                                                           "starting them here"),
        root_certificates: Optional[Path] = typer.Option(None, help="--superlink over TLS: the CA certificate "
                                                                   "(without it the connection is insecure: one "
                                                                   "host or a trusted network only)"),
        stall_timeout_s: Optional[float] = typer.Option(None, help="no worker message this long ends a run, naming "
                                                                   "the workers it waited on (default 2 s; flower "
                                                                   "60 s)"),
        run_dir: Optional[Path] = typer.Option(None, help="--runtime flower: logs and Flower home (default: a "
                                                          "temporary folder, removed unless the run failed)"),
        seed: SeedOpt = 0,
        json_path: JsonOpt = None,
        out: out_option("runs/stragglers") = Path("runs/stragglers"),
        progress: ProgressOpt = True,
    ):
        """Coded distributed GD with N worker processes: completion time vs theory, loss vs wall time; JSON + PNG."""
        from lab.experiments.stragglers import plot_stragglers, run_stragglers
        from lab.results import metadata, write_json
        kill_at = None
        if kill:
            try:
                it, wk = (int(v) for v in kill.split(":"))
                kill_at = (it, wk)
            except ValueError:
                fail(f"--kill {kill!r}: expected ITERATION:WORKER")

        def tick(rec):
            if progress:
                typer.echo(f"{rec['scheme']}: {rec['iterations']} iterations, mean completion "
                           f"{rec['mean_completion_s'] or 0:.4f} s (theory {rec['theory_completion_s']:.4f} s)"
                           + (f", stalled: {rec['stalled']}" if rec["stalled"] else ""), err=True)
        if runtime not in ("process", "flower"):
            fail(f"--runtime {runtime!r}: expected process or flower")
        if runtime != "flower" and (superlink or run_dir or root_certificates):
            fail("--superlink, --root-certificates and --run-dir apply to --runtime flower")
        if root_certificates and not superlink:
            fail("--root-certificates applies to --superlink (a SuperLink started here is insecure on 127.0.0.1)")
        if root_certificates and not root_certificates.is_file():
            fail(f"--root-certificates {root_certificates}: no such file")
        stall = stall_timeout_s if stall_timeout_s is not None else (60.0 if runtime == "flower" else 2.0)
        if not stall > 0:
            fail(f"--stall-timeout-s {stall}: expected > 0 s")
        flower = ({"superlink": superlink, "run_dir": str(run_dir) if run_dir else None,
                   "root_certificates": str(root_certificates.resolve()) if root_certificates else None}
                  if runtime == "flower" else None)
        try:
            result = run_stragglers([s.strip() for s in scheme.split(",") if s.strip()] if scheme else None,
                                    workers, iterations, shift_ms / 1e3, 1e3 / mean_ms, list(straggler) or None,
                                    slowdown, tolerate, rows=rows, features=features, seed=seed, kill_at=kill_at,
                                    on_scheme=tick, problem=problem, data_dir=data_dir,
                                    stall_timeout_s=stall, runtime=runtime, flower=flower)
        except (ValueError, RuntimeError) as exc:
            fail(str(exc))
        result = {**metadata(seed=seed), **result}
        out.mkdir(parents=True, exist_ok=True)
        png = plot_stragglers(result, out / "stragglers.png")
        write_json(out / "stragglers.json", result)
        emit_json(json_path, result)
        fl = runtime == "flower"
        typer.echo("| scheme | mean completion [ms] | theory [ms] | ratio | time to target [s] | final loss |"
                   + (" replayed delays [ms] | overhead / message [ms] | theory + overhead [ms] |" if fl else ""))
        typer.echo("|---|---|---|---|---|---|" + ("---|---|---|" if fl else ""))
        for r in result["results"]:
            mc = "-" if r["mean_completion_s"] is None else f"{1e3 * r['mean_completion_s']:.2f}"
            ratio = "-" if r["completion_ratio"] is None else f"{r['completion_ratio']:.3f}"
            ttt = "never" if r["time_to_target_s"] is None else f"{r['time_to_target_s']:.2f}"
            loss = "-" if r["final_loss"] is None else f"{r['final_loss']:.6g}"
            more = ""
            if fl:
                f = r["flower"]
                more = " " + " | ".join("-" if v is None else f"{1e3 * v:.1f}" for v in (
                    r["model_completion_s"], f["overhead_s_per_message"], r["theory_with_overhead_s"])) + " |"
            typer.echo(f"| {r['scheme']} | {mc} | {1e3 * r['theory_completion_s']:.2f} | {ratio} | {ttt} | "
                       f"{loss} |" + more
                       + (f" stalled, waiting on workers {r['stalled']['waiting_on']}" if r["stalled"] else ""))
        typer.echo(f"wrote {out / 'stragglers.json'}")
        typer.echo(f"wrote {png}")
