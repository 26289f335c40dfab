"""Channel estimation: least squares on known subcarriers, denoised by keeping only the significant taps of the
channel impulse response (:class:`SignificantTapEstimator`), and its use on the frame's two LTS looks
(:class:`LtsChannelEstimator`). This is the one channel estimator of otalab: the receiver, sync's uplink pilots
(:mod:`sync.uplink`) and the PRACH / beacon tracker (:func:`ml_delay`) use it (:mod:`phy.chest` re-exports it).

Model
-----
An OFDM channel whose impulse response lies in a window of ``taps`` delays (``first_delay`` .. ``first_delay + taps -
1`` samples after the FFT window start) has frequency response ``H = F c`` on the used subcarriers,
``F[m, l] = exp(-j 2 pi m d_l / N)``. Given LS estimates ``h_ls = H + e`` with noise variance ``noise_var`` per
subcarrier, the matched-filter impulse response ``g = F^H h_ls / n_used`` has noise ``noise_var / n_used`` per tap
(``|g|^2 ~ noise_var / n_used * Exp(1)`` on an empty tap). Two selections of the significant taps ``S``:

* **one-shot threshold** (:meth:`SignificantTapEstimator.select`): ``|g|^2 > threshold * noise_var / n_used``;
* **orthogonal matching pursuit** (:meth:`SignificantTapEstimator.fit_omp`, the receiver's): add the tap where the
  matched filter of the *residual* is strongest while its power exceeds the same bound (the residual removes the
  band-limited side lobes of the strong taps, which a one-shot threshold would keep). A noise-only tap passes with
  probability ``exp(-threshold)``.

Then least squares on the kept taps only, ``H = F_S pinv(F_S) h_ls``: the estimation-error variance drops from
``noise_var`` to ``noise_var |S| / n_used`` and the fit interpolates across DC and the guard band. With ``align=True``
(:meth:`SignificantTapEstimator.fit_taps`) the dominant fractional delay is estimated first (:func:`ml_delay`) and
removed, so a channel whose paths fall between samples still concentrates on a few taps.

LTS estimate (:class:`LtsChannelEstimator`): the FFT windows start ``backoff`` samples inside the CP; LS on both LTS
looks, averaged: ``h_ls = (Y1 + Y2) X* / 2`` (``|X| = 1``); per-bin noise variance ``sigma^2 = mean |Y1 - Y2|^2 / 2``
(so ``h_ls`` has noise ``sigma^2 / 2``); SNR ``(mean |h_ls|^2 - sigma^2 / 2) / sigma^2``; taps ``-backoff ..
cp - backoff - 1``; estimation-error variance per used bin ``sigma^2 / 2 * L_kept / n_used``.
"""

from __future__ import annotations

import numpy as np

from phy.ofdm import OfdmConfig, fftlib


