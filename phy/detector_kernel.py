"""The numba kernel of :func:`phy.detector.window_sums` (the detector metric's block and window sums; see
:mod:`phy.detector`). A module of its own so that numba is imported only when a detector is made (importing numba
takes ~1 s); importing this module raises ImportError without numba, and the detector then uses its numpy path, which
gives the same bits."""

from __future__ import annotations

import numba
import numpy as np


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


@numba.njit(cache=True, nogil=True, boundscheck=False)
def screen_kernel(r, n_out, l1, w1, l2, w2, o2, k1, k2, thr, rel_floor, abs_floor, tile, mask,
                  c1r, c1i, c2r, c2i, ce):  # pragma: no cover - compiled (tested against phy.detector.screen_numpy)
    """The screen of :func:`phy.detector.screen_numpy`, with the same float64 operations in the same order: per tile
    of ``tile`` positions, sequential prefix sums (from 0) of the lag products conj(r_i) r_(i+l) (lag l1 from the
    tile's first sample, lag l2 from o2 after it) and of the power |r_i|^2, all five in one loop (their additions
    overlap); window sums as differences of prefix sums; mask[d] = k1 |P1|^2 E2^2 + k2 |P2|^2 E1^2 >= thr E1^2 E2^2
    (an E of 0 taken as 1: its P is 0 too) or a window's energy outside [max(abs_floor, rel_floor * the tile's
    energy), 1e70] (there the rounding of either metric is not bounded by the margin, or E^4 overflows). ``r``
    complex64 [n_out + span - 1]; ``mask`` bool [n_out]; returns the number of flagged positions; ``c1r .. ce`` float64 scratch of at least tile + span
    entries. Views, then loops indexed by the loop variable alone (no wraparound checks: 8.8 -> 3.8 ns per
    sample)."""
    span = o2 + w2 + l2
    n_p = w2 if w2 > w1 else w1
    count = 0
    for t in range(0, n_out, tile):
        m = min(tile, n_out - t)
        s1r = 0.0
        s1i = 0.0
        s2r = 0.0
        s2i = 0.0
        s_e = 0.0
        c1r[0] = 0.0
        c1i[0] = 0.0
        c2r[0] = 0.0
        c2i[0] = 0.0
        ce[0] = 0.0
        x0 = r[t:]
        x1 = r[t + l1:]
        x2 = r[t + o2:]
        x3 = r[t + o2 + l2:]
        o1r = c1r[1:]
        o1i = c1i[1:]
        o2r = c2r[1:]
        o2i = c2i[1:]
        oe = ce[1:]
        for j in range(m + n_p - 1):
            ar = np.float64(x0[j].real)
            ai = np.float64(x0[j].imag)
            br = np.float64(x1[j].real)
            bi = np.float64(x1[j].imag)
            cr = np.float64(x2[j].real)
            ci = np.float64(x2[j].imag)
            dr = np.float64(x3[j].real)
            di = np.float64(x3[j].imag)
            s1r += ar * br + ai * bi
            s1i += ar * bi - ai * br
            s2r += cr * dr + ci * di
            s2i += cr * di - ci * dr
            s_e += ar * ar + ai * ai
            o1r[j] = s1r
            o1i[j] = s1i
            o2r[j] = s2r
            o2i[j] = s2i
            oe[j] = s_e
        for j in range(m + n_p - 1, m + span - 1):
            ar = np.float64(x0[j].real)
            ai = np.float64(x0[j].imag)
            s_e += ar * ar + ai * ai
            oe[j] = s_e
        floor = max(abs_floor, rel_floor * s_e)
        a1r = c1r[w1:]
        a1i = c1i[w1:]
        a2r = c2r[w2:]
        a2i = c2i[w2:]
        e1h = ce[w1 + l1:]
        e2l = ce[o2:]
        e2h = ce[o2 + w2 + l2:]
        mk = mask[t:]
        for d in range(m):
            p1r = a1r[d] - c1r[d]
            p1i = a1i[d] - c1i[d]
            p2r = a2r[d] - c2r[d]
            p2i = a2i[d] - c2i[d]
            e1 = e1h[d] - ce[d]
            e2 = e2h[d] - e2l[d]
            f1 = e1 if e1 > 0.0 else 1.0
            f2 = e2 if e2 > 0.0 else 1.0
            f1 = f1 * f1
            f2 = f2 * f2
            lhs = k1 * (p1r * p1r + p1i * p1i) * f2 + k2 * (p2r * p2r + p2i * p2i) * f1
            odd1 = (e1 > 0.0) & ((e1 < floor) | (e1 > 1e70))
            odd2 = (e2 > 0.0) & ((e2 < floor) | (e2 > 1e70))
            flag = (lhs >= thr * f1 * f2) | odd1 | odd2
            mk[d] = flag
            count += flag
    return count
