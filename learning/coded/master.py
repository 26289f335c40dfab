"""The master of coded distributed gradient descent: starts N worker processes, runs gradient descent, times every
iteration from the broadcast of w to the moment the received messages decode.

Each worker is a real OS process (multiprocessing, spawn) talking ZeroMQ to the master's ROUTER socket bound on
127.0.0.1 port 0 (the OS picks a free port; learning.coded.worker describes the frames). The master owns every
process it starts and always stops them (``stop`` message, then terminate/kill on teardown).

A dead or silent worker is a straggler that never finishes: coded schemes decode without it; a scheme that needs it
(uncoded wait-for-all) stalls, and after ``stall_timeout_s`` the run ends with ``stalled`` naming the workers it was
waiting on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import struct
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from learning.coded.codes import Code
from learning.coded.delays import ShiftedExponential
from learning.coded.problem import LeastSquares, Logistic
from learning.coded.worker import worker_main


@dataclass
class RunResult:
    """Per iteration: completion_s (broadcast -> decodable), wall_s (cumulative wall time since the first broadcast,
    including the master's own work), loss (after the update), waited_on (the worker whose message completed the
    iteration); ``stalled``: None or {"iteration", "waiting_on": [workers]}."""

    scheme: str
    completion_s: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    waited_on: list[int] = field(default_factory=list)
    stalled: dict | None = None
    killed: list[int] = field(default_factory=list)


class Workers(Protocol):
    """What :func:`descend` needs from a transport to N workers (worker processes over ZeroMQ here; Flower
    SuperNodes in :mod:`lab.flower.stragglers_app`): ``alive``, the workers it may still send to."""

    alive: set[int]

    def broadcast(self, t: int, w: np.ndarray) -> None:
        """Start iteration ``t`` with model ``w`` (float64[p]) on every live worker."""

    def receive(self, timeout_s: float) -> tuple[int, int, int, np.ndarray] | None:
        """The next (worker, iteration, task index, vector) message, waiting at most ``timeout_s``; None when none
        came (a message the master should ignore may come back with iteration -1)."""

    def kill(self, worker: int) -> None:
        """Make ``worker`` crash (only transports that own their workers' processes can)."""


def descend(workers: Workers, code: Code, problem: LeastSquares | Logistic, iterations: int, lr: float,
            w0: np.ndarray | None = None, stall_timeout_s: float = 2.0, kill_at: tuple[int, int] | None = None,
            on_iteration=None) -> RunResult:
    """Gradient descent w <- w - lr * code.decode(...) for ``iterations`` iterations: broadcast w, collect messages
    of this iteration until ``code.decodable``, decode, update. The one master loop of every runtime.

    Completion time of an iteration: broadcast -> decodable. ``stall_timeout_s`` without any message ends the run
    with ``stalled`` naming the workers that could still complete the iteration (``code.needed``). kill_at
    (iteration, worker): ``workers.kill(worker)`` right after broadcasting that iteration. ``on_iteration(t, got)``:
    told each finished iteration's messages {(worker, task): vector}."""
    res = RunResult(code.name)
    w = np.zeros(problem.dim) if w0 is None else np.array(w0, np.float64)
    begin = time.perf_counter()
    for t in range(iterations):
        start = time.perf_counter()
        workers.broadcast(t, w)
        if kill_at is not None and kill_at[0] == t:
            workers.kill(kill_at[1])
            res.killed.append(kill_at[1])
        got: dict[tuple[int, int], np.ndarray] = {}
        last = -1
        while not code.decodable(got):
            msg = workers.receive(stall_timeout_s)
            if msg is None:
                res.stalled = {"iteration": t, "waiting_on": code.needed(got, set(range(code.n)))}
                return res
            worker, it, j, vector = msg
            if it != t:
                continue       # a late message of an earlier iteration
            last = worker
            got[(worker, j)] = vector
        res.completion_s.append(time.perf_counter() - start)
        if on_iteration is not None:
            on_iteration(t, got)
        w = w - lr * code.decode(got)
        res.loss.append(problem.loss(w))
        res.waited_on.append(last)
        res.wall_s.append(time.perf_counter() - begin)
    return res


class Cluster:
    """N worker processes serving one scheme's tasks; a context manager that always tears them down."""

    def __init__(self, code: Code, problem: LeastSquares | Logistic, delays: list[ShiftedExponential], seed: int = 0,
                 start_timeout_s: float = 60.0):
        import zmq
        if len(delays) != code.n:
            raise ValueError(f"{len(delays)} delay models for {code.n} workers: expected one per worker")
        if problem.kind not in code.kinds:
            raise ValueError(f"scheme {code.name!r} cannot decode a {problem.kind} gradient exactly; it applies to "
                             f"{', '.join(code.kinds)} problems")
        self.code, self.problem = code, problem
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:0")
        endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        tasks = code.tasks(problem.partitions(code.n))
        spawn = mp.get_context("spawn")
        self.procs = [spawn.Process(target=worker_main, args=(endpoint, i, tasks[i], delays[i], problem.n, seed,
                                                              problem.kind, problem.l2),
                                    daemon=True) for i in range(code.n)]
        try:
            for p in self.procs:
                p.start()
            self.alive = set()
            deadline = time.monotonic() + start_timeout_s
            while len(self.alive) < code.n:
                if not self.sock.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                    raise RuntimeError(f"workers {sorted(set(range(code.n)) - self.alive)} did not start within "
                                       f"{start_timeout_s} s")
                ident, *_ = self.sock.recv_multipart()
                self.alive.add(struct.unpack(">I", ident)[0])
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def kill(self, worker: int) -> None:
        """SIGKILL one worker (a crash mid-run)."""
        p = self.procs[worker]
        if p.is_alive():
            os.kill(p.pid, signal.SIGKILL)
            p.join(5)
        self.alive.discard(worker)

    def run(self, iterations: int, lr: float, w0: np.ndarray | None = None, stall_timeout_s: float = 2.0,
            kill_at: tuple[int, int] | None = None) -> RunResult:
        """Gradient descent over these worker processes (:func:`descend`)."""
        return descend(self, self.code, self.problem, iterations, lr, w0, stall_timeout_s, kill_at)

    def broadcast(self, t: int, w: np.ndarray) -> None:
        """Send iteration ``t``'s model to every live worker (:class:`Workers`)."""
        import zmq
        tag = struct.pack(">q", t)
        for i in sorted(self.alive):
            self.sock.send_multipart([struct.pack(">I", i), b"w", tag, w.tobytes()], zmq.DONTWAIT)

    def receive(self, timeout_s: float) -> tuple[int, int, int, np.ndarray] | None:
        """The next worker message (:class:`Workers`)."""
        if not self.sock.poll(int(timeout_s * 1000)):
            return None
        ident, kind, it, j, payload = self.sock.recv_multipart()
        if kind != b"g":
            return -1, -1, -1, np.empty(0)       # not a result: the master skips it
        return (struct.unpack(">I", ident)[0], struct.unpack(">q", it)[0], struct.unpack(">I", j)[0],
                np.frombuffer(payload, dtype=np.float64))

    def close(self) -> None:
        """Stop every worker (message, then terminate, then kill) and close the socket."""
        for i, p in enumerate(self.procs):
            if p.is_alive():
                try:
                    self.sock.send_multipart([struct.pack(">I", i), b"stop"], 1)  # zmq.DONTWAIT
                except Exception:
                    pass
        for p in self.procs:
            p.join(2)
            if p.is_alive():
                p.terminate()
                p.join(2)
            if p.is_alive():
                p.kill()
                p.join(2)
        self.sock.close(0)
        self.ctx.term()