def ml_delay(z: np.ndarray, subcarriers: np.ndarray, fft_size: int, coarse: float = 0.0,
             span: float = 1.0) -> tuple[float, complex]:
    """Single-path maximum-likelihood delay from de-rotated subcarriers.

    Maximizes ``|sum_m z[m] exp(+j 2 pi m tau / N)|`` over ``tau`` in ``coarse +- span`` with three zoom stages
    (16 points each) and a parabolic step. Attains the Cramér–Rao bound (``sync.prach.delay_crlb_samples``) at
    moderate SNR (tested). The result stays within ``coarse +- span``: where the largest value in that range is on its
    edge (the single-path optimum lies outside), the edge is returned.

    Parameters
    ----------
    z : complex ndarray [M]
        ``Y[m] X*[m]`` on the subcarriers (``|X| = 1``).
    subcarriers : int or float ndarray [M]
        Signed subcarrier indices m.
    fft_size : int
        N.
    coarse, span : float
        Search range centre and half width, samples.

    Returns
    -------
    tau : float
        Delay in samples.
    h : complex
        Complex gain ``sum_m z[m] exp(+j 2 pi m tau / N) / M``.
    """
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
    """Denoise LS channel estimates on ``subcarriers`` by keeping the significant taps of the impulse response.

    Parameters
    ----------
    subcarriers : int ndarray [n_used]
        Signed subcarrier indices of the LS estimates.
    fft_size : int
        N.
    first_delay, taps : int
        The delay window ``first_delay .. first_delay + taps - 1`` (samples after the FFT window start).
    threshold : float
        A tap is significant when its matched-filter power exceeds ``threshold`` times its noise variance.
    out_subcarriers : int ndarray [n_out], optional
        Where the fitted response is evaluated (default: ``subcarriers``), e.g. every FFT bin in bin order.
    align : bool
        :meth:`fit_taps` / :meth:`fit` remove the dominant fractional delay first (:func:`ml_delay`).

    Matrices are cached per set of kept taps (the sets repeat).
    """

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
        # matching pursuit in the tap domain (fit_omp)
        self.gram = self.F.conj().T @ self.F                                      # [taps, taps] complex128
        self._bins = np.rint(m).astype(np.int64) % fft_size
        self._tap_bins = delays % fft_size
        self._omp_cache: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def fit_taps(self, h_ls: np.ndarray, noise_var: float) -> tuple[np.ndarray, float, int]:
        """One LS estimate as a compact model (one-shot threshold selection).

        Parameters
        ----------
        h_ls : complex ndarray [n_used]
        noise_var : float
            Noise variance of each element of ``h_ls``.

        Returns
        -------
        coeffs : complex64 ndarray [taps]
            Tap coefficients, zero where dropped.
        shift : float
            Fractional delay removed first (``align``), samples; else 0.0.
        kept : int
            Number of kept taps. :meth:`response` rebuilds the channel.
        """
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
        """Channel complex64 [..., n] of tap coefficients ``coeffs`` complex [..., taps] delayed by ``shift`` samples,
        on ``subcarriers`` (default: the output subcarriers)."""
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
        """complex64 [n_out, n_used]: the linear map from LS estimates to the fit on the kept taps (bool [taps])."""
        key = keep.tobytes()
        fit = self._cache.get(key)
        if fit is None:
            sel = np.flatnonzero(keep)
            fit = (self.F_out[:, sel] @ np.linalg.pinv(self.F[:, sel])).astype(np.complex64)
            if len(self._cache) < 4096:
                self._cache[key] = fit
        return fit

    def select(self, h_ls: np.ndarray, noise_var: float) -> np.ndarray:
        """bool [taps]: the significant taps of one LS estimate by the one-shot threshold (at least the strongest)."""
        g = self.F_h @ h_ls
        p = g.real * g.real + g.imag * g.imag
        keep = p > self.threshold * noise_var / self.n_used
        if not keep.any():
            keep[np.argmax(p)] = True
        return keep

    def fit(self, h_ls: np.ndarray, noise_var: float) -> tuple[np.ndarray, int]:
        """Denoised response complex64 [n_out] of one LS estimate ``h_ls`` complex [n_used] (one-shot selection),
        and the number of taps kept."""
        if not self.align:
            keep = self.select(h_ls, noise_var)
            return self.fit_matrix(keep) @ h_ls.astype(np.complex64), int(keep.sum())
        coeffs, shift, kept = self.fit_taps(h_ls, noise_var)
        return self.response(coeffs, shift), kept

    # ------------------------------------------------------------------ matching pursuit, batched
    def fit_omp(self, h_ls: np.ndarray, noise_var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Significant taps of F LS estimates by orthogonal matching pursuit, and the LS fit on them.

        Repeatedly add the tap where the matched filter of the residual is strongest, while its power exceeds
        ``threshold * noise_var / n_used`` (the first tap is always kept). Computed in the tap domain: with
        ``g0 = F^H h_ls / n_used`` (one inverse FFT of ``h_ls`` on its bins, read at the tap delays) and the Gram
        matrix ``A = F^H F``, the residual of the LS fit on a tap set S has the matched filter
        ``g = g0 - A[:, S] A_SS^-1 g0[S]``, and the fit is ``H = n_used F_out[:, S] A_SS^-1 g0[S]`` (the same numbers
        as projecting ``h_ls``, with L-sized products). The estimates still adding taps go through one product per
        step and tap set.

        Parameters
        ----------
        h_ls : complex64 ndarray [F, n_used]
        noise_var : float ndarray [F]
            Noise variance of each element of ``h_ls``, per estimate.

        Returns
        -------
        H : complex64 ndarray [F, n_out]
        kept : int ndarray [F]
            Taps kept per estimate.
        """
        n_frames, n_l = h_ls.shape[0], self.taps
        n = self.fft_size
        thr = self.threshold * np.asarray(noise_var, dtype=np.float64) / self.n_used
        keep = np.zeros((n_frames, n_l), bool)
        spec = np.zeros((n_frames, n), np.complex64)
        spec[:, self._bins] = h_ls
        g0 = fftlib.ifft(spec, axis=1, overwrite_x=True)[:, self._tap_bins] * np.float32(n / self.n_used)  # [F, L]
        g = g0
        active = np.arange(n_frames)
        for step in range(n_l):         # a few steps: one per significant path
            p = g.real * g.real + g.imag * g.imag
            if step:                    # kept taps have (numerically) no residual; the first tap is always kept
                p[keep[active]] = 0.0
            k = np.argmax(p, axis=1)
            if step:
                go = p[np.arange(active.size), k] > thr[active]
                active, k = active[go], k[go]
                if not active.size:
                    break
            keep[active, k] = True
            g = np.empty((active.size, n_l), np.complex64)
            for rows in tap_groups(keep[active]):
                resid, _, sel = self._omp_matrices(keep[active[rows[0]]])
                ga = g0[active[rows]]
                g[rows] = ga - np.einsum("fs,ls->fl", ga[:, sel], resid)
        H = np.empty((n_frames, self.out_m.size), np.complex64)
        for rows in tap_groups(keep):
            _, fit, sel = self._omp_matrices(keep[rows[0]])
            H[rows] = np.einsum("fs,sn->fn", g0[rows][:, sel], fit)
        return H, keep.sum(axis=1)

    def _omp_matrices(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For a tap set S (bool [taps]), cached: (residual map ``R = A[:, S] A_SS^-1`` complex64 [taps, |S|], so that
        ``g = g0 - R g0[S]``; fit complex64 [|S|, n_out] with ``H = g0[S] @ fit``, ``fit = n_used (F_out[:, S]
        A_SS^-1)^T``; the tap indices S int64 [|S|])."""
        key = keep.tobytes()
        fit = self._omp_cache.get(key)
        if fit is None:
            sel = np.flatnonzero(keep)
            inv = np.linalg.inv(self.gram[np.ix_(sel, sel)])
            fit = ((self.gram[:, sel] @ inv).astype(np.complex64),
                   (self.n_used * (self.F_out[:, sel] @ inv)).T.astype(np.complex64), sel)
            if len(self._omp_cache) < 4096:
                self._omp_cache[key] = fit
        return fit


def tap_groups(keep: np.ndarray) -> list[list[int]]:
    """Rows of ``keep`` bool [F, L] grouped by equal tap sets (row indices, in order of first appearance)."""
    if (keep == keep[0]).all():
        return [list(range(keep.shape[0]))]
    groups: dict[bytes, list[int]] = {}
    for f, key in enumerate(np.packbits(keep, axis=1)):
        groups.setdefault(key.tobytes(), []).append(f)
    return list(groups.values())


class LtsChannelEstimator:
    """Channel, noise variance and SNR of F frames from the FFTs of their two LTS looks (see the module docstring).

    Parameters
    ----------
    cfg : OfdmConfig
    backoff : int
        The FFT windows start this many samples inside the CP (taps ``-backoff .. cp - backoff - 1``).
    tap_threshold : float
        Significant-tap threshold (multiple of a tap's noise variance; 0 keeps all ``cp`` taps).
    lts_grid : complex ndarray [N]
        The known LTS per FFT bin (BPSK, +-1 on the used bins).
    """

    def __init__(self, cfg: OfdmConfig, backoff: int, tap_threshold: float, lts_grid: np.ndarray):
        self.cfg = cfg
        self.taps = SignificantTapEstimator(cfg.used_subcarriers, cfg.fft_size, -backoff, cfg.cp_len,
                                            threshold=tap_threshold,
                                            out_subcarriers=np.fft.fftfreq(cfg.fft_size, 1.0 / cfg.fft_size))
        self._lts_half = (0.5 * lts_grid[cfg.used_bins].real).astype(np.float32)
        self._used_mask = np.zeros(cfg.fft_size, np.float32)
        self._used_mask[cfg.used_bins] = 1.0

    def estimate(self, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Estimates of F frames from their LTS FFTs.

        Parameters
        ----------
        Y : complex64 ndarray [F, 2, N]
            Orthonormal FFTs of the two LTS looks, FFT-bin order, CFO removed (same phase reference).

        Returns
        -------
        H : complex64 ndarray [F, N]
            Channel per FFT bin (FFT window ``backoff`` samples inside the CP).
        sigma2 : float ndarray [F]
            Noise variance per bin (per complex sample for a unit-gain link), floored at 1e-12 x the signal power.
        snr : float ndarray [F]
            Linear per-subcarrier SNR.
        err_var : float32 ndarray [F, N]
            Channel-estimation error variance per bin (0 on unused bins).
        """
        cfg = self.cfg
        Yu = Y[:, :2, cfg.used_bins]
        d = Yu[:, 0] - Yu[:, 1]
        sigma2 = (d.real * d.real + d.imag * d.imag).sum(axis=1) / (2 * d.shape[1])
        h_ls = (Yu[:, 0] + Yu[:, 1]) * self._lts_half
        sig = (h_ls.real * h_ls.real + h_ls.imag * h_ls.imag).sum(axis=1) / h_ls.shape[1] - sigma2 / 2
        H, n_taps = self.taps.fit_omp(h_ls, sigma2 / 2)
        s2 = np.maximum(sigma2, 1e-12 * np.maximum(sig, 1e-30))
        snr = np.maximum(sig, 1e-12) / s2
        err_var = (s2 / 2 * n_taps / cfg.n_used).astype(np.float32)[:, None] * self._used_mask
        return H, s2, snr, err_var
