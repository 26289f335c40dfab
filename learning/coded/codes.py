"""Straggler-tolerant schemes for distributed gradient descent: who computes what, and how the master decodes.

Data: N row partitions (X_j, y_j) of a least-squares problem (learning.coded.problem); the full gradient is
g = sum_j g_j, g_j = X_j^T (X_j w - y_j) / n. Each worker runs a list of *tasks* in order and sends one message per
task as soon as it is done; a task is a list of (coefficient, X, y) blocks and a load in partition units (its compute
time follows learning.coded.delays). The master calls ``decodable`` on the messages received so far and ``decode``
once it holds enough.

* ``uncoded``: worker i computes g_i; wait for all N.
* ``uncoded-wait-k``: the same, but stop at the first k and use (N/k) sum of them (biased: Tandon et al. 2017 Sec. 1's
  "ignore the stragglers" baseline).
* ``gradient-coding-fr``: fractional repetition (Tandon et al. 2017, Sec. 3.1): (s+1) | N, the workers form N/(s+1)
  groups; every worker of group G computes sum_{j in G's s+1 partitions} g_j; the master needs one worker per group.
* ``gradient-coding-cyclic``: cyclic repetition (Tandon et al. 2017, Alg. 2): worker i holds partitions i..i+s (mod N)
  and sends b_i^T [g_1..g_N] with B's rows in the null space of a random H (s x N, H 1 = 0); any N - s rows span 1,
  so the master solves a^T B_F = 1^T for the first N - s workers F.
* ``lcc``: Lagrange coded computing (Yu et al. 2019) for the linear-regression gradient: the rows split into K blocks,
  worker i holds X~_i = sum_j X_j l_j(alpha_i) (and y~_i likewise), l_j the Lagrange basis on beta_1..beta_K, and
  returns f(X~_i, y~_i) = X~_i^T (X~_i w - y~_i) / n, a polynomial of degree 2 in the data, so f(u(z)) has degree
  2(K-1): any k = 2K - 1 results interpolate it, and sum_j f(u(beta_j)) = g.
* ``multi-message``: uncoded multi-message communication (Ozfatura, Ulukus, Gündüz 2020): worker i computes the
  partitions i, i+1, ..., i+r-1 (mod N) in this order and sends each g_j as it finishes; the master stops when every
  partition has arrived once: a straggler's early messages still count.
* ``multi-message-coded``: coded multi-message with Lagrange coding (least squares): worker i sends r coded results
  one by one, and any 2K - 1 messages from any workers decode (:class:`LagrangeMultiMessage`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from learning.coded.delays import (ShiftedExponential, expected_groups, expected_kth, expected_multi_message,
                                   expected_total_messages)
from learning.coded.problem import KINDS

SCHEMES = ("uncoded", "uncoded-wait-k", "gradient-coding-fr", "gradient-coding-cyclic", "lcc", "multi-message",
           "multi-message-coded")


@dataclass
class Task:
    """One message's work: blocks [(coef, X, y)], load in partition units. Result: sum_b coef_b X_b^T(X_b w - y_b)/n."""

    blocks: list[tuple[float, np.ndarray, np.ndarray]]
    load: float


