"""Evaluate DeepJSCC models and digital baselines: PSNR and SSIM versus SNR → JSON records → PNG plot.

Every result record has at least ``method``, ``snr_db``, ``psnr_db`` (mean over images of the per-image PSNR) and
``ssim`` (mean SSIM), plus ``n_images`` and method-specific fields. Reconstructions are rounded to uint8 before the
metrics, exactly like the codecs' decoded images, so all methods are measured the same way
(:mod:`learning.jscc.metrics`).
"""

from __future__ import annotations

import collections

import numpy as np
import torch

from learning.jscc.baselines import separation_bound
from learning.jscc.channels import build_channel
from learning.jscc.data import to_tensor, to_uint8
from learning.jscc.metrics import psnr_uint8, ssim_uint8
from learning.jscc.models import JsccModel


def method_name(model: JsccModel, meta: dict) -> str:
    """``deepjscc-adjscc`` for SNR-adaptive models, ``deepjscc-bourtsoulatze@10dB`` for one-SNR models."""
    lo, hi = (meta.get("snr_range_db") or [None, None])[:2]
    if model.snr_adaptive or lo is None or lo != hi:
        return f"deepjscc-{model.registry_name}"
    return f"deepjscc-{model.registry_name}@{lo:g}dB"


@torch.no_grad()
def reconstruct(model: JsccModel, images: np.ndarray, snr_db: float, channel: str = "awgn", seed: int = 0,
                batch: int = 250) -> np.ndarray:
    """Send ``images`` (uint8 [N, H, W, 3]) through ``model`` over a simulated channel; returns uint8 [N, H, W, 3]."""
    ch = build_channel(channel)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(images), batch):
        x = to_tensor(images[i:i + batch])
        snr = torch.full((len(x),), float(snr_db))
        z = model.encode(x, snr)
        z_hat, snr_eff = ch(z, snr, generator=gen)
        out.append(to_uint8(model.decode(z_hat, snr_eff)))
    return np.concatenate(out)


def image_metrics(ref: np.ndarray, rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image (PSNR dB float [N], SSIM float [N]) for uint8 [N, H, W, 3] stacks."""
    psnr = np.array([psnr_uint8(a, b) for a, b in zip(ref, rec)])
    ssim = np.array([ssim_uint8(a, b) for a, b in zip(ref, rec)])
    return psnr, ssim


def evaluate_model(model: JsccModel, meta: dict, images: np.ndarray, snrs_db: list[float], channel: str = "awgn",
                   seed: int = 0) -> list[dict]:
    """One record per SNR: mean PSNR/SSIM of ``model`` on ``images`` over ``channel``."""
    name = method_name(model, meta)
    records = []
    for snr in snrs_db:
        psnr, ssim = image_metrics(images, reconstruct(model, images, snr, channel, seed))
        records.append({"method": name, "snr_db": float(snr), "psnr_db": float(psnr.mean()),
                        "ssim": float(ssim.mean()), "psnr_std_db": float(psnr.std()), "n_images": len(images),
                        "channel": channel, "ratio": meta.get("ratio")})
    return records


def evaluate_separation(images: np.ndarray, snrs_db: list[float], ratio: float,
                        codecs: list[str] | None = None, tables=None) -> list[dict]:
    """Separation-bound records (payload-only and full-file accounting), averaged over images per SNR; ``tables``:
    the images' precomputed :func:`learning.jscc.baselines.rate_table` (optional)."""
    per_image = separation_bound(images, snrs_db, ratio, codecs, tables=tables)
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    for r in per_image:
        groups[(r["method"], r["snr_db"])].append(r)
    out = []
    for (method, snr), recs in sorted(groups.items()):
        out.append({"method": method, "snr_db": snr, "psnr_db": float(np.mean([r["psnr_db"] for r in recs])),
                    "ssim": float(np.mean([r["ssim"] for r in recs])),
                    "psnr_std_db": float(np.std([r["psnr_db"] for r in recs])), "n_images": len(recs),
                    "channel": "awgn (capacity)", "budget_bits": recs[0]["budget_bits"],
                    "mean_bytes": float(np.mean([r["bytes"] for r in recs])),
                    "codecs": dict(collections.Counter(r["codec"] for r in recs))})
    return out


