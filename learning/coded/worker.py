"""A worker process of coded distributed gradient descent.

Transport: one ZeroMQ DEALER socket connected to the master's ROUTER (``tcp://127.0.0.1:<port>``). Messages are
multipart frames: master -> worker ``[b"w", iteration (8 bytes), w (float64 bytes)]`` or ``[b"stop"]``;
worker -> master ``[b"hello"]`` once, then ``[b"g", iteration, task index, gradient (float64 bytes)]`` per task.
The worker's whole state is its task list and its delay model, handed over at start, and every message is a
self-contained (iteration, payload) record, so the same worker logic can later sit in a Flower ClientApp (the master
in a ServerApp sending Messages through the Grid to one SuperNode per worker host) with only this transport swapped.

Per iteration the worker runs its tasks in order; task j of iteration t finishes at start + sum_{j' <= j} D_j', D
drawn from its ShiftedExponential with rng seeded by (seed, worker, t, j) (so theory and runs share the model), and
each result is sent the moment its task finishes. A new iteration arriving meanwhile cancels the rest of the old
one (the master has moved on).
"""

from __future__ import annotations

import struct
import time

import numpy as np

from learning.coded.codes import Task
from learning.coded.delays import ShiftedExponential
from learning.coded.problem import block_gradient


def _wait_until(sock, deadline: float) -> list | None:
    """Sleep until ``deadline`` (perf_counter seconds) unless a message arrives first; returns it, or None."""
    import zmq
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            return None
        if left > 0.002:   # poll in whole milliseconds, leaving the last one to sleep()
            if sock.poll(int((left - 0.001) * 1000), zmq.POLLIN):
                return sock.recv_multipart()
            continue
        if sock.poll(0, zmq.POLLIN):
            return sock.recv_multipart()
        time.sleep(left)
        return None


def task_delay(delay: ShiftedExponential, seed: int, worker: int, iteration: int, task: int, load: float) -> float:
    """Seconds task ``task`` of ``worker`` takes in ``iteration``: drawn from ``delay`` with the rng seeded by
    (seed, worker, iteration, task), so every runtime (and a replay of the model) draws the same delays."""
    return delay.sample(np.random.default_rng([seed, worker, iteration, task]), load)


def task_result(task: Task, w: np.ndarray, n_total: int, kind: str = "least-squares", l2: float = 0.0) -> np.ndarray:
    """What one task sends: sum over its blocks of coef * block gradient (learning.coded.problem.block_gradient)."""
    return sum(c * block_gradient(x, y, w, n_total, kind, l2) for c, x, y in task.blocks)


def worker_main(endpoint: str, worker: int, tasks: list[Task], delay: ShiftedExponential, n_total: int,
                seed: int, kind: str = "least-squares", l2: float = 0.0) -> None:
    """Serve iterations until ``stop`` (the body of the worker process); kind, l2: the problem's block gradient
    (learning.coded.problem.block_gradient)."""
    import zmq
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, struct.pack(">I", worker))
    sock.connect(endpoint)
    sock.send_multipart([b"hello"])
    pending = None
    try:
        while True:
            msg = pending or sock.recv_multipart()
            pending = None
            if msg[0] == b"stop":
                return
            t = struct.unpack(">q", msg[1])[0]
            w = np.frombuffer(msg[2], dtype=np.float64)
            start = time.perf_counter()
            finish = start
            for j, task in enumerate(tasks):
                finish += task_delay(delay, seed, worker, t, j, task.load)
                g = task_result(task, w, n_total, kind, l2)
                pending = _wait_until(sock, finish)
                if pending is not None:   # the master moved on (or stops): drop the rest of this iteration
                    break
                sock.send_multipart([b"g", msg[1], struct.pack(">I", j), np.ascontiguousarray(g).tobytes()])
    finally:
        sock.close(0)
        ctx.term()
