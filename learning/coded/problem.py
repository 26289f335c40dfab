"""The learning problems the workers share, split into N row partitions whose gradients add up to the full one.

* :class:`LeastSquares`: L(w) = ||X w - y||^2 / (2 n); gradient X^T (X w - y) / n = sum_j X_j^T (X_j w - y_j) / n
  over row blocks j; optimum w* = (X^T X)^-1 X^T y (float64 solve). A polynomial (degree 2) of the data, so
  Lagrange coded computing applies.
* :class:`Logistic`: L2-regularised logistic regression, labels y in {0, 1},
  L(w) = (1/n) sum_i [log(1 + e^{x_i w}) - y_i x_i w] + (l2/2) ||w||^2, gradient
  X^T (sigmoid(X w) - y) / n + l2 w = sum_j [X_j^T (sigmoid(X_j w) - y_j) / n + l2 (n_j / n) w]; strongly convex,
  optimum by Newton's method in float64. Not polynomial: the gradient codes and multi-message apply, LCC does not.
  :meth:`Logistic.mnist` builds it from MNIST (digits >= 5 vs < 5, PCA features).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np


def split_rows(x: np.ndarray, y: np.ndarray, parts: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``parts`` equal row blocks (X_j, y_j); the number of rows must be divisible by ``parts``."""
    if parts < 1 or x.shape[0] % parts:
        raise ValueError(f"n = {x.shape[0]} rows: expected a multiple of {parts} partitions")
    return list(zip(np.split(x, parts), np.split(y, parts)))


