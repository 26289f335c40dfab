"""The ``otalab`` command line: one typer app; each command (or command group) lives in its own ``lab.cli.*`` module.

Command modules hold typer code only: option parsing, the call into :mod:`lab.experiments` (or :mod:`lab.bench`) and
the printing of what comes back. Every command module exposes ``register(app: typer.Typer) -> None`` and keeps heavy imports (torch, scipy, zmq)
inside the command functions so that ``otalab --help`` stays fast. ``main(argv)`` is what tests call.
"""

from __future__ import annotations

import sys

import typer

from lab.cli import air, bench, demo, emulate, feel, jscc, link, radio, sync

app = typer.Typer(name="otalab", no_args_is_help=True, add_completion=False,
                  help="Over-the-air learning lab: OFDM PHY, timing advance, DeepJSCC and over-the-air federated "
                       "learning on USRP, PlutoSDR or a simulated air.")



@app.callback()
def _root() -> None:
    """Over-the-air learning lab (see `otalab COMMAND --help`)."""


for _module in (demo, link, air, radio, emulate, sync, jscc, feel, bench):
    _module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``); returns the exit code instead of exiting."""
    try:
        # with standalone_mode=False click turns `raise typer.Exit(code)` into this return value
        rc = app(args=list(sys.argv[1:] if argv is None else argv), prog_name="otalab", standalone_mode=False)
    except SystemExit as exc:  # typer/click exit paths
        return int(exc.code or 0)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return 1
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
