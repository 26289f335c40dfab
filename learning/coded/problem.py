"""The learning problem the workers share: least squares with a known optimum, split into N row partitions.

Loss L(w) = ||X w - y||^2 / (2 n); gradient X^T (X w - y) / n = sum_j X_j^T (X_j w - y_j) / n over row blocks j;
optimum w* = (X^T X)^-1 X^T y (float64 solve).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LeastSquares:
    """X float64[n, p], y float64[n]."""

    x: np.ndarray
    y: np.ndarray

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

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])

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

    def partitions(self, parts: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """``parts`` equal row blocks (X_j, y_j); n must be divisible by ``parts``."""
        if self.n % parts:
            raise ValueError(f"n = {self.n} rows: expected a multiple of {parts} partitions")
        return list(zip(np.split(self.x, parts), np.split(self.y, parts)))


def block_gradient(x: np.ndarray, y: np.ndarray, w: np.ndarray, n_total: int) -> np.ndarray:
    """X_j^T (X_j w - y_j) / n: one block's share of the full gradient."""
    return x.T @ (x @ w - y) / n_total
