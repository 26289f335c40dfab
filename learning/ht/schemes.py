"""The two observer → decision-maker schemes of distributed hypothesis testing, and their empirical exponents.

A *scheme* turns the observer's samples into channel inputs and the DM's received values plus its own samples into the
Neyman–Pearson statistic ``S = sum_i ln p0(obs_i) / p1(obs_i)`` (decide H0 when ``S >= tau``):

* :class:`UncodedScheme` (joint): real channel input ``X_i`` (unit power per real channel use); the DM sees
  ``V_i = X_i + N(0, sigma2)`` and uses the bivariate-Gaussian LLR with the ``sigma2`` its receiver reports.
* :class:`QuantizeScheme` (separation): ``U_i = round(X_i / Delta)`` with the entropy of ``U`` set to the channel
  capacity (:func:`learning.ht.theory.quantizer_for_rate`), carried by an ideal digital link (entropy code + a
  capacity-achieving channel code: the indices arrive intact); the DM uses the exact LLR of ``(U, Y)``.

Channels follow the project's small protocol: ``channel(x) -> (v, sigma2)`` with real inputs ``x`` float64 [m, n]
(unit power per real channel use), received ``v`` [m, n] and the per-row noise variance ``sigma2`` [m] that the DM is
told. :class:`AwgnChannel` is the symbol-level simulation; ``lab`` provides the radio path.

:func:`empirical_exponent` reaches type-II errors far below what plain Monte Carlo can (e^-1000 and less) by the exact
change of measure from H1 to H0: ``beta = P1(S >= tau) = E0[e^{-S} 1{S >= tau}]`` because ``e^{-S}`` *is* the
likelihood ratio ``dP1/dP0`` of the DM's whole observation. Every trial is simulated under H0 (samples, scheme and
channel); ``tau`` is the empirical eps-quantile of S under H0 and ``beta`` the importance-sampling average. It is
unbiased whenever the DM's model is the true law of what it receives (the symbol-level AWGN channel and the ideal
digital link); over a real radio path :func:`empirical_exponent` also counts plain H1 trials so the two can be compared.
"""

from __future__ import annotations

import math

import numpy as np

from learning.ht.theory import ScalarQuantizer, _check_rho, quantizer_for_rate, sq_llr

__all__ = [
    "AwgnChannel",
    "IdealDigitalLink",
    "QuantizeScheme",
    "UncodedScheme",
    "empirical_exponent",
    "sample_pairs",
    "statistics",
]


def sample_pairs(rng: np.random.Generator, m: int, n: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) float64 [m, n]: i.i.d. standard Gaussian pairs with correlation ``rho``."""
    rho = _check_rho("rho", rho)
    x = rng.standard_normal((m, n))
    y = rho * x + math.sqrt(1.0 - rho * rho) * rng.standard_normal((m, n))
    return x, y


class AwgnChannel:
    """Symbol-level AWGN at ``snr_db`` per real channel use: ``v = x + N(0, 10^(-snr_db/10))``; reports that variance.

    Inputs must be finite; the noise comes from ``rng`` (deterministic for a seeded generator).
    """

    def __init__(self, snr_db: float, rng: np.random.Generator):
        snr_db = float(snr_db)
        if not math.isfinite(snr_db):
            raise ValueError(f"snr_db = {snr_db!r}: expected a finite SNR in dB")
        self.snr_db, self.rng = snr_db, rng
        self.sigma2 = 10.0 ** (-snr_db / 10.0)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError("channel input contains non-finite values; expected finite reals")
        v = x + math.sqrt(self.sigma2) * self.rng.standard_normal(x.shape)
        return v, np.full(x.shape[0], self.sigma2)


class IdealDigitalLink:
    """An error-free digital link (entropy coding + a capacity-achieving code, at a rate the caller checked)."""

    def __call__(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return u, np.zeros(len(u))


class UncodedScheme:
    """Joint (uncoded) scheme: the observer sends its samples as they are; the DM's optimal test on ``(V, Y)``.

    Args:
        rho0, rho1: correlation of (X, Y) under H0 and H1.
    """

    name = "joint"

    def __init__(self, rho0: float, rho1: float = 0.0):
        self.rho0, self.rho1 = _check_rho("rho0", rho0), _check_rho("rho1", rho1)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """x float [m, n] -> real channel inputs [m, n] (unit power per channel use, as X ~ N(0, 1))."""
        return np.asarray(x, np.float64)

    def statistic(self, v: np.ndarray, sigma2: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``S = sum_i ln N((v_i, y_i); 0, S0) / N((v_i, y_i); 0, S1)``, ``S_k = [[1 + sigma2, rho_k], [rho_k, 1]]``,
        per row (``sigma2`` [m] the noise variance each row's receiver reported). Returns float64 [m]."""
        v, y = np.asarray(v, np.float64), np.asarray(y, np.float64)
        s2 = np.asarray(sigma2, np.float64).reshape(-1, 1)
        n = v.shape[1]
        svv, syy, svy = (v * v).sum(1, keepdims=True), (y * y).sum(1, keepdims=True), (v * y).sum(1, keepdims=True)
        out = np.zeros((v.shape[0], 1))
        for sign, rho in ((1.0, self.rho0), (-1.0, self.rho1)):
            det = 1.0 + s2 - rho * rho
            # z^T S^-1 z with S^-1 = [[1, -rho], [-rho, 1 + s2]] / det
            quad = (svv - 2.0 * rho * svy + (1.0 + s2) * syy) / det
            out += sign * (-0.5 * n * np.log(det) - 0.5 * quad)
        return out[:, 0]


