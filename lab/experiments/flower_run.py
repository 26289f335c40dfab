"""Run a Flower App on Flower's deployment runtime on this host: a SuperLink, one SuperNode per worker host (here:
per role, each with its own ``--node-config``), ``flwr run <app_dir>`` with a run config, and the wait for the
ServerApp's result file. Used by ``otalab cell`` (:mod:`lab.experiments.cell`) and ``otalab stragglers --runtime
flower`` (:mod:`lab.experiments.stragglers`).

Every process is started through the caller's :class:`lab.experiments.procs.ProcessSet` (which stops them and
Flower's helpers under them), in insecure mode bound to 127.0.0.1 only. The run is submitted against a Flower home of
the run's own (``FLWR_HOME`` = ``<run_dir>/flwr``, see :func:`python_env`), so nothing in the user's ``~/.flwr`` is
read or changed. On several hosts the same App runs with SuperNodes started by hand (see docs/cell.md and
docs/stragglers.md); :meth:`FlowerLauncher.use_superlink` submits to such a SuperLink instead of starting one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lab.experiments.procs import ProcessSet, Started, alive, free_port, wait_port


def python_env(run_dir: Path) -> dict:
    """The environment of every child: this checkout first on PYTHONPATH (so the ServerApp/ClientApp processes Flower
    starts import the same ``lab``), this interpreter's bin first on PATH (Flower starts its helpers by name),
    unbuffered output (the launcher reads first lines from logs), and the run's own Flower home."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["FLWR_HOME"] = str(Path(run_dir) / "flwr")
    env["FLWR_TELEMETRY_ENABLED"] = "0"     # Flower reports usage to flower.ai by default: a lab run does not
    return env


def flower_bin(name: str) -> str:
    """The path of Flower's program ``name`` beside this interpreter (RuntimeError saying how to install it)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise RuntimeError(f"{name} not found beside {sys.executable}: install Flower (pip install 'flwr>=1.42')")
    return str(path)


def node_config_arg(config: dict) -> str:
    """A SuperNode's ``--node-config`` value from a dict: strings quoted (``device='dev0'``), numbers and booleans
    bare; ValueError for a value Flower's parser cannot take (a quote inside a string, a nested value)."""
    parts = []
    for key, value in config.items():
        if isinstance(value, bool):
            parts.append(f"{key}={str(value).lower()}")
        elif isinstance(value, (int, float)):
            parts.append(f"{key}={value}")
        elif isinstance(value, str) and "'" not in value and '"' not in value:
            parts.append(f"{key}='{value}'")
        else:
            raise ValueError(f"--node-config {key}={value!r}: expected a number, a boolean or a string without quotes")
    return " ".join(parts)


def run_config_arg(run_config: dict) -> str:
    """``flwr run --run-config`` from a dict: JSON literals (strings double-quoted), booleans as ``true``/``false``.
    Flower's parser takes no quotes inside a string value: callers base64 anything that may hold one."""
    return " ".join(f"{k}={json.dumps(v) if not isinstance(v, bool) else str(v).lower()}" for k, v in run_config.items())


def serverapp_gone(pids: list[int], earlier: set[int], alive_fn) -> int | None:
    """The ServerApp's pid if this run's ServerApp has exited, else None. ``pids``: every process seen running
    ``flwr-serverapp`` (in the order seen), ``earlier``: those of earlier runs. The run's ServerApp is gone only when
    none of its ``flwr-serverapp`` processes is alive: a process the ServerApp forks shows the ServerApp's command line
    until it execs, so a short-lived helper caught in that instant is recorded as ``flwr-serverapp`` too, and its
    exit is not the ServerApp's. (A CI run stopped a stragglers run 0.1 s after its ServerApp had pulled its task,
    with "exited mid-run"; with the one-pid rule any such helper would do that.)"""
    new = [p for p in pids if p not in earlier]
    if new and not any(alive_fn(p) for p in new):
        return new[0]
    return None


class ServerAppExited(RuntimeError):
    """The ServerApp process Flower started exited without writing its result; ``at``: when it was noticed
    (time.monotonic())."""

    def __init__(self, message: str, at: float):
        super().__init__(message)
        self.at = at


