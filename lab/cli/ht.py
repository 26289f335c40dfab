"""`otalab ht`: distributed binary hypothesis testing over a noisy channel (see docs/ht.md).

Without ``--config``: the symbol-level sweep of :func:`lab.experiments.ht.run_sweep` (joint vs separation, empirical
vs theoretical type-II exponents) -> JSON + PNG. With ``--config``: the joint scheme through the config's radios
(:func:`lab.experiments.ht.run_air`), beside the symbol-level result at the measured SNR.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from lab.cli.common import (
    ConfigOpt,
    JsonOpt,
    ProgressOpt,
    SeedOpt,
    SetOpt,
    emit_json,
    fail,
    out_option,
    split_floats,
)

OutOpt = out_option("runs/ht")


def register(app: typer.Typer) -> None:
    """Add ``otalab ht``."""

    @app.command("ht")
    def ht_cmd(
        ctx: typer.Context,
        rho: float = typer.Option(0.8, "--rho", help="correlation of (X, Y) under H0"),
        rho1: float = typer.Option(0.0, "--rho1", help="correlation under H1 (0: testing against independence)"),
        snr_db: str = typer.Option("0,5,10,15,20", "--snr-db",
                                   help="SNR per real channel use, dB (comma list; one value with --config)"),
        n: str = typer.Option("64,256,1024,4096", "--n", help="block lengths n (samples = channel uses), comma list"),
        eps: float = typer.Option(0.1, "--eps", help="type-I error the test is held to"),
        trials: int = typer.Option(4000, "--trials", help="H0 trials per point (importance sampling)"),
        scheme: str = typer.Option("joint,separation-sq", "--scheme", help="joint, separation-sq (comma list)"),
        air_n: int = typer.Option(16, "--air-n", help="with --config: samples per block (one analog frame)"),
        air_frames: int = typer.Option(300, "--air-frames", help="with --config: frames per hypothesis"),
        config: ConfigOpt = None,
        sets: SetOpt = [],  # noqa: B006  (typer reads the default)
        json_path: JsonOpt = None,
        out: OutOpt = Path("runs/ht"),
        seed: SeedOpt = 0,
        progress: ProgressOpt = True,
    ):
        """Type-II error exponents of the joint and separation schemes vs n and SNR, against theory -> JSON + PNG."""
        from lab.cli.common import given, load_lab_config
        from lab.experiments import ht
        from lab.results import metadata

        snrs = split_floats(snr_db, "--snr-db")
        try:
            ns = [int(v) for v in split_floats(n, "--n")]
        except (ValueError, OverflowError):
            fail(f"--n {n!r}: expected whole block lengths")
        if any(not float(v).is_integer() for v in split_floats(n, "--n")):
            fail(f"--n {n!r}: expected whole block lengths")
        schemes = [s.strip() for s in scheme.split(",") if s.strip()]
        if config is None:
            bar = None
            try:
                prog = None
                if progress and sys.stderr.isatty():
                    from rich.progress import Progress
                    bar = Progress(transient=True)
                    bar.start()
                    task = bar.add_task("ht", total=1.0)
                    prog = lambda d, t: bar.update(task, completed=d / t)
                res = ht.run_sweep(rho, rho1, snrs, ns, eps, trials, seed, schemes, prog)
            except ValueError as exc:
                fail(str(exc))
            finally:
                if bar is not None:
                    bar.stop()
            res.update(metadata())
            out.mkdir(parents=True, exist_ok=True)
            png = out / "ht_exponents.png"
            ht.plot(res, png)
            res["plot"] = str(png)
            typer.echo(f"{'scheme':14} {'SNR dB':>6} {'n':>6} {'empirical':>9} {'2nd order':>9} {'theory':>8}",
                       err=json_path == "-")
            for r in res["results"]:
                typer.echo(f"{r['scheme']:14} {r['snr_db']:6.1f} {r['n']:6d} {r['exponent']:9.4f} "
                           f"{r['second_order']:9.4f} {r['theory']:8.4f}", err=json_path == "-")
            typer.echo(f"plot: {png}", err=True)
            emit_json(json_path, res)
            return
        # over the radios of a bench config
        if given(ctx, "snr_db") and len(snrs) != 1:
            fail(f"--snr-db {snr_db!r}: give one SNR with --config (it sets the simulated air's noise)")
        extra = [f"air.snr_db={snrs[0]!r}"] if given(ctx, "snr_db") else []   # a given flag beats --set and YAML
        cfg = load_lab_config(ctx, config, list(sets) + extra)
        from lab.factory import open_link_pair
        from radio.base import RadioError

        closers = []
        try:
            tx, rx, closers = open_link_pair(cfg)
            res = ht.run_air(tx, rx, cfg.ofdm.to_config(cfg.radio.sample_rate), rho, rho1, air_n, air_frames, eps,
                             seed)
        except (RadioError, ValueError, OSError) as exc:
            fail(str(exc))
        finally:
            for c in closers:
                c.close()
        res["config"] = {"source": cfg.source, "driver": cfg.radio.driver,
                         "air_snr_db": cfg.air.snr_db if cfg.air is not None else None}
        res.update(metadata(seed=seed))
        a, s = res["air"], res["symbol_level_at_measured_snr"]
        typer.echo(f"ht over {cfg.radio.driver}: n={air_n}, {air_frames} frames per hypothesis, "
                   f"{res['frames_dropped']} dropped, measured SNR {res['measured_snr_db']:.2f} dB", err=True)
        typer.echo(f"  air:          exponent {a['exponent']:.4f} (IS), beta MC {a['beta_mc']:.4f}, "
                   f"type-I {a['type1']:.3f}", err=True)
        typer.echo(f"  symbol level: exponent {s['exponent']:.4f} (IS), beta MC {s['beta_mc']:.4f}", err=True)
        typer.echo(f"  theory:       {res['theory_at_measured_snr']:.4f}, second order "
                   f"{res['second_order_at_measured_snr']:.4f}", err=True)
        emit_json(json_path, res)
