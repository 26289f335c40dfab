"""Device data partitions (learning.feel.partition): IID, two classes per device, Dirichlet(alpha)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import gammaln

from learning.feel.partition import class_counts, make_partition


@pytest.fixture
def labels() -> np.ndarray:
    """A balanced synthetic label vector: 10 classes x 3000 samples, shuffled."""
    return np.random.default_rng(0).permutation(np.repeat(np.arange(10), 3000))


def _disjoint(parts: np.ndarray) -> bool:
    return np.unique(parts).size == parts.size


def test_iid_partition_is_disjoint_and_balanced(labels):
    """IID: class counts per device ~ Multinomial-like with mean B/C; every class present on every device
    (P(missing) = (1 - 1/10)^500 ~ 1e-23)."""
    parts = make_partition("iid", labels, 20, 500, seed=1)
    assert parts.shape == (20, 500) and _disjoint(parts)
    counts = class_counts(labels, parts, 10)
    assert (counts > 0).all()
    assert abs(counts.mean() - 50) < 1e-9 and counts.std() < 3 * math.sqrt(50)


def test_noniid_two_classes_per_device(labels):
    """Non-IID (TSP 2020 Sec. VI): exactly two distinct classes per device, B/2 samples each."""
    parts = make_partition("noniid", labels, 25, 100, seed=2)
    assert parts.shape == (25, 100) and _disjoint(parts)
    counts = class_counts(labels, parts, 10)
    assert ((counts > 0).sum(1) == 2).all()
    assert np.all(np.sort(counts, 1)[:, -2:] == 50)
    assert (counts.sum(0) > 0).sum() == 10  # first classes spread evenly: every class is used


def test_noniid_runs_out_of_a_class_with_a_clear_error():
    labels = np.repeat(np.arange(10), 20)
    with pytest.raises(ValueError, match="ran out of samples"):
        make_partition("noniid", labels, 10, 18, seed=0)


def test_dirichlet_class_coverage_matches_dirichlet_multinomial(labels):
    """Dirichlet(alpha): per-device class counts are Dirichlet-multinomial(B, alpha 1_C), so a given class is absent
    with probability P0 = Gamma(C a) Gamma(B + (C-1) a) / (Gamma((C-1) a) Gamma(B + C a)); the mean number of
    classes present, C (1 - P0), must match within 4 standard errors. Small alpha -> fewer classes."""
    b, m, c = 40, 300, 10
    for alpha in (0.1, 1.0):
        parts = make_partition("dirichlet", labels, m, b, seed=3, alpha=alpha)
        assert parts.shape == (m, b) and _disjoint(parts)
        present = (class_counts(labels, parts, c) > 0).sum(1)
        p0 = math.exp(gammaln(c * alpha) + gammaln(b + (c - 1) * alpha) - gammaln((c - 1) * alpha)
                      - gammaln(b + c * alpha))
        expected = c * (1 - p0)
        assert abs(present.mean() - expected) < 4 * present.std() / math.sqrt(m) + 0.05
    assert expected > 5  # alpha = 1 spreads over many more classes than alpha = 0.1


def test_partition_inputs_are_validated(labels):
    with pytest.raises(ValueError, match="unknown"):
        make_partition("shards", labels, 2, 10)
    with pytest.raises(ValueError, match="only 30000"):
        make_partition("iid", labels, 100, 1000)
    with pytest.raises(ValueError, match="alpha"):
        make_partition("dirichlet", labels, 2, 10, alpha=0.0)
