"""Query views for instance retrieval: a random shift (crop of a zero-padded image), a horizontal flip and a
brightness/contrast jitter of a gallery image — the re-identification analogue of the paper's Fig. 3 task."""

from __future__ import annotations

import numpy as np

MAX_SHIFT = 3          # pixels
CONTRAST = (0.7, 1.3)  # gain range
BRIGHTNESS = 30.0      # +- grey levels


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, 28, 28] -> one random view per image, uint8 [N, 28, 28] (vectorized; deterministic for ``rng``)."""
    n = len(x)
    p = MAX_SHIFT
    padded = np.pad(x, ((0, 0), (p, p), (p, p)))
    dy, dx = rng.integers(0, 2 * p + 1, n), rng.integers(0, 2 * p + 1, n)
    rows = dy[:, None] + np.arange(28)[None, :]
    cols = dx[:, None] + np.arange(28)[None, :]
    v = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]].astype(np.float32)
    flip = rng.random(n) < 0.5
    v[flip] = v[flip, :, ::-1]
    gain = rng.uniform(*CONTRAST, n)[:, None, None]
    bias = rng.uniform(-BRIGHTNESS, BRIGHTNESS, n)[:, None, None]
    return np.clip(np.rint(v * gain + bias), 0, 255).astype(np.uint8)
