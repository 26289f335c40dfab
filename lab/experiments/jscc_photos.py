"""DeepJSCC on full-resolution photos (``otalab jscc eval --photos``): each scikit-image sample photo at several
bandwidth ratios k/n against the real digital chain and the separation bound, and the crossover SNR per ratio.

For every photo and ratio: the DeepJSCC checkpoints of that ratio on the symbol-level AWGN channel
(:func:`learning.jscc.evaluate.evaluate_model`), the separation bound with the photo's rate table computed once for
all ratios (:func:`learning.jscc.evaluate.evaluate_separation`), and the real digital chain through phy's receiver on
the in-process AWGN air (:func:`lab.experiments.jscc_air.digital_chain_records`). A ratio with no DeepJSCC checkpoint
gets the digital curves only, and its crossover says so.

Crossover SNR (:func:`crossover_db`): where DeepJSCC's PSNR curve falls below the other scheme's, by linear
interpolation of the difference between the grid SNRs around its first sign change from positive to not positive;
``"above at every SNR"`` / ``"below at every SNR"`` when there is none.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

#: the issue's bandwidth ratios for the photo evaluation
PHOTO_RATIOS = (Fraction(1, 6), Fraction(1, 12), Fraction(1, 24))


def parse_ratio(text: str) -> Fraction:
    """"1/6" -> Fraction(1, 6); ValueError naming the text unless 0 < k/n <= 1."""
    try:
        r = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"ratio {text!r}: expected k/n like 1/6") from None
    if not 0 < r <= 1:
        raise ValueError(f"ratio {text!r}: expected 0 < k/n <= 1")
    return r


def crossover_db(snrs, psnr_a, psnr_b) -> float | str:
    """SNR where curve a stops being above curve b (see the module docstring); both float [n] on ascending ``snrs``."""
    s, d = np.asarray(snrs, float), np.asarray(psnr_a, float) - np.asarray(psnr_b, float)
    if np.all(d > 0):
        return "above at every SNR"
    if d[0] <= 0:
        return "below at every SNR"
    i = int(np.argmax(d <= 0))                     # first grid point not above; d[i - 1] > 0
    return float(s[i - 1] + (s[i] - s[i - 1]) * d[i - 1] / (d[i - 1] - d[i]))


def evaluate_photos(models: list, photos: list[str], ratios=PHOTO_RATIOS, snrs_db=(0, 5, 10, 15, 20), seed: int = 0,
                    digital: bool = True, codecs: list[str] | None = None, log=None, separation: bool = True) -> dict:
    """Records and crossovers for ``models`` (list of (JsccModel, meta)) on ``photos`` (names of
    :data:`learning.jscc.data.SAMPLE_PHOTOS`) at ``ratios`` (Fractions). Returns ``{"results": [...], "crossovers":
    [...]}``; every record has ``photo``, ``ratio`` ("1/6"), ``method``, ``snr_db``, ``psnr_db``, ``ssim``.
    ``digital``/``separation`` False: without the digital chain / the separation bound (the slow parts: merge them
    from an earlier run, :func:`merge_records`)."""
    from lab.experiments.jscc_air import digital_chain_records
    from learning.jscc.baselines import rate_table
    from learning.jscc.data import load_sample_photo
    from learning.jscc.evaluate import evaluate_model, evaluate_separation

    snrs = sorted(float(s) for s in snrs_db)
    records = []
    for name in photos:
        img = load_sample_photo(name)
        if log and separation:
            log(f"{name} {img.shape[1]}x{img.shape[0]}: rate table of every codec ...")
        tables = [rate_table(img, codecs)] if separation else None
        for r in ratios:
            base = {"photo": name, "ratio": f"{r.numerator}/{r.denominator}", "height": img.shape[0],
                    "width": img.shape[1], "channel_uses": int(round(float(r) * img.size))}
            got = []
            for model, meta in models:
                if abs(model.ratio - float(r)) < 1e-9:
                    got += evaluate_model(model, meta, img[None], snrs, "awgn", seed)
            if separation:
                got += evaluate_separation(img[None], snrs, float(r), codecs, tables)
            if digital:
                if log:
                    log(f"{name} k/n = {base['ratio']}: digital chain at {len(snrs)} SNRs ...")
                got += digital_chain_records(img[None], snrs, float(r), seed)
            records += [{**base, **{k: v for k, v in g.items() if k != "ratio"}} for g in got]
    return {"results": records, "crossovers": crossovers(records)}


def merge_records(new: list[dict], earlier: list[dict]) -> list[dict]:
    """``new`` records plus those of ``earlier`` whose (photo, ratio, method, snr_db) is not among them (a record
    evaluated now replaces the earlier one)."""
    key = lambda r: (r["photo"], r["ratio"], r["method"], float(r["snr_db"]))
    have = {key(r) for r in new}
    return list(new) + [r for r in earlier if key(r) not in have]


def crossovers(records: list[dict]) -> list[dict]:
    """Per photo (and ``"mean"`` over the photos) and ratio: each DeepJSCC method's crossover SNR against the
    digital chain and the payload-only separation bound."""
    out = []
    photos = list(dict.fromkeys(r["photo"] for r in records))
    ratios = sorted(dict.fromkeys(r["ratio"] for r in records), key=Fraction, reverse=True)   # 1/6, 1/12, 1/24
    present = {(r["photo"], r["ratio"]) for r in records}
    keys = [(p, q) for p in photos for q in ratios if (p, q) in present]
    groups = [(p, q, [r for r in records if (r["photo"], r["ratio"]) == (p, q)]) for p, q in keys]
    groups += [("mean", q, _mean_over_photos([r for r in records if r["ratio"] == q])) for q in ratios]
    for photo, ratio, recs in groups:
        curves = {}
        for r in recs:
            curves.setdefault(r["method"], {})[r["snr_db"]] = r["psnr_db"]
        deep = [m for m in curves if m.startswith("deepjscc")]
        for other in ("digital-chain", "separation-payload"):
            if other not in curves:
                continue
            if not deep:
                out.append({"photo": photo, "ratio": ratio, "against": other, "method": None,
                            "crossover_snr_db": "no DeepJSCC checkpoint at this ratio"})
            for m in deep:
                s = sorted(set(curves[m]) & set(curves[other]))
                out.append({"photo": photo, "ratio": ratio, "against": other, "method": m,
                            "crossover_snr_db": crossover_db(s, [curves[m][x] for x in s],
                                                             [curves[other][x] for x in s])})
    return out


def _mean_over_photos(recs: list[dict]) -> list[dict]:
    cells: dict[tuple, list[dict]] = {}
    for r in recs:
        cells.setdefault((r["method"], r["snr_db"]), []).append(r)
    return [{"method": m, "snr_db": s, "psnr_db": float(np.mean([r["psnr_db"] for r in rs])),
             "ssim": float(np.mean([r["ssim"] for r in rs])), "n_photos": len(rs)} for (m, s), rs in cells.items()]


def plot(record: dict, path) -> None:
    """PSNR vs SNR, one panel per ratio, mean over the photos: DeepJSCC solid, digital chain dash-dot, separation
    bounds dashed (the record of ``otalab jscc eval --photos``)."""
    from lab.plots import save_figure, subplots

    ratios = record["ratios"]
    fig, axes = subplots(1, len(ratios), figsize=(4.2 * len(ratios), 3.8), squeeze=False)
    means = {}
    for r in record["results"]:
        means.setdefault((r["ratio"], r["method"]), {}).setdefault(r["snr_db"], []).append(r["psnr_db"])
    methods = list(dict.fromkeys(m for _, m in means))
    colour = {m: f"C{i}" for i, m in enumerate(methods)}           # one colour per method in every panel
    for ax, q in zip(axes[0], ratios):
        for (ratio, method), pts in means.items():
            if ratio != q:
                continue
            s = sorted(pts)
            style = "--" if method.startswith("separation") else ("-." if method.startswith("digital") else "-")
            ax.plot(s, [float(np.mean(pts[x])) for x in s], style, marker="o", ms=3, label=method,
                    color=colour[method])
        ax.set_title(f"k/n = {q}")
        ax.set_xlabel("SNR (dB)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"PSNR (dB), mean over {len(record['photos'])} photos")
    for ax in axes[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