class Code(ABC):
    """A scheme over N workers. ``tasks(parts)`` -> per worker, its ordered list of Tasks."""

    name = ""
    exact = True   # decode gives the exact full gradient
    #: problem kinds (learning.coded.problem.KINDS) whose gradient the scheme decodes: linear combinations of block
    #: gradients work for any loss; Lagrange coding needs a polynomial of the data
    kinds: tuple[str, ...] = KINDS

    def __init__(self, workers: int):
        if workers < 1:
            raise ValueError(f"workers = {workers}: expected >= 1")
        self.n = int(workers)

    @abstractmethod
    def tasks(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> list[list[Task]]:
        """The work of every worker, from the N data partitions."""

    @abstractmethod
    def decodable(self, got: dict[tuple[int, int], np.ndarray]) -> bool:
        """Whether the messages ``got`` {(worker, task index): vector} suffice."""

    @abstractmethod
    def decode(self, got: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
        """The gradient estimate from ``got`` (decodable)."""

    def theory_completion(self, delays: list[ShiftedExponential]) -> float:
        """Expected seconds from broadcast to decodable under the delay model (order statistics; delays module)."""
        return expected_kth(delays, self.tasks_load(), self.n)

    def tasks_load(self) -> float:
        return 1.0

    def needed(self, got: dict[tuple[int, int], np.ndarray], alive: set[int]) -> list[int]:
        """Workers whose messages could still complete the iteration (for reporting who the master waits on)."""
        return sorted(alive - {w for w, _ in got})


class Uncoded(Code):
    name = "uncoded"

    def tasks(self, parts):
        return [[Task([(1.0, x, y)], 1.0)] for x, y in parts]

    def decodable(self, got):
        return len(got) == self.n

    def decode(self, got):
        return sum(got.values())


class UncodedWaitK(Uncoded):
    name = "uncoded-wait-k"
    exact = False

    def __init__(self, workers: int, k: int):
        super().__init__(workers)
        if not 1 <= k <= workers:
            raise ValueError(f"k = {k}: expected 1 <= k <= N = {workers}")
        self.k = int(k)

    def decodable(self, got):
        return len(got) >= self.k

    def theory_completion(self, delays):
        return expected_kth(delays, 1.0, self.k)

    def decode(self, got):
        return sum(got.values()) * (self.n / len(got))


class FractionalRepetition(Code):
    name = "gradient-coding-fr"

    def __init__(self, workers: int, stragglers: int):
        super().__init__(workers)
        if stragglers < 0 or workers % (stragglers + 1):
            raise ValueError(f"stragglers s = {stragglers}: expected s + 1 to divide N = {workers}")
        self.s = int(stragglers)
        self.groups = [list(range(g, g + self.s + 1)) for g in range(0, workers, self.s + 1)]

    def tasks(self, parts):
        out = []
        for i in range(self.n):
            g = i // (self.s + 1)
            out.append([Task([(1.0, *parts[j]) for j in self.groups[g]], float(self.s + 1))])
        return out

    def theory_completion(self, delays):
        return expected_groups(delays, float(self.s + 1), self.groups)

    def decodable(self, got):
        have = {w // (self.s + 1) for w, _ in got}
        return len(have) == len(self.groups)

    def decode(self, got):
        first: dict[int, np.ndarray] = {}
        for (w, _), v in got.items():
            first.setdefault(w // (self.s + 1), v)
        return sum(first.values())


def cyclic_matrix(workers: int, stragglers: int, seed: int = 0) -> np.ndarray:
    """B float64[N, N] of cyclic-repetition gradient coding (Tandon et al. 2017, Alg. 2): row i supported on columns
    i..i+s (mod N), B[i, i] = 1, every row in null(H) for a random H (s x N) with H 1 = 0."""
    n, s = workers, stragglers
    b = np.zeros((n, n))
    if s == 0:
        return np.eye(n)
    rng = np.random.default_rng([seed, 81])
    h = rng.standard_normal((s, n))
    h[:, -1] = -h[:, :-1].sum(1)
    for i in range(n):
        cols = [(i + j) % n for j in range(s + 1)]
        b[i, cols[0]] = 1.0
        b[i, cols[1:]] = np.linalg.solve(h[:, cols[1:]], -h[:, cols[0]])
    return b


class CyclicRepetition(Code):
    name = "gradient-coding-cyclic"

    def __init__(self, workers: int, stragglers: int, seed: int = 0):
        super().__init__(workers)
        if not 0 <= stragglers < workers:
            raise ValueError(f"stragglers s = {stragglers}: expected 0 <= s < N = {workers}")
        self.s = int(stragglers)
        self.b = cyclic_matrix(workers, stragglers, seed)

    def tasks(self, parts):
        out = []
        for i in range(self.n):
            cols = [(i + j) % self.n for j in range(self.s + 1)]
            out.append([Task([(float(self.b[i, c]), *parts[c]) for c in cols], float(self.s + 1))])
        return out

    def decodable(self, got):
        return len(got) >= self.n - self.s

    def theory_completion(self, delays):
        return expected_kth(delays, float(self.s + 1), self.n - self.s)

    def decode(self, got):
        workers = sorted(w for w, _ in got)[: self.n - self.s]
        bf = self.b[workers]                                   # [N-s, N]
        a = np.linalg.lstsq(bf.T, np.ones(self.n), rcond=None)[0]
        return sum(a_i * got[(w, 0)] for a_i, w in zip(a, workers))


class LagrangeCode(Code):
    """Lagrange coded computing for the least-squares gradient (degree 2 in the data): K blocks, recovery threshold
    k = 2(K-1) + 1. Evaluation points: beta = Chebyshev nodes of the first kind on [-1, 1], alpha = N equispaced
    points on [-1, 1] shifted off the betas (interpolation in float64 stays accurate at these small degrees)."""

    name = "lcc"
    degree = 2
    kinds = ("least-squares",)

    def __init__(self, workers: int, blocks: int):
        super().__init__(workers)
        if blocks < 1:
            raise ValueError(f"blocks K = {blocks}: expected >= 1")
        self.k_blocks = int(blocks)
        self.threshold = (blocks - 1) * self.degree + 1
        if self.threshold > workers:
            raise ValueError(f"blocks K = {blocks}: recovery threshold {self.threshold} exceeds N = {workers}")
        self.beta = np.cos((2 * np.arange(blocks) + 1) * np.pi / (2 * blocks))
        self.alpha = np.linspace(-1, 1, workers) * 0.999 + 0.5 / (workers * blocks)
        if np.min(np.abs(self.alpha[:, None] - self.beta[None, :])) < 1e-6:
            raise ValueError("evaluation points collide")

    @staticmethod
    def basis(nodes: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Lagrange basis l_j(at_i) on ``nodes``: float64[len(at), len(nodes)]."""
        at = np.asarray(at, np.float64)
        out = np.ones((len(at), len(nodes)))
        for j, bj in enumerate(nodes):
            for m, bm in enumerate(nodes):
                if m != j:
                    out[:, j] *= (at - bm) / (bj - bm)
        return out

    def tasks(self, parts):
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        if x.shape[0] % self.k_blocks:
            raise ValueError(f"{x.shape[0]} rows: expected a multiple of K = {self.k_blocks} blocks")
        xb, yb = np.split(x, self.k_blocks), np.split(y, self.k_blocks)
        enc = self.basis(self.beta, self.alpha)                     # [N, K]
        load = len(parts) / self.k_blocks                           # rows per worker / rows per partition
        return [[Task([(1.0, np.tensordot(enc[i], np.stack(xb), 1), enc[i] @ np.stack(yb))], load)]
                for i in range(self.n)]

    def decodable(self, got):
        return len(got) >= self.threshold

    def theory_completion(self, delays):
        return expected_kth(delays, self.n / self.k_blocks, self.threshold)

    def decode(self, got):
        workers = sorted(w for w, _ in got)[: self.threshold]
        lag = self.basis(self.alpha[workers], self.beta)           # [K, k]: interpolate, evaluate at the betas
        vals = np.stack([got[(w, 0)] for w in workers])            # [k, p]
        return (lag @ vals).sum(0)


class MultiMessage(Code):
    name = "multi-message"

    def __init__(self, workers: int, per_worker: int):
        super().__init__(workers)
        if not 1 <= per_worker <= workers:
            raise ValueError(f"per_worker r = {per_worker}: expected 1 <= r <= N = {workers}")
        self.r = int(per_worker)
        self.assignment = [[(i + j) % workers for j in range(per_worker)] for i in range(workers)]

    def tasks(self, parts):
        return [[Task([(1.0, *parts[p])], 1.0) for p in self.assignment[i]] for i in range(self.n)]

    def _first(self, got):
        first: dict[int, np.ndarray] = {}
        for (w, j), v in got.items():
            first.setdefault(self.assignment[w][j], v)
        return first

    def decodable(self, got):
        return len(self._first(got)) == self.n

    def theory_completion(self, delays):
        return expected_multi_message(delays, self.assignment, self.n)

    def decode(self, got):
        return sum(self._first(got).values())


class LagrangeMultiMessage(LagrangeCode):
    """Coded multi-message (Ozfatura, Ulukus, Gündüz 2020 with Lagrange coding, Yu et al. 2019): the rows split into
    K blocks; worker i holds r coded blocks X~_{i,j} = sum_b X_b l_b(alpha_{i,j}) and sends f(X~_{i,j}) as each one
    finishes. Every message is an evaluation of the same degree-2(K-1) polynomial f(u(z)), so ANY 2K - 1 messages,
    from whichever workers, decode the exact gradient: the stragglers' first messages count.

    Evaluation points: N r Chebyshev nodes of the first kind on [-1, 1] shifted off the betas, message j of worker i
    at node j + r i, so that each round of first messages is spread over the interval (interpolation from the
    messages that arrive stays well conditioned)."""

    name = "multi-message-coded"

    def __init__(self, workers: int, blocks: int, per_worker: int):
        if not 1 <= per_worker:
            raise ValueError(f"per_worker r = {per_worker}: expected >= 1")
        self.r = int(per_worker)
        if blocks < 1 or (blocks - 1) * self.degree + 1 > workers * self.r:
            raise ValueError(f"blocks K = {blocks}: expected 1 <= K and recovery threshold 2K - 1 <= N r = "
                             f"{workers * self.r} messages")
        Code.__init__(self, workers)
        self.k_blocks = int(blocks)
        self.threshold = (blocks - 1) * self.degree + 1
        self.beta = np.cos((2 * np.arange(blocks) + 1) * np.pi / (2 * blocks))
        n_pts = workers * self.r
        self.alpha = np.cos((2 * np.arange(n_pts) + 1) * np.pi / (2 * n_pts)) * 0.999 + 0.5 / (n_pts * blocks)
        if np.min(np.abs(self.alpha[:, None] - self.beta[None, :])) < 1e-6:
            raise ValueError("evaluation points collide")

    def _point(self, worker: int, j: int) -> int:
        return j + self.r * worker

    def tasks(self, parts):
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        if x.shape[0] % self.k_blocks:
            raise ValueError(f"{x.shape[0]} rows: expected a multiple of K = {self.k_blocks} blocks")
        xb, yb = np.stack(np.split(x, self.k_blocks)), np.stack(np.split(y, self.k_blocks))
        enc = self.basis(self.beta, self.alpha)                     # [N r, K]
        load = len(parts) / self.k_blocks
        return [[Task([(1.0, np.tensordot(enc[self._point(i, j)], xb, 1), enc[self._point(i, j)] @ yb)], load)
                 for j in range(self.r)] for i in range(self.n)]

    def theory_completion(self, delays):
        return expected_total_messages(delays, self.n / self.k_blocks, self.r, self.threshold)

    def needed(self, got, alive):
        return sorted(w for w in alive if sum(1 for v, _ in got if v == w) < self.r)

    def decode(self, got):
        keys = sorted(got)[: self.threshold]
        pts = [self._point(w, j) for w, j in keys]
        lag = self.basis(self.alpha[pts], self.beta)                # [K, k]
        return (lag @ np.stack([got[key] for key in keys])).sum(0)


def make_code(name: str, workers: int, stragglers: int = 1, k: int | None = None, blocks: int | None = None,
              per_worker: int | None = None, seed: int = 0) -> Code:
    """Build a scheme by name (:data:`SCHEMES`): stragglers s for gradient coding, k for wait-k (default N - s),
    blocks K for LCC (default the largest K with 2K - 1 <= N - s), per_worker r for multi-message (default s + 2);
    coded multi-message: r = s + 2 and K = N (each message one partition's work, threshold 2N - 1 of N r)."""
    if name == "uncoded":
        return Uncoded(workers)
    if name == "uncoded-wait-k":
        return UncodedWaitK(workers, k if k is not None else workers - stragglers)
    if name == "gradient-coding-fr":
        return FractionalRepetition(workers, stragglers)
    if name == "gradient-coding-cyclic":
        return CyclicRepetition(workers, stragglers, seed)
    if name == "lcc":
        return LagrangeCode(workers, blocks if blocks is not None else max(1, (workers - stragglers + 1) // 2))
    if name == "multi-message":
        return MultiMessage(workers, per_worker if per_worker is not None else min(workers, stragglers + 2))
    if name == "multi-message-coded":
        return LagrangeMultiMessage(workers, blocks if blocks is not None else workers,
                                    per_worker if per_worker is not None else stragglers + 2)
    raise ValueError(f"scheme {name!r}: unknown; expected one of {', '.join(SCHEMES)}")
