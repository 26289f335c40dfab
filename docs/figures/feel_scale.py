"""docs/figures/feel_scale.png from the measured table of docs/feel-scale.md (CPU s per round, one thread)."""
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

m = [1_000, 10_000]
before = [0.47, 4.34]          # per-device projection ("before", docs/feel-scale.md)
numpy_path = 3.28              # the same code with numba hidden
now = [0.32, 0.65]             # fused numba top-k, closed-form gradients, reused buffers (best of the two runs)
fig, ax = plt.subplots(figsize=(5.5, 3.6))
ax.loglog(m, before, "o-", label="per-device projection (before)")
ax.loglog([10_000], [numpy_path], "s", label="the same, numpy path (numba absent)")
ax.loglog(m, now, "o-", label="fused top-k (numba), closed-form gradients")
ax.axhline(1.0, color="gray", ls=":", label="1 round per CPU second")
ax.set_xlabel("devices M")
ax.set_ylabel("CPU s per A-DSGD round (one thread)")
ax.set_title("Symbol-level A-DSGD, MNIST, d = 7,850, s = 3,925")
ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig("docs/figures/feel_scale.png", dpi=120)
