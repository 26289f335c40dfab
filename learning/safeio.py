"""Files the learning stack reads without running code from them: hashed checkpoints and restricted pickles.

Checkpoint container (:func:`write_checkpoint` / :func:`read_checkpoint_file`), one file::

    b"otalab-checkpoint\\n"                  magic line
    b'{"kind": ..., "config": {...}, "payload_bytes": N, ...}\\n'   header: one line of JSON (no pickle)
    N bytes                                  payload: ``torch.save`` of a dict of tensors and plain Python values
    b"sha256:<64 hex digits>\\n"             SHA-256 of every byte before this line (magic + header + payload)

Reading checks, in this order and before anything is unpickled: the magic line, the trailer, the SHA-256 (so one
flipped byte anywhere is refused with a message naming the file), the header (kind, payload length); only then is the
payload loaded with ``torch.load(weights_only=True)``, which rebuilds tensors and plain containers and refuses every
other object (no ``__reduce__`` runs). The header carries the configuration that made the checkpoint, readable with
any JSON tool.

Writing is atomic: a temporary file in the destination's directory, fsync, ``os.replace`` (a crash leaves the old or
the new file, never a torn one); a symlink at the destination is replaced, not followed.

:func:`restricted_pickle_load` reads the one pickle format the project accepts from users, torchvision's CIFAR-10
batches (dicts of bytes/str/int/list and numpy arrays), with an unpickler that resolves only the numpy array
reconstructors: any other global (``os.system``, ``builtins.eval``...) is refused before it is called.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
import threading
from pathlib import Path

MAGIC = b"otalab-checkpoint\n"
_TRAILER_PREFIX = b"sha256:"
_TRAILER_LEN = len(_TRAILER_PREFIX) + 64 + 1
#: container version written in the header
CONTAINER_VERSION = 2
#: checkpoints larger than this are refused before they are read (bytes); env OTALAB_MAX_CHECKPOINT_BYTES raises it
MAX_CHECKPOINT_BYTES = 4 << 30


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, tampered with, of another format or does not fit what was asked for.

    The message names the file, what was found and what was expected."""


def _max_bytes() -> int:
    raw = os.environ.get("OTALAB_MAX_CHECKPOINT_BYTES")
    if not raw:
        return MAX_CHECKPOINT_BYTES
    try:
        return int(float(raw))
    except ValueError:
        raise CheckpointError(f"OTALAB_MAX_CHECKPOINT_BYTES = {raw!r}: expected a number of bytes") from None


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, rename); returns the path.

    The project's one atomic file writer: checkpoints, and every result file (``lab.results.write_json`` calls it).
    A crash leaves the old file or the new one, never half of one; a symbolic link at ``path`` is replaced, never
    written through; the file gets the permissions of a new file under the umask (0644 under 022)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)  # replaces a symlink at ``path`` itself, never writes through it
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    with _UMASK_LOCK:   # os.umask can only be read by setting it; threads must not see the temporary value
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def plain(obj):
    """``obj`` with numpy scalars turned into Python numbers and numpy arrays into tensors, recursively (dicts, lists,
    tuples), so that ``torch.load(weights_only=True)`` can read it back (it refuses numpy globals)."""
    import numpy as np
    import torch

    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain(v) for v in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    return obj


def encode_checkpoint(kind: str, payload: dict, config: dict | None = None) -> bytes:
    """The container bytes for ``payload`` (see module docstring). ``config`` must be JSON-serializable."""
    import torch

    buf = io.BytesIO()
    torch.save(plain(payload), buf)
    body = buf.getvalue()
    header = {"container": CONTAINER_VERSION, "kind": kind, "payload_bytes": len(body),
              "payload_sha256": hashlib.sha256(body).hexdigest(), "torch": str(torch.__version__),
              "config": config or {}}
    head = json.dumps(header, sort_keys=True, default=str).encode("utf-8") + b"\n"
    content = MAGIC + head + body
    return content + _TRAILER_PREFIX + hashlib.sha256(content).hexdigest().encode("ascii") + b"\n"


