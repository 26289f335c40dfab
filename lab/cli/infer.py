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

#: the shipped checkpoints (Fashion-MNIST classification and instance retrieval, CIFAR-10 classification;
#: docs/infer.md has the commands)
ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_CHECKPOINTS = {"classification": ASSETS / "infer_fmnist_cls.pt", "retrieval": ASSETS / "infer_fmnist_ret.pt",
                       "classification-cifar10": ASSETS / "infer_cifar10_cls.pt"}
OutOpt = out_option("runs/infer")


def register(app: typer.Typer) -> None:
    """Add ``otalab infer`` with its subcommands."""
    infer = typer.Typer(name="infer", no_args_is_help=True,
                        help="Edge inference at 128 real channel uses: train, evaluate, send a query.")
    app.add_typer(infer, name="infer")

    @infer.command("train")
    def train_cmd(
        out: Path = typer.Option(..., "--out", help="checkpoint file to write"),
        task: str = typer.Option("classification", "--task", help="classification or retrieval"),
        dataset: str = typer.Option("fashion-mnist", help="fashion-mnist, mnist or cifar10"),
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
            train(TrainConfig(out=str(out), task=task, dataset=dataset, epochs=epochs, jscc_steps=jscc_steps,
                              snr_min_db=snr_min_db, snr_max_db=snr_max_db, seed=seed, threads=threads,
                              data_dir=str(data_dir) if data_dir else None, train_images=train_images,
                              command="otalab " + shlex.join(argv)),
                  log=lambda m: typer.echo(m, err=True))
        except (ValueError, DataNotFoundError) as exc:
            fail(str(exc))

    @infer.command("eval")
    def eval_cmd(
        checkpoint: list[Path] = typer.Option(None, "--checkpoint",
                                              help="`otalab infer train` checkpoint(s) (default: both shipped ones)"),
        snr_db: str = typer.Option("-5,-2.5,0,2.5,5,7.5,10,12.5,15,17.5,20", "--snr-db", help="SNR grid, dB"),
        n_images: int = typer.Option(2000, "--n-images", help="first N test images (retrieval: the gallery)"),
        schemes: str = typer.Option("noiseless,analog-jscc,digital-bound,digital-chain,image-first", "--schemes"),
        data_dir: Path | None = typer.Option(None),
        json_path: JsonOpt = None,
        out: OutOpt = Path("runs/infer"),
        seed: SeedOpt = 0,
    ):
        """Every scheme vs SNR for each model -> JSON records (task, dataset, scheme, snr_db, accuracy | top1/map) +
        PNGs."""
        from lab.experiments.infer import evaluate, plot, summarize
        from lab.results import metadata, write_json
        from learning.infer.data import DataNotFoundError, load
        from learning.infer.schemes import SCHEMES, CheckpointMismatch, InferenceModel

        snrs = split_floats(snr_db, "--snr-db")
        names = [s.strip() for s in schemes.split(",") if s.strip()]
        bad = [s for s in names if s not in SCHEMES]
        if bad:
            fail(f"--schemes: {', '.join(bad)} unknown; expected some of {', '.join(SCHEMES)}")
        if "noiseless" not in names:
            names.insert(0, "noiseless")
        if n_images < 1:
            fail(f"--n-images {n_images}: expected >= 1")
        paths = list(checkpoint) if checkpoint else [p for p in DEFAULT_CHECKPOINTS.values() if p.exists()]
        if not paths:
            fail(f"no checkpoint given and none shipped in {ASSETS}; train one with `otalab infer train`")
        out.mkdir(parents=True, exist_ok=True)
        records, summaries, plots = [], {}, []
        for ck in paths:
            try:
                model = InferenceModel(ck, expect_task=None)
                try:
                    x, y = load(model.meta["dataset"], "test", data_dir)
                except DataNotFoundError as exc:
                    if checkpoint:                    # asked for: an error; a shipped default: skipped, said so
                        raise
                    typer.echo(f"skipping {ck.name}: {exc}", err=True)
                    continue
                x, y = x[:n_images], y[:n_images]
                recs = evaluate(model, x, y, snrs, names, seed)
            except (ValueError, DataNotFoundError, FileNotFoundError, CheckpointMismatch) as exc:
                fail(str(exc))
            for r in recs:
                r["checkpoint"] = str(ck)
                r["dataset"] = model.meta["dataset"]
            records += recs
            summaries[f"{model.task}:{model.meta['dataset']}:{ck.name}"] = summarize(recs)
            tag = "" if model.meta["dataset"] == "fashion-mnist" else "_" + model.meta["dataset"]
            png = out / f"infer_{model.task}{tag}.png"
            plot(recs, png, f"{model.meta['dataset']} {model.task}, 128 real channel uses, {len(x)} images")
            plots.append(str(png))
            key = "accuracy" if model.task == "classification" else "top1"
            typer.echo(f"{model.task} ({ck.name}), {key} [%] at SNR {', '.join(f'{s:g}' for s in snrs)} dB:",
                       err=json_path == "-")
            for s in names:
                row = " ".join(f"{100 * r[key]:5.1f}" for r in recs if r["scheme"] == s)
                typer.echo(f"  {s:14} {row}", err=json_path == "-")
        if not records:
            fail("no test data found for any checkpoint (see the messages above)")
        res = {"experiment": "infer-eval", "channel_uses": 128, "seed": seed, "results": records,
               "summary": summaries, "plots": plots, **metadata()}
        for k, v in summaries.items():
            typer.echo(f"summary {k}: analog JSCC within 2 points from {v['analog-jscc']['reaches_noiseless_db']} dB"
                       f", digital chain from {v.get('digital-chain', {}).get('reaches_noiseless_db')} dB", err=True)
        if json_path is None:
            write_json(out / "infer_eval.json", res)
            typer.echo(f"json: {out / 'infer_eval.json'}", err=True)
        emit_json(json_path, res)

    @infer.command("send")
    def send_cmd(
        ctx: typer.Context,
        checkpoint: Path = typer.Option(DEFAULT_CHECKPOINTS["classification"], "--checkpoint"),
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
        from lab.factory import open_link_pair
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
            model = InferenceModel(checkpoint, expect_task=None)
            x, y = load(model.meta["dataset"], "test", data_dir)
            x, y = x[:n_images], y[:n_images]
            tx, rx, closers = open_link_pair(cfg)
            res = send_over_radio(model, x, y, tx, rx, cfg.ofdm.to_config(cfg.radio.sample_rate), snr, seed=seed)
        except (ValueError, DataNotFoundError, FileNotFoundError, RadioError, OSError, CheckpointMismatch) as exc:
            fail(str(exc))
        finally:
            for c in closers:
                c.close()
        res.update(config={"source": cfg.source, "driver": cfg.radio.driver,
                           "air": None if cfg.air is None else {k: getattr(cfg.air, k) for k in
                                                                ("snr_db", "channel", "cfo_ppm", "seed")}},
                   seed=seed, **metadata())
        key = "accuracy" if model.task == "classification" else "top1"
        typer.echo(f"infer send ({model.task}) over {cfg.radio.driver}: {res['delivered']}/{res['n_images']} "
                   f"delivered, measured SNR {res['measured_snr_db']:.2f} dB, {key} {100 * res[key]:.1f} % (symbol "
                   f"level at that SNR: {100 * res['symbol_level_at_measured_snr'][key]:.1f} %)", err=True)
        emit_json(json_path, res)