class FlowerLauncher:
    """One Flower deployment on this host, owned by ``procs``: :meth:`start_superlink`, :meth:`start_supernode`
    (one per worker host), :meth:`submit` (``flwr run``), :meth:`wait_result`. ``connection``: the name of the
    SuperLink connection in the run's ``FLWR_HOME/config.toml``."""

    def __init__(self, procs: ProcessSet, run_dir: str | Path, connection: str = "otalab", poll_s: float = 0.2):
        self.procs, self.run_dir, self.connection = procs, Path(run_dir), connection
        self.poll_s = float(poll_s)      # SuperNodes' idle poll (lab.flower.supernode; Flower's own: 3 s)
        (self.run_dir / "flwr").mkdir(parents=True, exist_ok=True)
        self.address: str | None = None
        self.submitted: Started | None = None
        self.run_start: float | None = None
        self._earlier_serverapps: set[int] = set()     # ServerApps of earlier runs (gone without being a failure)

    def start_superlink(self, timeout_s: float) -> str:
        """Start ``flower-superlink --insecure`` on 127.0.0.1 (a free port), wait until it listens; returns its
        Fleet API address (``127.0.0.1:PORT``, what SuperNodes connect to)."""
        port = free_port()
        link = self.procs.start("superlink", [flower_bin("flower-superlink"), "--insecure",
                                              "--disable-runtime-dependency-installation", "--host", "127.0.0.1",
                                              "--port", str(port)])
        wait_port("127.0.0.1", port, timeout_s, link.proc, "flower-superlink")
        self.use_superlink(f"127.0.0.1:{port}", insecure=True)
        return self.address

    def use_superlink(self, address: str, *, insecure: bool = True, root_certificates: str | None = None) -> None:
        """Submit runs to the SuperLink at ``address`` (its Control API ``HOST:PORT``): write the run's
        ``FLWR_HOME/config.toml`` with the connection."""
        if not address or ":" not in address:
            raise ValueError(f"SuperLink address {address!r}: expected HOST:PORT")
        self.address = address
        lines = [f'[superlink]\ndefault = "{self.connection}"\n', f"[superlink.{self.connection}]",
                 f'address = "{address}"']
        lines.append("insecure = true" if insecure else f'root-certificates = "{root_certificates}"')
        (self.run_dir / "flwr" / "config.toml").write_text("\n".join(lines) + "\n")

    def start_supernode(self, role: str, node_config: dict) -> Started:
        """Start one SuperNode (``flower-supernode --insecure`` with its idle poll shortened to ``poll_s``:
        :mod:`lab.flower.supernode`) connected to this launcher's SuperLink, with ``node_config``
        (:func:`node_config_arg`); its process has the role ``role`` in ``procs``."""
        if self.address is None:
            raise RuntimeError("start_supernode before start_superlink: no SuperLink to connect to")
        flower_bin("flower-supernode")      # Flower is installed (else: how to install it)
        return self.procs.start(role, [
            sys.executable, "-m", "lab.flower.supernode", "--poll-s", str(self.poll_s),
            "--insecure", "--superlink", self.address,
            "--node-config", node_config_arg(node_config), "--port", str(free_port()), "--max-wait-time", "10"])

    def submit(self, app_dir: str | Path, run_config: dict, role: str = "flwr-run") -> Started:
        """``flwr run <app_dir> <connection> --run-config ... --format json`` (the process ``role``); several runs
        may follow each other on the same SuperLink and SuperNodes (:meth:`wait_result` watches the latest)."""
        if self.address is None:
            raise RuntimeError("submit before start_superlink/use_superlink: no SuperLink to submit to")
        self.procs.note_descendants()
        self._earlier_serverapps = set(self.procs.pids_of("flwr-serverapp"))
        self.submitted = self.procs.start(role, [flower_bin("flwr"), "run", str(app_dir), self.connection,
                                                       "--run-config", run_config_arg(run_config),
                                                       "--format", "json"])
        self.run_start = time.monotonic()
        return self.submitted

    def wait_result(self, out: str | Path, timeout_s: float, *, check: Callable[[], None] | None = None,
                    monitor: Callable[[ProcessSet, float], None] | None = None, poll_s: float = 0.2,
                    server: str = "the ServerApp", what: str = "the run") -> dict:
        """Wait until the ServerApp has written ``out`` (JSON) and return it. Every ``poll_s``: RuntimeError when
        ``timeout_s`` since the submission has passed, ``flwr run`` failed or refused the run; ``check()`` (the
        caller's own watch: raise to stop); :class:`ServerAppExited` when the ``flwr-serverapp`` process is gone
        without the result; then ``monitor(procs, seconds since the submission)``. ``server``, ``what``: how the
        errors name the ServerApp's role and the run (the cell: "the PS", "the cell")."""
        if self.submitted is None:
            raise RuntimeError("wait_result before submit: no run to wait for")
        out, submit, procs = Path(out), self.submitted, self.procs
        deadline = self.run_start + timeout_s
        while not out.exists():
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(f"the run did not finish within {timeout_s} s (logs: {self.run_dir})")
            if submit.proc.poll() not in (None, 0):
                raise RuntimeError(f"flwr run failed (code {submit.proc.returncode}): {procs.tail(submit)}")
            if submit.proc.poll() == 0 and '"success": false' in submit.log.read_text(errors="replace"):
                raise RuntimeError(f"flwr run refused the run: {procs.tail(submit, 12)}")
            if check is not None:
                check()
            procs.note_descendants()
            gone = serverapp_gone(procs.pids_of("flwr-serverapp"), self._earlier_serverapps, alive)
            if gone is not None and not out.exists():
                raise ServerAppExited(f"{server} (Flower ServerApp, pid {gone}) exited mid-run without its "
                                      f"result: stopping {what}", time.monotonic())
            if monitor is not None:
                monitor(procs, now - self.run_start)
            time.sleep(poll_s)
        return json.loads(out.read_text())
