"""Data for edge inference: the 28x28 grayscale sets (Fashion-MNIST, MNIST) and 32x32 RGB CIFAR-10 through the
project's one data loader, :func:`learning.feel.data.load_dataset` (``--data-dir``, ``$OTALAB_DATA_DIR``,
``../shared/data``, the torchvision layout, Debian's ``dataset-fashion-mnist``; nothing is downloaded), and the input
check of the device side.
"""

from __future__ import annotations

import numpy as np

#: per data set, the shape of one image (uint8): [H, W] grayscale or [H, W, 3] RGB (HWC)
IMAGE_SHAPES = {"fashion-mnist": (28, 28), "mnist": (28, 28), "cifar10": (32, 32, 3)}
DATASETS = tuple(IMAGE_SHAPES)
#: a missing data set (the message lists where the loader looked and what to install)
DataNotFoundError = FileNotFoundError


def image_shape(dataset: str) -> tuple[int, ...]:
    """The shape of one image of ``dataset``; ValueError naming the known sets otherwise."""
    if dataset not in IMAGE_SHAPES:
        raise ValueError(f"dataset = {dataset!r}: expected one of {', '.join(DATASETS)}")
    return IMAGE_SHAPES[dataset]


def load(dataset: str, split: str = "test", data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, *image_shape(dataset)], labels int64 [N]) of ``dataset``, ``split`` "train" or "test"."""
    from learning.feel.data import load_dataset

    shape = image_shape(dataset)
    if split not in ("train", "test"):
        raise ValueError(f"split = {split!r}: expected 'train' or 'test'")
    ds = load_dataset(dataset, data_dir)
    x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    return check_images(x, f"{dataset} {split} images", shape), np.asarray(y, np.int64)


def check_images(x: np.ndarray, where: str = "images", shape: tuple[int, ...] = (28, 28)) -> np.ndarray:
    """uint8 [N, *shape] (default 28x28 grayscale); one image without the batch axis is accepted; ValueError naming
    the shape/dtype otherwise."""
    x = np.asarray(x)
    if x.ndim == len(shape):
        x = x[None]
    if x.shape[1:] != tuple(shape) or x.dtype != np.uint8:
        kind = "grayscale" if len(shape) == 2 else "RGB, HWC"
        raise ValueError(f"{where} have shape {x.shape} dtype {x.dtype}; expected uint8 "
                         f"[N, {', '.join(map(str, shape))}] ({kind}, the model's data set)")
    return x
