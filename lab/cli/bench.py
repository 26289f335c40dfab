"""`otalab bench NAME [ARGS...]`: run a benchmark from ``lab.bench.NAME`` and print its JSON.

Each benchmark module ``lab/bench/<name>.py`` exposes ``main(argv: list[str]) -> dict`` that runs the benchmark, prints
the JSON record (``{"benchmark": ..., "results": [...]}``) to stdout and returns it.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import lab.bench


def available() -> list[str]:
    """Names of the benchmarks shipped with this install."""
    return sorted(m.name for m in pkgutil.iter_modules(lab.bench.__path__))


def register(app: typer.Typer) -> None:
    """Add ``otalab bench``."""

    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def bench(ctx: typer.Context, name: str = typer.Argument(..., help="benchmark: phy, air, sync, jscc, feel")):
        """Run a benchmark and print JSON (extra arguments go to the benchmark; try `otalab bench NAME --help`)."""
        if name not in available():
            raise typer.BadParameter(f"unknown benchmark {name!r}; available: {', '.join(available()) or 'none'}",
                                     param_hint="NAME")
        importlib.import_module(f"lab.bench.{name}").main(list(ctx.args))
