"""(epsilon, delta) of a sequence of Gaussian mechanisms, composed with Google's ``dp-accounting`` RDP accountant.

A Gaussian mechanism releases f(D) + N(0, sigma^2 I) with L2 sensitivity Delta = max ||f(D) - f(D')|| over
neighbouring D, D'; its noise multiplier is z = sigma / Delta, and its Renyi DP at order a is a / (2 z^2)
(Mironov 2017, Prop. 7). Rounds compose by adding RDP; (epsilon, delta) comes from dp-accounting's conversion
(Canonne, Kamath, Steinke 2020 / Asoodeh et al.: eps = min_a rdp(a) + log1p(-1/a) - (log delta + log a)/(a - 1)).
We use the library rather than our own conversion: it is the maintained, reviewed implementation.
"""

from __future__ import annotations

import math


def _dp():
    """dp-accounting, imported when an account is first kept: it pulls in scipy.stats and scipy.signal (seconds on
    a busy host), which every process importing learning.feel (a cell's ClientApp, one per message) would pay."""
    import dp_accounting

    return dp_accounting


def _fresh():
    from dp_accounting.rdp import RdpAccountant

    return RdpAccountant()


class PrivacyAccountant:
    """Running account of one training run: :meth:`step` once per round with that round's noise multiplier z_t
    (z = inf: the round released nothing about the data; z = 0: an exact release, epsilon becomes infinite).
    ``delta`` is the delta of the (epsilon, delta) guarantee reported."""

    def __init__(self, delta: float = 1e-5):
        if not 0 < delta < 1:
            raise ValueError(f"delta = {delta}: expected 0 < delta < 1")
        self.delta = float(delta)
        self._acc = _fresh()
        self.rounds = 0
        self.exact_release = False

    def step(self, noise_multiplier: float) -> float:
        """Compose one round with noise multiplier z = sigma / Delta (>= 0); returns epsilon after it."""
        if not noise_multiplier >= 0:
            raise ValueError(f"noise_multiplier = {noise_multiplier}: expected >= 0")
        self.rounds += 1
        if noise_multiplier == 0:
            self.exact_release = True
        elif math.isfinite(noise_multiplier):
            self._acc.compose(_dp().GaussianDpEvent(noise_multiplier))
        return self.epsilon()

    def epsilon(self) -> float:
        """Epsilon at ``delta`` of everything composed so far (inf after an exact release, 0 before any round)."""
        if self.exact_release:
            return math.inf
        return float(self._acc.get_epsilon(self.delta))


def gaussian_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """Epsilon of ``rounds`` Gaussian mechanisms with multiplier z, at ``delta`` (dp-accounting RDP)."""
    if rounds < 0:
        raise ValueError(f"rounds = {rounds}: expected >= 0")
    if noise_multiplier == 0:
        return math.inf if rounds else 0.0
    acc = _fresh()
    acc.compose(_dp().GaussianDpEvent(noise_multiplier), rounds)
    return float(acc.get_epsilon(delta))


def noise_multiplier_for(target_epsilon: float, delta: float, rounds: int, tol: float = 1e-6) -> float:
    """Smallest z with gaussian_epsilon(z, rounds, delta) <= target_epsilon (bisection; epsilon falls as z grows)."""
    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon = {target_epsilon}: expected > 0")
    if rounds < 1:
        raise ValueError(f"rounds = {rounds}: expected >= 1")
    lo, hi = 0.0, 1.0
    while gaussian_epsilon(hi, rounds, delta) > target_epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e6:
            raise ValueError(f"target_epsilon = {target_epsilon}: not reachable with z <= 1e6 over {rounds} rounds")
    while hi - lo > tol * hi:
        mid = 0.5 * (lo + hi)
        if gaussian_epsilon(mid, rounds, delta) > target_epsilon:
            lo = mid
        else:
            hi = mid
    return hi
