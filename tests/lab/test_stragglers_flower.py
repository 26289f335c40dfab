"""``otalab stragglers --runtime flower``: the worker's ClientApp logic, the master's Flower transport, the launcher's
argument formats, what Flower's overhead adds to the theory, and (slow) a real SuperLink with SuperNodes where a
worker is killed mid-run."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("flwr")

from lab.experiments.flower_run import node_config_arg, run_config_arg  # noqa: E402
from lab.experiments.stragglers_flower import message_overheads  # noqa: E402
from lab.flower import stragglers_client as client  # noqa: E402
from lab.flower.stragglers_server import FlowerWorkers  # noqa: E402
from learning.coded.codes import make_code  # noqa: E402
from learning.coded.delays import ShiftedExponential, with_message_overhead  # noqa: E402
from learning.coded.problem import LeastSquares  # noqa: E402
from learning.coded.replay import replay_completion, stopping_time  # noqa: E402
from learning.coded.worker import task_delay, task_result  # noqa: E402


@pytest.fixture(scope="module")
def problem():
    return LeastSquares.synthetic(48, 5, seed=2)


def test_a_workers_data_crosses_the_control_plane_unchanged_and_its_task_is_the_process_workers(problem):
    """The setup message carries the coding scheme's task list exactly (npz round trip), and a task on the Flower
    worker draws the same delay and computes the same vector as the process runtime's worker."""
    code = make_code("gradient-coding-cyclic", 4, stragglers=1)
    tasks = code.tasks(problem.partitions(4))[2]
    setup = {"scheme": code.name, "seed": 7, "n_total": problem.n, "kind": problem.kind, "l2": problem.l2,
             "delay": {"shift_s": 0.001, "rate_per_s": 2000.0}}
    body, arrays = client.unpack(client.pack(setup, client.tasks_arrays(tasks)))
    back = client.arrays_tasks(arrays)
    assert body == setup and len(back) == len(tasks)
    for a, b in zip(back, tasks):
        assert a.load == b.load and len(a.blocks) == len(b.blocks)
        for (ca, xa, ya), (cb, xb, yb) in zip(a.blocks, b.blocks):
            assert ca == cb and np.array_equal(xa, xb) and np.array_equal(ya, yb)
    w = np.random.default_rng(0).standard_normal(problem.dim)
    reply, g = client.run_task(setup, back, 2, {"scheme": code.name, "iteration": 5, "task": 0}, w)
    d = task_delay(ShiftedExponential(0.001, 2000.0), 7, 2, 5, 0, tasks[0].load)
    assert reply["delay_s"] == d and reply["handler_s"] >= d
    assert np.array_equal(g, task_result(tasks[0], w, problem.n))
    with pytest.raises(ValueError, match="set up for 'gradient-coding-cyclic'"):
        client.run_task(setup, back, 2, {"scheme": "uncoded", "iteration": 0, "task": 0}, w)
    with pytest.raises(ValueError, match="task 3: worker 2 holds tasks 0..0"):
        client.run_task(setup, back, 2, {"scheme": code.name, "iteration": 0, "task": 3}, w)


def test_messages_and_node_configs_are_checked():
    from flwr.app import ConfigRecord, RecordDict

    with pytest.raises(ValueError, match="no 'otalab-coded' record"):
        client.unpack(RecordDict({"other": ConfigRecord({"json": "{}"})}))
    for bad in ({}, {"worker": "a"}, {"worker": -1}):
        with pytest.raises(ValueError, match="worker=I"):
            client.worker_index(SimpleNamespace(node_config=bad))
    assert client.worker_index(SimpleNamespace(node_config={"worker": 3})) == 3
    assert node_config_arg({"device": "dev0", "node-endpoint": "tcp://127.0.0.1:5"}) == \
        "device='dev0' node-endpoint='tcp://127.0.0.1:5'"
    assert node_config_arg({"worker": 3, "fast": True}) == "worker=3 fast=true"
    with pytest.raises(ValueError, match="without quotes"):
        node_config_arg({"device": "it's"})
    assert run_config_arg({"scheme": "lcc", "workers": 8, "x": 0.5, "on": False}) == \
        'scheme="lcc" workers=8 x=0.5 on=false'


class FakeGrid:
    """A Grid whose replies the test releases: push_messages records (id, node, body), pull_messages returns the
    released replies of the asked ids once."""

    def __init__(self):
        self.pushed, self.released = [], {}

    def push_messages(self, messages):
        ids = []
        for m in messages:
            mid = f"m{len(self.pushed)}"
            body, arrays = client.unpack(m.content)
            self.pushed.append((mid, m.metadata.dst_node_id, body, arrays))
            ids.append(mid)
        return ids

    def release(self, mid, handler_s=0.0, error=None):
        body = next(b for m, _, b, _ in self.pushed if m == mid)
        content = client.pack({**body, "handler_s": handler_s, "delay_s": handler_s}, {"g": np.ones(2)})
        self.released[mid] = SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=mid), content=content,
                                             has_error=lambda: error is not None,
                                             error=SimpleNamespace(code=1, reason=error))

    def pull_messages(self, ids):
        return [self.released.pop(m) for m in ids if m in self.released]


