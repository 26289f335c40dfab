"""Offline data for edge inference: Fashion-MNIST (Debian's ``dataset-fashion-mnist`` IDX files) and MNIST (.npz).

Lookup order for Fashion-MNIST: ``data_dir`` (a folder holding the four ``*-idx?-ubyte.gz`` files, or its
``fashion-mnist/`` subfolder), ``$OTALAB_DATA_DIR/fashion-mnist``, ``/usr/share/datasets/fashion-mnist`` (the Debian
package). MNIST: ``mnist.npz`` in ``data_dir``, ``$OTALAB_DATA_DIR`` or ``../shared/data`` beside the checkout.
Nothing is downloaded; a missing set raises :class:`DataNotFoundError` saying where it looked and how to get it.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

DATASETS = ("fashion-mnist", "mnist")
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


class DataNotFoundError(FileNotFoundError):
    """A data set is not on this machine (the message says where we looked and what to install)."""


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _candidates(dataset: str, data_dir) -> list[Path]:
    repo_data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    out = []
    for base in (data_dir, os.environ.get("OTALAB_DATA_DIR"), repo_data if dataset == "mnist" else None,
                 "/usr/share/datasets" if dataset == "fashion-mnist" else None):
        if base:
            out += [Path(base), Path(base) / dataset] if dataset == "fashion-mnist" else [Path(base)]
    return out


def load(dataset: str, split: str = "test", data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of ``dataset`` ("fashion-mnist" or "mnist"), ``split``
    "train" or "test"."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset = {dataset!r}: expected one of {', '.join(DATASETS)}")
    if split not in _FILES:
        raise ValueError(f"split = {split!r}: expected 'train' or 'test'")
    tried = _candidates(dataset, data_dir)
    for d in tried:
        if dataset == "fashion-mnist":
            img, lab = (d / f for f in _FILES[split])
            if img.is_file() and lab.is_file():
                return _read_idx(img).copy(), _read_idx(lab).astype(np.int64)
        elif (d / "mnist.npz").is_file():
            with np.load(d / "mnist.npz") as z:
                return z[f"x_{split}"], z[f"y_{split}"].astype(np.int64)
    hint = ("apt-get install dataset-fashion-mnist" if dataset == "fashion-mnist"
            else "put mnist.npz (see ../shared/data/README.md) there")
    raise DataNotFoundError(f"{dataset} {split} split not found in {', '.join(map(str, tried)) or '(nowhere)'}; "
                            f"pass --data-dir or set OTALAB_DATA_DIR, or {hint}")


def check_images(x: np.ndarray, where: str = "images") -> np.ndarray:
    """uint8 [N, 28, 28] grayscale; ValueError naming the shape/dtype otherwise."""
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
        raise ValueError(f"{where} have shape {x.shape} dtype {x.dtype}; expected uint8 [N, 28, 28] grayscale "
                         "(one channel, 28x28, as Fashion-MNIST/MNIST)")
    return x
