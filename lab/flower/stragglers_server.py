"""The master of coded distributed gradient descent as a Flower ServerApp (``otalab stragglers --runtime flower``).

One Flower run is one scheme. The ServerApp builds the problem and the scheme from the run config (the same
functions as the process runtime: :func:`lab.experiments.stragglers.make_problem`, :func:`delay_models`,
:func:`learning.coded.codes.make_code`), finds its N workers (``coded_hello``: each SuperNode's ``--node-config
worker=i``), places each worker's data as the scheme says (``coded_setup``), and runs
:func:`learning.coded.master.descend` (the one master loop of every runtime) over :class:`FlowerWorkers`. Messages:
:mod:`lab.flower.stragglers_client`.

Run config (``lab/flower/stragglers_app/pyproject.toml``): ``scheme``, ``workers``, ``iterations``, ``tolerate``,
``problem``, ``rows``, ``features``, ``data-dir``, ``seed``, ``shift-s``, ``rate-per-s``, ``stragglers`` (comma list),
``slowdown``, ``stall-timeout-s``, ``join-timeout-s``, ``out`` (result JSON, written atomically), ``progress`` (a
JSON file rewritten every iteration with ``{"scheme", "iteration"}``: how a launcher knows where the run is).

Flower has no way to take back a message a worker has begun, and a SuperNode handles one message at a time: a
worker still busy with an earlier iteration (the straggler, after the coded schemes moved on) gets the newest
iteration's messages once its outstanding replies are in, not queued behind them (:class:`FlowerWorkers`).
"""

from __future__ import annotations

import time
import traceback
from collections import deque

import numpy as np
from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp

from lab.flower.stragglers_client import HELLO, SETUP, TASK, pack, tasks_arrays, unpack

app = ServerApp()


class FlowerWorkers:
    """The workers of :func:`learning.coded.master.descend` behind a Flower Grid: worker i is the SuperNode
    ``nodes[i]``. Each iteration sends one ``coded_task`` message per task of every live worker; ``receive`` polls
    the replies every ``poll_s``. ``messages`` records every reply's timing (master clock, time.monotonic: pushed,
    arrived; worker clock: handler_s, delay_s); ``errors`` every Flower error reply."""

    def __init__(self, grid: Grid, nodes: dict[int, int], scheme: str, tasks_per_worker: list[int],
                 poll_s: float = 0.01):
        self.grid, self.nodes, self.scheme, self.poll_s = grid, dict(nodes), scheme, float(poll_s)
        self.ntasks = list(tasks_per_worker)
        self.alive = set(nodes)
        self.outstanding: dict[int, set[str]] = {i: set() for i in nodes}
        self.sent: dict[str, tuple[int, int, int, float]] = {}
        self.pending: dict[int, tuple[int, np.ndarray]] = {}
        self.ready: deque = deque()
        self.messages: list[dict] = []
        self.errors: list[str] = []

    def _push(self, worker: int, t: int, w: np.ndarray) -> None:
        msgs = [Message(pack({"scheme": self.scheme, "iteration": t, "task": j}, {"w": w}),
                        dst_node_id=self.nodes[worker], message_type=TASK) for j in range(self.ntasks[worker])]
        now = time.monotonic()
        for j, mid in enumerate(self.grid.push_messages(msgs)):
            if mid:
                self.sent[mid] = (worker, t, j, now)
                self.outstanding[worker].add(mid)

    def broadcast(self, t: int, w: np.ndarray) -> None:
        for i in sorted(self.alive):
            if self.outstanding[i]:
                self.pending[i] = (t, w)       # busy with an earlier iteration: the newest waits until it is free
            else:
                self._push(i, t, w)

    def kill(self, worker: int) -> None:
        raise NotImplementedError("a ServerApp cannot kill a SuperNode: the launcher does (otalab stragglers --kill)")

    def receive(self, timeout_s: float):
        deadline = time.monotonic() + timeout_s
        while True:
            if self.ready:
                return self.ready.popleft()
            ids = [m for out in self.outstanding.values() for m in out]
            if ids:
                for reply in self.grid.pull_messages(ids):
                    self._take(reply)
                if self.ready:
                    continue
            if time.monotonic() >= deadline:
                return None
            time.sleep(self.poll_s)

    def _take(self, reply) -> None:
        mid = reply.metadata.reply_to_message_id
        if mid not in self.sent:
            return
        worker, t, j, pushed = self.sent.pop(mid)
        self.outstanding[worker].discard(mid)
        arrived = time.monotonic()
        if reply.has_error():
            self.errors.append(f"worker {worker}, iteration {t}, task {j}: Flower error {reply.error.code}: "
                               f"{reply.error.reason}")
        else:
            body, arrays = unpack(reply.content)
            self.ready.append((worker, t, j, arrays["g"]))
            self.messages.append({"worker": worker, "iteration": t, "task": j, "pushed": pushed, "arrived": arrived,
                                  "handler_s": body["handler_s"], "delay_s": body["delay_s"]})
        if not self.outstanding[worker] and worker in self.pending:
            self._push(worker, *self.pending.pop(worker))


def _ask(grid: Grid, messages: dict[int, Message], timeout_s: float) -> dict[int, tuple[dict | str, float]]:
    """Push one message per node id, wait up to ``timeout_s`` for the replies: node id -> (body or error text,
    seconds to the reply)."""
    ids = dict(zip(grid.push_messages(list(messages.values())), messages))
    t0 = time.monotonic()
    out: dict[int, tuple[dict | str, float]] = {}
    while len(out) < len(ids) and time.monotonic() - t0 < timeout_s:
        for reply in grid.pull_messages([m for m in ids if ids[m] not in out]):
            node = ids[reply.metadata.reply_to_message_id]
            if reply.has_error():
                out[node] = (f"Flower error {reply.error.code}: {reply.error.reason}", time.monotonic() - t0)
            else:
                out[node] = (unpack(reply.content)[0], time.monotonic() - t0)
        time.sleep(0.05)
    return out


