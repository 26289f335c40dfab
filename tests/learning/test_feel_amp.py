"""AMP sparse recovery (learning.feel.amp) against linear estimators and its state evolution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learning.feel.amp import (amp_recover, least_squares_estimate, lmmse_estimate, nmse_db, state_evolution,
                               sure_scaled_threshold, sure_threshold)
from learning.feel.schemes import top_k_sparsify


def _problem(n: int, big_n: int, k: int, noise_var: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(n, big_n, generator=gen) / math.sqrt(n)
    x = torch.zeros(big_n)
    support = torch.randperm(big_n, generator=gen)[:k]
    x[support] = torch.randn(k, generator=gen)
    y = A @ x + math.sqrt(noise_var) * torch.randn(n, generator=gen)
    return A, x, y


def test_amp_recovers_sparse_vector_noiseless_high_undersampling():
    """Noiseless, delta = n/N = 0.3, rho = k/n = 0.2: below the l1 (soft-threshold AMP) Donoho-Tanner phase
    transition rho_DT(0.3) ~ 0.3, so AMP must recover x essentially exactly (NMSE < -40 dB)."""
    A, x, y = _problem(n=600, big_n=2000, k=120, noise_var=0.0, seed=1)
    res = amp_recover(y, A, iterations=200, tol=1e-7)
    assert nmse_db(res.x, x) < -40.0
    assert float((res.x[x == 0] ** 2).sum()) < 1e-6 * float((x ** 2).sum())  # off-support energy ~ 0


def test_amp_beats_linear_estimators_at_same_measurements():
    """Linear-estimator bound: any x_hat = W y lies in an n-dimensional subspace, so for an isotropic prior
    E||x - x_hat||^2 >= (1 - n/N) E||x||^2, i.e. NMSE >= 10 log10(1 - delta) = -3.01 dB at delta = 1/2.
    LS (pseudo-inverse) and LMMSE must sit at or above that bound; AMP must beat LMMSE by > 10 dB."""
    n, big_n, k, noise_var = 600, 1200, 90, 1e-3
    A, x, y = _problem(n, big_n, k, noise_var, seed=2)
    amp = nmse_db(amp_recover(y, A, iterations=60).x, x)
    lmmse = nmse_db(lmmse_estimate(y, A, noise_var, prior_var=k / big_n), x)
    ls = nmse_db(least_squares_estimate(y, A), x)
    bound = 10 * math.log10(1 - n / big_n)
    assert lmmse > bound - 0.5 and ls > bound - 0.5   # 0.5 dB: one draw of a finite problem
    assert lmmse < ls + 0.1                           # LMMSE is the best linear estimator
    assert amp < lmmse - 10.0


def test_amp_follows_state_evolution():
    """Fixed-lambda soft-threshold AMP: empirical per-entry MSE matches the state evolution
    tau_{t+1}^2 = sigma^2 + (1/delta) E[(eta(X + tau_t Z; lambda tau_t) - X)^2] (DMM 2009 state evolution) within 1 dB."""
    n, big_n, k, noise_var, lam = 1000, 2000, 200, 1e-2, 1.5
    A, x, y = _problem(n, big_n, k, noise_var, seed=3)
    res = amp_recover(y, A, iterations=40, threshold=lam, tol=0.0)
    mse = float(((res.x - x) ** 2).mean())
    prior = np.where(np.random.default_rng(0).random(400_000) < k / big_n,
                     np.random.default_rng(1).standard_normal(400_000), 0.0)
    predicted = state_evolution(prior, n / big_n, noise_var, lam, iterations=40)[-1]
    assert abs(10 * math.log10(mse / predicted)) < 1.0


def test_amp_is_batched_over_problems():
    """A batch of problems sharing A gives the same estimates as one at a time (up to float32 rounding of matmul
    vs matvec, amplified over the iterations: NMSE between the two below -50 dB)."""
    A, x1, y1 = _problem(200, 500, 25, 1e-3, seed=4)
    _, x2, y2 = _problem(200, 500, 25, 1e-3, seed=5)
    y2 = A @ x2
    both = amp_recover(torch.stack([y1, y2]), A, iterations=25, tol=0.0).x
    for i, y in enumerate((y1, y2)):
        assert nmse_db(both[i], amp_recover(y, A, iterations=25, tol=0.0).x) < -50.0


def test_sure_threshold_minimises_the_risk_estimate():
    """SURE(theta) = N tau^2 - 2 tau^2 #{|v| <= theta} + sum min(v^2, theta^2): the returned theta is the grid
    minimiser, checked against brute force over all candidates."""
    v = torch.from_numpy(np.random.default_rng(6).standard_normal(500).astype(np.float32))
    tau2 = torch.tensor(0.7)
    th = float(sure_threshold(v, tau2))
    cands = np.sort(np.abs(v.numpy()))
    risk = [500 * 0.7 - 2 * 0.7 * np.sum(np.abs(v.numpy()) <= c) + np.sum(np.minimum(v.numpy() ** 2, c * c))
            for c in cands]
    assert th == pytest.approx(float(cands[int(np.argmin(risk))]), rel=1e-6)


def test_amp_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="rows"):
        amp_recover(torch.zeros(5), torch.zeros(4, 10))
    with pytest.raises(ValueError, match="threshold"):
        amp_recover(torch.zeros(4), torch.zeros(4, 10), threshold="median")


def test_amp_beats_linear_on_an_adsgd_like_superposition():
    """A-DSGD's target at the same s: the mean of M = 10 top-k vectors (k = n/2) of heavy-tailed, correlated
    "gradients" (Student-t(3) common part + device part), so the sum is ~2/3 dense. Linear estimators sit at the bound
    10 log10(1 - n/N) = -3 dB; AMP (default denoiser) must be at least 1.5 dB better."""
    n, big_n, m = 600, 1200, 10
    gen = torch.Generator().manual_seed(7)
    A = torch.randn(n, big_n, generator=gen) / math.sqrt(n)
    rng = np.random.default_rng(7)
    grads = rng.standard_t(3, size=big_n)[None] + 0.5 * rng.standard_t(3, size=(m, big_n))
    x = top_k_sparsify(torch.from_numpy(grads.astype(np.float32)), n // 2).mean(0)
    noise_var = 1e-3 * float((A @ x).pow(2).mean())
    y = A @ x + math.sqrt(noise_var) * torch.randn(n, generator=gen)
    assert 0.5 * big_n < int((x != 0).sum()) < big_n          # denser than any single device's k
    amp = nmse_db(amp_recover(y, A, iterations=30).x, x)
    lmmse = nmse_db(lmmse_estimate(y, A, noise_var, float((x * x).mean())), x)
    ls = nmse_db(least_squares_estimate(y, A), x)
    assert amp < min(lmmse, ls) - 1.5


def test_sure_scaled_threshold_is_the_brute_force_minimiser():
    """For c eta(v; theta): SURE(theta, c) = ||c eta - v||^2 + 2 tau^2 c #{|v| > theta} - N tau^2; at every candidate
    theta the best c is closed-form, and the returned pair must reach the smallest SURE over all candidates."""
    v = np.random.default_rng(8).standard_t(3, size=400)
    tau2 = 0.5

    def sure(theta, c):
        eta = np.sign(v) * np.maximum(np.abs(v) - theta, 0.0)
        return np.sum((c * eta - v) ** 2) + 2 * tau2 * c * np.sum(np.abs(v) > theta) - v.size * tau2

    best = np.inf
    for theta in np.concatenate([[0.0], np.sort(np.abs(v))]):
        eta = np.sign(v) * np.maximum(np.abs(v) - theta, 0.0)
        k, s2 = np.sum(np.abs(v) > theta), np.sum(eta * eta)
        c = max((np.sum(v * eta) - tau2 * k) / s2, 0.0) if s2 > 0 else 0.0
        best = min(best, sure(theta, c))
    theta, c = sure_scaled_threshold(torch.from_numpy(v.astype(np.float32)), torch.tensor(tau2))
    assert sure(float(theta), float(c)) == pytest.approx(best, rel=1e-4, abs=1e-3)
