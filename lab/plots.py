"""Plots drawn from result records (JSON-ready dicts): each function takes a result and writes PNGs."""

from __future__ import annotations

from pathlib import Path


def plot_sync(result: dict, out_dir: Path) -> list[Path]:
    """Timing-error CDF and (with sweeps) the NMSE-vs-overhead trade-off, as PNGs in ``out_dir``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    cdf = result["residual_timing_cdf"]
    if cdf["samples"]:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.step(cdf["samples"], cdf["p"], where="post", label="residual timing error (truth)")
        ax.axvline(-result["window_backoff"], color="gray", ls="--", lw=0.8, label="CP tolerance (first path)")
        ax.axvline(result["cp_len"] - result["window_backoff"], color="gray", ls="--", lw=0.8)
        ax.set_xlabel("arrival error at the PS [samples]")
        ax.set_ylabel("CDF")
        ax.set_title(f"{result['scenario']['devices']} devices, {result['scenario']['snr_db']:g} dB")
        ax.legend(fontsize=7)
        paths.append(_save(fig, ax, out_dir / "sync_timing_cdf.png"))
    if result.get("sweeps"):
        fig, ax = plt.subplots(figsize=(5.5, 4))
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
        paths.append(_save(fig, ax, out_dir / "sync_tradeoff.png"))
    return paths


def _save(fig, ax, path: Path) -> Path:
    """Grid, tight layout, write the PNG, close the figure."""
    import matplotlib.pyplot as plt
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
