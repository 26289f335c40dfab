"""The numba kernel of :func:`phy.detector.window_sums` (the detector metric's block and window sums; see
:mod:`phy.detector`). A module of its own so that numba is imported only when a detector is made (importing numba
takes ~1 s); importing this module raises ImportError without numba, and the detector then uses its numpy path, which
gives the same bits."""

from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True, boundscheck=False)
def window_sums_kernel(a, lanes, starts, widths, kmax, part_k, part_o, n_parts, n_out, out, lev,
                       tile):  # pragma: no cover - compiled (tested against the numpy path)
    """out[w, lanes d + c] = sum of the window w at starts[w] + d (lane c of a float32 [A * lanes] array of
    interleaved lanes): the sums of 2^k-sample blocks built level by level, level_k[i] = level_{k-1}[i] +
    level_{k-1}[i + 2^(k-1)], and the window's blocks (part_k, part_o) added left to right - the additions of
    _block_sums and _window_sum, tile by tile. ``lev`` float32 [max kmax + 1, (tile + max width) * lanes] is
    scratch."""
    n_win = starts.shape[0]
    for t0 in range(0, n_out, tile):
        m = min(tile, n_out - t0)
        for w in range(n_win):
            length = m + widths[w] - 1
            base = (starts[w] + t0) * lanes
            # views, then loops indexed by the loop variable alone (no wraparound checks: they vectorize)
            src = a[base:base + length * lanes]
            dst = lev[0]
            for j in range(length * lanes):
                dst[j] = src[j]
            for k in range(1, kmax[w] + 1):
                h = (1 << (k - 1)) * lanes
                lo, hi, dst = lev[k - 1], lev[k - 1][h:], lev[k]
                for j in range((length - (1 << k) + 1) * lanes):
                    dst[j] = lo[j] + hi[j]
            res = out[w, t0 * lanes:(t0 + m) * lanes]
            p0 = lev[part_k[w, 0]][part_o[w, 0] * lanes:]
            if n_parts[w] == 1:
                for j in range(m * lanes):
                    res[j] = p0[j]
                continue
            p1 = lev[part_k[w, 1]][part_o[w, 1] * lanes:]
            for j in range(m * lanes):
                res[j] = p0[j] + p1[j]
            for q in range(2, n_parts[w]):
                pq = lev[part_k[w, q]][part_o[w, q] * lanes:]
                for j in range(m * lanes):
                    res[j] += pq[j]
