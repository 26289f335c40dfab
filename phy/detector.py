"""Schmidl–Cox frame detection on a sample stream: :class:`SchmidlCoxDetector`.

Statistic
---------
For a candidate frame start ``d`` the detector uses both periodic structures of the preamble (``N`` = fft_size,
``cp`` = cp_len, ``L = N/2``):

* the Schmidl–Cox symbol is periodic with lag ``L`` over its whole ``cp + N`` samples:
  ``P1(d) = sum_{m<W1} r*(d+m) r(d+m+L)``, ``W1 = cp + L`` products;
* the LTS block is periodic with lag ``N`` over ``2cp + N`` samples; skipping its first ``cp`` samples (room for
  multipath and timing error): ``P2(d) = sum_{m<W2} r*(d+o+m) r(d+o+m+N)``, ``o = cp + N + cp``, ``W2 = N + cp``.

Each is normalized by the mean power over the samples it touches (``s1^2 = E1/(W1+L)``, ``s2^2 = E2/(W2+N)``)::

    T(d) = |P1|^2 / (W1 s1^4) + |P2|^2 / (W2 s2^4)

Null distribution (pure complex white Gaussian noise of any power): each ``P`` is a sum of ``W`` uncorrelated
zero-mean products of variance ``sigma^4`` (``E[r*(n) r(n+l) r(m) r*(m+l)] = sigma^4 delta_nm`` for circular noise),
so by the central limit theorem ``P ~ CN(0, W sigma^4)`` and ``|P|^2/(W sigma^4) ~ Exp(1)``; the two windows are
disjoint, hence independent, and the power estimates converge to ``sigma^2``. Therefore ``T ~ Gamma(2, 1)``::

    P(T > t) = (1 + t) exp(-t)                                         (per sample position)

This is what the threshold is set from (``pfa_per_sample``); ``tests/phy/test_receiver.py`` checks it on noise.
Under a frame with per-sample SNR ``g`` the normalized correlations approach ``rho = g / (1 + g)``, so
``T ~ (W1 + W2) rho^2`` (= 49 at 3 dB per-subcarrier SNR for wifi64, against a threshold of ~14 at 1e-5).

Cost: the window sums are built from sums of 2^k-sample blocks (one vector add per level, complex64/float32, in
passes of ``BLOCK`` positions): no running sums, so each value depends only on its own samples (not on where the
computation started) and carries a float32 error of a few roundings (~1e-7 relative) instead of a long running sum's.
The block sums and window sums are only additions: a numba kernel (:func:`window_sums`, ``phy.detector_kernel``, used
when numba is installed, a dependency; imported and compiled or loaded from numba's cache when the first detector is
made, ~1-2 s once per process) does them in tiles of :data:`KERNEL_TILE` positions that stay in the L1 cache instead of one numpy pass
per level over the whole pass, with the same additions in the same order, so the same bits (tested against the numpy
path); the lag products, the power and the final division stay numpy calls (their rounding - e.g. whether a complex
product is fused - is numpy's own). Written here because no library sums fixed binary blocks in a fused pass; numba is
the maintained way to compile such a loop (DESIGN.md).

Screen: most positions of a stream are noise, far below the threshold. :meth:`SchmidlCoxDetector.screen` (a second
numba kernel, one fused pass per sample: lag products, float64 prefix sums, the statistic, the comparison; no
intermediate arrays) flags the positions where T may reach the threshold, with a margin ~500x the float32 metric's
rounding (:func:`screen_numpy`, the numpy reference with the same operations, states the bound and is tested
against the kernel bit for bit); :meth:`SchmidlCoxDetector.metric_screened` evaluates the exact metric only around
them. The scan (``phy.rx.detection``) uses it, so it finds the same candidates with the same values (tested) at
~4 ns per sample of noise instead of ~10-20.
"""

from __future__ import annotations

import numpy as np

from phy.ofdm import OfdmConfig

