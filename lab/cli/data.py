"""``otalab data fetch mnist|cifar10``: download a standard data set into torchvision's layout (for machines with
internet; everything else in otalab reads data offline, see :mod:`learning.feel.data`)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``otalab data fetch``."""
    data_app = typer.Typer(help="Data sets: download the standard archives (MNIST, CIFAR-10).", no_args_is_help=True)
    app.add_typer(data_app, name="data")

    @data_app.command("fetch")
    def fetch(name: str = typer.Argument(..., help="mnist or cifar10 (Fashion-MNIST: apt install "
                                                   "dataset-fashion-mnist)"),
              data_dir: Path = typer.Option(None, "--data-dir", help="where to put it (default: OTALAB_DATA_DIR, "
                                                                     "else ~/.cache/torchvision)"),
              progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar")):
        """Download NAME's standard archives (MD5-checked) into torchvision's layout and check that they load."""
        from learning.feel.data import DISPLAY_NAMES, default_download_root, fetch_dataset  # noqa: PLC0415

        root = data_dir or default_download_root()
        bar = None
        if progress:
            from rich.progress import Progress  # noqa: PLC0415

            bar = Progress(transient=True)
            bar.start()
            task = bar.add_task(f"downloading {name}", total=None)
        try:
            data = fetch_dataset(name, root, progress=(lambda done, total: bar.update(
                task, completed=done, total=total or None)) if bar else None)
        except (ValueError, OSError) as exc:
            typer.echo(f"data fetch error: {exc}", err=True)
            raise typer.Exit(1) from None
        finally:
            if bar is not None:
                bar.stop()
        typer.echo(f"{DISPLAY_NAMES.get(name, name)}: {len(data.x_train)} training and {len(data.x_test)} test "
                   f"images in {data.source}")
