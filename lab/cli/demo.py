"""`otalab demo`: synchronization, over-the-air federated learning and DeepJSCC on the in-process air in a few minutes.

See :mod:`lab.experiments.demo` for what runs and docs/demo.md for an example with real output. Heavy imports happen inside the
command function so that ``otalab --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lab.cli.common import JsonOpt, ProgressOpt, SeedOpt, emit_json


def register(app: typer.Typer) -> None:
    """Add ``otalab demo``."""

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(Path("runs/demo"), "--out", help="folder for demo.json and the PNG plots"),
        quick: bool = typer.Option(False, "--quick", help="small version (4 devices, 3 rounds, image crop): < 1 min"),
        seed: SeedOpt = 0,
        devices: Optional[int] = typer.Option(None, "--devices", "-k", min=1, max=11,
                                              help="devices K (default 8, --quick 4; at most the 11 dedicated "
                                                   "PRACH preambles)"),
        rounds: Optional[int] = typer.Option(None, "--rounds", min=1, help="FEEL rounds (default 20, --quick 3)"),
        snr_db: float = typer.Option(10.0, "--snr-db", help="per-subcarrier SNR at the PS for a unit-gain link"),
        channel: str = typer.Option("TDL-A", "--channel", help="multipath profile: none, TDL-A..TDL-E"),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="folder holding mnist.npz (or torchvision's "
                                                                          "MNIST/raw); default: OTALAB_DATA_DIR, "
                                                                          "../shared/data, ~/.cache/torchvision"),
        no_symbol_analog: bool = typer.Option(False, "--no-symbol-analog",
                                              help="skip the symbol-level A-DSGD comparison run"),
        json_path: JsonOpt = None,
        progress: ProgressOpt = True,
    ):
        """Start here: sync K devices, train MNIST with A-DSGD over the air vs D-DSGD, send a DeepJSCC photo."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from lab.experiments.demo import DemoConfig, print_summary, run_demo

        cfg = DemoConfig(out=out, quick=quick, seed=seed, devices=devices, rounds=rounds, snr_db=snr_db,
                         profile=channel, data_dir=data_dir, symbol_level_analog=not no_symbol_analog)
        err = Console(stderr=True)
        err.print("otalab demo: loading torch, the PHY and the air (first start takes a few seconds) ...")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=True, disable=not progress) as bar:
            result = run_demo(cfg, progress=bar)
        console = Console(stderr=json_path == "-")
        if not console.is_terminal:      # piped into a file: wide enough for the tables
            console = Console(width=110, stderr=json_path == "-")
        print_summary(result, console)
        emit_json(json_path, result)
