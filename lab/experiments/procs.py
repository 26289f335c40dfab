"""OS processes a run owns: start them, find their descendants, stop every one of them (also on Ctrl-C / SIGTERM).

Flower's SuperLink and SuperNodes start helpers of their own (``flower-superexec`` in a new session, which starts
``flwr-serverapp`` / ``flwr-clientapp``), so killing a process group is not enough: :meth:`ProcessSet.stop` first
walks ``/proc`` for every descendant of every process it started (while the parents are still alive to say who
their children are), then sends SIGTERM to all of them, waits, and SIGKILLs what is left. :func:`alive` and
:func:`descendants` read ``/proc`` directly (Linux; no psutil needed).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def _ppid_map() -> dict[int, list[int]]:
    """parent pid -> child pids of every process visible in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after the last ')'
        rest = stat[stat.rfind(")") + 2:].split()
        if len(rest) >= 2:
            children.setdefault(int(rest[1]), []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children, grandchildren, ...), from /proc."""
    children = _ppid_map()
    out, todo = [], list(children.get(int(pid), []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:][:1] not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    """The command line of ``pid`` from /proc (empty when it is gone or unreadable)."""
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the OS says is free now on ``host`` (for programs that cannot bind port 0 and report it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    """Return once something accepts TCP connections on ``host:port``; RuntimeError after ``timeout_s`` or when
    ``proc`` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what or 'process'} (pid {proc.pid}) exited with code {proc.returncode} before "
                               f"listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what or 'process'}: nothing listens on {host}:{port} after {timeout_s} s")


@dataclass
class Started:
    """One process a :class:`ProcessSet` started: its role in the run, the Popen, and where its output goes."""

    role: str
    proc: subprocess.Popen
    log: Path
    host: str = field(default_factory=socket.gethostname)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def as_dict(self) -> dict:
        return {"role": self.role, "pid": self.pid, "host": self.host}


class ProcessSet:
    """The processes of one run. ``start`` launches a command with its stdout+stderr in ``<log_dir>/<role>.log``;
    ``stop`` ends all of them and their descendants (idempotent; registered with atexit, and, while
    :meth:`handle_signals` is active, on SIGINT/SIGTERM — the handler raises KeyboardInterrupt in the main thread so
    the caller's ``finally`` runs)."""

    def __init__(self, log_dir: str | Path, env: dict | None = None):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ if env is None else env)
        self.started: list[Started] = []
        self.seen: dict[int, str] = {}          # every pid ever seen under us -> role (for the "nothing left" check)
        self.programs: dict[int, str] = {}      # descendants' pid -> program name (note_descendants)
        self._stopped = False
        self._lock = threading.Lock()
        atexit.register(self.stop)

    def start(self, role: str, argv: list[str], *, env: dict | None = None) -> Started:
        log = self.log_dir / f"{role}.log"
        fh = open(log, "wb")  # noqa: SIM115 (handed to the child, closed below)
        try:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**self.env, **(env or {})}, start_new_session=True)
        finally:
            fh.close()
        item = Started(role, proc, log)
        with self._lock:
            self.started.append(item)
            self.seen[proc.pid] = role
        return item

    def by_role(self, role: str) -> Started:
        for s in self.started:
            if s.role == role:
                return s
        raise KeyError(f"role {role!r}: no such process in this run ({', '.join(s.role for s in self.started)})")

    def first_line(self, item: Started, timeout_s: float, marker: str = "") -> str:
        """The first line of ``item``'s output that contains ``marker`` (waits; RuntimeError when the process
        exits first or after ``timeout_s``, quoting the end of its log)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = item.log.read_text(errors="replace")
            for line in text.splitlines():
                if marker in line and (marker or line.strip()):
                    return line
            if item.proc.poll() is not None:
                raise RuntimeError(f"{item.role} (pid {item.pid}) exited with code {item.proc.returncode}: "
                                   f"{self.tail(item)}")
            time.sleep(0.05)
        raise RuntimeError(f"{item.role} (pid {item.pid}): no line with {marker!r} within {timeout_s} s: "
                           f"{self.tail(item)}")

    @staticmethod
    def tail(item: Started, lines: int = 6) -> str:
        try:
            return " | ".join(item.log.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def note_descendants(self) -> None:
        """Remember every current descendant (Flower's helpers) so :meth:`leftovers` can check them later, and the
        program each one runs (:attr:`programs`: pid -> the basename of its first command-line word that names a
        program, e.g. ``flwr-serverapp``)."""
        for s in list(self.started):
            for p in descendants(s.pid):
                if p not in self.seen:
                    self.seen[p] = f"{s.role}/child"
                    words = cmdline(p)
                    # "python /path/bin/flwr-serverapp ..." or "/path/bin/flwr-serverapp ...": the program's name
                    names = [os.path.basename(w) for w in words[:2]]
                    self.programs[p] = next((n for n in names if not n.startswith("python")), names[0] if names
                                            else "")

    def pids_of(self, program: str) -> list[int]:
        """Pids seen under this set that ran ``program`` (see :meth:`note_descendants`), alive or not."""
        return [p for p, name in self.programs.items() if name == program]

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM every started process and its descendants, SIGKILL what is left after ``grace_s``."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self.note_descendants()
        pids = [p for p in self.seen if alive(p)]
        for p in pids:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            for s in self.started:
                s.proc.poll()                       # reap our own children so they do not stay zombies
            if not any(alive(p) for p in pids):
                break
            time.sleep(0.05)
        # then SIGKILL, again for whatever a dying helper started meanwhile (a SuperExec launching a ClientApp as
        # its SuperNode goes), until everything seen is gone or 5 s have passed (a killed grandchild is reaped by
        # init, not by us: it may take a moment on a loaded host)
        deadline = time.monotonic() + 5.0
        while True:
            self.note_descendants()
            left = [p for p in self.seen if alive(p)]
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for s in self.started:
                s.proc.poll()
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for s in self.started:
            try:
                s.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                pass
        atexit.unregister(self.stop)

    def leftovers(self) -> list[int]:
        """Pids started or seen by this set that still run (empty after a clean :meth:`stop`)."""
        return [p for p in self.seen if alive(p)]

    def handle_signals(self):
        """Context manager: SIGINT/SIGTERM raise KeyboardInterrupt in the main thread while active."""
        return _Signals()


class _Signals:
    def __enter__(self):
        self._old = {}
        if threading.current_thread() is not threading.main_thread():
            return self

        def handler(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False