#: metric positions per vectorized pass: the pass's temporaries (~30 B per position) stay in the 1 MB L2 cache per core
#: of this project's host (metric of 2^18 noise samples, interleaved rounds, load ~3: passes of 2^16 37-60 MS/s,
#: 2^15 102-107, 2^14 93-98, 2^13 77-89; of 2^15 samples: 2^15 120-123, 2^14 103-106). The values do not depend on
#: it (each is a function of its own samples; tested)
BLOCK = 1 << 15


#: positions per tile of the numba window-sum kernel (its level rows, ~8 x (tile + 144) x 8 B, stay in the L1 cache)
KERNEL_TILE = 1024
#: None: the numba kernel for the window sums when numba is installed; False: the numpy path; True: the kernel
#: (RuntimeError without numba). Both give the same bits.
USE_KERNEL: bool | None = None
MAX_PARTS = 8

#: the screen flags every position whose float64 statistic reaches ``(1 - SCREEN_MARGIN) threshold - SCREEN_MARGIN``
#: (the float32 metric's rounding moves T by < 1e-3 at the threshold, see :func:`screen_numpy`)
SCREEN_MARGIN = 0.01
#: :meth:`SchmidlCoxDetector.metric_screened` screens when numba is installed (False: it is :meth:`metric`; the scan
#: finds the same candidates either way)
SCREEN = True
#: runs of flagged positions are evaluated in classes of width 2^k, k >= this (one batched metric call per class)
SCREEN_MIN_CLASS = 5
#: positions per tile of the screen (prefix sums restart from 0 at each tile: their rounding stays ~1e-13 of the
#: tile's energy); its five float64 prefix-sum rows (~5 x (tile + span) x 8 B) stay in the L1/L2 cache
SCREEN_TILE = 1024
#: a window with less energy than this share of its tile's (or than SCREEN_ABS_FLOOR) is always evaluated exactly:
#: there the prefix sums' cancellation (relative error ~1e-13 x tile energy / window energy) or float32's
#: subnormal range could exceed the margin
SCREEN_REL_FLOOR = 1e-7
SCREEN_ABS_FLOOR = 1e-20

_KERNEL: list = []


def _kernel():
    """``phy.detector_kernel.window_sums_kernel``, imported on first use (numba's import takes ~1 s), or None when
    numba is not installed."""
    if not _KERNEL:
        try:
            from phy.detector_kernel import screen_kernel, window_sums_kernel
        except ImportError:  # pragma: no cover - depends on the environment
            window_sums_kernel = screen_kernel = None
        _KERNEL.append(window_sums_kernel)
        _KERNEL.append(screen_kernel)
    return _KERNEL[0]


def _screen_kernel():
    """``phy.detector_kernel.screen_kernel`` or None without numba."""
    _kernel()
    return _KERNEL[1]


def kernel_available() -> bool:
    """True when numba is installed (the window sums then run in :func:`window_sums`' kernel)."""
    return _kernel() is not None


class WindowSet:
    """Windows (offset in the array, width) as the kernel's parameter arrays, with the kernel's scratch (one set per
    detector and use: not shared between threads). ``offsets`` int64 [n_windows] may be changed in place."""

    def __init__(self, windows: list[tuple[int, int]], lanes: int):
        blocks = [_binary_blocks(w) for _, w in windows]
        self.offsets = np.array([o for o, _ in windows], np.int64)
        self.widths = np.array([w for _, w in windows], np.int64)
        self.kmax = np.array([max(k for k, _ in b) for b in blocks], np.int64)
        self.part_k = np.zeros((len(windows), MAX_PARTS), np.int64)
        self.part_o = np.zeros((len(windows), MAX_PARTS), np.int64)
        self.n_parts = np.array([len(b) for b in blocks], np.int64)
        for i, b in enumerate(blocks):
            for j, (k, o) in enumerate(b):
                self.part_k[i, j], self.part_o[i, j] = k, o
        self.lanes = lanes
        self.scratch = np.empty((int(self.kmax.max()) + 1, (KERNEL_TILE + int(self.widths.max())) * lanes),
                                np.float32)


