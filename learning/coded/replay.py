"""The delay model replayed: when an iteration would have completed with exactly the delays the workers drew and no
other cost (no transport, no scheduling, no compute). Measured completion minus this is what a runtime adds.

Workers draw task j of iteration t with :func:`learning.coded.worker.task_delay` (rng seeded by seed, worker, t, j),
so the master can redraw every delay of a run: worker i's task j finishes at sum_{j' <= j} D_{i,j'} after the
broadcast, and the iteration completes at the first finishing time at which the scheme's ``decodable`` holds.
"""

from __future__ import annotations

import numpy as np

from learning.coded.codes import Code
from learning.coded.delays import ShiftedExponential
from learning.coded.worker import task_delay


def stopping_time(code: Code, finish: dict[tuple[int, int], float]) -> float | None:
    """The first time in ``finish`` {(worker, task): seconds} at which the messages finished by then decode
    (``code.decodable``); None when they never do."""
    got: dict[tuple[int, int], np.ndarray] = {}
    for key in sorted(finish, key=finish.get):
        got[key] = np.zeros(1)
        if code.decodable(got):
            return finish[key]
    return None


def replay_completion(code: Code, loads: list[list[float]], delays: list[ShiftedExponential], seed: int,
                      iteration: int, dead: frozenset[int] = frozenset()) -> float | None:
    """Iteration ``iteration``'s completion under the drawn delays: ``loads[i][j]`` the load of worker i's task j;
    workers in ``dead`` send nothing."""
    finish = {}
    for i, ls in enumerate(loads):
        if i in dead:
            continue
        t = 0.0
        for j, load in enumerate(ls):
            t += task_delay(delays[i], seed, i, iteration, j, load)
            finish[(i, j)] = t
    return stopping_time(code, finish)
