"""Delay-domain denoising of least-squares channel estimates by significant-tap selection.

An OFDM channel whose impulse response lies in a window of ``taps`` delays (``first_delay`` ..
``first_delay + taps - 1`` samples after the FFT window start) has frequency response H = F c on the used subcarriers,
F[m, l] = exp(-j 2 pi m d_l / N). Given LS estimates ``h_ls = H + e`` with noise variance ``noise_var`` per subcarrier:

1. matched-filter impulse response g = F^H h_ls / n_used; a tap holding no energy has |g|² ~ noise_var / n_used · Exp(1);
2. keep taps with |g|² > ``threshold`` · noise_var / n_used (a noise-only tap passes with probability e^-threshold);
3. least squares on the kept taps only: H = F_S pinv(F_S) h_ls. The error variance drops from noise_var to about
   noise_var · |S| / n_used, and the fit interpolates across DC and the guard band.

With ``align=True`` the dominant (fractional) delay is estimated first (:func:`ml_delay`) and removed, so a channel
whose paths fall between samples still concentrates on a few taps, then put back after the fit.

This is the estimator of sync's uplink pilots; :func:`ml_delay` also serves the PRACH and the beacon tracker.
"""

from __future__ import annotations

import numpy as np


def ml_delay(z: np.ndarray, subcarriers: np.ndarray, fft_size: int, coarse: float = 0.0,
             span: float = 1.0) -> tuple[float, complex]:
    """Single-path maximum-likelihood delay from de-rotated subcarriers z[m] = Y[m] X*[m] (|X| = 1).

    Maximizes |Σ_m z[m] exp(+j 2 pi m tau / N)| over tau in coarse ± span with three zoom stages (16 points each)
    and a parabolic step; returns (tau in samples, complex gain h = Σ z e^{+j..} / M). Attains the Cramér–Rao bound
    (``sync.prach.delay_crlb_samples``) at moderate SNR (tested). The result stays within coarse ± span: where the
    largest value in that range is on its edge (the single-path optimum lies outside), the edge is returned."""
    m = np.asarray(subcarriers, dtype=np.float64)
    w = 2 * np.pi * m / fft_size
    lo, hi = float(coarse) - float(span), float(coarse) + float(span)
    centre, step = float(coarse), float(span)
    for _ in range(3):
        grid = centre + np.linspace(-step, step, 17)
        val = np.abs(np.exp(1j * np.outer(grid, w)) @ z)
        i = int(np.argmax(val))
        frac = 0.0
        if 0 < i < len(grid) - 1:   # interior maximum: parabolic step, |frac| <= 1/2 as val[i] is the largest
            a, b, c = val[i - 1], val[i], val[i + 1]
            denom = a - 2 * b + c
            frac = 0.5 * (a - c) / denom if denom < 0 else 0.0
        # a maximum on the grid's edge: the optimum lies outside the range, so stay on the edge (a parabola
        # extrapolated there lands many samples away when the peak is flat)
        centre = min(max(grid[i] + frac * (grid[1] - grid[0]), lo), hi)
        step = grid[1] - grid[0]
    h = complex(np.exp(1j * w * centre) @ z / m.size)
    return float(centre), h


