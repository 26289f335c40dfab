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


#: largest image :func:`load_image_file` decodes (pixels); env ``OTALAB_MAX_IMAGE_PIXELS`` or ``max_pixels`` raise it
MAX_IMAGE_PIXELS = 4096 * 4096
IMAGE_PIXELS_ENV = "OTALAB_MAX_IMAGE_PIXELS"


def max_image_pixels(max_pixels: int | None = None) -> int:
    """The image size cap in pixels: ``max_pixels``, else ``$OTALAB_MAX_IMAGE_PIXELS``, else MAX_IMAGE_PIXELS."""
    if max_pixels is not None:
        return int(max_pixels)
    raw = os.environ.get(IMAGE_PIXELS_ENV)
    if not raw:
        return MAX_IMAGE_PIXELS
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):
        value = 0
    if value < 1:
        raise ValueError(f"{IMAGE_PIXELS_ENV} = {raw!r}: expected a positive number of pixels")
    return value


def image_to_rgb8(im) -> np.ndarray:
    """Any Pillow image -> uint8 [H, W, 3] RGB, scaling (never clipping) what is not 8-bit.

    * "I;16*" (16-bit greyscale): ``round(v * 255 / 65535)``;
    * "I" (32-bit integer): 16-bit data (0 <= v <= 65535, how Pillow opens 16-bit PNGs) as above, anything else
      scaled linearly from its min..max to 0..255;
    * "F" (32-bit float): values in [0, 1] times 255, anything else scaled from its min..max; NaN/Inf is an error;
    * images with alpha ("RGBA", "LA", "PA", "P" with transparency) are composited over white, the way viewers show
      them; every other mode ("1", "L", "P", "CMYK", "YCbCr", "LAB", "HSV", ...) through Pillow's own conversion.
    A constant image of a scaled mode maps to 0. Raises ValueError for non-finite float pixels.
    """
    from PIL import Image

    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(im.convert("F") if mode.startswith("I;16") and mode not in ("I;16", "I;16L", "I;16B") else im)
        a = a.astype(np.float64)
        if mode == "F" and not np.isfinite(a).all():
            raise ValueError(f"{int((~np.isfinite(a)).sum())} NaN/Inf pixels in a float ('F') image; expected "
                             f"finite values")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
            scaled = a * (255.0 / 65535.0)
        elif mode == "F" and lo >= 0 and hi <= 1:
            scaled = a * 255.0
        else:
            scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or im.mode == "RGBA":
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.ascontiguousarray(np.asarray(Image.alpha_composite(white, rgba).convert("RGB")))
    return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def load_image_file(path: str | Path, multiple: int = 4, max_pixels: int | None = None) -> np.ndarray:
    """An image file (PNG, JPEG, TIFF, ...; the first frame) as uint8 [H, W, 3], cropped to H, W divisible by
    ``multiple``; every Pillow mode converted by :func:`image_to_rgb8` (16-bit and float scaled, not clipped).

    ``max_pixels``: size cap (default :func:`max_image_pixels`: ``$OTALAB_MAX_IMAGE_PIXELS`` or 4096 x 4096), checked
    from the header before the pixels are decoded; Pillow's decompression-bomb guard gives the same message.
    Raises FileNotFoundError for a missing file and ValueError naming the file, the value and what was expected for
    unreadable, oversized, non-finite or too small images.
    """
    import warnings

    from PIL import Image

    path = Path(path)
    cap = max_image_pixels(max_pixels)
    if not path.is_file():
        raise FileNotFoundError(f"image {path}: file not found")
    hint = f"expected at most {cap} pixels (raise the cap with {IMAGE_PIXELS_ENV}=N)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > cap:
                    raise ValueError(f"image {path}: {w}x{h} = {w * h} pixels; {hint}")
                im.load()
                img = image_to_rgb8(im)
    except Image.DecompressionBombError as exc:
        raise ValueError(f"image {path}: refused by Pillow's decompression-bomb guard ({exc}); {hint}") from None
    except ValueError as exc:
        if str(exc).startswith(f"image {path}:"):
            raise
        raise ValueError(f"image {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types on crafted files; none may escape
        raise ValueError(f"image {path}: not a readable image ({type(exc).__name__}: {exc}); expected a PNG, JPEG, "
                         f"TIFF or another format Pillow reads") from None
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
