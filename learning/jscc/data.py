"""Image data for DeepJSCC: CIFAR-10 (offline ``cifar10.npz`` or torchvision's ``cifar-10-batches-py``) and a few
full-resolution sample photos shipped with scikit-image. Nothing here downloads.

Lookup order for the data directory (:func:`find_data_dir`): the ``data_dir`` argument (CLI ``--data-dir``), the
environment variable ``OTALAB_DATA_DIR``, ``../shared/data`` beside the checkout, then torchvision's usual places
``~/.cache/torchvision`` and ``~/.cache``. In a directory, ``cifar10.npz`` (arrays ``x_train``, ``x_test`` uint8
[N, 32, 32, 3]) wins over ``cifar-10-batches-py/`` (pickles ``data_batch_1..5``, ``test_batch`` with ``b"data"``
uint8 [N, 3072] channel-major).

Images are handled as uint8 [N, H, W, 3] (HWC, RGB) arrays; :func:`to_tensor` turns them into float [N, 3, H, W] in
[0, 1] for the models.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from learning.safeio import restricted_pickle_load

ENV_VAR = "OTALAB_DATA_DIR"
NPZ_NAME = "cifar10.npz"
TV_DIR = "cifar-10-batches-py"
#: scikit-image sample photos bundled with the package (no download): name -> description
SAMPLE_PHOTOS = {"astronaut": "Eileen Collins, 512x512", "chelsea": "a cat, 300x451", "coffee": "a cup, 400x600",
                 "rocket": "a rocket launch, 427x640"}


class DataNotFoundError(FileNotFoundError):
    """A data set is missing; the message lists where it was looked for and how to provide it."""


def candidate_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """The directories searched, in order (see module docstring)."""
    out: list[Path] = []
    if data_dir:
        out.append(Path(data_dir))
    if os.environ.get(ENV_VAR):
        out.append(Path(os.environ[ENV_VAR]))
    out.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    home = Path.home()
    out += [home / ".cache" / "torchvision", home / ".cache", home / ".cache" / "torchvision" / "data"]
    return out


def find_data_dir(data_dir: str | Path | None = None) -> tuple[Path, str]:
    """First directory holding CIFAR-10 and its layout (``"npz"`` or ``"torchvision"``).

    An explicit ``data_dir`` that lacks CIFAR-10 is an error (it is not silently skipped).
    """
    dirs = candidate_dirs(data_dir)
    for i, d in enumerate(dirs):
        if (d / NPZ_NAME).is_file():
            return d, "npz"
        if (d / TV_DIR / "test_batch").is_file():
            return d, "torchvision"
        if i == 0 and data_dir:
            raise DataNotFoundError(
                f"--data-dir {d}: no {NPZ_NAME} and no {TV_DIR}/ (torchvision layout) there; expected one of them")
    tried = "\n  ".join(str(d) for d in dirs)
    raise DataNotFoundError(
        f"CIFAR-10 not found. Looked for {NPZ_NAME} or {TV_DIR}/ in:\n  {tried}\n"
        f"Pass --data-dir DIR or set {ENV_VAR}=DIR. To fetch it once (outside tests): python -c \"import "
        f"torchvision; torchvision.datasets.CIFAR10('DIR', download=True)\"")


def load_cifar10(split: str = "test", data_dir: str | Path | None = None, start: int = 0,
                 stop: int | None = None) -> np.ndarray:
    """CIFAR-10 images ``[start:stop]`` of ``split`` ("train" or "test") as uint8 [N, 32, 32, 3] (HWC, RGB)."""
    if split not in ("train", "test"):
        raise ValueError(f"split = {split!r}: expected 'train' or 'test'")
    directory, layout = find_data_dir(data_dir)
    if layout == "npz":
        with np.load(directory / NPZ_NAME) as data:
            key = f"x_{split}"
            if key not in data:
                raise DataNotFoundError(f"{directory / NPZ_NAME}: no array {key!r} (has {sorted(data.files)})")
            x = data[key]
    else:
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        parts = []
        for name in names:
            path = directory / TV_DIR / name
            if not path.is_file():
                raise DataNotFoundError(f"{path}: missing CIFAR-10 batch file (torchvision layout)")
            batch = restricted_pickle_load(path)  # numpy arrays and plain data only: no code runs
            if not isinstance(batch, dict) or b"data" not in batch:
                raise ValueError(f"{path}: expected a CIFAR-10 batch (a dict with b'data'), got "
                                 f"{type(batch).__name__}")
            parts.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        x = np.concatenate(parts)
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.dtype != np.uint8:
        raise ValueError(f"CIFAR-10 {split} in {directory}: shape {x.shape} dtype {x.dtype}, "
                         "expected uint8 [N, 32, 32, 3]")
    return np.ascontiguousarray(x[start:stop])


def load_sample_photo(name: str, multiple: int = 4) -> np.ndarray:
    """A full-resolution photo bundled with scikit-image, cropped to H, W divisible by ``multiple``.

    Returns uint8 [H, W, 3].
    """
    if name not in SAMPLE_PHOTOS:
        raise ValueError(f"photo {name!r}: expected one of {', '.join(SAMPLE_PHOTOS)}")
    try:
        import skimage.data
    except ImportError as exc:  # pragma: no cover - scikit-image is a test dependency
        raise DataNotFoundError("sample photos need scikit-image: pip install scikit-image") from exc
    img = np.asarray(getattr(skimage.data, name)())
    h, w = (img.shape[0] // multiple) * multiple, (img.shape[1] // multiple) * multiple
    return np.ascontiguousarray(img[:h, :w, :3])


def load_image_file(path: str | Path, multiple: int = 4) -> np.ndarray:
    """An image file (PNG, JPEG, ...) as uint8 [H, W, 3], cropped to H, W divisible by ``multiple``.

    Raises ValueError naming the file for unreadable files and images smaller than ``multiple``.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path}: file not found")
    try:
        with Image.open(path) as im:
            img = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"image {path}: not a readable image ({exc})") from None
    h, w = (img.shape[0] // multiple) * multiple, (img.shape[1] // multiple) * multiple
    if h == 0 or w == 0:
        raise ValueError(f"image {path}: size {img.shape[0]}x{img.shape[1]}, expected at least {multiple}x{multiple}")
    return np.ascontiguousarray(img[:h, :w])


def check_images_uint8(x: np.ndarray, where: str = "images") -> np.ndarray:
    """Validate uint8 [N, H, W, 3] (or one [H, W, 3]) with H, W divisible by 4; returns [N, H, W, 3]."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{where} shape {x.shape}: expected [N, H, W, 3] RGB")
    if x.dtype != np.uint8:
        raise ValueError(f"{where} dtype {x.dtype}: expected uint8")
    if x.shape[1] % 4 or x.shape[2] % 4 or x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{where} size {x.shape[1]}x{x.shape[2]}: expected H and W positive multiples of 4")
    return x


def to_tensor(x: np.ndarray):
    """uint8 [N, H, W, 3] -> torch float32 [N, 3, H, W] in [0, 1]."""
    import torch

    x = check_images_uint8(x)
    return torch.from_numpy(x).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(x) -> np.ndarray:
    """torch float [N, 3, H, W] in [0, 1] -> uint8 [N, H, W, 3] (rounded, clipped)."""
    arr = x.detach().clamp(0, 1).mul(255.0).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return np.ascontiguousarray(arr)
