"""Figures drawn from result records (the JSON-ready dicts the experiments return).

Every ``*_figure`` function returns a :class:`matplotlib.figure.Figure` built without pyplot, so it never switches
the caller's backend (in a notebook it displays as usual; ``fig.savefig`` works anywhere); :func:`save_figure`
writes one as PNG. The commands write PNGs next to their JSON; notebooks call the same functions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=(6.0, 4.0), **kw):
    """``(fig, axes)`` as ``pyplot.subplots`` gives them, built without pyplot (no backend switch, nothing to close)."""
    fig = _figure(*figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG to ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


# --------------------------------------------------------------------------------------------------- sync
def sync_timing_figure(result: dict):
    """CDF of the residual timing error of the data bursts at the PS, with the CP tolerance (``otalab sync``'s
    result); None when the result holds no bursts."""
    cdf = result["residual_timing_cdf"]
    if not cdf["samples"]:
        return None
    fig = _figure(5, 3.5)
    ax = fig.subplots()
    ax.step(cdf["samples"], cdf["p"], where="post", label="residual timing error (truth)")
    ax.axvline(-result["window_backoff"], color="gray", ls="--", lw=0.8, label="CP tolerance (first path)")
    ax.axvline(result["cp_len"] - result["window_backoff"], color="gray", ls="--", lw=0.8)
    ax.set_xlabel("arrival error at the PS [samples]")
    ax.set_ylabel("CDF")
    ax.set_title(f"{result['scenario']['devices']} devices, {result['scenario']['snr_db']:g} dB")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def sync_tradeoff_figure(result: dict):
    """Aggregation NMSE against synchronization overhead, one line per sweep; None without sweeps."""
    if not result.get("sweeps"):
        return None
    fig = _figure(5.5, 4)
    ax = fig.subplots()
    for name, pts in result["sweeps"].items():
        xs = [100 * p["overhead_fraction"] for p in pts]
        ys = [p["nmse_db"] for p in pts]
        ax.plot(xs, ys, "o-", label=name)
        for x, y, p in zip(xs, ys, pts):
            ax.annotate(f"{p['value']:g}", (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("synchronization overhead [% of air time]")
    ax.set_ylabel("over-the-air sum NMSE [dB]")
    ax.set_title("aggregation error vs synchronization overhead")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_sync(result: dict, out_dir: Path) -> list[Path]:
    """``otalab sync``'s PNGs in ``out_dir``: sync_timing_cdf.png and (with sweeps) sync_tradeoff.png."""
    paths = []
    for name, fig in (("sync_timing_cdf.png", sync_timing_figure(result)),
                      ("sync_tradeoff.png", sync_tradeoff_figure(result))):
        if fig is not None:
            paths.append(save_figure(fig, Path(out_dir) / name, dpi=120))
    return paths


# --------------------------------------------------------------------------------------------------- FEEL
def feel_label(result: dict) -> str:
    """Legend label of a FEEL run: scheme name and power."""
    c = result["config"]
    names = {"analog": "A-DSGD", "digital": "D-DSGD", "ideal": "error-free", "uncoded": "uncoded analog"}
    power = "" if c["scheme"] == "ideal" else f", P={c['power']:g}"
    return f"{names.get(c['scheme'], c['scheme'])}{power}"