def test_a_busy_worker_gets_the_newest_iteration_once_it_is_free_not_a_queue(monkeypatch):
    """Flower cannot take back a message a worker has begun: a worker still busy with iteration 0 when iterations 1
    and 2 are broadcast gets only iteration 2, once its iteration-0 reply is in; replies come back as
    (worker, iteration, task, vector); a Flower error reply is recorded, not returned."""
    from lab.flower import stragglers_server

    # a Flower Message needs a run outside a ServerApp: the fake grid needs only its content and destination
    monkeypatch.setattr(stragglers_server, "Message", lambda content, dst_node_id, message_type: SimpleNamespace(
        content=content, metadata=SimpleNamespace(dst_node_id=dst_node_id, message_type=message_type)))
    grid = FakeGrid()
    fw = FlowerWorkers(grid, {0: 100, 1: 101}, "multi-message", [2, 2], poll_s=0.001)
    fw.broadcast(0, np.zeros(2))
    assert [(n, b["iteration"], b["task"]) for _, n, b, _ in grid.pushed] == [(100, 0, 0), (100, 0, 1),
                                                                              (101, 0, 0), (101, 0, 1)]
    for mid in ("m0", "m1", "m2"):
        grid.release(mid)
    got = [fw.receive(0.1)[:3] for _ in range(3)]
    assert sorted(got) == [(0, 0, 0), (0, 0, 1), (1, 0, 0)]
    fw.broadcast(1, np.ones(2))          # worker 1 still owes iteration 0's task 1
    assert [(n, b["iteration"]) for _, n, b, _ in grid.pushed[4:]] == [(100, 1), (100, 1)]
    fw.broadcast(2, 2 * np.ones(2))      # now both are busy: nothing is queued behind their work
    assert len(grid.pushed) == 6 and fw.receive(0.01) is None
    grid.release("m3", error="node gone")
    assert fw.receive(0.05) is None and fw.errors and "node gone" in fw.errors[0]
    assert [(n, b["iteration"]) for _, n, b, _ in grid.pushed[6:]] == [(101, 2), (101, 2)]   # the newest only
    assert np.array_equal(grid.pushed[6][3]["w"], 2 * np.ones(2))
    grid.release("m6", handler_s=0.25)
    assert fw.receive(0.1)[:3] == (1, 2, 0)
    assert fw.messages[-1]["handler_s"] == 0.25 and fw.messages[-1]["arrived"] >= fw.messages[-1]["pushed"]


def test_message_overhead_is_what_the_round_trip_adds_to_the_handler():
    """A worker handles one message at a time: a message's overhead counts from its push or the worker's previous
    reply, whichever is later (hand-computed)."""
    msgs = [{"worker": 0, "pushed": 0.0, "arrived": 5.0, "handler_s": 1.0},
            {"worker": 0, "pushed": 0.0, "arrived": 9.0, "handler_s": 2.0},      # began when the first came back
            {"worker": 1, "pushed": 1.0, "arrived": 4.5, "handler_s": 0.5}]
    assert message_overheads(msgs).tolist() == [3.0, 4.0, 2.0]


@pytest.mark.parametrize("name", ["uncoded", "uncoded-wait-k", "gradient-coding-fr", "gradient-coding-cyclic", "lcc"])
def test_a_constant_overhead_per_message_shifts_a_one_message_scheme_by_exactly_that(name):
    """One message per worker: every finishing time T_i + c, so every order statistic (and E[T]) moves by c."""
    d = [ShiftedExponential(0.5, 2.0)] * 7 + [ShiftedExponential(5.0, 0.2)]
    code = make_code(name, 8, stragglers=1)
    load = code.tasks([(np.zeros((6, 1)), np.zeros(6))] * 8)[0][0].load
    base = code.theory_completion(d)
    assert code.theory_completion(with_message_overhead(d, 3.0, load)) == pytest.approx(base + 3.0, rel=1e-4)
    with pytest.raises(ValueError, match="overhead -1"):
        with_message_overhead(d, -1.0, load)


def test_multi_message_overhead_is_paid_per_message_in_a_row():
    """Worker i's j-th message pays j c: the completion grows by at least c and at most r c (r = 3)."""
    d = [ShiftedExponential(0.5, 2.0)] * 7 + [ShiftedExponential(5.0, 0.2)]
    code = make_code("multi-message", 8, stragglers=1)
    base, c = code.theory_completion(d), 2.0
    with_c = code.theory_completion(with_message_overhead(d, c, 1.0))
    assert base + c < with_c < base + code.r * c


