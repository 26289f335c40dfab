"""Type-II error exponents of distributed binary hypothesis testing over an AWGN channel (Gaussian pairs).

The problem (Sreekumar & Gündüz, "Distributed hypothesis testing over discrete memoryless channels", IEEE Trans. IT
66(4), 2020; the Gaussian/AWGN instance worked out here):

* an *observer* sees ``X^n`` and a *decision maker* (DM) sees ``Y^n``; the pairs ``(X_i, Y_i)`` are i.i.d. with
  ``X, Y ~ N(0, 1)`` and correlation ``rho0`` under H0, ``rho1`` under H1 (``rho1 = 0``: *testing against
  independence*, TAI — the DM's Y is independent of the observer's X under H1);
* the observer has ``n`` real channel uses of an AWGN channel ``V = s + W``, ``W ~ N(0, 1/P)`` per unit-power input
  (``P`` = SNR per real channel use; per complex symbol it is the same ratio ``E|s|^2 / N0``), one per sample;
* the DM decides with type-I error ``alpha_n <= eps`` and we ask for the type-II error exponent
  ``theta = lim -1/n ln beta_n`` (Stein regime, nats per sample).

Exponents (all in nats per sample; ``sigma2 = 1/P``):

**Joint (uncoded) scheme** — the observer sends ``sqrt(P) X_i`` (analog, the simplest hybrid/JHTCC code); the DM sees
``V_i = X_i + W_i/sqrt(P)`` and the i.i.d. pairs ``(V_i, Y_i)`` are zero-mean Gaussian with covariance
``S_k = [[1 + sigma2, rho_k], [rho_k, 1]]``. By Stein's lemma the optimal (Neyman–Pearson) exponent is

    theta_J = D(N(0, S0) || N(0, S1)) = 1/2 [tr(S1^-1 S0) - 2 + ln(det S1 / det S0)],
    tr(S1^-1 S0) = 2 (1 + sigma2 - rho0 rho1) / (1 + sigma2 - rho1^2),  det S_k = 1 + sigma2 - rho_k^2,

which for TAI (rho1 = 0) is ``theta_J = -1/2 ln(1 - rho0^2 P / (1 + P))``.

**Separation, optimal (TAI only)** — Sreekumar & Gündüz (Thm. 2: for TAI, separate hypothesis testing and channel
coding is optimal): ``theta_S = max { I(U; Y) : U - X - Y, I(U; X) <= C }`` with ``C = 1/2 ln(1 + P)`` nats per channel
use. For jointly Gaussian (X, Y) the maximum is attained by a Gaussian test channel ``U = X + Q`` (the Gaussian
information bottleneck): ``I(U; X) = R`` gives ``I(U; Y) = -1/2 ln(1 - rho0^2 (1 - e^{-2R}))``. At ``R = C``,
``1 - e^{-2C} = P / (1 + P)``, so ``theta_S = theta_J``: with one channel use per sample, uncoded transmission already
reaches the optimal separation exponent (source-channel matching, as for the Gaussian MSE problem). (The DMC theorem
is applied to the Gaussian alphabets here; that extension is assumed, not proved.)

**Scalar quantize-then-code (a concrete separation scheme)** — a midtread uniform quantizer ``U = round(X / Delta)``,
ideal entropy coding and a capacity-achieving channel code: feasible while ``H(U) <= C`` (bits: ``C = 1/2 log2(1+P)``)
and, when the digital link delivers ``U^n`` without error, the DM tests the i.i.d. pairs ``(U_i, Y_i)``:

    theta_SQ = D(P0_UY || P1_UY) = sum_u  integral phi(y) g0(u, y) ln[g0(u, y) / g1(u, y)] dy,
    g_k(u, y) = Phi((b_u - rho_k y) / s_k) - Phi((a_u - rho_k y) / s_k),  s_k = sqrt(1 - rho_k^2),

``[a_u, b_u) = [(u - 1/2) Delta, (u + 1/2) Delta)``, with ``Delta`` chosen so that ``H(U) = C``. For TAI
``theta_SQ = I(U; Y) < theta_S`` (a deterministic finite-entropy U is not the Gaussian bottleneck optimum): this is where
the joint scheme beats (this) separation scheme. Channel-decoding errors can only lower ``theta_SQ``.

**Second order** (Strassen 1962): ``-ln beta_n(eps) = n theta + sqrt(n V) Phi^-1(eps) + O(ln n)`` with ``V`` the
variance of the per-sample log-likelihood ratio under H0; :func:`dispersion_joint` and :func:`sq_exponent` return V so
that finite-n results can be read against it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = [
    "ScalarQuantizer",
    "capacity_nats",
    "dispersion_joint",
    "joint_exponent",
    "log_ndtr_diff",
    "quantizer_for_rate",
    "separation_exponent_tai",
    "snr_from_db",
    "sq_exponent",
    "sq_llr",
]


def _check_rho(name: str, rho: float) -> float:
    rho = float(rho)
    if not (math.isfinite(rho) and -1.0 < rho < 1.0):
        raise ValueError(f"{name} = {rho!r}: expected a correlation strictly between -1 and 1")
    return rho


def snr_from_db(snr_db: float) -> float:
    """SNR per real channel use (linear) from dB; ValueError unless finite."""
    snr_db = float(snr_db)
    if not math.isfinite(snr_db):
        raise ValueError(f"snr_db = {snr_db!r}: expected a finite SNR in dB")
    return 10.0 ** (snr_db / 10.0)


def capacity_nats(snr: float) -> float:
    """AWGN capacity per real channel use, ``C = 1/2 ln(1 + P)`` nats."""
    return 0.5 * math.log1p(snr)


def _joint_covs(rho0: float, rho1: float, sigma2: float) -> tuple[np.ndarray, np.ndarray]:
    s0 = np.array([[1.0 + sigma2, rho0], [rho0, 1.0]])
    s1 = np.array([[1.0 + sigma2, rho1], [rho1, 1.0]])
    return s0, s1


def joint_exponent(rho0: float, snr: float, rho1: float = 0.0) -> float:
    """theta_J (nats/sample) of the uncoded scheme at SNR ``snr`` (linear, per real channel use; ``inf`` = noiseless).

    ``D(N(0,S0)||N(0,S1))``, ``S_k = [[1 + 1/snr, rho_k], [rho_k, 1]]`` (see the module docstring).
    """
    rho0, rho1 = _check_rho("rho0", rho0), _check_rho("rho1", rho1)
    if not snr > 0:
        raise ValueError(f"snr = {snr!r}: expected a linear SNR > 0")
    sigma2 = 0.0 if math.isinf(snr) else 1.0 / snr
    det0, det1 = 1.0 + sigma2 - rho0 ** 2, 1.0 + sigma2 - rho1 ** 2
    tr = 2.0 * (1.0 + sigma2 - rho0 * rho1) / det1
    return 0.5 * (tr - 2.0 + math.log(det1 / det0))


def dispersion_joint(rho0: float, snr: float, rho1: float = 0.0) -> float:
    """Variance under H0 of the per-sample LLR of the uncoded scheme: ``1/2 tr((I - S1^-1 S0)^2)``.

    (LLR ``= c - 1/2 z^T (S0^-1 - S1^-1) z`` and ``Var[z^T A z] = 2 tr((A S0)^2)`` for ``z ~ N(0, S0)``.)
    """
    rho0, rho1 = _check_rho("rho0", rho0), _check_rho("rho1", rho1)
    sigma2 = 0.0 if math.isinf(snr) else 1.0 / snr
    s0, s1 = _joint_covs(rho0, rho1, sigma2)
    m = np.eye(2) - np.linalg.solve(s1, s0)
    return float(0.5 * np.trace(m @ m))


def separation_exponent_tai(rho0: float, snr: float, channel_uses_per_sample: float = 1.0) -> float:
    """theta_S of the optimal separation scheme for TAI: ``-1/2 ln(1 - rho0^2 (1 - e^{-2 b C}))``, ``b`` channel uses
    per sample (Sreekumar & Gündüz Thm. 2 with the Gaussian bottleneck; equals :func:`joint_exponent` at b = 1)."""
    rho0 = _check_rho("rho0", rho0)
    b = float(channel_uses_per_sample)
    if not b > 0:
        raise ValueError(f"channel_uses_per_sample = {b!r}: expected > 0")
    r = b * capacity_nats(snr)
    return -0.5 * math.log1p(-rho0 ** 2 * -math.expm1(-2.0 * r))


def log_ndtr_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``ln(Phi(b) - Phi(a))`` for ``b > a`` elementwise, accurate in both tails (float64)."""
    from scipy.special import log_ndtr

    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    flip = a > 0  # Phi(b) - Phi(a) = Phi(-a) - Phi(-b): keep both arguments in the accurate lower tail
    lo = np.where(flip, -b, a)
    hi = np.where(flip, -a, b)
    lhi = log_ndtr(hi)
    with np.errstate(divide="ignore"):
        return lhi + np.log1p(-np.exp(log_ndtr(lo) - lhi))


