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

_KERNEL: list = []


def _kernel():
    """``phy.detector_kernel.window_sums_kernel``, imported on first use (numba's import takes ~1 s), or None when
    numba is not installed."""
    if not _KERNEL:
        try:
            from phy.detector_kernel import window_sums_kernel
        except ImportError:  # pragma: no cover - depends on the environment
            window_sums_kernel = None
        _KERNEL.append(window_sums_kernel)
    return _KERNEL[0]


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
        _WARM.append(True)


def _use_kernel() -> bool:
    if USE_KERNEL is False:
        return False
    if USE_KERNEL and _kernel() is None:
        raise RuntimeError("phy.detector.USE_KERNEL is True but numba is not installed (pip install numba)")
    return _kernel() is not None


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
            k, m = r.shape
            flat = self.metric(np.ascontiguousarray(r).reshape(-1))
            out = []
            for a in flat:
                full = np.empty(k * m, a.dtype)
                full[:a.size] = a
                out.append(full.reshape(k, m)[:, :n_out])
            return tuple(out)
        if n_out <= BLOCK:
            return self._block(r, n_out)
        T = np.empty(n_out, np.float32)
        P1 = np.empty(n_out, np.complex64)
        P2 = np.empty(n_out, np.complex64)
        for a in range(0, n_out, BLOCK):
            b = min(n_out, a + BLOCK)
            T[a:b], P1[a:b], P2[a:b] = self._block(r[a:b + self.span - 1], b - a)
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