def test_stopping_rule_replay_against_order_statistics():
    """stopping_time is the scheme's stopping rule (hand cases); replaying the workers' own draws over many
    iterations averages to the theoretical expectation (4 standard errors)."""
    code = make_code("uncoded-wait-k", 4, k=3)
    assert stopping_time(code, {(0, 0): 3.0, (1, 0): 1.0, (2, 0): 2.0, (3, 0): 9.0}) == 3.0
    assert stopping_time(make_code("uncoded", 4), {(0, 0): 3.0, (1, 0): 1.0, (2, 0): 2.0}) is None
    code = make_code("gradient-coding-cyclic", 6, stragglers=1)
    d = [ShiftedExponential(0.002, 500.0)] * 5 + [ShiftedExponential(0.02, 50.0)]
    loads = [[t.load for t in ts] for ts in code.tasks([(np.zeros((1, 1)), np.zeros(1))] * 6)]
    draws = np.array([replay_completion(code, loads, d, 3, t) for t in range(3000)])
    assert draws.mean() == pytest.approx(code.theory_completion(d), abs=4 * draws.std() / math.sqrt(len(draws)))
    assert replay_completion(make_code("uncoded", 6), loads, d, 3, 0, dead=frozenset({2})) is None


def _serial_gd(problem, iterations, lr):
    w = np.zeros(problem.dim)
    for _ in range(iterations):
        w = w - lr * problem.gradient(w)
    return problem.loss(w)


@pytest.mark.slow
def test_killing_a_worker_on_flower_coded_finishes_uncoded_names_it(tmp_path):
    """3 SuperNodes on a real SuperLink (127.0.0.1): worker 2's SuperNode and its helpers are SIGKILLed once the
    first iteration is done. Cyclic gradient coding finishes every iteration at serial GD's loss (1e-9) without it;
    uncoded wait-for-all (its SuperNode started again, killed again) stalls naming worker 2; nothing is left
    running. Generous timeouts: every Flower message costs seconds on a loaded machine."""
    from lab.experiments.procs import alive
    from lab.experiments.stragglers import run_stragglers

    prob = LeastSquares.synthetic(24, 4, seed=0)
    iters = 3
    res = run_stragglers(["gradient-coding-cyclic", "uncoded"], workers=3, iterations=iters, shift=0.01, rate=100.0,
                         stragglers=[], rows=24, features=4, seed=0, kill_at=(1, 2), stall_timeout_s=60.0,
                         runtime="flower", flower={"run_dir": str(tmp_path), "run_timeout_s": 900.0})
    cyc, unc = res["results"]
    assert cyc["stalled"] is None and cyc["iterations"] == iters and cyc["killed"] == [2]
    assert cyc["final_loss"] == pytest.approx(_serial_gd(prob, iters, 1.0 / prob.lipschitz()), rel=1e-9)
    assert cyc["flower"]["messages"] >= 2 * iters and cyc["flower"]["overhead_s_per_message"] > 0
    assert unc["killed"] == [2] and unc["stalled"] is not None
    assert unc["stalled"]["waiting_on"] == [2] and unc["stalled"]["iteration"] >= 1
    assert res["leftover_pids"] == []
    assert not [p["pid"] for p in res["runtime_processes"] if alive(p["pid"])]
    roles = {p["role"] for p in res["runtime_processes"]}
    assert {"superlink", "w0-supernode", "w1-supernode", "w2-supernode", "w2-supernode-r1"} <= roles


def test_cli_refuses_bad_flower_options_before_starting_anything(tmp_path):
    from lab.cli import main
    from lab.experiments.flower_run import FlowerLauncher
    from lab.experiments.procs import ProcessSet

    common = ["stragglers", "--iterations", "1", "--workers", "4", "--out", str(tmp_path / "o"), "--no-progress"]
    assert main([*common, "--runtime", "nope"]) == 2
    assert main([*common, "--superlink", "h:9093"]) == 2                       # process runtime: no SuperLink
    assert main([*common, "--runtime", "flower", "--root-certificates", str(tmp_path)]) == 2
    assert main([*common, "--runtime", "flower", "--superlink", "h:9093", "--kill", "1:2"]) == 2
    assert main([*common, "--runtime", "flower", "--stall-timeout-s", "0"]) == 2
    procs = ProcessSet(tmp_path / "logs")
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        FlowerLauncher(procs, tmp_path).use_superlink("nohost")
    with pytest.raises(RuntimeError, match="before start_superlink"):
        FlowerLauncher(procs, tmp_path).submit(tmp_path, {})
    assert procs.started == []
