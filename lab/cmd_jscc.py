"""`otalab jscc train|eval|send`: DeepJSCC image transmission (see docs/deepjscc.md).

Heavy imports (torch, the models, phy, radio) happen inside the command functions so that ``otalab --help`` stays
fast.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

#: the checkpoint shipped with the package (SNR-adaptive model, k/n = 1/6, AWGN 0..20 dB)
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "jscc_adjscc_r6.pt"


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise SystemExit(2)  # (typer.Exit would be swallowed by click in lab.cli.main's standalone_mode=False)


def register(app: typer.Typer) -> None:
    """Add ``otalab jscc`` with its subcommands."""
    jscc = typer.Typer(name="jscc", no_args_is_help=True, help="DeepJSCC image transmission: train, evaluate, send.")
    app.add_typer(jscc, name="jscc")

    @jscc.command("train")
    def train_cmd(
        out_dir: Path = typer.Option(..., "--out-dir", help="where last.pt, best.pt and log.jsonl go"),
        model: str = typer.Option("adjscc", help="model: adjscc (SNR-adaptive) or bourtsoulatze (reference)"),
        ratio: str = typer.Option("1/6", help="bandwidth ratio k/n (c/96)"),
        filters: Optional[str] = typer.Option(None, help="4 hidden channel counts, e.g. 32,64,64,64"),
        channel: str = typer.Option("awgn", help="training channel: awgn, rayleigh, ofdm"),
        snr_db: Optional[float] = typer.Option(None, help="train at this one SNR (reference models)"),
        snr_min_db: float = typer.Option(0.0, help="SNR range for SNR-adaptive training"),
        snr_max_db: float = typer.Option(20.0),
        steps: int = typer.Option(20000, help="optimizer steps (cosine learning-rate schedule over them)"),
        batch_size: int = typer.Option(64),
        lr: float = typer.Option(1e-3),
        seed: int = typer.Option(0),
        data_dir: Optional[Path] = typer.Option(None, help="directory with cifar10.npz or cifar-10-batches-py/"),
        train_images: Optional[int] = typer.Option(None, help="use only the first N training images"),
        val_images: int = typer.Option(1000, help="validation images held out from the end of the train split"),
        eval_every: int = typer.Option(1000),
        ckpt_every: int = typer.Option(250),
        threads: int = typer.Option(1, help="torch CPU threads"),
        time_limit_min: Optional[float] = typer.Option(None, help="stop with a checkpoint after this many minutes"),
        resume: bool = typer.Option(True, help="resume from OUT_DIR/last.pt if present"),
        progress: bool = typer.Option(True, help="show a progress bar"),
    ):
        """Train a DeepJSCC model with the channel in the loop (CPU is fine; resumes after a crash)."""
        from learning.jscc.checkpoint import CheckpointError
        from learning.jscc.data import DataNotFoundError
        from learning.jscc.train import TrainConfig, train

        try:
            fl = tuple(int(v) for v in filters.split(",")) if filters else None
            lo, hi = (snr_db, snr_db) if snr_db is not None else (snr_min_db, snr_max_db)
            cfg = TrainConfig(out_dir=str(out_dir), model=model, ratio=ratio, filters=fl, channel=channel,
                              snr_min_db=lo, snr_max_db=hi, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                              data_dir=str(data_dir) if data_dir else None, train_images=train_images,
                              val_images=val_images, eval_every=eval_every, ckpt_every=ckpt_every, threads=threads,
                              time_limit_s=None if time_limit_min is None else 60.0 * time_limit_min,
                              progress=progress, resume=resume,
                              command="otalab jscc train " + shlex.join(sys.argv[3:] if _from_shell() else []))
            train(cfg)
        except (ValueError, DataNotFoundError, CheckpointError) as exc:
            _fail(str(exc))


def _from_shell() -> bool:
    """True when invoked as ``otalab jscc ...`` from a shell (so sys.argv holds the real command line)."""
    return len(sys.argv) > 2 and sys.argv[1:3] == ["jscc", "train"]