class QuantizeScheme:
    """Separation: scalar quantizer at entropy ``rate_bits`` (default: the capacity at ``snr_db``) + ideal digital link.

    Args:
        rho0, rho1: correlation under H0 / H1.
        snr_db: the channel SNR that sets the rate, ``C = 1/2 log2(1 + 10^(snr_db/10))`` bits per channel use (one
            channel use per sample); or give ``rate_bits`` directly.
    """

    name = "separation-sq"

    def __init__(self, rho0: float, rho1: float = 0.0, snr_db: float | None = None, rate_bits: float | None = None):
        self.rho0, self.rho1 = _check_rho("rho0", rho0), _check_rho("rho1", rho1)
        if (snr_db is None) == (rate_bits is None):
            raise ValueError("QuantizeScheme: give exactly one of snr_db and rate_bits")
        if rate_bits is None:
            rate_bits = 0.5 * math.log2(1.0 + 10.0 ** (float(snr_db) / 10.0))
        self.rate_bits = float(rate_bits)
        self.quantizer: ScalarQuantizer = quantizer_for_rate(self.rate_bits)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """x float [m, n] -> quantizer indices int64 [m, n]."""
        return self.quantizer(x)

    def statistic(self, u: np.ndarray, sigma2: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``S = sum_i ln g0(u_i, y_i) / g1(u_i, y_i)`` per row (:func:`learning.ht.theory.sq_llr`). float64 [m]."""
        return sq_llr(u, y, self.quantizer, self.rho0, self.rho1).sum(1)


def statistics(scheme, channel, rho: float, n: int, trials: int, rng: np.random.Generator,
               max_chunk_values: int = 1 << 21) -> np.ndarray:
    """The DM's statistic S float64 [trials] for ``trials`` independent blocks of ``n`` samples with correlation
    ``rho`` (the hypothesis simulated), sent through ``scheme`` and ``channel`` in chunks of bounded memory."""
    n, trials = int(n), int(trials)
    if n < 1 or trials < 1:
        raise ValueError(f"n = {n}, trials = {trials}: expected both >= 1")
    out = np.empty(trials)
    chunk = max(1, max_chunk_values // n)
    for start in range(0, trials, chunk):
        m = min(chunk, trials - start)
        x, y = sample_pairs(rng, m, n, rho)
        received, sigma2 = channel(scheme.encode(x))
        out[start:start + m] = scheme.statistic(received, sigma2, y)
    return out


def exponent_from_statistics(s0: np.ndarray, n: int, eps: float, s1: np.ndarray | None = None) -> dict:
    """Threshold and type-II error from H0 statistics ``s0`` [M] (and optionally H1 statistics ``s1``).

    ``tau`` = empirical eps-quantile of s0 (decide H1 when S < tau); ``log_beta`` = ln of the importance-sampling
    estimate ``mean(e^{-s0} 1{s0 >= tau})``; ``exponent`` = ``-log_beta / n`` nats per sample; ``log_beta_rel_se``:
    relative standard error of the IS estimate. With ``s1``: ``beta_mc`` = fraction of s1 >= tau (plain Monte Carlo).
    """
    from scipy.special import logsumexp

    s0 = np.asarray(s0, np.float64)
    if not np.all(np.isfinite(s0)):
        raise ValueError(f"s0 has {int(np.sum(~np.isfinite(s0)))} non-finite statistics; drop them first")
    eps = float(eps)
    if not 0 < eps < 1:
        raise ValueError(f"eps = {eps!r}: expected a type-I error in (0, 1)")
    tau = float(np.quantile(s0, eps))
    keep = s0 >= tau
    lw = -s0[keep]
    log_beta = float(logsumexp(lw) - math.log(s0.size))
    w = np.exp(lw - lw.max())
    # relative standard error of mean(e^-S 1{S>=tau}) over all M trials (zeros included)
    m = s0.size
    mean_w = w.sum() / m
    rel_se = float(np.sqrt(max((w ** 2).sum() / m - mean_w ** 2, 0.0) / m) / mean_w)
    out = {"n": int(n), "trials": int(m), "eps": eps, "tau": tau, "type1": float(np.mean(s0 < tau)),
           "log_beta": log_beta, "exponent": -log_beta / n, "log_beta_rel_se": rel_se}
    if s1 is not None:
        s1 = np.asarray(s1, np.float64)
        out.update(trials_h1=int(s1.size), beta_mc=float(np.mean(s1 >= tau)))
    return out


def empirical_exponent(scheme, channel, n: int, trials: int, eps: float, rng: np.random.Generator,
                       h1_trials: int = 0) -> dict:
    """Empirical type-II exponent of ``scheme`` over ``channel`` at type-I error ``eps`` (module docstring):
    :func:`exponent_from_statistics` of ``trials`` H0 blocks (and ``h1_trials`` plain H1 blocks)."""
    s0 = statistics(scheme, channel, scheme.rho0, n, trials, rng)
    s1 = statistics(scheme, channel, scheme.rho1, n, h1_trials, rng) if h1_trials else None
    return exponent_from_statistics(s0, n, eps, s1)
