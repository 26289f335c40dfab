"""Straggling: per-iteration compute time of a worker, shifted exponential per unit of work, and the theoretical
expected completion time of each scheme from the order statistics of that model.

A worker with shift a and rate mu needs, for a load of l partitions (l may be fractional: Lagrange coding's coded
block), T = l a + Gamma(l, 1/mu): l i.i.d. shifted exponentials summed (Lee et al. 2018; Tandon et al. 2017 Sec. 7
use the same shifted-exponential model). CDF F(t) = GammaCDF(t - l a; shape l, scale 1/mu).

Expected completion E[T] = integral_0^inf P(T > t) dt, evaluated on a fine grid (trapezoid), with
* wait for all: P(T <= t) = prod_i F_i(t);
* wait for any k of N (wait-k, cyclic gradient code with k = N - s, Lagrange with k = (K-1) deg + 1): the Poisson-
  binomial probability that at least k of the independent, non-identical F_i(t) have happened (exact DP);
* fractional repetition: every group has one finished worker: prod_g (1 - prod_{i in g} (1 - F_i(t)));
* multi-message: worker i finishes its j-th message at S_ij = j a_i + Gamma(j, 1/mu_i); done when every partition is
  covered; P(done by t) by exact enumeration of the numbers of messages J_i(t) in {0..r} of all workers
  ((r+1)^N states; 65,536 for N = 8, r = 3);
* coded multi-message: done when the workers' messages add up to k, whoever sent them: P(sum_i J_i(t) >= k), the
  distribution of the sum by convolving the independent J_i(t) (exact DP).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ShiftedExponential:
    """Per unit of load: shift ``shift`` seconds plus Exp(rate) (mean 1/rate seconds)."""

    shift: float
    rate: float

    def __post_init__(self):
        if not self.shift >= 0 or not self.rate > 0:
            raise ValueError(f"shift = {self.shift}, rate = {self.rate}: expected shift >= 0 s and rate > 0 /s")

    def sample(self, rng: np.random.Generator, load: float = 1.0) -> float:
        """Seconds to compute ``load`` partitions."""
        return load * self.shift + float(rng.gamma(load, 1.0 / self.rate))

    def cdf(self, t: np.ndarray, load: float = 1.0) -> np.ndarray:
        from scipy import stats   # imported here: worker processes only sample, and start faster without scipy
        return stats.gamma.cdf(np.asarray(t, np.float64) - load * self.shift, a=load, scale=1.0 / self.rate)

    def mean(self, load: float = 1.0) -> float:
        return load * (self.shift + 1.0 / self.rate)


def with_message_overhead(delays: list[ShiftedExponential], overhead_s: float, load: float
                          ) -> list[ShiftedExponential]:
    """The delay models with a constant ``overhead_s`` added to every message of ``load`` partitions (a transport's
    per-message cost as an extra shift: l (a + c / l) + Gamma(l, 1/mu) = l a + c + Gamma(l, 1/mu)); a worker's j-th
    message in a row then pays j c, as on a runtime that handles one message at a time."""
    if not overhead_s >= 0 or not load > 0:
        raise ValueError(f"overhead {overhead_s} s per message of load {load}: expected overhead >= 0 and load > 0")
    return [ShiftedExponential(d.shift + overhead_s / load, d.rate) for d in delays]


def _grid(delays: list[ShiftedExponential], load: float, points: int = 20001) -> np.ndarray:
    from scipy import stats
    t_max = max(d.shift * load + stats.gamma.ppf(1 - 1e-12, a=load, scale=1 / d.rate) for d in delays)
    return np.linspace(0.0, t_max, points)


def _expectation(t: np.ndarray, cdf: np.ndarray) -> float:
    return float(np.trapezoid(1.0 - cdf, t))


def at_least_k(probs: np.ndarray, k: int) -> np.ndarray:
    """P(at least k of independent events happen) for probs float[N, T] (Poisson binomial, exact DP): float[T]."""
    n = probs.shape[0]
    dist = np.zeros((n + 1, probs.shape[1]))
    dist[0] = 1.0
    for p in probs:
        dist[1:] = dist[1:] * (1 - p) + dist[:-1] * p
        dist[0] = dist[0] * (1 - p)
    return dist[k:].sum(0)


def expected_kth(delays: list[ShiftedExponential], load: float, k: int) -> float:
    """E of the time the k-th of N workers (each computing ``load``) finishes."""
    if not 1 <= k <= len(delays):
        raise ValueError(f"k = {k}: expected 1 <= k <= N = {len(delays)}")
    t = _grid(delays, load)
    return _expectation(t, at_least_k(np.stack([d.cdf(t, load) for d in delays]), k))


def expected_groups(delays: list[ShiftedExponential], load: float, groups: list[list[int]]) -> float:
    """E of the time every group has at least one finished worker (fractional repetition)."""
    t = _grid(delays, load)
    f = np.stack([d.cdf(t, load) for d in delays])
    done = np.ones_like(t)
    for g in groups:
        done *= 1.0 - np.prod(1.0 - f[g], axis=0)
    return _expectation(t, done)


def _message_counts(delays: list[ShiftedExponential], load: float, r: int, t: np.ndarray) -> np.ndarray:
    """P(J_i(t) = j) float[N, r + 1, T]: worker i has finished exactly j of its messages (each ``load`` units) by t;
    the j-th finishes at S_ij = j load a_i + Gamma(j load, 1/mu_i), S_i0 = 0."""
    done_by = np.stack([np.stack([np.ones_like(t)] + [d.cdf(t, j * load) for j in range(1, r + 1)]) for d in delays])
    pj = done_by.copy()
    pj[:, :-1] -= done_by[:, 1:]
    return pj


def expected_total_messages(delays: list[ShiftedExponential], load: float, per_worker: int, k: int) -> float:
    """E of the time the N workers, each sending ``per_worker`` messages of ``load`` units in a row, have sent k
    messages in all (coded multi-message)."""
    if not 1 <= k <= len(delays) * per_worker:
        raise ValueError(f"k = {k}: expected 1 <= k <= N r = {len(delays) * per_worker}")
    t = _grid(delays, load * per_worker)
    pj = _message_counts(delays, load, per_worker, t)
    total = np.zeros((1, len(t)))
    total[0] = 1.0
    for p in pj:                                   # convolve the count distributions worker by worker
        new = np.zeros((total.shape[0] + per_worker, len(t)))
        for j in range(per_worker + 1):
            new[j:j + total.shape[0]] += total * p[j]
        total = new
    return _expectation(t, total[k:].sum(0))


def expected_multi_message(delays: list[ShiftedExponential], assignment: list[list[int]], parts: int) -> float:
    """E of the time every partition has arrived, when worker i sends the partitions ``assignment[i]`` one message
    each, in order (exact enumeration of the message counts; module docstring)."""
    n, r = len(delays), max(len(a) for a in assignment)
    t = _grid(delays, float(r))
    pj = _message_counts(delays, 1.0, r, t)      # P(J_i(t) = j) = P(S_ij <= t) - P(S_i,j+1 <= t)
    covered = []
    for counts in itertools.product(range(r + 1), repeat=n):
        got = {p for i, c in enumerate(counts) for p in assignment[i][:c]}
        covered.append(len(got) == parts)
    covered = np.array(covered).reshape((r + 1,) * n)
    # sum over states of prod_i P(J_i = c_i) * covered: contract one worker axis at a time, in chunks of t
    cov = covered.astype(np.float64)
    done = np.empty(len(t))
    for start in range(0, len(t), 256):
        sl = slice(start, start + 256)
        acc = cov[..., None] * np.ones(len(t[sl]))
        for i in range(n):
            acc = np.einsum("j...t,jt->...t", acc, pj[i][:, sl])
        done[sl] = acc
    return _expectation(t, done)
