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

Cost: three running sums (``cumsum``) per sample, complex64/float32 in blocks of ``BLOCK`` samples (float32 running
sums over at most 2^16 samples keep ~1e-3 relative precision on the windowed differences).
"""

from __future__ import annotations

import numpy as np

from phy.ofdm import OfdmConfig

BLOCK = 1 << 16


def gamma2_threshold(pfa: float) -> float:
    """t with (1 + t) exp(-t) = pfa, for 0 < pfa < 1 (Newton on log)."""
    if not 0 < pfa < 1:
        raise ValueError(f"pfa = {pfa!r}: expected a probability strictly between 0 and 1")
    t = -np.log(pfa) + np.log1p(-np.log(pfa))
    for _ in range(50):
        f = np.log1p(t) - t - np.log(pfa)
        t -= f / (1.0 / (1.0 + t) - 1.0)
    return float(t)


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
        self.peak_window = self.span
        self.pfa_per_sample = pfa_per_sample
        self.threshold = gamma2_threshold(pfa_per_sample)

    def metric(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Metric for every start ``d`` in ``[0, len(r) - span]``.

        r : complex64 [M]. Returns (T float32 [M - span + 1], P1 complex64 [..], P2 complex64 [..]).
        """
        n_out = r.size - self.span + 1
        if n_out <= 0:
            e = np.zeros(0, np.float32)
            return e, e.astype(np.complex64), e.astype(np.complex64)
        T = np.empty(n_out, np.float32)
        P1 = np.empty(n_out, np.complex64)
        P2 = np.empty(n_out, np.complex64)
        for a in range(0, n_out, BLOCK):
            b = min(n_out, a + BLOCK)
            T[a:b], P1[a:b], P2[a:b] = self._block(r[a:b + self.span - 1], b - a)
        return T, P1, P2

    @staticmethod
    def _window(c: np.ndarray, start: int, width: int, n_out: int) -> np.ndarray:
        """sum_{m<width} x[d + start + m] for d < n_out, given c = concat([0], cumsum(x))."""
        return c[start + width:start + width + n_out] - c[start:start + n_out]

    def _block(self, r: np.ndarray, n_out: int):
        l1, w1, l2, w2, o2 = self.lag1, self.w1, self.lag2, self.w2, self.off2
        pw = np.empty(r.size + 1, np.float32)
        pw[0] = 0.0
        np.cumsum(r.real * r.real + r.imag * r.imag, out=pw[1:])
        c1 = np.empty(r.size - l1 + 1, np.complex64)
        c1[0] = 0.0
        np.cumsum(np.conj(r[:-l1]) * r[l1:], out=c1[1:])
        seg = r[o2:o2 + n_out + w2 - 1 + l2]
        c2 = np.empty(seg.size - l2 + 1, np.complex64)
        c2[0] = 0.0
        np.cumsum(np.conj(seg[:-l2]) * seg[l2:], out=c2[1:])
        p1 = self._window(c1, 0, w1, n_out)
        p2 = self._window(c2, 0, w2, n_out)
        e1 = self._window(pw, 0, w1 + l1, n_out)
        e2 = self._window(pw, o2, w2 + l2, n_out)
        # T = |P1|^2 (W1+L)^2 / (W1 E1^2) + |P2|^2 (W2+N)^2 / (W2 E2^2); zero where there is no energy
        tiny = np.float32(1e-30)
        k1 = np.float32((w1 + l1) ** 2 / w1)
        k2 = np.float32((w2 + l2) ** 2 / w2)
        a1 = p1.real * p1.real + p1.imag * p1.imag
        a2 = p2.real * p2.real + p2.imag * p2.imag
        np.maximum(e1, tiny, out=e1)
        np.maximum(e2, tiny, out=e2)
        t = a1 * k1 / (e1 * e1) + a2 * k2 / (e2 * e2)
        return t, p1, p2

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
