"""The options every ``otalab`` command shares, and how they combine with a bench config.

One convention for all commands (README, "Command-line conventions"):

- ``--config/-c PATH`` a bench config (``hw_configs/*.yaml``; never a checkpoint), ``--set key=value`` (repeatable)
  overrides one of its keys;
- ``--json PATH`` writes the result record atomically (``-`` prints it to stdout instead), ``--out DIR`` is the folder
  for plots and artefacts (under ``runs/`` by default);
- ``--seed``, ``--snr-db`` (a comma list where a sweep makes sense), ``--progress/--no-progress``;
- frequencies and rates take SI suffixes (``2.4G``, ``20M``, ``500k``);
- precedence: a flag the user actually gave > ``--set`` > the YAML > the code's defaults. A flag's default never
  overrides the YAML or ``--set``: :func:`given` tells whether a flag came from the command line, and
  :func:`load_lab_config` appends the given flags as the last overrides.

Use the ``Annotated`` aliases in command signatures so the same option reads the same everywhere::

    def link_cmd(ctx: typer.Context, config: ConfigOpt = None, sets: SetOpt = [], json_path: JsonOpt = None, ...):
        cfg = load_lab_config(ctx, config, sets, {"snr_db": "air.snr_db"})
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="bench config YAML (hw_configs/*.yaml)")]
SetOpt = Annotated[list[str], typer.Option("--set", help="override a config key: --set key=value (repeatable)")]
JsonOpt = Annotated[Optional[str], typer.Option("--json", help="write the result record here, atomically "
                                                               "('-': print it to stdout)")]
SeedOpt = Annotated[int, typer.Option("--seed", help="random seed")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar (on a terminal)")]


def out_option(default: str) -> object:
    """``--out DIR`` with a command's own default folder (``runs/<command>``)."""
    return Annotated[Path, typer.Option("--out", help=f"folder for plots and artefacts (default {default})")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (2: bad input)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise SystemExit(code)


def given(ctx: typer.Context, name: str) -> bool:
    """Whether parameter ``name`` (the Python name) was given on the command line (or its environment variable),
    as opposed to taking its default."""
    source = ctx.get_parameter_source(name)   # click's ParameterSource (typer vendors click: compare by name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def flag_overrides(ctx: typer.Context, flags: dict[str, str]) -> list[str]:
    """``key=value`` overrides for the flags in ``flags`` (parameter name -> config key) that the user gave."""
    out = []
    for name, key in flags.items():
        if given(ctx, name):
            value = ctx.params[name]
            out.append(f"{key}={'null' if value is None else value}")
    return out


def load_lab_config(ctx: typer.Context, config: Path | None, sets: list[str], flags: dict[str, str] | None = None):
    """The bench config: code defaults < YAML ``config`` < ``--set`` < the flags in ``flags`` that the user gave.
    A bad file, key or value exits 2 with the config's message (file, key, value, what is allowed)."""
    from lab.config import ConfigError, load_config

    try:
        return load_config(config, list(sets) + flag_overrides(ctx, flags or {}))
    except ConfigError as exc:
        fail(str(exc))


def emit_json(path: str | None, record: dict, *, echo=None) -> None:
    """Write ``record`` as the command's result: to ``path`` atomically, or to stdout when ``path`` is ``-``;
    nothing when ``path`` is None. ``echo``: a callable told where the file went (default: stderr)."""
    from lab.results import to_jsonable, write_json

    if path is None:
        return
    if str(path) == "-":
        sys.stdout.write(json.dumps(to_jsonable(record), indent=1, allow_nan=False) + "\n")
        sys.stdout.flush()
        return
    write_json(path, record)
    (echo or (lambda m: typer.echo(m, err=True)))(f"json: {path}")


def split_floats(text: str, name: str) -> list[float]:
    """A comma list of numbers (``--snr-db 0,5,10``); BadParameter naming the option otherwise."""
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected a number or a comma list of numbers", param_hint=name) from None
    if not values:
        raise typer.BadParameter(f"{text!r}: expected at least one number", param_hint=name)
    return values