def window_sums(a: np.ndarray, windows: WindowSet, n_out: int, out: np.ndarray) -> None:
    """Window sums of ``a`` (float32 [A], or complex64 [A] as two lanes) with the numba kernel: ``out`` (float32 or
    complex64 [n_windows, n_out]) row w [d] = the sum of ``a[offset_w + d : offset_w + d + width_w]`` by the binary
    blocks of :func:`_binary_blocks` - bit for bit what :func:`_block_sums` + :func:`_window_sum` give."""
    lanes = 2 if a.dtype == np.complex64 else 1
    if lanes != windows.lanes or windows.scratch.shape[1] < (KERNEL_TILE + int(windows.widths.max())) * lanes:
        raise ValueError(f"a is {a.dtype} ({lanes} lanes): the window set was made for {windows.lanes} lanes and a "
                         f"tile of {windows.scratch.shape[1] // windows.lanes - int(windows.widths.max())}")
    _kernel()(a.view(np.float32), lanes, windows.offsets, windows.widths, windows.kmax, windows.part_k, windows.part_o,
              windows.n_parts, n_out, out.view(np.float32), windows.scratch, KERNEL_TILE)


_WARM: list[bool] = []


def _warm_kernel() -> None:
    """Compile the kernel (or load it from numba's cache: ~0.7-2 s once per process) by one call on a few samples."""
    if not _WARM:
        x = np.zeros(64, np.complex64)
        window_sums(x, WindowSet([(0, 3), (10, 5)], 2), 8, np.empty((2, 8), np.complex64))
        window_sums(x.real.copy(), WindowSet([(0, 3), (10, 5)], 1), 8, np.empty((2, 8), np.float32))
        c = np.zeros(64)
        _screen_kernel()(x, 8, 2, 3, 4, 5, 6, 1.0, 1.0, 1.0, SCREEN_REL_FLOOR, SCREEN_ABS_FLOOR,
                         SCREEN_TILE, np.empty(8, bool), c, c, c, c, c)
        _WARM.append(True)


def _use_kernel() -> bool:
    if USE_KERNEL is False:
        return False
    if USE_KERNEL and _kernel() is None:
        raise RuntimeError("phy.detector.USE_KERNEL is True but numba is not installed (pip install numba)")
    return _kernel() is not None


