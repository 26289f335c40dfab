"""Buffers for streaming threads whose memory exists before the stream needs it.

numpy asks the kernel for transparent huge pages for large arrays (``madvise(MADV_HUGEPAGE)``, arrays of 4 MiB and
more), and ``np.zeros`` maps nothing until a page is first written. So the first write into each 2 MiB of a ring
buffer faults in a whole huge page, and on a host with ``/sys/kernel/mm/transparent_hugepage/defrag`` = ``madvise``
(Debian's and Ubuntu's default) the kernel may compact memory to find one: measured on this project's 2-core host
(2026-12-06, load 1.7), every 262,144th complex64 sample written into the PlutoSDR stream's 4 Mi ring took 19-25 ms,
and the same in the node's ring, where a block takes microseconds. The stream's RX thread held its lock meanwhile,
and the TX feeder waiting on it let the emulated DAC run dry (issue #14: the TX slips of the 10 s streaming test).

:func:`resident_zeros` maps the memory at once (``MAP_POPULATE``: the kernel faults every page in while mapping it,
here 4 Mi complex64 in about 10 ms), so no page fault is left for the stream to take.
"""

from __future__ import annotations

import mmap

import numpy as np


def resident_zeros(n: int, dtype) -> np.ndarray:
    """A writable zero-filled array of ``n`` elements of ``dtype`` whose pages are all mapped now (module
    docstring); where the platform has no ``MAP_POPULATE`` (not Linux), ``np.zeros`` written once."""
    dtype = np.dtype(dtype)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n = {n!r}: expected an integer number of elements >= 1")
    flags = getattr(mmap, "MAP_POPULATE", None)
    if flags is None or not hasattr(mmap, "MAP_ANONYMOUS"):
        out = np.zeros(int(n), dtype)
        out.fill(0)            # (writes every page: faulted in now)
        return out
    buf = mmap.mmap(-1, int(n) * dtype.itemsize, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | flags)
    return np.frombuffer(buf, dtype, count=int(n))
