"""Data for edge inference: the 28x28 grayscale sets (Fashion-MNIST, MNIST) through the project's one data loader,
:func:`learning.feel.data.load_dataset` (``--data-dir``, ``$OTALAB_DATA_DIR``, ``../shared/data``, the torchvision
layout, Debian's ``dataset-fashion-mnist``; nothing is downloaded), and the input check of the device side.
"""

from __future__ import annotations

import numpy as np

DATASETS = ("fashion-mnist", "mnist")
#: a missing data set (the message lists where the loader looked and what to install)
DataNotFoundError = FileNotFoundError


def load(dataset: str, split: str = "test", data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of ``dataset`` ("fashion-mnist" or "mnist"), ``split``
    "train" or "test"."""
    from learning.feel.data import load_dataset

    if dataset not in DATASETS:
        raise ValueError(f"dataset = {dataset!r}: expected one of {', '.join(DATASETS)} (28x28 grayscale)")
    if split not in ("train", "test"):
        raise ValueError(f"split = {split!r}: expected 'train' or 'test'")
    ds = load_dataset(dataset, data_dir)
    x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    return check_images(x, f"{dataset} {split} images"), np.asarray(y, np.int64)


def check_images(x: np.ndarray, where: str = "images") -> np.ndarray:
    """uint8 [N, 28, 28] grayscale; ValueError naming the shape/dtype otherwise."""
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
        raise ValueError(f"{where} have shape {x.shape} dtype {x.dtype}; expected uint8 [N, 28, 28] grayscale "
                         "(one channel, 28x28, as Fashion-MNIST/MNIST)")
    return x