def screen_numpy(r: np.ndarray, det: "SchmidlCoxDetector", thr: float, tile: int = SCREEN_TILE) -> np.ndarray:
    """Reference (numpy) implementation of the detector's screen: bool [n_out], True where the statistic may reach
    ``thr``. The numba kernel (``phy.detector_kernel.screen_kernel``) does the same float64 operations in the same
    order, so the same mask (tested).

    Per tile of ``tile`` positions from the start of ``r`` (complex64 [n_out + span - 1]), the lag products
    ``conj(r_i) r_(i+l)`` and the power ``|r_i|^2`` in float64 (products of float32 values are exact in float64, so
    a fused multiply-add cannot change them), their sequential prefix sums from 0 (``np.cumsum``), the window sums as
    differences of prefix sums, and ``T' = k1 |P1|^2 / E1^2 + k2 |P2|^2 / E2^2 >= thr`` tested without division as
    ``k1 |P1|^2 E2^2 + k2 |P2|^2 E1^2 >= thr E1^2 E2^2`` (an E of 0 taken as 1: its P is 0 too, and the term is 0,
    as in :meth:`SchmidlCoxDetector.metric`). A position is also flagged where a window holds energy outside
    ``[max(SCREEN_ABS_FLOOR, SCREEN_REL_FLOOR * the tile's energy), 1e70]`` (E^4 could overflow beyond).

    Why it is conservative: the float32 metric's window sums are exact to ~(log2 W + 2) 2^-24 of the sum of the
    magnitudes of their terms, which is at most E (|conj(a) b| <= (|a|^2 + |b|^2)/2), so |P|/E moves by ~1e-6 and T
    by ~2 sqrt(k T) 1e-6 (< 1e-3 at T ~ 15 even for an 8192-FFT; 2e-4 for wide256); the prefix sums move |P|/E by
    ~(tile + span) 2^-53 tile energy / E < 1e-8 above the energy floor. The margin (1 % of the threshold + 0.01) is
    ~100x both; ``tests/phy/test_detector_screen.py`` measures |T' - T| against it.
    """
    l1, w1, l2, w2, o2, span = det.lag1, det.w1, det.lag2, det.w2, det.off2, det.span
    n_out = r.size - span + 1
    mask = np.zeros(max(n_out, 0), bool)
    x = r.view(np.float32).astype(np.float64)
    xr, xi = x[0::2], x[1::2]
    n_p = max(w1, w2)
    for t in range(0, n_out, tile):
        m = min(tile, n_out - t)
        j = slice(t, t + m + n_p - 1)
        pre = []
        for lag, off in ((l1, 0), (l2, o2)):
            i = slice(t + off, t + off + m + n_p - 1)
            k = slice(t + off + lag, t + off + lag + m + n_p - 1)
            pre.append((np.concatenate([[0.0], np.cumsum(xr[i] * xr[k] + xi[i] * xi[k])]),
                        np.concatenate([[0.0], np.cumsum(xr[i] * xi[k] - xi[i] * xr[k])])))
        j = slice(t, t + m + span - 1)
        ce = np.concatenate([[0.0], np.cumsum(xr[j] * xr[j] + xi[j] * xi[j])])
        floor = max(SCREEN_ABS_FLOOR, SCREEN_REL_FLOOR * ce[-1])
        d = np.arange(m)
        p, f, odd = [], [], np.zeros(m, bool)
        for (cr, ci), w, lag, off in zip(pre, (w1, w2), (l1, l2), (0, o2)):
            p_r = cr[d + w] - cr[d]
            p_i = ci[d + w] - ci[d]
            e = ce[d + off + w + lag] - ce[d + off]
            p.append(p_r * p_r + p_i * p_i)
            g = np.where(e > 0.0, e, 1.0)
            f.append(g * g)
            odd |= (e > 0.0) & ((e < floor) | (e > 1e70))
        k1, k2 = det.screen_k
        lhs = k1 * p[0] * f[1] + k2 * p[1] * f[0]
        mask[t:t + m] = (lhs >= thr * f[0] * f[1]) | odd
    return mask


def _rows_of(fn, r: np.ndarray, n_out: int) -> tuple[np.ndarray, ...]:
    """``fn`` (a 1-D metric: arrays of M - span + 1 values per array of M samples) of every row of ``r`` [K, M] as
    one concatenated stream, of which the starts straddling two rows are dropped: arrays [K, n_out]."""
    k, m = r.shape
    out = []
    for a in fn(np.ascontiguousarray(r).reshape(-1)):
        full = np.empty(k * m, a.dtype)
        full[:a.size] = a
        out.append(full.reshape(k, m)[:, :n_out])
    return tuple(out)


def gamma2_threshold(pfa: float) -> float:
    """t with (1 + t) exp(-t) = pfa, for 0 < pfa < 1 (Newton on log)."""
    if not 0 < pfa < 1:
        raise ValueError(f"pfa = {pfa!r}: expected a probability strictly between 0 and 1")
    t = -np.log(pfa) + np.log1p(-np.log(pfa))
    for _ in range(50):
        f = np.log1p(t) - t - np.log(pfa)
        t -= f / (1.0 / (1.0 + t) - 1.0)
    return float(t)


def _binary_blocks(width: int) -> list[tuple[int, int]]:
    """A window of ``width`` samples as consecutive blocks of 2^k samples, largest first: [(k, offset), ...]."""
    out, pos = [], 0
    for k in range(width.bit_length() - 1, -1, -1):
        if width >> k & 1:
            out.append((k, pos))
            pos += 1 << k
    return out


def _block_sums(x: np.ndarray, keep: set[int]) -> dict[int, np.ndarray]:
    """{k: sums of 2^k consecutive samples of x for k in keep}: level k [i] = sum of x[i:i + 2^k], built by one
    vector add per level (levels not asked for are dropped as soon as the next one exists)."""
    levels = {0: x} if 0 in keep else {}
    prev = x
    for k in range(1, max(keep) + 1):
        h = 1 << (k - 1)
        prev = np.add(prev[:-h], prev[h:])
        if k in keep:
            levels[k] = prev
    return levels


