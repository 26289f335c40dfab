"""Approximate message passing (AMP) for sparse recovery, plus the linear estimators it is compared against.

Problem: y = A x + w with A in R^{n x N} (entries i.i.d. N(0, 1/n), undersampling delta = n/N), x sparse and
w ~ N(0, sigma^2 I_n). A-DSGD's parameter server uses it to recover the superposed sparse gradients from the
s - 1 projected channel outputs (Amiri & Gündüz, TSP 2020, Sec. IV-B, "the PS uses AMP").

Iterative soft-thresholding AMP (Donoho, Maleki & Montanari, PNAS 2009, the AMP iteration):

    v^t     = x^t + A^T r^t                                    (pseudo-data ~ x + tau_t Z)
    x^{t+1} = eta(v^t; theta_t),  eta(v; theta) = sign(v) max(|v| - theta, 0)
    r^{t+1} = y - A x^{t+1} + (||x^{t+1}||_0 / n) r^t          (the Onsager term: (1/delta) <eta'(v^t)> r^t)

with tau_t^2 estimated as ||r^t||^2 / n. The threshold theta_t is either lambda * tau_t (fixed lambda; then the
per-entry MSE follows the state evolution :func:`state_evolution`,
tau_{t+1}^2 = sigma^2 + (1/delta) E[(eta(X + tau_t Z; lambda tau_t) - X)^2], DMM 2009 state evolution), or the minimiser
of Stein's unbiased risk estimate of the soft-threshold denoiser on the pseudo-data (parameterless AMP, Mousavi,
Maleki & Baraniuk 2015): SURE(theta) = N tau^2 - 2 tau^2 #{|v_i| <= theta} + sum_i min(v_i^2, theta^2).
The default, "sure-scaled", also tunes a gain c_t of the soft threshold, x^{t+1} = c_t eta(v^t; theta_t), by SURE
(Onsager term scaled by c_t). A-DSGD's superposed signal is the sum of M top-k vectors with different supports, so
it is much denser than k (Fig. 5: 3,550-7,750 non-zeros of 7,850 at n = 3,924). Plain soft thresholding then falls
behind LMMSE, while the scaled family contains linear shrinkage (theta = 0) and stays ahead of or level with it
(measured with ``otalab bench feel --amp-vs-linear``; see docs/feel.md).

Written here (not taken from a library) because it is the project's core and must run batched in torch float32:
every function accepts a leading batch of independent problems sharing A.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class AmpResult:
    """``x``: float32[..., N] estimate; ``tau``: float32[...] final effective noise std of the pseudo-data;
    ``iterations``: iterations run."""

    x: torch.Tensor
    tau: torch.Tensor
    iterations: int


def soft_threshold(v: torch.Tensor, theta: torch.Tensor | float) -> torch.Tensor:
    """eta(v; theta) = sign(v) max(|v| - theta, 0); ``theta`` broadcastable to v."""
    return torch.sign(v) * torch.clamp(v.abs() - theta, min=0.0)


def sure_threshold(v: torch.Tensor, tau2: torch.Tensor) -> torch.Tensor:
    """Threshold minimising SURE of soft thresholding for v float32[..., N] ~ x + sqrt(tau2) Z; returns float32[...].

    SURE(theta) = N tau^2 - 2 tau^2 #{|v_i| <= theta} + sum_i min(v_i^2, theta^2), evaluated at every theta = |v|_(j)
    with one sort and a cumulative sum (O(N log N), batched).
    """
    a, _ = torch.sort(v.abs(), dim=-1)
    n = a.shape[-1]
    j = torch.arange(1, n + 1, device=a.device, dtype=a.dtype)
    tau2 = tau2.unsqueeze(-1)
    risk = n * tau2 - 2.0 * tau2 * j + torch.cumsum(a * a, -1) + (n - j) * a * a
    return a.gather(-1, risk.argmin(-1, keepdim=True)).squeeze(-1)


def sure_scaled_threshold(v: torch.Tensor, tau2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(theta, c) minimising SURE of the scaled soft threshold c * eta(v; theta) for v float32[..., N].

    For c * eta: SURE(theta, c) = ||c eta - v||^2 + 2 tau^2 c K - N tau^2 with K = #{|v| > theta}; the best gain is
    c* = (S_v - tau^2 K) / S_2 with S_v = sum v eta, S_2 = sum eta^2, leaving SURE = sum v^2 - (S_v - tau^2 K)^2 / S_2
    - N tau^2. theta -> 0 gives linear shrinkage c v (what an LMMSE estimate does per entry), so the family covers
    both the sparse and the dense regime. Evaluated at theta = |v|_(j) with suffix sums (batched, O(N log N)).
    """
    a, _ = torch.sort(v.abs(), dim=-1)
    a = a.double()
    n = a.shape[-1]
    rev = lambda t: torch.flip(torch.cumsum(torch.flip(t, [-1]), -1), [-1])  # noqa: E731  suffix sums incl. j
    s1, s2 = rev(a), rev(a * a)
    zero = torch.zeros_like(a[..., :1])
    s1 = torch.cat([s1[..., 1:], zero], -1)     # sums over i > j (strictly above the threshold a_j)
    s2 = torch.cat([s2[..., 1:], zero], -1)
    k = (n - 1 - torch.arange(n, device=a.device, dtype=a.dtype)).expand_as(a)
    theta = a
    sum_eta2 = s2 - 2 * theta * s1 + k * theta * theta
    sum_veta = s2 - theta * s1
    t2 = tau2.double().unsqueeze(-1)
    num = sum_veta - t2 * k
    gain = torch.where(sum_eta2 > 0, num / sum_eta2.clamp_min(1e-300), torch.zeros_like(num))
    risk = -torch.where((sum_eta2 > 0) & (num > 0), num * num / sum_eta2.clamp_min(1e-300), torch.zeros_like(num))
    # theta = 0 candidate: c v with every entry kept
    s_all = (a * a).sum(-1, keepdim=True)
    num0 = s_all - t2 * n
    risk0 = -torch.where(num0 > 0, num0 * num0 / s_all.clamp_min(1e-300), torch.zeros_like(num0))
    risk = torch.cat([risk0, risk], -1)
    theta = torch.cat([zero, theta], -1)
    gain = torch.cat([torch.where(s_all > 0, num0 / s_all.clamp_min(1e-300), zero), gain], -1).clamp_min(0.0)
    best = risk.argmin(-1, keepdim=True)
    return theta.gather(-1, best).squeeze(-1).float(), gain.gather(-1, best).squeeze(-1).float()