class RowProblem:
    """What every problem here shares: samples as rows of ``x`` float64[n, p] with targets ``y`` float64[n]."""

    x: np.ndarray
    y: np.ndarray

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])

    def partitions(self, parts: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """``parts`` equal row blocks (X_j, y_j); n must be divisible by ``parts``."""
        return split_rows(self.x, self.y, parts)


@dataclass(frozen=True)
class LeastSquares(RowProblem):
    """X float64[n, p], y float64[n]."""

    x: np.ndarray
    y: np.ndarray
    kind: ClassVar[str] = "least-squares"
    l2: ClassVar[float] = 0.0

    @classmethod
    def synthetic(cls, n: int, p: int, noise: float = 0.1, seed: int = 0, spread: float = 1.0) -> "LeastSquares":
        """X ~ N(0, 1) with column j scaled by 10^(-spread j/(p-1)) (spread 1: condition number of X^T X ~ 100, so
        gradient descent needs hundreds of iterations), y = X w_true + N(0, noise^2), w_true ~ N(0, 1)."""
        if n < 1 or p < 1:
            raise ValueError(f"n = {n}, p = {p}: expected both >= 1")
        rng = np.random.default_rng([seed, 71])
        x = rng.standard_normal((n, p)) * np.logspace(0, -spread, p)
        y = x @ rng.standard_normal(p) + noise * rng.standard_normal(n)
        return cls(x, y)

    def loss(self, w: np.ndarray) -> float:
        r = self.x @ w - self.y
        return float(r @ r) / (2 * self.n)

    def gradient(self, w: np.ndarray) -> np.ndarray:
        return self.x.T @ (self.x @ w - self.y) / self.n

    def optimum(self) -> np.ndarray:
        return np.linalg.solve(self.x.T @ self.x, self.x.T @ self.y)

    def lipschitz(self) -> float:
        """L = lambda_max(X^T X) / n: GD with step 1/L descends monotonically."""
        return float(np.linalg.eigvalsh(self.x.T @ self.x)[-1]) / self.n



#: what :func:`block_gradient` computes, by problem kind
KINDS = ("least-squares", "logistic")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-z) as (1 + tanh(z/2)) / 2: no overflow for any z (and no scipy import in worker processes)."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def block_gradient(x: np.ndarray, y: np.ndarray, w: np.ndarray, n_total: int, kind: str = "least-squares",
                   l2: float = 0.0) -> np.ndarray:
    """One row block's share of the full gradient: X_j^T (X_j w - y_j) / n (least squares) or
    X_j^T (sigmoid(X_j w) - y_j) / n + l2 (n_j / n) w (logistic); the shares of all blocks add up to the gradient."""
    if kind == "least-squares":
        return x.T @ (x @ w - y) / n_total
    if kind == "logistic":
        return x.T @ (_sigmoid(x @ w) - y) / n_total + l2 * (x.shape[0] / n_total) * w
    raise ValueError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class Logistic(RowProblem):
    """X float64[n, p] (a column of ones for the intercept included by the constructors), y float64[n] in {0, 1},
    l2 > 0 the ridge weight (makes the loss strongly convex: a unique optimum)."""

    x: np.ndarray
    y: np.ndarray
    l2: float = 1e-3
    kind: ClassVar[str] = "logistic"

    def __post_init__(self):
        if not self.l2 > 0:
            raise ValueError(f"l2 = {self.l2}: expected > 0 (the optimum must be unique)")
        if not np.all((self.y == 0) | (self.y == 1)):
            raise ValueError("y: expected labels in {0, 1}")

    @classmethod
    def synthetic(cls, n: int, p: int, seed: int = 0, l2: float = 1e-3) -> "Logistic":
        """X = [N(0, 1) features, 1], y ~ Bernoulli(sigmoid(X w_true)), w_true ~ N(0, 1)."""
        if n < 1 or p < 2:
            raise ValueError(f"n = {n}, p = {p}: expected n >= 1 and p >= 2 (p includes the intercept)")
        rng = np.random.default_rng([seed, 73])
        x = np.hstack([rng.standard_normal((n, p - 1)), np.ones((n, 1))])
        y = (rng.random(n) < _sigmoid(x @ rng.standard_normal(p))).astype(np.float64)
        return cls(x, y, l2)

    @classmethod
    def mnist(cls, n: int, p: int, seed: int = 0, l2: float = 1e-3, data_dir=None) -> "Logistic":
        """n MNIST training images (a seeded random subset), label 1 for digits >= 5; features: the top p - 1
        principal components of the standardised pixels (scaled to unit variance) and an intercept."""
        from learning.feel.data import load_dataset
        if n < 1 or p < 2:
            raise ValueError(f"n = {n}, p = {p}: expected n >= 1 and p >= 2 (p includes the intercept)")
        data = load_dataset("mnist", data_dir)
        if n > len(data.y_train):
            raise ValueError(f"n = {n}: MNIST has {len(data.y_train)} training images")
        pick = np.random.default_rng([seed, 74]).choice(len(data.y_train), n, replace=False)
        # standardisation is affine per pixel channel: centred PCs scaled to unit variance do not depend on it
        pix = data.x_train[pick].reshape(n, -1).astype(np.float64) / 255.0
        labels = data.y_train[pick]
        pix -= pix.mean(0)
        _, _, vt = np.linalg.svd(pix, full_matrices=False)
        feats = pix @ vt[:p - 1].T
        feats /= feats.std(0)
        return cls(np.hstack([feats, np.ones((n, 1))]), (labels >= 5).astype(np.float64), l2)

    def loss(self, w: np.ndarray) -> float:
        z = self.x @ w
        return float(np.mean(np.logaddexp(0.0, z) - self.y * z) + 0.5 * self.l2 * (w @ w))

    def gradient(self, w: np.ndarray) -> np.ndarray:
        return block_gradient(self.x, self.y, w, self.n, "logistic", self.l2)

    def optimum(self, tol: float = 1e-12, max_iter: int = 100) -> np.ndarray:
        """Newton's method from 0 (the loss is strongly convex and smooth): stops when ||gradient|| <= tol."""
        w = np.zeros(self.dim)
        for _ in range(max_iter):
            g = self.gradient(w)
            if np.linalg.norm(g) <= tol:
                break
            p = _sigmoid(self.x @ w)
            h = (self.x * (p * (1 - p))[:, None]).T @ self.x / self.n + self.l2 * np.eye(self.dim)
            w = w - np.linalg.solve(h, g)
        return w

    def lipschitz(self) -> float:
        """L = lambda_max(X^T X) / (4 n) + l2 (sigmoid' <= 1/4): GD with step 1/L descends monotonically."""
        return float(np.linalg.eigvalsh(self.x.T @ self.x)[-1]) / (4 * self.n) + self.l2


