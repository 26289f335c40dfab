"""`otalab infer eval|send`: remote classification at 128 real channel uses — the paper's Fig. 3 experiment.

:func:`evaluate` runs every scheme of :mod:`learning.infer.schemes` over an SNR grid on the symbol-level AWGN channel
and returns result records (``task``, ``scheme``, ``snr_db``, ``accuracy``); :func:`summarize` finds, per scheme, the
lowest grid SNR from which the accuracy stays within 2 points of the noiseless one, and the largest drop between
neighbouring SNRs (a cliff). :func:`send_over_radio` carries the analog-JSCC symbols of each query as one phy analog
frame through two radios (``lab.experiments.jscc_air.RadioLink``) and classifies what arrived with the receiver's SNR
estimate; lost or non-finite frames are counted and skipped. :func:`plot` draws accuracy vs SNR (Fig. 3 style).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from learning.infer.schemes import SCHEMES, InferenceModel, predict


def evaluate(model: InferenceModel, images: np.ndarray, labels: np.ndarray, snrs_db, schemes=SCHEMES,
             seed: int = 0, progress=None) -> list[dict]:
    """Accuracy of each scheme at each SNR on ``images`` (uint8 [N, 28, 28]) with ``labels`` [N]."""
    rng = np.random.default_rng(seed)
    feats = model.features(images)
    out = []
    todo = [(s, snr) for s in schemes for snr in snrs_db]
    for i, (scheme, snr) in enumerate(todo):
        if scheme == "noiseless" and out and any(r["scheme"] == "noiseless" for r in out):
            acc, info = next(r["accuracy"] for r in out if r["scheme"] == "noiseless"), {}
        else:
            pred, info = predict(model, scheme, images, float(snr), rng, feats)
            acc = float(np.mean(pred == labels))
        out.append({"task": "classification", "scheme": scheme, "snr_db": float(snr), "accuracy": acc,
                    "n_images": len(images), "channel": "awgn (symbol level)", **info})
        if progress:
            progress(i + 1, len(todo))
    return out


def summarize(records: list[dict], margin: float = 0.02) -> dict:
    """Per scheme: ``reaches_noiseless_db`` (lowest grid SNR from which accuracy >= noiseless - margin at every
    higher grid SNR; None if never) and ``max_step_drop`` (largest accuracy loss between neighbouring SNRs going down)."""
    ref = next(r["accuracy"] for r in records if r["scheme"] == "noiseless")
    out = {}
    for scheme in dict.fromkeys(r["scheme"] for r in records):
        pts = sorted((r["snr_db"], r["accuracy"]) for r in records if r["scheme"] == scheme)
        reach = None
        for snr, acc in reversed(pts):
            if acc >= ref - margin:
                reach = snr
            else:
                break
        drops = [a2 - a1 for (_, a1), (_, a2) in itertools.pairwise(pts)]
        out[scheme] = {"reaches_noiseless_db": reach, "max_step_drop": max(drops) if drops else 0.0}
    a, d = out.get("analog-jscc", {}).get("reaches_noiseless_db"), out.get("digital-chain", {}).get(
        "reaches_noiseless_db")
    out["analog_advantage_db"] = (d - a) if a is not None and d is not None else None
    out["noiseless_accuracy"] = ref
    out["margin"] = margin
    return out


def send_over_radio(model: InferenceModel, images: np.ndarray, labels: np.ndarray, tx, rx, ofdm,
                    encoder_snr_db: float, batch: int = 64) -> dict:
    """Analog-JSCC queries through radios; accuracy on the delivered frames, beside the symbol-level accuracy at the
    measured SNR (same images, same encoder)."""
    from lab.experiments.jscc_air import RadioLink
    from learning.infer.models import awgn

    link = RadioLink(tx, rx, ofdm)
    feats = model.features(images)
    z = model.encode(feats, encoder_snr_db)
    preds, keep, err, sig = [], [], 0.0, 0.0
    snr_est = []
    for i in range(0, len(z), batch):
        recs = link.send((z[i:i + batch] / math.sqrt(2.0)).astype(np.float32))  # link: unit power per complex pair
        for j, rec in enumerate(recs):
            if rec.values is None:
                continue
            y = np.asarray(rec.values, np.float64) * math.sqrt(2.0)
            keep.append(i + j)
            snr_est.append(rec.snr_est_db)
            err += float(np.sum((y - z[i + j]) ** 2))
            sig += float(np.sum(z[i + j].astype(np.float64) ** 2))
            preds.append(y)
    if not keep:
        raise ValueError(f"none of {len(images)} frames arrived: check the link (SNR, config)")
    keep = np.asarray(keep)
    pred = model.decode(np.stack(preds), np.asarray(snr_est))
    measured = 10.0 * math.log10(sig / err) if err > 0 else float("inf")
    import torch

    gen = torch.Generator().manual_seed(0)
    y_sim = awgn(torch.as_tensor(z[keep]), measured, gen).numpy()
    pred_sim = model.decode(y_sim, np.full(len(keep), measured))
    return {"task": "classification", "scheme": "analog-jscc", "encoder_snr_db": encoder_snr_db,
            "measured_snr_db": measured, "mean_receiver_snr_est_db": float(np.mean(snr_est)),
            "n_images": len(images), "delivered": len(keep), "link_stats": dict(link.stats),
            "accuracy": float(np.mean(pred == labels[keep])),
            "accuracy_symbol_level_at_measured_snr": float(np.mean(pred_sim == labels[keep]))}


def plot(records: list[dict], path, title: str = "") -> None:
    """Accuracy vs SNR per scheme (the paper's Fig. 3 style): noiseless as a horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    style = {"analog-jscc": ("o-", "C0"), "digital-chain": ("s-", "C1"), "digital-bound": ("--", "C1"),
             "image-first": ("^-", "C2")}
    for scheme in dict.fromkeys(r["scheme"] for r in records):
        pts = sorted((r["snr_db"], 100 * r["accuracy"]) for r in records if r["scheme"] == scheme)
        if scheme == "noiseless":
            ax.axhline(pts[0][1], color="k", lw=1, ls=":", label="noiseless")
            continue
        mk, c = style.get(scheme, ("x-", None))
        ax.plot(*zip(*pts), mk, color=c, label=scheme, ms=4)
    ax.set_xlabel("SNR [dB] (per real channel use)")
    ax.set_ylabel("top-1 accuracy [%]")
    ax.set_title(title or "remote classification, 128 real channel uses per query")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
