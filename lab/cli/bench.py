"""`otalab bench NAME [ARGS...]`: the benchmarks of ``lab/bench/``, one subcommand each, JSON on stdout.

Each benchmark module ``lab/bench/<name>.py`` exposes ``main(argv: list[str]) -> dict``: it parses its own options
(``otalab bench NAME --help`` shows them), runs, prints the JSON record (``{"benchmark": ..., "results": [...]}``) to
stdout, writes it to ``--json PATH`` too when asked, and returns it. A new module in ``lab/bench/`` becomes a
subcommand by being there.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

import typer

import lab.bench


def available() -> list[str]:
    """Names of the benchmarks shipped with this install."""
    return sorted(m.name for m in pkgutil.iter_modules(lab.bench.__path__) if not m.name.startswith("_"))


def _summary(name: str) -> str:
    """First line of a benchmark module's docstring, read without importing it (``otalab --help`` stays fast)."""
    spec = importlib.util.find_spec(f"lab.bench.{name}")
    try:
        text = open(spec.origin, encoding="utf-8").read(2000)
    except (OSError, AttributeError, TypeError):
        return f"the {name} benchmark"
    doc = text.split('"""', 2)[1] if text.lstrip().startswith('"""') else ""
    return doc.strip().splitlines()[0] if doc.strip() else f"the {name} benchmark"


def register(app: typer.Typer) -> None:
    """Add ``otalab bench`` with one subcommand per benchmark module."""
    bench = typer.Typer(name="bench", no_args_is_help=True,
                        help="Speed and accuracy benchmarks; each prints a JSON record (try `otalab bench NAME --help`).")
    app.add_typer(bench, name="bench")
    for name in available():
        def run(ctx: typer.Context, _name: str = name) -> None:
            importlib.import_module(f"lab.bench.{_name}").main(list(ctx.args))

        bench.command(name, help=_summary(name), add_help_option=False,
                      context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(run)
