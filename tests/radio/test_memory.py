"""radio.memory: ring buffers whose pages exist before a streaming thread first writes them."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from radio.memory import resident_zeros


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_resident_zeros_are_zero_writable_and_of_the_asked_type():
    x = resident_zeros(1000, np.complex64)
    assert x.dtype == np.complex64 and x.shape == (1000,) and x.flags.writeable and not np.any(x)
    x[10:20] = 1 + 2j
    assert np.count_nonzero(x) == 10
    assert resident_zeros(7, np.uint8).nbytes == 7
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="integer number of elements"):
            resident_zeros(bad, np.float32)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resident set size read from /proc (Linux)")
def test_resident_zeros_are_mapped_when_made_np_zeros_are_not():
    """64 MiB: the resident set grows by (almost) all of it at creation (MAP_POPULATE), while np.zeros of the same
    size maps its pages only when written (what stalled the Pluto stream's writers, radio.memory)."""
    n = 64 << 20
    before = _rss_bytes()
    lazy = np.zeros(n // 8, np.complex64)
    assert _rss_bytes() - before < n // 4
    before = _rss_bytes()
    ready = resident_zeros(n // 8, np.complex64)
    assert _rss_bytes() - before > 0.9 * n
    del lazy, ready