def amp_recover(y: torch.Tensor, A: torch.Tensor, iterations: int = 30, threshold: str | float = "sure-scaled",
                tol: float = 1e-4) -> AmpResult:
    """Recover sparse x from y = A x + w.

    y: float32[..., n]; A: float32[n, N] with entries of variance 1/n (columns of unit norm on average).
    threshold: "sure-scaled" (default: c_t eta(v; theta_t) with (theta_t, c_t) minimising SURE, see
    :func:`sure_scaled_threshold`), "sure" (plain soft threshold, SURE-tuned theta) or a float lambda for
    theta_t = lambda * tau_t. The Onsager term uses the denoiser's divergence, c_t ||x^{t+1}||_0 / n.
    Stops early when ||x^{t+1} - x^t|| <= tol ||x^{t+1}|| for every problem in the batch.
    """
    if y.shape[-1] != A.shape[0]:
        raise ValueError(f"y has {y.shape[-1]} entries but A has {A.shape[0]} rows; expected equal")
    if not (threshold in ("sure", "sure-scaled") or (isinstance(threshold, (int, float)) and threshold >= 0)):
        raise ValueError(f"threshold = {threshold!r}: expected 'sure', 'sure-scaled' or a lambda >= 0")
    n, big_n = A.shape
    y = y.to(torch.float32)
    x = torch.zeros(*y.shape[:-1], big_n, dtype=torch.float32, device=y.device)
    r = y.clone()
    tau2 = (r * r).sum(-1) / n
    it = 0
    for it in range(1, iterations + 1):
        tau2 = (r * r).sum(-1) / n
        v = x + r @ A
        gain = torch.ones_like(tau2)
        if threshold == "sure-scaled":
            theta, gain = sure_scaled_threshold(v, tau2)
        elif threshold == "sure":
            theta = sure_threshold(v, tau2)
        else:
            theta = float(threshold) * tau2.sqrt()
        x_new = gain.unsqueeze(-1) * soft_threshold(v, theta.unsqueeze(-1) if torch.is_tensor(theta) else theta)
        onsager = gain.unsqueeze(-1) * (x_new != 0).sum(-1, keepdim=True).to(torch.float32) / n
        r = y - x_new @ A.T + onsager * r
        change = ((x_new - x) ** 2).sum(-1)
        x = x_new
        if bool((change <= tol * tol * (x * x).sum(-1)).all()):
            break
    return AmpResult(x=x, tau=tau2.sqrt(), iterations=it)


