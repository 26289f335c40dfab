"""Coded distributed gradient descent: exact decoding from any large-enough subset, the order-statistics theory
against closed forms and Monte Carlo, and real worker processes (decoding, a killed worker, teardown)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from learning.coded.codes import SCHEMES, LagrangeCode, make_code
from learning.coded.delays import ShiftedExponential, expected_kth
from learning.coded.problem import LeastSquares, Logistic, block_gradient


def _results(code, problem, w):
    tasks = code.tasks(problem.partitions(code.n))
    return {(i, j): sum(c * block_gradient(x, y, w, problem.n, problem.kind, problem.l2) for c, x, y in t.blocks)
            for i, ts in enumerate(tasks) for j, t in enumerate(ts)}


@pytest.fixture(scope="module")
def problem():
    return LeastSquares.synthetic(960, 12, seed=3)


@pytest.fixture(scope="module")
def logistic():
    return Logistic.synthetic(960, 12, seed=3, l2=1e-2)


@pytest.mark.parametrize("kind", ["least-squares", "logistic"])
@pytest.mark.parametrize("name, s", [("gradient-coding-fr", 1), ("gradient-coding-fr", 3), ("gradient-coding-cyclic", 1),
                                     ("gradient-coding-cyclic", 2), ("multi-message", 1), ("uncoded", 0)])
def test_gradient_codes_decode_exactly_without_any_s_workers(problem, logistic, kind, name, s):
    """Tandon et al. 2017: any N - s workers suffice; decode = the full gradient (1e-9 relative): X^T(Xw - y)/n,
    and for logistic regression X^T(sigmoid(Xw) - y)/n + l2 w (the codes combine block gradients linearly, so any
    loss works)."""
    problem = problem if kind == "least-squares" else logistic
    code = make_code(name, 8, stragglers=s, seed=1)
    w = np.random.default_rng(0).standard_normal(problem.dim)
    g, res = problem.gradient(w), _results(code, problem, w)
    for drop in itertools.combinations(range(8), s):
        got = {k: v for k, v in res.items() if k[0] not in drop}
        assert code.decodable(got)
        assert np.linalg.norm(code.decode(got) - g) <= 1e-9 * np.linalg.norm(g)
    # without every worker that holds partition 0 (FR: its group; cyclic: any s + 1; multi-message: the r workers
    # whose cyclic windows contain it) nothing decodes
    lost = {"gradient-coding-fr": range(s + 1), "gradient-coding-cyclic": range(s + 1),
            "multi-message": [(-j) % 8 for j in range(getattr(code, "r", 1))], "uncoded": [0]}[name]
    assert not code.decodable({k: v for k, v in res.items() if k[0] not in lost})


@pytest.mark.parametrize("blocks", [2, 3, 4])
def test_lagrange_coding_recovers_the_exact_gradient_from_any_k_results(problem, blocks):
    """Yu et al. 2019: f(X) = X^T(Xw - y)/n has degree 2, so any k = 2(K-1) + 1 of the N coded results give every
    f(X_j) and their sum is the gradient: relative error <= 1e-9 for every k-subset; k - 1 results do not decode."""
    code = LagrangeCode(8, blocks)
    assert code.threshold == 2 * blocks - 1
    w = np.random.default_rng(1).standard_normal(problem.dim)
    g, res = problem.gradient(w), _results(code, problem, w)
    for keep in itertools.combinations(range(8), code.threshold):
        got = {(i, 0): res[(i, 0)] for i in keep}
        assert np.linalg.norm(code.decode(got) - g) <= 1e-9 * np.linalg.norm(g)
    assert not code.decodable({(i, 0): res[(i, 0)] for i in range(code.threshold - 1)})


@pytest.mark.parametrize("blocks, r", [(8, 3), (4, 2), (3, 1)])
def test_coded_multi_message_decodes_from_any_k_messages(problem, blocks, r):
    """Lagrange-coded multi-message: every message evaluates the same degree-2(K-1) polynomial, so any 2K - 1 of the
    N r messages, from any workers and in any order, give the exact gradient: 1e-9 relative for 400 random subsets;
    2K - 2 messages do not decode. Real-valued interpolation from clustered points loses digits: the worst subsets
    (runs of consecutive evaluation points, i.e. only two or three workers answering all their messages) are held
    to 1e-6 (measured up to 8e-8 at K = 8, r = 3)."""
    code = make_code("multi-message-coded", 8, stragglers=1, blocks=blocks, per_worker=r)
    assert code.threshold == 2 * blocks - 1 and all(len(t) == r for t in code.tasks(problem.partitions(8)))
    w = np.random.default_rng(2).standard_normal(problem.dim)
    g, res = problem.gradient(w), _results(code, problem, w)
    keys = sorted(res)
    rng = np.random.default_rng(3)
    subsets = [[keys[i] for i in rng.choice(len(keys), code.threshold, replace=False)] for _ in range(400)]
    by_point = sorted(keys, key=lambda key: code._point(*key))
    runs = [by_point[i:i + code.threshold] for i in range(len(keys) - code.threshold + 1)]
    for sub, tol in [(sub, 1e-9) for sub in subsets] + [(sub, 1e-6) for sub in runs]:
        got = {key: res[key] for key in sub}
        assert code.decodable(got)
        assert np.linalg.norm(code.decode(got) - g) <= tol * np.linalg.norm(g)
    assert not code.decodable({key: res[key] for key in keys[: code.threshold - 1]})
    with pytest.raises(ValueError, match="threshold"):
        make_code("multi-message-coded", 2, blocks=4, per_worker=1)


def test_wait_k_is_unbiased_over_random_subsets_but_not_exact(problem):
    code = make_code("uncoded-wait-k", 8, k=6)
    w = np.ones(problem.dim)
    g, res = problem.gradient(w), _results(code, problem, w)
    ests = [code.decode({(i, 0): res[(i, 0)] for i in keep}) for keep in itertools.combinations(range(8), 6)]
    np.testing.assert_allclose(np.mean(ests, 0), g, rtol=1e-9, atol=1e-12)
    assert max(np.linalg.norm(e - g) for e in ests) > 1e-3 * np.linalg.norm(g)


def test_order_statistics_match_closed_forms():
    """i.i.d. shifted exponentials: E[k-th of N] = a + (1/mu) sum_{i=N-k+1}^{N} 1/i (Renyi's representation)."""
    a, mu, n = 0.004, 250.0, 8
    d = [ShiftedExponential(a, mu)] * n
    for k in (1, 5, 8):
        assert expected_kth(d, 1.0, k) == pytest.approx(a + sum(1 / i for i in range(n - k + 1, n + 1)) / mu,
                                                         rel=1e-4)


@pytest.mark.parametrize("name", SCHEMES)
def test_theory_matches_monte_carlo_of_the_delay_model(name):
    """Each scheme's theoretical completion time (order statistics, exact enumeration for multi-message) equals a
    Monte Carlo of the same model and stopping rule (20,000 draws; 4 standard errors)."""
    d = [ShiftedExponential(0.002, 500.0)] * 7 + [ShiftedExponential(0.02, 50.0)]
    code = make_code(name, 8, stragglers=1)
    rng = np.random.default_rng(5)
    tasks = code.tasks([(np.zeros((1, 1)), np.zeros(1))] * 8)
    draws = []
    for _ in range(20000):
        finish = {}
        for i, ts in enumerate(tasks):
            t = 0.0
            for j, task in enumerate(ts):
                t += d[i].sample(rng, task.load)
                finish[(i, j)] = t
        got = {}
        for key in sorted(finish, key=finish.get):
            got[key] = np.zeros(1)
            if code.decodable(got):
                draws.append(finish[key])
                break
    draws = np.array(draws)
    assert code.theory_completion(d) == pytest.approx(draws.mean(), abs=4 * draws.std() / math.sqrt(len(draws)))


def test_logistic_loss_gradient_and_optimum():
    """The gradient is the loss's derivative (central differences), the row blocks' gradients add up to it, and
    Newton's optimum has zero gradient and the lowest loss nearby; GD with step 1/L (L = lambda_max(X^T X)/(4n) +
    l2) never increases the loss."""
    p = Logistic.synthetic(400, 6, seed=2, l2=1e-2)
    w = np.random.default_rng(3).standard_normal(6)
    num = np.array([(p.loss(w + 1e-6 * e) - p.loss(w - 1e-6 * e)) / 2e-6 for e in np.eye(6)])
    assert np.allclose(p.gradient(w), num, rtol=1e-6, atol=1e-8)
    blocks = sum(block_gradient(x, y, w, p.n, "logistic", p.l2) for x, y in p.partitions(8))
    assert np.linalg.norm(blocks - p.gradient(w)) <= 1e-12 * np.linalg.norm(p.gradient(w))
    opt = p.optimum()
    assert np.linalg.norm(p.gradient(opt)) <= 1e-10
    rng = np.random.default_rng(4)
    assert all(p.loss(opt + 1e-3 * rng.standard_normal(6)) > p.loss(opt) for _ in range(20))
    losses, v = [], np.zeros(6)
    for _ in range(50):
        v = v - p.gradient(v) / p.lipschitz()
        losses.append(p.loss(v))
    assert np.all(np.diff(losses) <= 1e-15) and losses[-1] >= p.loss(opt) - 1e-12
    with pytest.raises(ValueError, match="l2"):
        Logistic(p.x, p.y, 0.0)
    with pytest.raises(ValueError, match="labels"):
        Logistic(p.x, p.y * 2, 0.1)


def test_logistic_mnist_features():
    """MNIST (digits >= 5 vs < 5) on p - 1 principal components scaled to unit variance plus an intercept."""
    from learning.feel.data import load_dataset
    try:
        load_dataset("mnist")
    except (FileNotFoundError, OSError, ValueError) as exc:
        pytest.skip(f"MNIST not available here: {exc}")
    p = Logistic.mnist(800, 11, seed=0)
    assert p.x.shape == (800, 11) and np.all(p.x[:, -1] == 1)
    assert np.allclose(p.x[:, :-1].std(0), 1) and np.allclose(p.x[:, :-1].mean(0), 0, atol=1e-9)
    assert 0.4 < p.y.mean() < 0.6
    opt = p.optimum()
    acc = np.mean((p.x @ opt > 0) == (p.y == 1))
    assert acc > 0.7                                  # well above chance (0.72 measured with 10 PCs, n = 800)


def test_lcc_refuses_a_non_polynomial_gradient(logistic):
    from learning.coded.master import Cluster
    with pytest.raises(ValueError, match="lcc.*logistic"):
        Cluster(make_code("lcc", 8, stragglers=1), logistic, [ShiftedExponential(0.001, 1000.0)] * 8)


def test_worker_processes_run_logistic_gd(logistic):
    """4 worker processes with fractional repetition compute the logistic block gradients (the problem kind reaches
    the workers): GD follows serial full-gradient GD to 1e-9."""
    from learning.coded.master import Cluster
    lr, iters = 1.0 / logistic.lipschitz(), 5
    with Cluster(make_code("gradient-coding-fr", 4, stragglers=1), logistic,
                 [ShiftedExponential(0.0005, 2000.0)] * 4) as cluster:
        run = cluster.run(iters, lr, stall_timeout_s=5.0)
    assert run.stalled is None and run.loss[-1] == pytest.approx(_serial_gd(logistic, iters, lr), rel=1e-9)


def _serial_gd(problem, iterations, lr):
    w = np.zeros(problem.dim)
    for _ in range(iterations):
        w = w - lr * problem.gradient(w)
    return problem.loss(w)


def test_worker_processes_run_gd_and_survive_a_killed_worker(problem):
    """8 real worker processes (ZeroMQ, port 0): cyclic gradient coding follows serial full-gradient GD exactly
    (loss to 1e-9) although worker 5 is SIGKILLed at iteration 3; uncoded wait-for-all stalls on the dead worker and
    names it; every process is gone after the cluster closes."""
    from learning.coded.master import Cluster
    d = [ShiftedExponential(0.0005, 2000.0)] * 8
    lr, iters = 1.0 / problem.lipschitz(), 8
    with Cluster(make_code("gradient-coding-cyclic", 8, stragglers=1), problem, d) as cluster:
        run = cluster.run(iters, lr, stall_timeout_s=5.0, kill_at=(3, 5))
        procs = list(cluster.procs)
    assert run.stalled is None and len(run.loss) == iters and run.killed == [5]
    assert run.loss[-1] == pytest.approx(_serial_gd(problem, iters, lr), rel=1e-9)
    assert all(5 != w for w in run.waited_on[4:])
    assert not any(p.is_alive() for p in procs)
    with Cluster(make_code("uncoded", 8), problem, d) as cluster:
        run = cluster.run(iters, lr, stall_timeout_s=2.0, kill_at=(2, 6))  # 0.5 s flaked at load average 13
        procs = list(cluster.procs)
    assert run.stalled == {"iteration": 2, "waiting_on": [6]} and len(run.loss) == 2
    assert not any(p.is_alive() for p in procs)
