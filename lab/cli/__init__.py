"""The ``otalab`` command line: one typer app; each command (or command group) lives in its own ``lab.cli.*`` module.

Command modules hold typer code only: option parsing, the call into :mod:`lab.experiments` (or :mod:`lab.bench`) and
the printing of what comes back. Every command module exposes ``register(app: typer.Typer) -> None`` and keeps heavy imports (torch, scipy, zmq)
inside the command functions so that ``otalab --help`` stays fast. ``main(argv)`` is what tests call.
"""

from __future__ import annotations

import sys

import typer

from lab import results

import importlib
import pkgutil

app = typer.Typer(name="otalab", no_args_is_help=True, add_completion=False,
                  help="Over-the-air learning lab: OFDM PHY, timing advance, DeepJSCC and over-the-air federated "
                       "learning on USRP, PlutoSDR or a simulated air.")



@app.callback()
def _root() -> None:
    """Over-the-air learning lab (see `otalab COMMAND --help`)."""


#: commands in the order ``otalab --help`` lists them; any other ``lab.cli`` module with ``register`` follows
_ORDER = ("demo", "cell", "link", "sync", "feel", "jscc", "infer", "ht", "stragglers", "node", "air", "radio",
          "emulate", "data", "bench")
_names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name != "common"]
for _name in sorted(_names, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n)):
    _module = importlib.import_module(f"lab.cli.{_name}")
    if hasattr(_module, "register"):
        _module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit code instead of exiting."""
    argv = list(sys.argv[1:] if argv is None else argv)
    results.COMMAND_LINE = ["otalab", *argv]   # what result files record as their command
    try:
        # with standalone_mode=False click turns `raise typer.Exit(code)` into this return value
        rc = app(args=argv, prog_name="otalab", standalone_mode=False)
    except SystemExit as exc:  # typer/click exit paths
        return int(exc.code or 0)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return 1
    except ValueError as exc:  # a bad config or checkpoint that a command did not catch itself: exit 2, no traceback
        from lab.config import ConfigError
        from learning.safeio import CheckpointError
        if not isinstance(exc, (ConfigError, CheckpointError)):
            raise
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        return 2
    except Exception as exc:  # click usage errors carry their own message and exit code
        try:
            from click import ClickException
        except ImportError:  # typer >= 0.20 vendors click instead of depending on it
            from typer._click.exceptions import ClickException
        if isinstance(exc, ClickException):
            exc.show()
            return exc.exit_code
        raise
    return rc if isinstance(rc, int) and not isinstance(rc, bool) else 0


if __name__ == "__main__":
    sys.exit(main())
