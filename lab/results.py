"""Result files: JSON written atomically, with the metadata every experiment records (command, git revision, time).

``write_json(path, obj)`` writes to a temporary file in the same directory, fsyncs it and renames it over ``path``,
so a reader (or a crashed run's successor) never sees half a file; a symbolic link at ``path`` is replaced, never
followed (its target is left alone). The file gets the permissions of any new file under the process's umask (0644
under umask 022), so a lab's shared results folder can read it. NaN and infinity become null (strict JSON).
Every command writes its result record through this one function (``--json -`` prints it instead:
:func:`lab.cli.common.emit_json`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


#: the command line a result file records (set by :func:`lab.cli.main`; None: this process's argv)
COMMAND_LINE: list[str] | None = None


def to_jsonable(obj):
    """numpy scalars/arrays → Python, non-finite floats → None, paths → str, recursively (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented strict JSON to ``path`` atomically (module docstring) through the project's one
    atomic file writer, :func:`learning.safeio.atomic_write_bytes`; creates the parent directory. Returns the path."""
    from learning.safeio import atomic_write_bytes

    text = json.dumps(to_jsonable(obj), indent=1, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def git_revision() -> str | None:
    """The checkout's commit (with ``-dirty`` when modified), or None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=here,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return rev.stdout.strip() or None if rev.returncode == 0 else None


def metadata(**extra) -> dict:
    """What every result file records about how it was made: the command line, git revision and time, plus
    ``extra`` (commands add ``config`` and ``seed``)."""
    import shlex

    argv = COMMAND_LINE if COMMAND_LINE is not None else ["otalab", *sys.argv[1:]]
    return {"command": shlex.join(argv),
            "git_revision": git_revision(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **extra}
