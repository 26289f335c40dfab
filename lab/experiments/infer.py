"""`otalab infer eval|send`: remote classification and retrieval at 128 real channel uses (the paper's Fig. 3).

:func:`evaluate` runs every scheme of :mod:`learning.infer.schemes` over an SNR grid on the symbol-level AWGN channel
and returns result records (``task``, ``scheme``, ``snr_db``, ``accuracy`` or ``top1``/``map``); :func:`summarize` finds, per scheme, the
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


def score(model: InferenceModel, outputs: np.ndarray, truth: np.ndarray, gallery: np.ndarray | None = None) -> dict:
    """Classification: ``{"accuracy"}`` of predicted classes against labels. Retrieval: ``{"top1", "map"}`` of query
    embeddings against the unit-norm ``gallery`` [G, F]; ``truth`` holds each query's gallery index. With one
    relevant gallery item per query, average precision is 1/rank, so mAP is the mean reciprocal rank."""
    if model.task == "classification":
        return {"accuracy": float(np.mean(outputs == truth))}
    sim = outputs @ gallery.T
    true_sim = sim[np.arange(len(sim)), truth]
    rank = 1 + np.sum(sim > true_sim[:, None], axis=1)
    return {"top1": float(np.mean(rank == 1)), "map": float(np.mean(1.0 / rank))}


def task_data(model: InferenceModel, images: np.ndarray, labels: np.ndarray, seed: int):
    """(queries, truth, gallery embeddings or None): classification queries the images against their labels;
    retrieval queries a random view (:func:`learning.infer.augment.augment`) of each image against the originals."""
    if model.task == "classification":
        return images, labels, None
    from learning.infer.augment import augment

    gallery = model.server_output(model.features(images))
    return augment(images, np.random.default_rng(seed + 12345)), np.arange(len(images)), gallery


def evaluate(model: InferenceModel, images: np.ndarray, labels: np.ndarray, snrs_db, schemes=SCHEMES,
             seed: int = 0, progress=None) -> list[dict]:
    """Each scheme at each SNR on ``images`` (uint8 [N, 28, 28]) -> records with ``task``, ``scheme``, ``snr_db`` and
    ``accuracy`` (classification) or ``top1``/``map`` (retrieval: gallery = the N images, queries = views)."""
    rng = np.random.default_rng(seed)
    queries, truth, gallery = task_data(model, images, labels, seed)
    feats = model.features(queries)
    out = []
    todo = [(s, snr) for s in schemes for snr in snrs_db]
    noiseless = None
    for i, (scheme, snr) in enumerate(todo):
        if scheme == "noiseless" and noiseless is not None:
            metrics, info = noiseless, {}
        else:
            pred, info = predict(model, scheme, queries, float(snr), rng, feats)
            metrics = score(model, pred, truth, gallery)
            if scheme == "noiseless":
                noiseless = metrics
        out.append({"task": model.task, "scheme": scheme, "snr_db": float(snr), **metrics,
                    "n_images": len(images), "channel": "awgn (symbol level)", **info})
        if progress:
            progress(i + 1, len(todo))
    return out


def summarize(records: list[dict], margin: float = 0.02) -> dict:
    """Per scheme: ``reaches_noiseless_db`` (lowest grid SNR from which accuracy >= noiseless - margin at every
    higher grid SNR; None if never) and ``max_step_drop`` (largest accuracy loss between neighbouring SNRs going down)."""
    key = "accuracy" if "accuracy" in records[0] else "top1"
    ref = next(r[key] for r in records if r["scheme"] == "noiseless")
    out = {}
    for scheme in dict.fromkeys(r["scheme"] for r in records):
        pts = sorted((r["snr_db"], r[key]) for r in records if r["scheme"] == scheme)
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
    out["metric"] = key
    out["noiseless"] = ref
    out["margin"] = margin
    return out


def send_over_radio(model: InferenceModel, images: np.ndarray, labels: np.ndarray, tx, rx, ofdm,
                    encoder_snr_db: float, batch: int = 64, seed: int = 0) -> dict:
    """Analog-JSCC queries through radios; the task metric on the delivered frames, beside the symbol-level metric
    (same queries, same encoder) at the measured SNR (pooled over frames: ``sum x^2 / sum (y - x)^2``), at the
    median per-frame measured SNR (robust to a few broken frames), and with the measured per-position error
    variance (``symbol_level_at_measured_profile``: value i gets white noise of variance mean over frames of
    ``(y_i - x_i)^2``, the post-equalization SNR profile a frequency-selective channel leaves, the decoder told the
    pooled SNR). Lost or non-finite frames are counted and skipped."""
    import torch

    from lab.experiments.jscc_air import RadioLink
    from learning.infer.models import awgn

    link = RadioLink(tx, rx, ofdm)
    queries, truth, gallery = task_data(model, images, labels, seed)
    z = model.encode(model.features(queries), encoder_snr_db)
    rows, keep, snr_est, frame_snr, err, sig = [], [], [], [], 0.0, 0.0
    for i in range(0, len(z), batch):
        recs = link.send((z[i:i + batch] / math.sqrt(2.0)).astype(np.float32))  # link: unit power per complex pair
        for j, rec in enumerate(recs):
            if rec.values is None:
                continue
            y = np.asarray(rec.values, np.float64) * math.sqrt(2.0)
            keep.append(i + j)
            snr_est.append(rec.snr_est_db)
            e = float(np.sum((y - z[i + j]) ** 2))
            err += e
            sig += float(np.sum(z[i + j].astype(np.float64) ** 2))
            frame_snr.append(10.0 * math.log10(z.shape[1] / e) if e > 0 else float("inf"))
            rows.append(y)
    if not keep:
        raise ValueError(f"none of {len(images)} frames arrived: check the link (SNR, config)")
    keep = np.asarray(keep)
    measured = 10.0 * math.log10(sig / err) if err > 0 else float("inf")
    air = score(model, model.decode(np.stack(rows), np.asarray(snr_est)), truth[keep], gallery)
    median = float(np.median(frame_snr))

    def simulated(snr):
        y_sim = awgn(torch.as_tensor(z[keep]), snr, torch.Generator().manual_seed(seed)).numpy()
        return score(model, model.decode(y_sim, np.full(len(keep), snr)), truth[keep], gallery)

    sim = simulated(measured)
    # the fair reference on a frequency-selective channel: white noise is not what the faded subcarriers carry, so
    # also add to each value position the error variance the air left there (mean over the delivered frames)
    rows_arr = np.stack(rows)
    profile = np.mean((rows_arr - z[keep].astype(np.float64)) ** 2, axis=0)
    noise = np.random.default_rng(seed).standard_normal(rows_arr.shape) * np.sqrt(profile)
    y_prof = (z[keep] + noise).astype(np.float32)
    sim_profile = score(model, model.decode(y_prof, np.full(len(keep), measured)), truth[keep], gallery)
    return {"task": model.task, "scheme": "analog-jscc", "encoder_snr_db": encoder_snr_db,
            "measured_snr_db": measured, "mean_receiver_snr_est_db": float(np.mean(snr_est)),
            "frame_snr_db_percentiles": dict(zip(("p5", "p25", "p50", "p75", "p95"),
                                                 np.percentile(frame_snr, [5, 25, 50, 75, 95]).tolist())),
            "n_images": len(images), "delivered": len(keep), "link_stats": dict(link.stats), **air,
            "symbol_level_at_measured_snr": sim, "median_frame_snr_db": median,
            "symbol_level_at_median_frame_snr": simulated(median),
            "symbol_level_at_measured_profile": sim_profile,
            "error_var_per_position_db": {"min": float(10 * np.log10(profile.min())),
                                          "max": float(10 * np.log10(profile.max()))}}


def plot(records: list[dict], path, title: str = "") -> None:
    """Accuracy vs SNR per scheme (the paper's Fig. 3 style): noiseless as a horizontal line."""
    from lab.plots import save_figure, subplots

    key = "accuracy" if "accuracy" in records[0] else "top1"
    fig, ax = subplots(figsize=(6, 4))
    style = {"analog-jscc": ("o-", "C0"), "digital-chain": ("s-", "C1"), "digital-bound": ("--", "C1"),
             "image-first": ("^-", "C2")}
    for scheme in dict.fromkeys(r["scheme"] for r in records):
        pts = sorted((r["snr_db"], 100 * r[key]) for r in records if r["scheme"] == scheme)
        if scheme == "noiseless":
            ax.axhline(pts[0][1], color="k", lw=1, ls=":", label="noiseless")
            continue
        mk, c = style.get(scheme, ("x-", None))
        ax.plot(*zip(*pts), mk, color=c, label=scheme, ms=4)
    ax.set_xlabel("SNR [dB] (per real channel use)")
    ax.set_ylabel("top-1 accuracy [%]" if key == "accuracy" else "retrieval top-1 [%]")
    ax.set_title(title or f"remote {records[0]['task']}, 128 real channel uses per query")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