def write_checkpoint(path: str | Path, kind: str, payload: dict, config: dict | None = None) -> Path:
    """Atomically write ``payload`` (tensors and plain Python values only) under the header ``kind``/``config``."""
    return atomic_write_bytes(path, encode_checkpoint(kind, payload, config))


def describe_foreign(blob: bytes) -> str:
    """What a file that is not an otalab checkpoint looks like (for error messages)."""
    if not blob:
        return "an empty file"
    if blob.startswith(b"PK\x03\x04"):
        return "a bare torch/zip file without otalab's content hash (written by an older otalab or another tool)"
    if blob[:1] == b"\x80":
        return "a plain pickle (never unpickled: it could run code)"
    return f"{len(blob)} bytes starting {blob[:16]!r}"


def read_checkpoint_file(path: str | Path, kind: str | tuple[str, ...]) -> tuple[dict, dict]:
    """Verify and load a checkpoint written by :func:`write_checkpoint`; returns (header, payload).

    ``kind``: the header kind(s) accepted. Raises :class:`CheckpointError` naming the file for a missing, empty,
    truncated, foreign, tampered (SHA-256 mismatch) or unloadable file; nothing in the file is executed.
    """
    path = Path(path)
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: file not found")
    size = path.stat().st_size
    if size > _max_bytes():
        raise CheckpointError(f"checkpoint {path}: {size} bytes, expected at most {_max_bytes()} "
                              f"(set OTALAB_MAX_CHECKPOINT_BYTES to raise the cap)")
    blob = path.read_bytes()
    if not blob.startswith(MAGIC):
        raise CheckpointError(f"checkpoint {path}: {describe_foreign(blob)}; expected an otalab checkpoint "
                              f"(magic {MAGIC!r}, SHA-256 trailer)")
    if len(blob) < len(MAGIC) + _TRAILER_LEN or not blob[-_TRAILER_LEN:].startswith(_TRAILER_PREFIX) \
            or not blob.endswith(b"\n"):
        raise CheckpointError(f"checkpoint {path}: {len(blob)} bytes with no SHA-256 trailer; expected a complete "
                              f"otalab checkpoint (truncated copy?)")
    content, trailer = blob[:-_TRAILER_LEN], blob[-_TRAILER_LEN:]
    stored = trailer[len(_TRAILER_PREFIX):-1].decode("ascii", errors="replace")
    actual = hashlib.sha256(content).hexdigest()
    if stored != actual:
        raise CheckpointError(f"checkpoint {path}: content SHA-256 {actual} does not match the stored {stored!r}; "
                              f"expected them equal (the file was changed or corrupted)")
    end = content.find(b"\n", len(MAGIC))
    try:
        header = json.loads(content[len(MAGIC):end].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: header is not JSON ({exc}); expected one JSON line") from None
    if not isinstance(header, dict) or header.get("kind") not in kinds:
        got = header.get("kind") if isinstance(header, dict) else type(header).__name__
        raise CheckpointError(f"checkpoint {path}: kind {got!r}, expected {' or '.join(map(repr, kinds))}")
    body = content[end + 1:]
    if header.get("payload_bytes") != len(body):
        raise CheckpointError(f"checkpoint {path}: payload of {len(body)} bytes, header says "
                              f"{header.get('payload_bytes')!r}; expected them equal")
    import torch

    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for crafted payloads; none may escape
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint {path}: payload refused by torch.load(weights_only=True): {first}; "
                              f"expected tensors and plain Python values only") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path}: payload is a {type(payload).__name__}, expected a dict")
    return header, payload


# ------------------------------------------------------------------------------------------ restricted pickles
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed (only numpy arrays)")


def restricted_pickle_load(path: str | Path, encoding: str = "bytes"):
    """Unpickle ``path`` allowing only plain containers, strings, numbers and numpy arrays.

    Raises ValueError naming the file for anything else (the offending global is never imported or called)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return _RestrictedUnpickler(fh, encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            UnicodeDecodeError, MemoryError) as exc:
        raise ValueError(f"{path}: not a plain-data pickle ({exc}); expected a CIFAR-10 batch (dict of numpy "
                         f"arrays and lists)") from None
