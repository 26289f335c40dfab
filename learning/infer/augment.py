"""Query views for instance retrieval: a random shift (crop of a zero-padded image), a horizontal flip and a
brightness/contrast jitter of a gallery image — the re-identification analogue of the paper's Fig. 3 task."""

from __future__ import annotations

import numpy as np

MAX_SHIFT = 3          # pixels
CONTRAST = (0.7, 1.3)  # gain range
BRIGHTNESS = 30.0      # +- grey levels


def shift_flip(x: np.ndarray, rng: np.random.Generator, max_shift: int = MAX_SHIFT) -> np.ndarray:
    """uint8 [N, H, W] or [N, H, W, C] -> each image shifted by up to ``max_shift`` pixels in each direction (a crop
    of the zero-padded image) and flipped left-right with probability 1/2; same shape and dtype (vectorized)."""
    n, h, w = x.shape[:3]
    p = max_shift
    padded = np.pad(x, ((0, 0), (p, p), (p, p)) + ((0, 0),) * (x.ndim - 3))
    dy, dx = rng.integers(0, 2 * p + 1, n), rng.integers(0, 2 * p + 1, n)
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    v = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    flip = rng.random(n) < 0.5
    v[flip] = v[flip, :, ::-1]
    return v


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, H, W] (or [N, H, W, C]) -> one random view per image, same shape (vectorized; deterministic for
    ``rng``): :func:`shift_flip`, then a contrast gain and a brightness offset per image."""
    n = len(x)
    v = shift_flip(x, rng).astype(np.float32)
    per_image = (n,) + (1,) * (x.ndim - 1)
    gain = rng.uniform(*CONTRAST, n).reshape(per_image)
    bias = rng.uniform(-BRIGHTNESS, BRIGHTNESS, n).reshape(per_image)
    return np.clip(np.rint(v * gain + bias), 0, 255).astype(np.uint8)
