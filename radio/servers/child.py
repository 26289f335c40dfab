"""A stand-in server (emulated Pluto, ZeroMQ air) in a process of its own, owned by the process that started it.

Real radios and a deployed air are not in the client's process; a stand-in that is shares the client's GIL and CPU
time, so its own delays count as the client's (an emulated DAC that handles a push late reports an underflow the
hardware would not have had; a starved broker releases samples late). In a process of its own it keeps its own time.

Parent: :class:`ChildServer` runs ``python -m MODULE SETTINGS_JSON``, waits for the child's first stdout line (a JSON
object: where it serves), then asks it one command line at a time on its stdin and reads one JSON line back.
Closing stdin (:meth:`ChildServer.close`, also at garbage collection) ends the child; a child that does not end
within 5 s is killed. Child: :func:`serve_commands` prints the ready line and answers until stdin ends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import weakref
from typing import Callable

from radio.base import RadioError


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.stdin.close()
            proc.wait(timeout=5.0)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=5.0)


class ChildServer:
    """``python -m module settings-json`` as a child process (module docstring). ``ready`` holds the child's first
    line (a dict); RadioError names ``what`` if it does not come within ``timeout_s`` or the child dies."""

    def __init__(self, module: str, settings: dict, what: str, timeout_s: float = 30.0):
        self.what = what
        self._proc = subprocess.Popen([sys.executable, "-m", module, json.dumps(settings)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self._finalizer = weakref.finalize(self, _stop, self._proc)
        self._io = threading.Lock()
        self.ready: dict = json.loads(self._readline(timeout_s, "start"))
        self.pid = self._proc.pid

    def _readline(self, timeout_s: float, command: str) -> str:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self._proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not box or not box[0]:
            if box or self._proc.poll() is not None:    # (it closed its stdout: it is ending)
                try:
                    code = self._proc.wait(timeout=5.0)
                except subprocess.TimeoutExpired:
                    code = None
                err = self._proc.stderr.read()[-2000:]
                self.close()
                raise RadioError(f"{self.what} (pid {self._proc.pid}) exited (code {code}) before answering "
                                 f"{command!r}{': ' + err if err else ''}")
            self.close()
            raise RadioError(f"{self.what} (pid {self._proc.pid}): no answer to {command!r} within {timeout_s:.0f} s")
        return box[0]

    def ask(self, command: str, timeout_s: float = 10.0) -> dict:
        """Send one command line; the child's JSON answer. RadioError if the child has exited or an answer says
        ``error``."""
        with self._io:
            if self._proc.poll() is not None:
                raise RadioError(f"{self.what} (pid {self._proc.pid}) has exited with code {self._proc.returncode}")
            self._proc.stdin.write(command + "\n")
            self._proc.stdin.flush()
            out = json.loads(self._readline(timeout_s, command))
        if "error" in out:
            raise RadioError(f"{self.what}: {out['error']}")
        return out

    def cpu_seconds(self) -> float:
        """CPU time (user + system, s) the child process has used so far."""
        return float(self.ask("cpu")["cpu_s"])

    def close(self) -> None:
        """End the child (idempotent)."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def thread_cpu() -> dict:
    """``{"threads": {name: CPU s}}``: the CPU time each live Python thread of this process has used (threads of
    one name summed; where the platform has no per-thread CPU clock, an empty dict)."""
    out: dict[str, float] = {}
    for th in threading.enumerate():
        try:
            cpu = time.clock_gettime(time.pthread_getcpuclockid(th.ident))
        except (AttributeError, OSError, TypeError):   # no per-thread clocks here, or the thread just ended
            continue
        out[th.name] = out.get(th.name, 0.0) + cpu
    return {"threads": out}


def serve_commands(ready: dict, commands: dict[str, Callable[..., dict]]) -> None:
    """Child side: print ``ready`` as one JSON line, then answer each stdin line ``NAME ARG...`` with
    ``commands[NAME](*ARGS)`` as one JSON line (an unknown name or a failing command: ``{"error": why}``) until
    stdin ends. Every child also answers ``cpu``: ``{"cpu_s"}``, the CPU time its process used so far, and
    ``threads``: :func:`thread_cpu`."""
    commands = {"cpu": lambda: {"cpu_s": time.process_time()}, "threads": thread_cpu, **commands}
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        fn = commands.get(words[0])
        if fn is None:
            out = {"error": f"unknown command {words[0]!r}: expected one of {sorted(commands)}"}
        else:
            try:
                out = fn(*words[1:])
            except Exception as exc:  # reported to the parent, which raises it there
                out = {"error": f"{words[0]}: {type(exc).__name__}: {exc}"}
        print(json.dumps(out), flush=True)
