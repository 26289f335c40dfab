"""Realtime tests on a shared host: their timing is judged only when the host is not overloaded.

A realtime test asserts two kinds of things. What must hold on any host (a burst not on time is reported, never
silently misplaced; every lost sample is flagged; every slip starts a lock epoch) is asserted always. What needs the
CPU the radio needs (at most 1 % of bursts late, the clock map's bound, enough answers in a row) is asserted inside
:func:`timing_judged`: a failure there on a host whose load average per core exceeded :data:`OVERLOADED_PER_CORE` is
reported as xfail naming the load (a real radio would lose samples too when its host gives it less than it needs);
below it, it fails.
"""

from __future__ import annotations

import contextlib
import os

import pytest

#: load average (per core) above which a realtime test's timing is not judged: measured on this project's shared
#: 2-core host, the 10 s streaming test passed for every radio at loads 5-7.6 and failed its timing (7-232 of 500
#: bursts late, all reported) at 7.5-12.7, when other work left the radios' threads less than they need
OVERLOADED_PER_CORE = 3.0


@contextlib.contextmanager
def timing_judged(load_before: float):
    """Timing assertions of a realtime test: a failure on a host whose load average (at the start or the end, per
    core) exceeded OVERLOADED_PER_CORE is reported as xfail with the load, not as a failure (the radio had less CPU
    than it needs: real radios would lose samples too); on a host under that load it fails (what must hold on any
    host is asserted outside this block and fails on any host)."""
    try:
        yield
    except AssertionError as exc:
        load = max(load_before, os.getloadavg()[0])
        if load > OVERLOADED_PER_CORE * (os.cpu_count() or 1):
            pytest.xfail(f"timing not judged: load average {load:.1f} on {os.cpu_count()} cores ({exc})")
        raise