def lmmse_estimate(y: torch.Tensor, A: torch.Tensor, noise_var: float, prior_var: float) -> torch.Tensor:
    """Linear MMSE estimate for x with i.i.d. zero-mean entries of variance ``prior_var``:
    x_hat = prior_var A^T (prior_var A A^T + sigma^2 I)^{-1} y.  y: float[..., n] -> float32[..., N]."""
    a64 = A.double()
    gram = prior_var * a64 @ a64.T + noise_var * torch.eye(A.shape[0], dtype=torch.float64)
    sol = torch.linalg.solve(gram, y.double().reshape(-1, A.shape[0]).T).T
    return (prior_var * sol @ a64).reshape(*y.shape[:-1], A.shape[1]).float()


def least_squares_estimate(y: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Minimum-norm least-squares estimate x_hat = A^T (A A^T)^{-1} y (the pseudo-inverse of a full-row-rank A,
    n <= N); float32[..., N]."""
    a64 = A.double()
    sol = torch.linalg.solve(a64 @ a64.T, y.double().reshape(-1, A.shape[0]).T).T
    return (sol @ a64).reshape(*y.shape[:-1], A.shape[1]).float()


def state_evolution(x_samples: np.ndarray, delta: float, noise_var: float, lam: float, iterations: int = 30,
                    seed: int = 0) -> np.ndarray:
    """Predicted per-entry MSE E[(x^t - x)^2] of fixed-lambda AMP, t = 1..iterations (DMM 2009 state evolution).

    tau_0^2 = sigma^2 + E[X^2] / delta;  mse_t = E[(eta(X + tau_t Z; lambda tau_t) - X)^2];
    tau_{t+1}^2 = sigma^2 + mse_t / delta.  The expectation over X uses ``x_samples`` (float[K], draws from the
    signal prior) and fixed-seed standard normal Z.
    """
    x = np.asarray(x_samples, np.float64)
    z = np.random.default_rng(seed).standard_normal(x.size)
    tau2 = noise_var + np.mean(x * x) / delta
    out = np.empty(iterations)
    for t in range(iterations):
        tau = np.sqrt(tau2)
        v = x + tau * z
        est = np.sign(v) * np.maximum(np.abs(v) - lam * tau, 0.0)
        out[t] = np.mean((est - x) ** 2)
        tau2 = noise_var + out[t] / delta
    return out


def nmse_db(estimate: torch.Tensor, target: torch.Tensor) -> float:
    """10 log10(||estimate - target||^2 / ||target||^2) over all entries, floored at -300 dB (exact estimates);
    an all-zero target gives the error energy in dB."""
    err = float(((estimate.double() - target.double()) ** 2).sum())
    ref = float((target.double() ** 2).sum())
    value = 10.0 * np.log10(max(err, 1e-300) / ref) if ref > 0 else 10.0 * np.log10(max(err, 1e-300))
    return max(value, -300.0)
