"""Raise the scheduling priority of a streaming thread, where the host allows it, as SDR clients do.

A radio streams on its own clock: a thread that feeds its DAC or drains its ADC and is not scheduled for longer than
the device's buffers hold loses samples (an underflow, an overflow), however little CPU it needs. UHD raises its
streaming threads' priority (``uhd::set_thread_priority_safe``) and GNU Radio offers the same; here a thread asks for a
higher share of the CPU with a negative nice value (Linux applies ``setpriority`` to the calling thread only, and
threads it starts afterwards inherit it). Not SCHED_FIFO: a Python thread holds the GIL, and a real-time thread
spinning in Python could freeze a core.

Unprivileged users may not lower nice values (no CAP_SYS_NICE, ``ulimit -e`` 0): then nothing changes and the
returned string says so; the caller reports it (e.g. in its status), it does not fail.
"""

from __future__ import annotations

import os
import sys

#: the nice value streaming threads ask for (0 is the default; -20 the highest priority)
STREAMING_NICE = -10
#: the GIL switch interval a process with streaming threads runs with (CPython's default is 5 ms)
STREAMING_SWITCH_INTERVAL_S = 0.0005


def raise_thread_priority(nice: int = STREAMING_NICE) -> str:
    """Set the calling thread's nice value to ``nice`` (if lower than its current one); returns what was done, e.g.
    ``"nice -10"`` or ``"nice 0 (lowering it is not permitted: ...)"``."""
    if not -20 <= nice <= 19:
        raise ValueError(f"nice = {nice!r}: expected -20..19")
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if nice < current:
            os.setpriority(os.PRIO_PROCESS, 0, nice)     # 0: the calling thread (Linux)
        return f"nice {os.getpriority(os.PRIO_PROCESS, 0)}"
    except (OSError, AttributeError) as exc:   # not permitted, or no setpriority on this platform
        try:
            current = os.getpriority(os.PRIO_PROCESS, 0)
        except (OSError, AttributeError):
            current = "unknown"
        return f"nice {current} (raising the priority is not permitted: {exc})"


def shorten_switch_interval(seconds: float = STREAMING_SWITCH_INTERVAL_S) -> float:
    """Make this process's GIL switch interval at most ``seconds``; returns the interval in force.

    A streaming thread that returns from I/O (a socket, a USB transfer) needs the GIL back before it can go on; while
    another thread of the process runs Python, it waits up to one switch interval, at every such return. A Pluto's
    TX push crosses several of them, so with CPython's 5 ms a feeder that must push a 4096-sample block every 7.9 ms
    (521 kS/s) took 10-35 ms per push in a cell's node process (its RX thread, its clock map and the device actor
    all run Python), its DAC ran dry 37-49 times in a 7-minute run, and every slip moved the TX offset. A
    shorter interval costs a little throughput to threads that run Python (more frequent hand-overs)."""
    if not seconds > 0:
        raise ValueError(f"seconds = {seconds!r}: expected > 0")
    if sys.getswitchinterval() > seconds:
        sys.setswitchinterval(seconds)
    return sys.getswitchinterval()
