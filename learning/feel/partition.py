"""Split a labelled training set over M devices: IID, non-IID with two classes per device, or Dirichlet(alpha).

Every partition returns ``int64[M, B]``: row m holds the training-set indices of device m's local data set
(``B`` samples each, disjoint across devices). Draws are deterministic for the seed.

* ``iid``: a random permutation cut into M blocks of B (Amiri & Gündüz, TSP 2020, Sec. VI, IID case).
* ``noniid``: each device holds B/2 samples from each of two *different* classes (TSP 2020, Sec. VI, non-IID case:
  "each device has samples from only two classes"). The first classes are spread evenly over the devices, the second
  class of each device is a random other class; samples are drawn without replacement from per-class pools.
* ``dirichlet``: device m draws class proportions p_m ~ Dir(alpha·1_C) and class counts ~ Multinomial(B, p_m)
  (Hsu, Qi & Brown 2019); small alpha -> few classes per device, large alpha -> IID. Classes whose pool runs out
  are redrawn from the classes that still have samples.
"""

from __future__ import annotations

import numpy as np

PARTITIONS = ("iid", "noniid", "dirichlet")


def _check(labels: np.ndarray, n_devices: int, per_device: int) -> None:
    if n_devices < 1:
        raise ValueError(f"n_devices = {n_devices}: expected >= 1")
    if per_device < 1:
        raise ValueError(f"per_device = {per_device}: expected >= 1")
    if n_devices * per_device > labels.size:
        raise ValueError(f"n_devices * per_device = {n_devices} * {per_device} = {n_devices * per_device} samples "
                         f"requested, but the training set has only {labels.size}")


def partition_iid(labels: np.ndarray, n_devices: int, per_device: int, seed: int = 0) -> np.ndarray:
    """IID split: int64[M, B] disjoint indices drawn uniformly without replacement."""
    _check(labels, n_devices, per_device)
    rng = np.random.default_rng([seed, 101])
    return rng.permutation(labels.size)[: n_devices * per_device].reshape(n_devices, per_device).astype(np.int64)


def partition_two_class(labels: np.ndarray, n_devices: int, per_device: int, seed: int = 0) -> np.ndarray:
    """Non-IID split: every device holds exactly two distinct classes, ``B // 2`` and ``B - B // 2`` samples.

    Returns int64[M, B]. Raises ValueError when a class pool runs out (too many devices for the data set).
    """
    _check(labels, n_devices, per_device)
    if per_device < 2:
        raise ValueError(f"per_device = {per_device}: the two-class split needs >= 2 samples per device")
    rng = np.random.default_rng([seed, 102])
    classes = np.unique(labels)
    n_cls = classes.size
    first = classes[rng.permutation(np.resize(np.arange(n_cls), n_devices))]
    offset = rng.integers(1, n_cls, size=n_devices)
    second = classes[(np.searchsorted(classes, first) + offset) % n_cls]
    pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in classes}
    half = (per_device // 2, per_device - per_device // 2)
    out = np.empty((n_devices, per_device), np.int64)
    for m in range(n_devices):  # bookkeeping per device (cheap); the learning itself is vectorized
        rows = []
        for c, n in zip((first[m], second[m]), half):
            if len(pools[c]) < n:
                raise ValueError(f"non-IID partition: class {c} ran out of samples at device {m} "
                                 f"({n_devices} devices x {per_device} samples is too many for this data set)")
            rows.extend(pools[c][:n])
            del pools[c][:n]
        out[m] = rows
    return out


def partition_dirichlet(labels: np.ndarray, n_devices: int, per_device: int, alpha: float = 0.5,
                        seed: int = 0) -> np.ndarray:
    """Dirichlet split: int64[M, B]; device m's class counts ~ Multinomial(B, Dir(alpha)) without replacement."""
    _check(labels, n_devices, per_device)
    if not alpha > 0:
        raise ValueError(f"alpha = {alpha}: expected a Dirichlet concentration > 0")
    rng = np.random.default_rng([seed, 103])
    classes = np.unique(labels)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in classes]
    out = np.empty((n_devices, per_device), np.int64)
    for m in range(n_devices):
        counts = rng.multinomial(per_device, rng.dirichlet(np.full(classes.size, alpha)))
        rows: list[int] = []
        deficit = 0
        for ci, n in enumerate(counts):
            take = min(n, len(pools[ci]))
            rows.extend(pools[ci][:take])
            del pools[ci][:take]
            deficit += n - take
        while deficit:  # a pool ran dry: fill from the classes that still have samples, proportionally
            left = np.array([len(p) for p in pools], float)
            ci = int(rng.choice(classes.size, p=left / left.sum()))
            rows.append(pools[ci].pop())
            deficit -= 1
        out[m] = rows
    return out


def make_partition(kind: str, labels: np.ndarray, n_devices: int, per_device: int, seed: int = 0,
                   alpha: float = 0.5) -> np.ndarray:
    """Dispatch on ``kind`` in :data:`PARTITIONS`; returns int64[M, B]."""
    labels = np.asarray(labels)
    if kind == "iid":
        return partition_iid(labels, n_devices, per_device, seed)
    if kind == "noniid":
        return partition_two_class(labels, n_devices, per_device, seed)
    if kind == "dirichlet":
        return partition_dirichlet(labels, n_devices, per_device, alpha, seed)
    raise ValueError(f"partition {kind!r}: unknown; expected one of {', '.join(PARTITIONS)}")


def class_counts(labels: np.ndarray, parts: np.ndarray, n_classes: int) -> np.ndarray:
    """int64[M, C]: how many samples of each class every device holds (vectorized bincount)."""
    m = parts.shape[0]
    flat = np.asarray(labels)[parts] + n_classes * np.arange(m)[:, None]
    return np.bincount(flat.ravel(), minlength=m * n_classes).reshape(m, n_classes)
