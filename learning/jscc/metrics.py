"""Image quality metrics on uint8 [H, W, 3] images: PSNR (peak 255) and SSIM (scikit-image, Wang et al. 2004)."""

from __future__ import annotations

import numpy as np


def psnr_uint8(ref: np.ndarray, test: np.ndarray) -> float:
    """``10 log10(255² / MSE)`` in dB for uint8 images of equal shape (inf when identical)."""
    if ref.shape != test.shape:
        raise ValueError(f"PSNR of shapes {ref.shape} and {test.shape}: expected equal shapes")
    mse = np.mean((ref.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def ssim_uint8(ref: np.ndarray, test: np.ndarray) -> float:
    """Mean SSIM over the RGB channels (7×7 uniform window, data range 255), via ``skimage.metrics``."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError as exc:  # pragma: no cover
        raise ImportError("SSIM needs scikit-image: pip install scikit-image") from exc
    if ref.shape != test.shape:
        raise ValueError(f"SSIM of shapes {ref.shape} and {test.shape}: expected equal shapes")
    return float(structural_similarity(ref, test, channel_axis=2, data_range=255))