class SignificantTapEstimator:
    """``fit(h_ls, noise_var)`` for LS estimates on ``subcarriers`` (signed indices) of an ``fft_size`` OFDM.

    ``out_subcarriers`` (default: the same) are where the fitted response is evaluated, e.g. every FFT bin.
    Pseudo-inverses are cached per set of kept taps (the sets repeat)."""

    def __init__(self, subcarriers, fft_size: int, first_delay: int, taps: int, threshold: float = 8.0,
                 out_subcarriers=None, align: bool = False):
        if taps < 1:
            raise ValueError(f"taps = {taps}: expected ≥ 1")
        m = np.asarray(subcarriers, dtype=np.float64)
        out = m if out_subcarriers is None else np.asarray(out_subcarriers, dtype=np.float64)
        delays = np.arange(taps) + first_delay
        self.F = np.exp(-2j * np.pi * np.outer(m, delays) / fft_size)            # [n_used, taps]
        self.F_out = np.exp(-2j * np.pi * np.outer(out, delays) / fft_size)      # [n_out, taps]
        self.F_h = (self.F.conj().T / m.size).astype(np.complex64)               # matched filter
        self.n_used = m.size
        self.m, self.out_m, self.fft_size, self.align = m, out, fft_size, align
        self.threshold = float(threshold)
        self.first_delay, self.taps = first_delay, taps
        self._cache: dict[bytes, np.ndarray] = {}

    def fit_taps(self, h_ls: np.ndarray, noise_var: float) -> tuple[np.ndarray, float, int]:
        """The fit as a compact model: tap coefficients (complex64[taps], zero where dropped), the fractional delay
        removed first (``align``; else 0.0) and the number of kept taps. :meth:`response` rebuilds the channel."""
        shift = 0.0
        h0 = np.asarray(h_ls)
        if self.align:
            tau, _ = ml_delay(h0, self.m, self.fft_size, self.first_delay + self.taps / 2, span=self.taps / 2)
            shift = float(tau - round(tau))  # the integer part stays in the window, the fraction is removed
            h0 = h0 * np.exp(2j * np.pi * self.m * shift / self.fft_size)
        keep = self.select(h0, noise_var)
        coeffs = np.zeros(self.taps, np.complex64)
        coeffs[keep] = self._pinv(keep) @ h0
        return coeffs, shift, int(keep.sum())

    def response(self, coeffs: np.ndarray, shift: float = 0.0, subcarriers=None) -> np.ndarray:
        """Channel (complex64[n]) of tap coefficients ``coeffs`` (complex[..., taps]) delayed by ``shift`` samples, on
        ``subcarriers`` (default: the output subcarriers)."""
        m = self.out_m if subcarriers is None else np.asarray(subcarriers, dtype=np.float64)
        f = self.F_out if subcarriers is None else np.exp(
            -2j * np.pi * np.outer(m, np.arange(self.taps) + self.first_delay) / self.fft_size)
        ramp = np.exp(-2j * np.pi * m * np.asarray(shift)[..., None] / self.fft_size)
        return ((np.asarray(coeffs) @ f.T) * ramp).astype(np.complex64)

    def _pinv(self, keep: np.ndarray) -> np.ndarray:
        key = b"p" + keep.tobytes()
        p = self._cache.get(key)
        if p is None:
            p = np.linalg.pinv(self.F[:, np.flatnonzero(keep)]).astype(np.complex64)
            if len(self._cache) < 4096:
                self._cache[key] = p
        return p

    def fit_matrix(self, keep: np.ndarray) -> np.ndarray:
        """complex64[n_out, n_used]: the linear map from LS estimates to the fit on the kept taps."""
        key = keep.tobytes()
        fit = self._cache.get(key)
        if fit is None:
            sel = np.flatnonzero(keep)
            fit = (self.F_out[:, sel] @ np.linalg.pinv(self.F[:, sel])).astype(np.complex64)
            if len(self._cache) < 4096:
                self._cache[key] = fit
        return fit

    def select(self, h_ls: np.ndarray, noise_var: float) -> np.ndarray:
        """bool[taps]: the significant taps of one LS estimate (at least the strongest)."""
        g = self.F_h @ h_ls
        p = g.real * g.real + g.imag * g.imag
        keep = p > self.threshold * noise_var / self.n_used
        if not keep.any():
            keep[np.argmax(p)] = True
        return keep

    def fit(self, h_ls: np.ndarray, noise_var: float) -> tuple[np.ndarray, int]:
        """Denoised response (complex64[n_out]) of one LS estimate h_ls (complex[n_used]) and the taps kept."""
        if not self.align:
            keep = self.select(h_ls, noise_var)
            return self.fit_matrix(keep) @ h_ls.astype(np.complex64), int(keep.sum())
        coeffs, shift, kept = self.fit_taps(h_ls, noise_var)
        return self.response(coeffs, shift), kept
