"""Result files: JSON written atomically, with the metadata every experiment records (command, git revision, time).

``write_json(path, obj)`` writes to a temporary file in the same directory, fsyncs it and renames it over ``path``,
so a reader (or a crashed run's successor) never sees half a file. NaN and infinity become null (strict JSON).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def _clean(obj):
    """numpy scalars/arrays → Python, non-finite floats → None, recursively."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically; creates the parent directory. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_clean(obj), f, indent=1, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


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
    """What every result file records about how it was made."""
    return {"command": " ".join(["otalab", *sys.argv[1:]]) if sys.argv else "otalab",
            "git_revision": git_revision(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **extra}
