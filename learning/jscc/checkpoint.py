"""DeepJSCC checkpoints: atomic save, safe load (``torch.load(weights_only=True)``), metadata checks.

A checkpoint is a dict of plain Python values and tensors only::

    {"format": "otalab-jscc/1",
     "model": {"name": "adjscc", "c": 16, "filters": [...]},      # constructor arguments (see models.build_model)
     "meta": {"ratio": "1/6", "channel": "awgn", "snr_range_db": [0, 20], "steps": ..., "images_seen": ...,
              "wall_s": ..., "command": "...", "val_psnr_db": ..., ...},
     "state_dict": {...},                                          # model weights
     "train_state": {...} | absent}                                # optimizer, RNG states, step: for resuming

Saving writes to ``<path>.tmp`` in the same directory, flushes and fsyncs it, then ``os.replace``\\ s it over the target,
so a crash leaves either the old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from learning.jscc.models import (
    JsccModel,
    build_model,
    channels_for_ratio,
    ratio_string,
)

FORMAT = "otalab-jscc/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, of another format or does not fit what was asked for."""


def save_checkpoint(path: str | Path, model: JsccModel, meta: dict | None = None,
                    train_state: dict | None = None) -> Path:
    """Atomically write ``model`` (+ metadata, + optional training state) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    meta.setdefault("ratio", ratio_string(model.c))
    payload = {"format": FORMAT, "model": model.config(), "meta": meta,
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    if train_state is not None:
        payload["train_state"] = train_state
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path) -> dict:
    """Load the raw checkpoint dict with ``weights_only=True``; CheckpointError for missing/corrupt/foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: file not found")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"checkpoint {path}: not a readable torch checkpoint (corrupt or truncated?): "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        fmt = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"checkpoint {path}: format {fmt!r}, expected {FORMAT!r}")
    for key in ("model", "meta", "state_dict"):
        if key not in raw:
            raise CheckpointError(f"checkpoint {path}: missing entry {key!r}")
    return raw


def load_checkpoint(path: str | Path, expect_ratio: float | str | None = None,
                    expect_model: str | None = None) -> tuple[JsccModel, dict]:
    """Build the model stored at ``path`` and load its weights; returns (model in eval mode, meta).

    ``expect_ratio`` (e.g. ``"1/6"``) / ``expect_model`` (registry name): CheckpointError if the checkpoint is for
    another bandwidth ratio or architecture.
    """
    raw = read_checkpoint(path)
    cfg = raw["model"]
    if expect_ratio is not None:
        want = channels_for_ratio(expect_ratio)
        if int(cfg.get("c", -1)) != want:
            raise CheckpointError(f"checkpoint {path}: bandwidth ratio k/n = {ratio_string(int(cfg['c']))} "
                                  f"(c = {cfg['c']}), expected {ratio_string(want)} (c = {want})")
    if expect_model is not None and cfg.get("name") != expect_model:
        raise CheckpointError(f"checkpoint {path}: model {cfg.get('name')!r}, expected {expect_model!r}")
    try:
        model = build_model(cfg["name"], int(cfg["c"]), tuple(cfg["filters"]))
        model.load_state_dict(raw["state_dict"])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not fit model {cfg}: "
                              f"{str(exc).splitlines()[0]}") from None
    for name, tensor in raw["state_dict"].items():
        if torch.is_floating_point(tensor) and not torch.isfinite(tensor).all():
            raise CheckpointError(f"checkpoint {path}: weight {name!r} contains NaN or Inf")
    model.eval()
    return model, dict(raw["meta"])