def feel_accuracy_figure(results: list[dict], title: str = ""):
    """Test accuracy against round, one panel per partition, one line per scheme/power (``otalab feel`` results)."""
    order = ("iid", "noniid", "dirichlet")
    partitions = sorted({r["config"]["partition"] for r in results}, key=lambda p: order.index(p) if p in order else 9)
    fig = _figure(5.2 * len(partitions), 4)
    axes = np.atleast_1d(fig.subplots(1, len(partitions), sharey=True))
    styles = {"ideal": "k-", "analog": "-", "digital": "--", "uncoded": ":"}
    for ax, part in zip(axes, partitions):
        for r in sorted((r for r in results if r["config"]["partition"] == part),
                        key=lambda r: (r["config"]["scheme"] != "ideal", r["config"]["scheme"], r["config"]["power"])):
            pts = [(x["round"], x["accuracy"]) for x in r["rounds"] if x.get("accuracy") is not None]
            if pts:
                ax.plot(*zip(*pts), styles.get(r["config"]["scheme"], "-"), label=feel_label(r), lw=1.3)
        ax.set_title(f"{part.upper() if part == 'iid' else part}")
        ax.set_xlabel("iteration t")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_ylim(0.0, 1.0)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def demo_feel_figure(runs: list[dict], title: str, dataset: str = "MNIST"):
    """The demo's accuracy-vs-round comparison (error-free, D-DSGD, A-DSGD over the radio and symbol-level)."""
    styles = {"error-free": "k-", "D-DSGD": "C1--", "A-DSGD (radio)": "C0-o", "A-DSGD (symbol-level)": "C2:"}
    fig = _figure(5.5, 4)
    ax = fig.subplots()
    for r in runs:
        pts = [(x["round"], x["accuracy"]) for x in r["rounds"] if x.get("accuracy") is not None]
        if pts:
            ax.plot(*zip(*pts), styles.get(r["name"], "-"), label=r["name"], lw=1.4, ms=3)
    ax.set_xlabel("round t")
    ax.set_ylabel(f"{dataset} test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------- DeepJSCC
def jscc_method_labels(results: list[dict]) -> list[str]:
    """A label per ``otalab jscc eval`` record: its method, with ``k/n = ...`` added when the records hold several
    bandwidth ratios (checkpoints of 1/6 and 1/12 are both ``deepjscc-adjscc``)."""
    several = len({r.get("ratio") for r in results}) > 1
    return [f"{r['method']} k/n={r.get('ratio')}" if several else r["method"] for r in results]


def jscc_eval_figure(record: dict, title: str | None = None):
    """PSNR and SSIM against SNR, one line per method and ratio (``otalab jscc eval``'s record with its ``results``)."""
    import collections

    by_method: dict[str, list[dict]] = collections.defaultdict(list)
    for label, r in zip(jscc_method_labels(record["results"]), record["results"]):
        by_method[label].append(r)
    fig = _figure(11, 4.2)
    axes = fig.subplots(1, 2)
    for method, recs in by_method.items():
        recs = sorted(recs, key=lambda r: r["snr_db"])
        style = "--" if method.startswith("separation") else ("-." if method.startswith("digital") else "-")
        for ax, key in zip(axes, ("psnr_db", "ssim")):
            ax.plot([r["snr_db"] for r in recs], [r[key] for r in recs], style, marker="o", ms=3, label=method)
    axes[0].set_ylabel("PSNR (dB)")
    axes[1].set_ylabel("SSIM")
    for ax in axes:
        ax.set_xlabel("SNR (dB)")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title or record.get("title", "DeepJSCC vs separation"))
    fig.tight_layout()
    return fig


def side_by_side_figure(images, records: list[dict]):
    """One row per image: the original, then each method's received image with its PSNR (records of
    :func:`lab.experiments.jscc_air.send_images`, decoded images under ``"_image"``)."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    n = len(images)
    cols = 1 + len(methods)
    fig = _figure(2.2 * cols, 2.2 * n)
    axes = np.array(fig.subplots(n, cols, squeeze=False))
    by = {(r["method"], r["image"]): r for r in records}
    for i in range(n):
        axes[i][0].imshow(images[i])
        axes[i][0].set_title("original", fontsize=8)
        for j, m in enumerate(methods, 1):
            r = by.get((m, i))
            ax = axes[i][j]
            if r is not None and r.get("_image") is not None:
                ax.imshow(r["_image"])
                ax.set_title(f"{m}\n{r['psnr_db']:.1f} dB", fontsize=7)
            else:
                ax.text(0.5, 0.5, "lost" if r is None else r.get("status", "nothing fits"), ha="center")
                ax.set_title(m, fontsize=7)
    for ax in np.ravel(axes):
        ax.axis("off")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------- samples
def constellation_spectrum_figure(samples: np.ndarray, sample_rate: float, symbols: np.ndarray | None = None,
                                  title: str = ""):
    """Received spectrum (Welch PSD of ``samples``, complex64 [N], in dB against frequency offset) and, when given,
    the constellation of equalized ``symbols`` (complex [M]) — what ``otalab link --plot`` and ``otalab replay
    --plot`` draw."""
    from scipy.signal import welch

    samples = np.asarray(samples)
    panels = 2 if symbols is not None and np.size(symbols) else 1
    fig = _figure(5 * panels, 4)
    axes = np.atleast_1d(fig.subplots(1, panels))
    if samples.size >= 16:
        f, p = welch(samples, fs=sample_rate, nperseg=min(1024, samples.size), return_onesided=False,
                     scaling="density")
        order = np.argsort(f)
        axes[0].plot(f[order] / 1e6, 10 * np.log10(np.maximum(p[order], 1e-30)), lw=0.8)
    axes[0].set_xlabel("frequency offset [MHz]")
    axes[0].set_ylabel("PSD [dB/Hz]")
    axes[0].set_title("spectrum")
    axes[0].grid(alpha=0.3)
    if panels == 2:
        s = np.asarray(symbols).ravel()[:20000]
        axes[1].plot(s.real, s.imag, ".", ms=1.5, alpha=0.4)
        axes[1].set_aspect("equal")
        axes[1].set_xlabel("I")
        axes[1].set_ylabel("Q")
        axes[1].set_title("equalized constellation")
        axes[1].grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
