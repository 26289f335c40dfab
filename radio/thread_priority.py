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

#: the nice value streaming threads ask for (0 is the default; -20 the highest priority)
STREAMING_NICE = -10


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
