"""``otalab stragglers --runtime flower``: the workers on Flower's deployment runtime, the control plane of the cell.

:class:`FlowerStragglers` starts (through :class:`lab.experiments.flower_run.FlowerLauncher`) a SuperLink and one
SuperNode per worker (``--node-config worker=i``; on several hosts: one per worker host, started by hand, see
docs/stragglers.md), then runs each scheme as one ``flwr run lab/flower/stragglers_app`` (the master is the
ServerApp :mod:`lab.flower.stragglers_server`, a worker the ClientApp :mod:`lab.flower.stragglers_client`).

``kill_at`` (iteration, worker): once the ServerApp's progress file says the scheme has finished ``iteration``
iterations, worker's SuperNode and every process under it get SIGKILL (a worker host that dies mid-run). A dead
SuperNode is started again before the next scheme, so each scheme begins with N workers, as in the process runtime.

What Flower adds per message (``overhead``): a SuperNode handles one message at a time, polls the SuperLink (every
3 s when it found nothing), and runs every message in a new ClientApp process; its reply is pushed after a 0.5 s poll.
From each reply's timing the master recorded (its own clock: pushed, arrived; the worker's: ``handler_s``, the time
spent in the handler including the drawn delay), the overhead of a message is arrived - max(pushed, the same worker's
previous reply) - handler_s.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import numpy as np

from lab.experiments.flower_run import FlowerLauncher, python_env
from lab.experiments.procs import ProcessSet, Started, descendants
from learning.coded.master import RunResult

APP_DIR = Path(__file__).resolve().parent.parent / "flower" / "stragglers_app"


def message_overheads(messages: list[dict]) -> np.ndarray:
    """Per reply: arrived - max(pushed, the same worker's previous arrival) - handler_s (seconds; module
    docstring), in the master's message order."""
    out, last = [], {}
    for m in sorted(messages, key=lambda m: m["arrived"]):
        start = max(m["pushed"], last.get(m["worker"], -np.inf))
        out.append(m["arrived"] - start - m["handler_s"])
        last[m["worker"]] = m["arrived"]
    return np.array(out, dtype=np.float64)


class FlowerStragglers:
    """N workers as Flower SuperNodes on this host (or, with ``superlink``, whatever SuperNodes are connected to that
    SuperLink); ``run(scheme)`` runs one scheme as one Flower run. A context manager that stops every process it
    started (:attr:`processes`, :attr:`leftover_pids` afterwards)."""

    def __init__(self, run_config: dict, workers: int, *, kill_at: tuple[int, int] | None = None,
                 run_dir: str | None = None, superlink: str | None = None, root_certificates: str | None = None,
                 startup_timeout_s: float = 120.0,
                 run_timeout_s: float = 3600.0, monitor=None):
        if superlink and kill_at:
            raise ValueError("--kill with --superlink: the workers' SuperNodes run elsewhere; kill them there")
        self.base = dict(run_config)
        self.workers, self.kill_at, self.superlink = int(workers), kill_at, superlink
        self.root_certificates = root_certificates
        self.startup_timeout_s, self.run_timeout_s, self.monitor = startup_timeout_s, run_timeout_s, monitor
        self.own_dir = run_dir is None
        self.run_dir = Path(tempfile.mkdtemp(prefix="otalab-stragglers-")) if self.own_dir else Path(run_dir)
        self.supernodes: dict[int, Started] = {}
        self.restarts = 0
        self.processes: list[dict] = []
        self.leftover_pids: list[int] = []

    def __enter__(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.procs = ProcessSet(self.run_dir / "logs", python_env(self.run_dir))
        self.flower = FlowerLauncher(self.procs, self.run_dir, connection="stragglers")
        self._signals = self.procs.handle_signals()
        self._signals.__enter__()
        try:
            if self.superlink:
                self.flower.use_superlink(self.superlink, insecure=self.root_certificates is None,
                                          root_certificates=self.root_certificates)
            else:
                self.flower.start_superlink(self.startup_timeout_s)
                for i in range(self.workers):
                    self._start_worker(i)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start_worker(self, i: int) -> None:
        role = f"w{i}-supernode" + (f"-r{self.restarts}" if i in self.supernodes else "")
        self.supernodes[i] = self.flower.start_supernode(role, {"worker": i})

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker i's SuperNode and every process under it (Flower's SuperExec, its ClientApp)."""
        item = self.supernodes[i]
        pids = descendants(item.pid) + [item.pid]       # the children first: once the parent is gone, so is the tree
        self.procs.note_descendants()
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        item.proc.wait(timeout=10)

    def run(self, scheme: str) -> tuple[RunResult, dict]:
        """One scheme as one Flower run: (the run, what Flower adds: overhead per message, set-up times, events)."""
        import json

        if not self.superlink:
            dead = [i for i, s in self.supernodes.items() if s.proc.poll() is not None]
            if dead:
                self.restarts += 1
                for i in dead:
                    self._start_worker(i)
        out, progress = self.run_dir / f"master_{scheme}.json", self.run_dir / f"progress_{scheme}.json"
        cfg = {**self.base, "scheme": scheme, "out": str(out), "progress": str(progress)}
        self.flower.submit(APP_DIR, cfg, role=f"flwr-run-{scheme}")
        killed: list[int] = []

        def watch(procs, elapsed):
            if self.kill_at is not None and not killed and progress.exists():
                try:
                    state = json.loads(progress.read_text())
                except ValueError:       # written atomically, but read defensively
                    return
                if state.get("iteration", 0) >= self.kill_at[0]:
                    self.kill_worker(self.kill_at[1])
                    killed.append(self.kill_at[1])
            if self.monitor is not None:
                self.monitor(procs, elapsed)

        res = self.flower.wait_result(out, self.run_timeout_s, monitor=watch, server="the master",
                                      what=f"the {scheme} run")
        if "error" in res:
            raise RuntimeError(f"the master (ServerApp) of {scheme} failed: {res['error']} (logs: {self.run_dir})")
        run = RunResult(scheme, res["completion_s"], res["wall_s"], res["loss"], res["waited_on"], res["stalled"],
                        killed)
        ov = message_overheads(res["messages"])
        extra = {"messages": len(res["messages"]),
                 "overhead_s_per_message": float(ov.mean()) if ov.size else None,
                 "overhead_s_per_message_p90": float(np.percentile(ov, 90)) if ov.size else None,
                 "hello_s": res.get("hello_s"), "setup_s": res.get("setup_s"),
                 "flower_error_count": res.get("flower_error_count", 0), "events": res.get("events", [])}
        return run, extra

    def __exit__(self, *exc):
        host_roles = [s.as_dict() for s in self.procs.started]
        self.procs.note_descendants()
        self.processes = host_roles + [{"role": role, "pid": pid} for pid, role in self.procs.seen.items()
                                       if role.endswith("/child")]
        self.procs.stop()
        self._signals.__exit__(*exc)
        deadline = time.monotonic() + 10.0     # SIGKILLed helpers of the helpers take a moment to be gone
        while self.procs.leftovers() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.leftover_pids = self.procs.leftovers()
        if self.own_dir and exc[0] is None and not self.leftover_pids:
            import shutil

            shutil.rmtree(self.run_dir, ignore_errors=True)
        return False