@dataclasses.dataclass(frozen=True)
class ScalarQuantizer:
    """Midtread uniform quantizer ``U = round(X / step)`` (integer indices, unbounded: entropy-coded)."""

    step: float

    def __post_init__(self):
        if not (math.isfinite(self.step) and self.step > 0):
            raise ValueError(f"step = {self.step!r}: expected a finite quantizer step > 0")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x float [...] -> int64 indices [...]."""
        return np.rint(np.asarray(x, np.float64) / self.step).astype(np.int64)

    def cells(self, tail: float = 12.0) -> np.ndarray:
        """Indices whose cells meet ``[-tail, tail]`` (the rest has probability < Phi(-tail) ~ 1e-33)."""
        k = math.ceil(tail / self.step + 0.5)
        return np.arange(-k, k + 1)

    def edges(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.asarray(u, np.float64)
        return (u - 0.5) * self.step, (u + 0.5) * self.step

    def entropy_bits(self) -> float:
        """H(U) in bits for X ~ N(0, 1)."""
        a, b = self.edges(self.cells())
        lp = log_ndtr_diff(a, b)
        p = np.exp(lp)
        return float(-np.sum(p * lp) / math.log(2.0))


def quantizer_for_rate(rate_bits: float) -> ScalarQuantizer:
    """The midtread uniform quantizer of N(0, 1) whose output entropy is ``rate_bits`` (> 0), by bisection on the step
    (H(U) falls monotonically as the step grows)."""
    from scipy.optimize import brentq

    rate_bits = float(rate_bits)
    if not (math.isfinite(rate_bits) and 0 < rate_bits < 20):
        raise ValueError(f"rate_bits = {rate_bits!r}: expected a rate in (0, 20) bits per sample")
    f = lambda lstep: ScalarQuantizer(math.exp(lstep)).entropy_bits() - rate_bits
    # bracket around the high-rate approximation H = h(X) - log2(step), h(X) = 1/2 log2(2 pi e) = 2.047 bits
    guess = math.log(2.0) * (0.5 * math.log2(2 * math.pi * math.e) - rate_bits)
    lo, hi = guess - math.log(4.0), max(guess + math.log(4.0), math.log(60.0))
    while f(lo) < 0:
        lo -= math.log(4.0)
    return ScalarQuantizer(math.exp(brentq(f, lo, hi, xtol=1e-12)))


def sq_llr(u: np.ndarray, y: np.ndarray, q: ScalarQuantizer, rho0: float, rho1: float = 0.0) -> np.ndarray:
    """Per-sample LLR ``ln g0(u, y) - ln g1(u, y)`` of the DM that sees quantizer index u and its own y (module
    docstring; the cell probability P(u) cancels because X has the same law under both hypotheses)."""
    a, b = q.edges(u)
    y = np.asarray(y, np.float64)
    s0, s1 = math.sqrt(1 - rho0 ** 2), math.sqrt(1 - rho1 ** 2)
    l0 = log_ndtr_diff((a - rho0 * y) / s0, (b - rho0 * y) / s0)
    if rho1 == 0.0:   # g1(u, y) = P(u): one evaluation per distinct index
        uniq, inv = np.unique(np.asarray(u), return_inverse=True)
        ua, ub = q.edges(uniq)
        return l0 - log_ndtr_diff(ua, ub)[inv].reshape(np.shape(u))
    l1 = log_ndtr_diff((a - rho1 * y) / s1, (b - rho1 * y) / s1)
    return l0 - l1


def sq_exponent(rho0: float, q: ScalarQuantizer, rho1: float = 0.0, grid: int = 2001,
                tail: float = 10.0) -> tuple[float, float]:
    """(theta_SQ, V_SQ): ``D(P0_UY || P1_UY)`` and the variance of the per-sample LLR under H0, nats.

    Numerical integration over y (trapezoid on ``grid`` points of ``[-tail, tail]``) and a sum over the cells
    (module docstring formula).
    """
    rho0, rho1 = _check_rho("rho0", rho0), _check_rho("rho1", rho1)
    y = np.linspace(-tail, tail, grid)
    u = q.cells(tail + 2.0)[:, None]
    a, b = q.edges(u)
    s0 = math.sqrt(1 - rho0 ** 2)
    lg0 = log_ndtr_diff((a - rho0 * y) / s0, (b - rho0 * y) / s0)       # [U, Y]
    llr = sq_llr(u, y[None, :], q, rho0, rho1)
    w = np.exp(lg0 - 0.5 * y ** 2) / math.sqrt(2 * math.pi)           # joint density of (u, y) under H0
    ok = w > 0
    m1 = np.trapezoid(np.where(ok, w * llr, 0.0).sum(0), y)
    m2 = np.trapezoid(np.where(ok, w * llr ** 2, 0.0).sum(0), y)
    return float(m1), float(m2 - m1 ** 2)