def _window_sum(levels: dict[int, np.ndarray], blocks: list[tuple[int, int]], start: int, out: np.ndarray) -> None:
    """out[d] = sum of the window at ``start + d`` (blocks from :func:`_binary_blocks`) for d < out.size."""
    n = out.size
    parts = [levels[k][start + o:start + o + n] for k, o in blocks]
    if len(parts) == 1:
        out[...] = parts[0]
        return
    np.add(parts[0], parts[1], out=out)
    for q in parts[2:]:
        out += q


class SchmidlCoxDetector:
    """Vectorized Schmidl–Cox (+LTS periodicity) metric over a buffer; stateless apart from configuration.

    Parameters
    ----------
    cfg : OfdmConfig
    pfa_per_sample : float
        Null probability that ``T`` exceeds the threshold at one sample position (Gamma(2,1) tail, see module).
    """

    def __init__(self, cfg: OfdmConfig, pfa_per_sample: float = 1e-5):
        self.cfg = cfg
        n, cp = cfg.fft_size, cfg.cp_len
        self.lag1, self.w1 = n // 2, cp + n // 2
        self.lag2, self.w2, self.off2 = n, n + cp, cfg.symbol_len + cp
        self.span = self.off2 + self.w2 + self.lag2   # samples needed after d to evaluate T(d)
        self._blocks_p = [_binary_blocks(self.w1), _binary_blocks(self.w2)]
        self._blocks_e = [_binary_blocks(self.w1 + self.lag1), _binary_blocks(self.w2 + self.lag2)]
        self._levels_p = {k for b in self._blocks_p for k, _ in b}
        self._levels_e = {k for b in self._blocks_e for k, _ in b}
        self._k = np.array([[(self.w1 + self.lag1) ** 2 / self.w1], [(self.w2 + self.lag2) ** 2 / self.w2]],
                           np.float32)
        self._sets_p = None
        self._sets_e = None
        if _use_kernel():
            _warm_kernel()          # compile (or load from numba's cache) now, not at the stream's first block
        self.peak_window = self.span
        self.pfa_per_sample = pfa_per_sample
        self.threshold = gamma2_threshold(pfa_per_sample)
        #: (k1, k2) of T as float64 (the screen's), and the screen's threshold (see :func:`screen_numpy`)
        self.screen_k = ((self.w1 + self.lag1) ** 2 / self.w1, (self.w2 + self.lag2) ** 2 / self.w2)
        self.screen_threshold = (1 - SCREEN_MARGIN) * self.threshold - SCREEN_MARGIN
        self._screen_scratch = np.empty((5, SCREEN_TILE + self.span), np.float64)
        self._zero_bufs: tuple[np.ndarray, ...] | None = None

    def metric(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Metric for every start ``d`` in ``[0, r.shape[-1] - span]``.

        r : complex64 [M], or [K, M] for K independent segments at once (row k gives exactly ``metric(r[k])``).
        Returns (T float32 [..., M - span + 1], P1 complex64 [..], P2 complex64 [..]).

        Every value is a function of the ``span`` samples from its start only (window sums of fixed blocks, no
        running sums), so it does not depend on where the computation started (the same bits; tested): K segments
        are computed as one concatenated stream, of which the starts straddling two segments are dropped.
        """
        n_out = r.shape[-1] - self.span + 1
        if n_out <= 0:
            e = np.zeros((*r.shape[:-1], 0), np.float32)
            return e, e.astype(np.complex64), e.astype(np.complex64)
        if r.ndim > 1:
            return _rows_of(self.metric, r, n_out)
        if n_out <= BLOCK:
            return self._block(r, n_out)
        T = np.empty(n_out, np.float32)
        P1 = np.empty(n_out, np.complex64)
        P2 = np.empty(n_out, np.complex64)
        for a in range(0, n_out, BLOCK):
            b = min(n_out, a + BLOCK)
            T[a:b], P1[a:b], P2[a:b] = self._block(r[a:b + self.span - 1], b - a)
        return T, P1, P2

    def screen(self, r: np.ndarray) -> tuple[np.ndarray, int]:
        """(mask bool [M - span + 1], number of True) for complex64 ``r`` [M]: True where T may reach the threshold
        (a superset of ``metric(r)[0] > threshold``; see :func:`screen_numpy`, whose mask the numba kernel gives bit
        for bit). A single fused pass over the samples (products, float64 prefix sums, the statistic, the
        comparison) with no intermediate arrays: ~4 ns per sample against ~10-20 for :meth:`metric` on this
        project's host. Raises RuntimeError without numba (:func:`screen_numpy` is the numpy path)."""
        n_out = r.size - self.span + 1
        mask = np.empty(max(n_out, 0), bool)
        if n_out <= 0:
            return mask, 0
        kern = _screen_kernel()
        if kern is None:
            raise RuntimeError("SchmidlCoxDetector.screen needs numba (pip install numba); "
                               "phy.detector.screen_numpy is the numpy path")
        c = self._screen_scratch
        count = kern(np.ascontiguousarray(r, np.complex64), n_out, self.lag1, self.w1, self.lag2, self.w2,
                     self.off2, self.screen_k[0], self.screen_k[1], self.screen_threshold, SCREEN_REL_FLOOR,
                     SCREEN_ABS_FLOOR, SCREEN_TILE, mask, c[0], c[1], c[2], c[3], c[4])
        return mask, int(count)

    def _zeros(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read-only zero arrays (T float32, P1, P2 complex64) [n], views of buffers kept between calls."""
        z = self._zero_bufs
        if z is None or z[0].size < n:
            z = self._zero_bufs = tuple(np.zeros(max(n, 1 << 16), d) for d in (np.float32, np.complex64,
                                                                                np.complex64))
            for a in z:
                a.flags.writeable = False
        return z[0][:n], z[1][:n], z[2][:n]

    def metric_screened(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`metric` where it may matter, 0 elsewhere: the scan's metric.

        With numba (:func:`_use_kernel`), the screen (:meth:`screen`) flags the positions where T may reach the
        threshold; :meth:`metric` is evaluated on runs around them (flagged positions less than ``span`` apart
        joined; one batched call per class of run widths 2^k) and T, P1, P2 are 0 at the positions not evaluated. Every exact value is the one
        :meth:`metric` gives (each is a function of its own samples), and every unflagged position has exact
        T < threshold, so the first threshold crossing, the peak after it (the largest T, > threshold) and every
        comparison of T with a level below a crossing's peak read the same as on the exact metric. Without numba (or
        with :data:`SCREEN` False) it is :meth:`metric`. Arrays where nothing is flagged are read-only. ``r`` complex64 [M] or [K, M]; returns (T float32, P1 complex64, P2 complex64) [..., M -
        span + 1]."""
        n_out = r.shape[-1] - self.span + 1
        if n_out <= 0 or not SCREEN or not _use_kernel():
            return self.metric(r)
        if r.ndim > 1:
            return _rows_of(self.metric_screened, r, n_out)
        r = np.ascontiguousarray(r, np.complex64)
        mask, count = self.screen(r)
        if count == 0:                          # nothing to evaluate (noise): shared read-only zeros
            return self._zeros(n_out)
        flagged = np.flatnonzero(mask)
        T = np.zeros(n_out, np.float32)
        P1 = np.zeros(n_out, np.complex64)
        P2 = np.zeros(n_out, np.complex64)
        cut = np.flatnonzero(np.diff(flagged) > self.span) + 1      # a gap shorter than span costs less than a run
        lo = flagged[np.concatenate([[0], cut])]
        hi = flagged[np.concatenate([cut - 1, [flagged.size - 1]])] + 1
        # runs in classes of width 2^k (k >= SCREEN_MIN_CLASS), one batched call per class (exact values all, so a
        # run's row may cover more positions than the run)
        cls = np.maximum(SCREEN_MIN_CLASS, np.ceil(np.log2(hi - lo)).astype(np.int64))
        if (np.minimum(1 << cls, n_out) + self.span - 1).sum() >= n_out:
            T[:], P1[:], P2[:] = self.metric(r)          # the runs would cost more than the whole
            return T, P1, P2
        for k in np.unique(cls).tolist():
            width = min(1 << k, n_out)
            start = np.minimum(lo[cls == k], n_out - width)
            view = np.lib.stride_tricks.as_strided(r, shape=(n_out - width + 1, self.span + width - 1),
                                                   strides=(r.strides[0], r.strides[0]), writeable=False)
            idx = start[:, None] + np.arange(width)
            for full, part in zip((T, P1, P2), self.metric(view[start])):
                full[idx] = part
        return T, P1, P2

    def _block(self, r: np.ndarray, n_out: int):
        """T, P1, P2 of the first ``n_out`` starts of r [n_out + span - 1]: window sums of the lag products (both in
        one array, so one set of block sums serves both) and of the power, each from sums of 2^k-sample blocks."""
        l1, w1, l2, w2, o2 = self.lag1, self.w1, self.lag2, self.w2, self.off2
        len1, len2 = n_out + w1 - 1, n_out + w2 - 1
        rc = np.conj(r)
        x = np.empty(len1 + len2, np.complex64)            # [lag-L products | lag-N products from o2]
        np.multiply(rc[:len1], r[l1:l1 + len1], out=x[:len1])
        np.multiply(rc[o2:o2 + len2], r[o2 + l2:o2 + l2 + len2], out=x[len1:])
        p = np.empty((2, n_out), np.complex64)               # P1, P2
        sq = np.square(r.view(np.float32))
        power = np.add(sq[0::2], sq[1::2])
        e = np.empty((2, n_out), np.float32)                 # E1, E2
        if _use_kernel():
            if self._sets_p is None or self._sets_p.scratch.shape[1] < (KERNEL_TILE + w2) * 2:
                self._sets_p = WindowSet([(0, w1), (len1, w2)], 2)
                self._sets_e = WindowSet([(0, w1 + l1), (o2, w2 + l2)], 1)
            self._sets_p.offsets[1] = len1                  # the lag-N products follow the lag-L ones in x
            window_sums(x, self._sets_p, n_out, p)
            window_sums(power, self._sets_e, n_out, e)
        else:
            levels = _block_sums(x, self._levels_p)
            _window_sum(levels, self._blocks_p[0], 0, p[0])
            _window_sum(levels, self._blocks_p[1], len1, p[1])
            levels = _block_sums(power, self._levels_e)
            _window_sum(levels, self._blocks_e[0], 0, e[0])
            _window_sum(levels, self._blocks_e[1], o2, e[1])
        # T = |P1|^2 (W1+L)^2 / (W1 E1^2) + |P2|^2 (W2+N)^2 / (W2 E2^2); zero where there is no energy
        np.maximum(e, np.float32(1e-30), out=e)
        q = np.abs(p)
        q /= e
        np.square(q, out=q)
        q *= self._k
        return np.add(q[0], q[1]), p[0], p[1]

    def first_candidate(self, T: np.ndarray) -> tuple[int, int] | None:
        """The first peak of ``T``: (peak, first_crossing) where first_crossing is the first index with T above the
        threshold and peak the argmax of T within :attr:`peak_window` samples from it (the whole statistic span: the
        P2 window passing over the next frame's Schmidl-Cox symbol makes a side lobe up to ~one symbol before the
        true peak); None if T never crosses. The search grows geometrically, so its cost is proportional to the
        distance to the crossing. A peak whose window runs past the end of ``T`` is still returned; callers check
        ``first + peak_window <= len(T)``."""
        i, step = 0, 4096
        while i < T.size:
            hits = np.flatnonzero(T[i:i + step] > self.threshold)
            if hits.size:
                first = i + int(hits[0])
                return first + int(np.argmax(T[first:first + self.peak_window])), first
            i += step
            step *= 2
        return None