def find_workers(grid: Grid, count: int, timeout_s: float, record: dict) -> dict[int, int]:
    """worker index -> node id for workers 0..count-1, from each SuperNode's answer to ``coded_hello`` (nodes that
    connect later are asked too; a node that never answers, e.g. a dead one the SuperLink still lists, is left out).
    RuntimeError naming the missing workers after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    asked: dict[str, int] = {}          # hello message id -> node id
    found: dict[int, int] = {}
    while len(found) < count:
        new = [n for n in grid.get_node_ids() if n not in asked.values()]
        if new:
            ids = grid.push_messages([Message(pack({}), dst_node_id=n, message_type=HELLO) for n in new])
            asked.update({m: n for m, n in zip(ids, new) if m})
        waiting = [m for m, n in asked.items() if n not in found.values()]
        for reply in grid.pull_messages(waiting) if waiting else []:
            node = asked[reply.metadata.reply_to_message_id]
            if reply.has_error():
                record["events"].append(f"node {node}: hello failed: Flower error {reply.error.code}: "
                                        f"{reply.error.reason}")
                continue
            i = int(unpack(reply.content)[0]["worker"])
            if i in found:
                raise RuntimeError(f"SuperNodes {found[i]} and {node} both say --node-config worker={i}")
            if not 0 <= i < count:
                raise RuntimeError(f"SuperNode {node}: worker={i}, expected 0..{count - 1}")
            found[i] = node
        if len(found) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers {sorted(set(range(count)) - set(found))} did not answer within "
                                   f"{timeout_s} s (SuperNodes started with --node-config worker=I?)")
            time.sleep(0.1)
    return found


def run_master(grid: Grid, cfg: dict, record: dict, progress=None) -> dict:
    """One scheme's run (module docstring); fills and returns ``record``."""
    from lab.experiments.stragglers import delay_models, make_problem
    from learning.coded.codes import make_code
    from learning.coded.master import descend

    n, scheme, seed = int(cfg["workers"]), str(cfg["scheme"]), int(cfg["seed"])
    problem = make_problem(str(cfg["problem"]), int(cfg["rows"]), int(cfg["features"]), seed,
                           str(cfg["data-dir"]) or None)
    stragglers = [int(s) for s in str(cfg["stragglers"]).split(",") if s.strip()]
    delays = delay_models(n, float(cfg["shift-s"]), float(cfg["rate-per-s"]), stragglers, float(cfg["slowdown"]))
    code = make_code(scheme, n, stragglers=int(cfg["tolerate"]), seed=seed)
    if problem.kind not in code.kinds:
        raise ValueError(f"scheme {scheme!r} cannot decode a {problem.kind} gradient exactly; it applies to "
                         f"{', '.join(code.kinds)} problems")
    t0 = time.monotonic()
    nodes = find_workers(grid, n, float(cfg["join-timeout-s"]), record)
    record["node_ids"] = {str(i): node for i, node in sorted(nodes.items())}
    record["hello_s"] = time.monotonic() - t0
    tasks = code.tasks(problem.partitions(code.n))
    t0 = time.monotonic()
    answers = _ask(grid, {nodes[i]: Message(pack({"scheme": scheme, "seed": seed, "n_total": problem.n,
                                                  "kind": problem.kind, "l2": problem.l2,
                                                  "delay": {"shift_s": delays[i].shift,
                                                            "rate_per_s": delays[i].rate}},
                                                 tasks_arrays(tasks[i])),
                                            dst_node_id=nodes[i], message_type=SETUP) for i in nodes},
                   float(cfg["join-timeout-s"]))
    record["setup_s"] = time.monotonic() - t0
    ready = {}
    for i, node in nodes.items():
        ans = answers.get(node, ("no answer within join-timeout-s",))[0]
        if isinstance(ans, str):
            record["events"].append(f"worker {i}: setup failed ({ans}): left out")
        else:
            ready[i] = node
    workers = FlowerWorkers(grid, ready, scheme, [len(tasks[i]) for i in range(n)])

    def told(t, got):
        if progress is not None:
            progress({"scheme": scheme, "iteration": t + 1})

    run = descend(workers, code, problem, int(cfg["iterations"]), 1.0 / problem.lipschitz(),
                  stall_timeout_s=float(cfg["stall-timeout-s"]), on_iteration=told)
    record.update(scheme=scheme, completion_s=run.completion_s, wall_s=run.wall_s, loss=run.loss,
                  waited_on=run.waited_on, stalled=run.stalled, messages=workers.messages,
                  flower_errors=workers.errors[:20], flower_error_count=len(workers.errors))
    return record


@app.main()
def main(grid: Grid, context: Context) -> None:
    from lab.results import write_json

    cfg = dict(context.run_config)
    record: dict = {"scheme": cfg.get("scheme"), "events": []}
    progress = None
    if cfg.get("progress"):
        def progress(state):
            write_json(str(cfg["progress"]), state)
    t0 = time.monotonic()
    try:
        run_master(grid, cfg, record, progress)
    except Exception as exc:  # noqa: BLE001 (the launcher reads the reason from the result file)
        record.update(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=6))
    record["master_wall_s"] = time.monotonic() - t0
    if cfg.get("out"):
        write_json(str(cfg["out"]), record)
