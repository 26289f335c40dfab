"""A worker of coded distributed gradient descent as a Flower ClientApp (``otalab stragglers --runtime flower``).

The SuperNode serving worker i is started with ``--node-config "worker=i"``. The master (the ServerApp,
:mod:`lab.flower.stragglers_server`) sends three kinds of message, all ``query`` messages carrying one JSON object
and, where there are arrays, an ``.npz`` blob (:func:`pack` / :func:`unpack`):

=====================  ==========================================  ==============================================
message type           master -> worker                            worker -> master
=====================  ==========================================  ==============================================
query.coded_hello      {}                                          worker (its --node-config index), pid
query.coded_setup      scheme, delay (shift_s, rate_per_s), seed,  worker, tasks
                       n_total, kind, l2; npz: every task's
                       blocks (coef, X, y) and load: the worker's
                       data partition as the coding scheme places it
query.coded_task       scheme, iteration, task; npz: w             worker, iteration, task, handler_s, delay_s;
                                                                   npz: the task's vector
=====================  ==========================================  ==============================================

The setup is kept in the run's node state (``context.state``): Flower starts a ClientApp process per message, so
nothing else survives between messages. A SuperNode handles one message at a time, so a worker's tasks of one
iteration (r messages in multi-message schemes) run one after the other, as in the process runtime.

Per task the handler draws its delay with :func:`learning.coded.worker.task_delay` (the same draw as the process
runtime's worker), computes :func:`learning.coded.worker.task_result`, and answers once the delay has passed since
the handler started; ``handler_s`` (the handler's own time) lets the master tell the runtime's overhead from the
drawn delays.
"""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

KEY = "otalab-coded"
HELLO, SETUP, TASK = "query.coded_hello", "query.coded_setup", "query.coded_task"

app = ClientApp()


def pack(body: dict, arrays: dict[str, np.ndarray] | None = None) -> RecordDict:
    """``body`` (JSON-able) and ``arrays`` (saved as one .npz) as a Flower RecordDict."""
    rec = {"json": json.dumps(body)}
    if arrays:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        rec["npz"] = buf.getvalue()
    return RecordDict({KEY: ConfigRecord(rec)})


def unpack(content: RecordDict) -> tuple[dict, dict[str, np.ndarray]]:
    """(body, arrays) from :func:`pack`'s RecordDict; ValueError when it is not one."""
    if KEY not in content or "json" not in content[KEY]:
        raise ValueError(f"no {KEY!r} record with 'json' (expected a coded-GD message), got {list(content.keys())}")
    rec = content[KEY]
    arrays = {}
    if "npz" in rec:
        with np.load(io.BytesIO(rec["npz"])) as z:
            arrays = {k: z[k] for k in z.files}
    return json.loads(rec["json"]), arrays


def worker_index(context: Context) -> int:
    """This SuperNode's worker index from ``--node-config "worker=i"`` (ValueError naming what is wrong)."""
    value = context.node_config.get("worker")
    if value is None or isinstance(value, bool) or not str(value).lstrip("-").isdigit() or int(value) < 0:
        raise ValueError(f"SuperNode --node-config: expected \"worker=I\" with I >= 0, got {dict(context.node_config)!r}")
    return int(value)


def tasks_arrays(tasks) -> dict[str, np.ndarray]:
    """A worker's task list (learning.coded.codes.Task) as arrays: ``load`` float64[T], ``nblocks`` int[T], and per
    block b (all tasks' blocks in order) ``coef`` float64[B], ``x{b}`` float64[rows, p], ``y{b}`` float64[rows]."""
    out: dict[str, np.ndarray] = {"load": np.array([t.load for t in tasks], np.float64),
                                  "nblocks": np.array([len(t.blocks) for t in tasks], np.int64)}
    coefs = []
    b = 0
    for t in tasks:
        for c, x, y in t.blocks:
            coefs.append(c)
            out[f"x{b}"], out[f"y{b}"] = np.asarray(x, np.float64), np.asarray(y, np.float64)
            b += 1
    out["coef"] = np.array(coefs, np.float64)
    return out


def arrays_tasks(arrays: dict[str, np.ndarray]):
    """The inverse of :func:`tasks_arrays`."""
    from learning.coded.codes import Task

    tasks, b = [], 0
    for load, nb in zip(arrays["load"], arrays["nblocks"]):
        blocks = []
        for _ in range(int(nb)):
            blocks.append((float(arrays["coef"][b]), arrays[f"x{b}"], arrays[f"y{b}"]))
            b += 1
        tasks.append(Task(blocks, float(load)))
    return tasks


@app.query("coded_hello")
def _hello(message: Message, context: Context) -> Message:
    return Message(pack({"worker": worker_index(context), "pid": os.getpid()}), reply_to=message)


@app.query("coded_setup")
def _setup(message: Message, context: Context) -> Message:
    body, arrays = unpack(message.content)
    tasks = arrays_tasks(arrays)       # checks the arrays before keeping them
    context.state[KEY] = message.content[KEY]
    return Message(pack({"worker": worker_index(context), "tasks": len(tasks), "scheme": body["scheme"]}),
                   reply_to=message)


def run_task(setup: dict, tasks, worker: int, body: dict, w: np.ndarray) -> tuple[dict, np.ndarray]:
    """One task of one iteration: draw its delay, compute its vector, return once the delay has passed since the
    call began: (reply body, vector)."""
    from learning.coded.delays import ShiftedExponential
    from learning.coded.worker import task_delay, task_result

    t0 = time.perf_counter()
    if body["scheme"] != setup["scheme"]:
        raise ValueError(f"task for scheme {body['scheme']!r}, but this worker was set up for {setup['scheme']!r}")
    j, t = int(body["task"]), int(body["iteration"])
    if not 0 <= j < len(tasks):
        raise ValueError(f"task {j}: worker {worker} holds tasks 0..{len(tasks) - 1}")
    delay = ShiftedExponential(float(setup["delay"]["shift_s"]), float(setup["delay"]["rate_per_s"]))
    d = task_delay(delay, int(setup["seed"]), worker, t, j, tasks[j].load)
    g = task_result(tasks[j], w, int(setup["n_total"]), str(setup["kind"]), float(setup["l2"]))
    left = t0 + d - time.perf_counter()
    if left > 0:
        time.sleep(left)
    return ({"worker": worker, "iteration": t, "task": j, "delay_s": d, "handler_s": time.perf_counter() - t0},
            np.asarray(g, np.float64))


@app.query("coded_task")
def _task(message: Message, context: Context) -> Message:
    if KEY not in context.state:
        raise RuntimeError("coded_task before coded_setup: this worker holds no data")
    setup, arrays = unpack(RecordDict({KEY: context.state[KEY]}))
    body, data = unpack(message.content)
    reply, g = run_task(setup, arrays_tasks(arrays), worker_index(context), body, data["w"])
    return Message(pack(reply, {"g": g}), reply_to=message)
