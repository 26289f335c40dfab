"""DeepJSCC checkpoints: atomic save, verified load, metadata checks.

A checkpoint is an otalab checkpoint container (:mod:`learning.safeio`: magic line, JSON header with the config that
made it, payload, SHA-256 trailer over everything) of kind ``"otalab-jscc/1"``. The payload is a dict of plain Python
values and tensors only, loaded with ``torch.load(weights_only=True)`` after the hash has been checked::

    {"format": "otalab-jscc/1",
     "model": {"name": "adjscc", "c": 16, "filters": [...]},      # constructor arguments (see models.build_model)
     "meta": {"ratio": "1/6", "channel": "awgn", "snr_range_db": [0, 20], "steps": ..., "images_seen": ...,
              "wall_s": ..., "command": "...", "val_psnr_db": ..., ...},
     "state_dict": {...},                                          # model weights
     "train_state": {...} | absent}                                # optimizer, RNG states, step: for resuming

The header's ``config`` holds ``{"model": ..., "meta": ...}`` (readable without torch). A flipped byte anywhere in the
file is refused with a :class:`CheckpointError` naming the file. Files of the earlier bare-torch format (no hash) are
refused too; :func:`upgrade_legacy_checkpoint` converts one (loading it with ``weights_only=True``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from learning.jscc.models import (
    JsccModel,
    build_model,
    channels_for_ratio,
    ratio_string,
)
from learning.safeio import CheckpointError, read_checkpoint_file, write_checkpoint

FORMAT = "otalab-jscc/1"

__all__ = ["FORMAT", "CheckpointError", "save_checkpoint", "read_checkpoint", "load_checkpoint",
           "upgrade_legacy_checkpoint"]


def _payload(model: JsccModel, meta: dict | None, train_state: dict | None) -> dict:
    meta = dict(meta or {})
    meta.setdefault("ratio", ratio_string(model.c))
    payload = {"format": FORMAT, "model": model.config(), "meta": meta,
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    if train_state is not None:
        payload["train_state"] = train_state
    return payload


def save_checkpoint(path: str | Path, model: JsccModel, meta: dict | None = None,
                    train_state: dict | None = None) -> Path:
    """Atomically write ``model`` (+ metadata, + optional training state) to ``path``; returns the path."""
    payload = _payload(model, meta, train_state)
    return write_checkpoint(path, FORMAT, payload, {"model": payload["model"], "meta": payload["meta"]})


def read_checkpoint(path: str | Path) -> dict:
    """The verified payload dict (hash checked, ``weights_only=True``); CheckpointError naming the file otherwise."""
    path = Path(path)
    _, raw = read_checkpoint_file(path, FORMAT)
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: format {raw.get('format')!r}, expected {FORMAT!r}")
    for key in ("model", "meta", "state_dict"):
        if key not in raw:
            raise CheckpointError(f"checkpoint {path}: missing entry {key!r}")
    if not isinstance(raw["model"], dict) or not isinstance(raw["meta"], dict) \
            or not isinstance(raw["state_dict"], dict):
        raise CheckpointError(f"checkpoint {path}: entries model/meta/state_dict of types "
                              f"{type(raw['model']).__name__}/{type(raw['meta']).__name__}/"
                              f"{type(raw['state_dict']).__name__}, expected dicts")
    return raw


def upgrade_legacy_checkpoint(src: str | Path, dst: str | Path | None = None) -> Path:
    """Rewrite a bare-torch DeepJSCC checkpoint (the format before content hashes) as a hashed one.

    The old file is read with ``torch.load(weights_only=True)`` (no code runs); the weights are copied unchanged.
    ``dst`` defaults to ``src`` (replaced atomically). Returns the written path."""
    src = Path(src)
    try:
        raw = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one message naming the file
        raise CheckpointError(f"checkpoint {src}: not a readable legacy torch checkpoint "
                              f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        fmt = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"checkpoint {src}: format {fmt!r}, expected {FORMAT!r}")
    config = {"model": raw["model"], "meta": raw["meta"]}
    return write_checkpoint(dst or src, FORMAT, raw, config)


#: bounds on the stored constructor arguments (a crafted header must not make us allocate terabytes)
MAX_CHANNELS = 4096
MAX_FILTERS = 4096
MAX_LAYERS = 32


def _check_model_config(path, cfg) -> None:
    c, filters = cfg.get("c"), cfg.get("filters")
    ok_c = isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= MAX_CHANNELS
    ok_f = (isinstance(filters, (list, tuple)) and 1 <= len(filters) <= MAX_LAYERS
            and all(isinstance(f, int) and not isinstance(f, bool) and 1 <= f <= MAX_FILTERS for f in filters))
    if not (isinstance(cfg.get("name"), str) and ok_c and ok_f):
        raise CheckpointError(f"checkpoint {path}: model {cfg!r}; expected a name, c in 1..{MAX_CHANNELS} and "
                              f"1..{MAX_LAYERS} filter counts in 1..{MAX_FILTERS}")


def load_checkpoint(path: str | Path, expect_ratio: float | str | None = None,
                    expect_model: str | None = None) -> tuple[JsccModel, dict]:
    """Build the model stored at ``path`` and load its weights; returns (model in eval mode, meta).

    ``expect_ratio`` (e.g. ``"1/6"``) / ``expect_model`` (registry name): CheckpointError if the checkpoint is for
    another bandwidth ratio or architecture.
    """
    raw = read_checkpoint(path)
    cfg = raw["model"]
    _check_model_config(path, cfg)
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
