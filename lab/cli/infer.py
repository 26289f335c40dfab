"""`otalab infer train|eval|send`: remote classification with 128 real channel uses per query (see docs/infer.md).

Heavy imports (torch, the models, phy, radio) happen inside the command functions so that ``otalab --help`` stays
fast.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from lab.cli.common import (
    ConfigOpt,
    JsonOpt,
    SeedOpt,
    SetOpt,
    emit_json,
    fail,
    out_option,
    split_floats,
)

#: the shipped checkpoint (Fashion-MNIST classification; docs/infer.md has the command that made it)
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "infer_fmnist_cls.pt"
OutOpt = out_option("runs/infer")


def register(app: typer.Typer) -> None:
    """Add ``otalab infer`` with its subcommands."""
    infer = typer.Typer(name="infer", no_args_is_help=True,
                        help="Edge inference at 128 real channel uses: train, evaluate, send a query.")
    app.add_typer(infer, name="infer")

    @infer.command("train")
    def train_cmd(
        out: Path = typer.Option(..., "--out", help="checkpoint file to write"),
        dataset: str = typer.Option("fashion-mnist", help="fashion-mnist or mnist"),
        epochs: int = typer.Option(3, help="stage 1 (backbone + head) epochs"),
        jscc_steps: int = typer.Option(6000, help="stage 2 (JSCC with the channel in the loop) steps"),
        snr_min_db: float = typer.Option(-5.0),
        snr_max_db: float = typer.Option(20.0),
        train_images: int | None = typer.Option(None, help="use only the first N training images"),
        data_dir: Path | None = typer.Option(None),
        threads: int = typer.Option(1, help="torch CPU threads"),
        seed: SeedOpt = 0,
    ):
        """Train the backbone/head (noiseless) and the SNR-adaptive analog JSCC of the features (CPU, minutes)."""
        from learning.infer.data import DataNotFoundError
        from learning.infer.train import TrainConfig, train

        argv = sys.argv[1:] if sys.argv and Path(sys.argv[0]).name in ("otalab", "__main__.py") else []
        try:
            train(TrainConfig(out=str(out), dataset=dataset, epochs=epochs, jscc_steps=jscc_steps,
                              snr_min_db=snr_min_db, snr_max_db=snr_max_db, seed=seed, threads=threads,
                              data_dir=str(data_dir) if data_dir else None, train_images=train_images,
                              command="otalab " + shlex.join(argv)),
                  log=lambda m: typer.echo(m, err=True))
        except (ValueError, DataNotFoundError) as exc:
            fail(str(exc))

    @infer.command("eval")
    def eval_cmd(
        checkpoint: Path = typer.Option(DEFAULT_CHECKPOINT, "--checkpoint", help="an `otalab infer train` checkpoint"),
        snr_db: str = typer.Option("-5,-2.5,0,2.5,5,7.5,10,12.5,15,17.5,20", "--snr-db", help="SNR grid, dB"),
        n_images: int = typer.Option(2000, "--n-images", help="first N test images"),
        schemes: str = typer.Option("noiseless,analog-jscc,digital-bound,digital-chain,image-first", "--schemes"),
        data_dir: Path | None = typer.Option(None),
        json_path: JsonOpt = None,
        out: OutOpt = Path("runs/infer"),
        seed: SeedOpt = 0,
    ):
        """Accuracy vs SNR of every scheme on the shipped (or given) model -> JSON records + PNG (Fig. 3 style)."""
        from lab.experiments.infer import evaluate, plot, summarize
        from lab.results import metadata, write_json
        from learning.infer.data import DataNotFoundError, load
        from learning.infer.schemes import CheckpointMismatch, InferenceModel

        snrs = split_floats(snr_db, "--snr-db")
        names = [s.strip() for s in schemes.split(",") if s.strip()]
        if "noiseless" not in names:
            names.insert(0, "noiseless")
        try:
            model = InferenceModel(checkpoint)
            x, y = load(model.meta["dataset"], "test", data_dir)
            if n_images < 1:
                raise ValueError(f"--n-images {n_images}: expected >= 1")
            x, y = x[:n_images], y[:n_images]
            records = evaluate(model, x, y, snrs, names, seed)
        except (ValueError, DataNotFoundError, FileNotFoundError) as exc:
            fail(str(exc))
        except CheckpointMismatch as exc:
            fail(str(exc))
        summary = summarize(records)
        res = {"experiment": "infer-eval", "checkpoint": str(checkpoint), "dataset": model.meta["dataset"],
               "channel_uses": 128, "seed": seed, "results": records, "summary": summary, **metadata()}
        out.mkdir(parents=True, exist_ok=True)
        png = out / "infer_classification.png"
        plot(records, png, f"{model.meta['dataset']} classification, 128 real channel uses, {len(x)} images")
        res["plot"] = str(png)
        for s in names:
            row = " ".join(f"{100 * r['accuracy']:5.1f}" for r in records if r["scheme"] == s)
            typer.echo(f"{s:14} {row}", err=json_path == "-")
        typer.echo(f"summary: {summary}", err=True)
        typer.echo(f"plot: {png}", err=True)
        if json_path is None:
            write_json(out / "infer_eval.json", res)
            typer.echo(f"json: {out / 'infer_eval.json'}", err=True)
        emit_json(json_path, res)

    @infer.command("send")
    def send_cmd(
        ctx: typer.Context,
        checkpoint: Path = typer.Option(DEFAULT_CHECKPOINT, "--checkpoint"),
        n_images: int = typer.Option(200, "--n-images", help="first N test images as queries"),
        snr_db: float | None = typer.Option(None, "--snr-db", help="the simulated air's SNR (and the encoder's); "
                                                                  "default: the config's air.snr_db, else 10"),
        data_dir: Path | None = typer.Option(None),
        config: ConfigOpt = None,
        sets: SetOpt = [],  # noqa: B006  (typer reads the default)
        json_path: JsonOpt = None,
        seed: SeedOpt = 0,
    ):
        """Send test queries as phy analog frames through the radios of a config (in-process air by default)."""
        from lab.cli.common import given, load_lab_config
        from lab.experiments.infer import send_over_radio
        from lab.experiments.jscc_air import open_radio_pair
        from lab.results import metadata
        from learning.infer.data import DataNotFoundError, load
        from learning.infer.schemes import CheckpointMismatch, InferenceModel
        from radio.base import RadioError

        extra = [f"air.snr_db={snr_db!r}", "air.noise_power=null"] if given(ctx, "snr_db") else []
        extra += [f"air.seed={seed}"] if config is None or given(ctx, "seed") else []
        cfg = load_lab_config(ctx, config or Path(__file__).resolve().parents[2] / "hw_configs" / "loopback.yaml",
                              list(sets) + extra)
        snr = snr_db if snr_db is not None else (cfg.air.snr_db if cfg.air is not None and cfg.air.snr_db is not None
                                                 else 10.0)
        closers = []
        try:
            model = InferenceModel(checkpoint)
            x, y = load(model.meta["dataset"], "test", data_dir)
            x, y = x[:n_images], y[:n_images]
            tx, rx, closers = open_radio_pair(cfg)
            res = send_over_radio(model, x, y, tx, rx, cfg.ofdm.to_config(cfg.radio.sample_rate), snr)
        except (ValueError, DataNotFoundError, FileNotFoundError, RadioError, OSError, CheckpointMismatch) as exc:
            fail(str(exc))
        finally:
            for c in closers:
                c.close()
        res.update(config={"source": cfg.source, "driver": cfg.radio.driver,
                           "air": None if cfg.air is None else {k: getattr(cfg.air, k) for k in
                                                                ("snr_db", "channel", "cfo_ppm", "seed")}},
                   seed=seed, **metadata())
        typer.echo(f"infer send over {cfg.radio.driver}: {res['delivered']}/{res['n_images']} delivered, measured "
                   f"SNR {res['measured_snr_db']:.2f} dB, accuracy {100 * res['accuracy']:.1f} % (symbol level at "
                   f"that SNR: {100 * res['accuracy_symbol_level_at_measured_snr']:.1f} %)", err=True)
        emit_json(json_path, res)
