"""Acquisition of detected candidates: fine timing, integer and fine CFO, verified against the known LTS.

For a candidate ``d0`` from the detector (with its correlations ``P1``, ``P2``):

1. **Fractional CFO** (subcarrier spacings) from ``angle(P1) / pi`` (ambiguous by 2) and ``angle(P2) / (2 pi)``
   (ambiguous by 1).
2. **Integer CFO and fine timing**: the hypotheses ``eps_a + 2 j`` within ``max_cfo_subcarriers`` are resolved,
   together with the timing, by the normalized cross-correlation ``rho^2`` of the CFO-corrected stream with the known
   LTS pair over ``+-search`` samples. ``rho^2`` of a fixed template of M samples against white circular Gaussian noise
   is exactly Beta(1, M - 1) distributed. Candidates were selected for lag-N periodicity of this very segment, and a
   lag-N periodic segment lives in an N-dimensional subspace, so the conservative M = N (not 2N) is used:
   ``max rho^2 > g`` over K (timing, CFO) trials has null probability ``<= K (1 - g)^(N - 1)``; ``g`` is chosen so
   that the expected number of false detections per ``fa_window`` samples of noise is ``<= false_alarm_rate`` (at
   most ``fa_window * detect_pfa`` candidates per window, each passing with probability ``K (1 - g)^(N - 1)``).
   Timing then moves to the earliest LTS-correlation path within cp/2 before the peak holding >= 30 % of it
   (first-path timing for multipath).
3. **Fine CFO** (Moose / ML for a repeated block): ``eps = angle(sum r*(n) r(n + N)) / (2 pi)`` over the ``N + cp``
   periodic LTS products, unwrapped onto the chosen integer hypothesis. Cramér–Rao bound for the unknown periodic
   block over the ``2N + cp`` samples it uses (per-sample SNR g): ``var(eps) >= 1 / ((2 pi)^2 (N + 3 cp) g)``
   subcarriers^2, i.e. ``std(f) >= fs / (2 pi N sqrt((N + 3 cp) g))`` (:func:`cfo_crlb_hz`; the estimator reaches
   ~1.1x that at 10 dB).

All candidates of a batch are acquired with one set of array operations: the LTS cross-correlations of every
(candidate, CFO hypothesis) pair as one FFT of the segments, one product with cached template spectra and one
inverse FFT.
"""

from __future__ import annotations

import cmath
from dataclasses import dataclass

import numpy as np

from phy.frame import FrameFormat, FrameHeader
from phy.ofdm import OfdmConfig, fftlib
from phy.rx.ofdm_demodulation import cis, rows


@dataclass
class Acquisition:
    """What the receiver knows about one frame after acquisition (indices relative to the receiver's buffer).

    Attributes
    ----------
    start : int
        Frame start (first sample of the Schmidl–Cox CP), buffer index.
    eps : float
        CFO, subcarrier spacings.
    H : complex64 ndarray [N]
        Channel per FFT bin, FFT windows ``backoff`` samples inside the CP (phase reference: the first LTS window).
    sigma2 : float
        Noise variance per bin.
    err_var : float32 ndarray [N]
        Channel-estimation error variance per bin.
    snr : float
        Linear per-subcarrier SNR.
    header : FrameHeader or None
        Decoded header (None: not decoded yet, or failed).
    genie : bool
        Values from the test hook, not estimated.
    ref : int
        Buffer index of the phase reference (first LTS FFT window).
    y_hdr : complex64 ndarray [n_hdr_symbols, N] or None
        FFT of the header symbols (within-window CFO removed).
    hdr_done : bool
        Header already decoded (batched acquisition).
    t_start : int
        Absolute sample time of ``start`` (buffer indices move when the buffer is trimmed).
    """

    start: int
    eps: float
    H: np.ndarray
    sigma2: float
    err_var: np.ndarray
    snr: float
    header: FrameHeader | None = None
    genie: bool = False
    ref: int = 0
    y_hdr: np.ndarray | None = None
    hdr_done: bool = False
    t_start: int = 0

    def shift(self, delta: int) -> None:
        """Move the buffer indices by ``delta`` samples (the buffer was trimmed or re-based)."""
        self.start += delta
        self.ref += delta


def cfo_crlb_hz(cfg: OfdmConfig, snr: float) -> float:
    """Cramér–Rao bound (standard deviation, Hz) of the CFO from the LTS block samples the fine estimator uses.

    Model: ``y(n) = s(n mod N) e^{j w n} + noise`` over the last ``2N + cp`` samples of the LTS block (s unknown,
    per-sample SNR ``g = snr * n_used / N``, ``snr`` the linear per-subcarrier SNR). Projecting out s, an element of s
    seen at times t_1..t_m contributes ``2 sum (t_i - mean t)^2 |s|^2 / sigma^2`` to the Fisher information of w: cp
    elements are seen three times (4 N^2 each), N - cp twice (N^2 each), so with phase = w N:
    ``var(phase) >= 1 / ((N + 3 cp) g)``, i.e. ``std(f) >= fs / (2 pi N sqrt((N + 3 cp) g))``.
    (Two disjoint copies of a W-sample block give the familiar 1/(W g).)

    Parameters
    ----------
    cfg : OfdmConfig
    snr : float
        Linear per-subcarrier SNR.

    Returns
    -------
    float
        Standard deviation bound, Hz.
    """
    g = snr * cfg.n_used / cfg.fft_size
    w_eff = cfg.fft_size + 3 * cfg.cp_len
    return float(cfg.sample_rate / (2 * np.pi * cfg.fft_size) / np.sqrt(w_eff * g))


class LtsAcquisition:
    """Timing, integer and fine CFO of candidates, verified by LTS correlation (see the module docstring).

    Parameters
    ----------
    cfg : OfdmConfig
    fmt : FrameFormat
    max_cfo : float
        Largest |CFO| searched, subcarrier spacings.
    false_alarm_rate, fa_window, detect_pfa : float, int, float
        Expected false frames per ``fa_window`` noise samples, and the detector's per-sample false-alarm rate
        (they set :attr:`lts_threshold`).
    """

    def __init__(self, cfg: OfdmConfig, fmt: FrameFormat, max_cfo: float, false_alarm_rate: float,
                 fa_window: int, detect_pfa: float):
        self.cfg, self.fmt = cfg, fmt
        n, cp = cfg.fft_size, cfg.cp_len
        self.max_cfo = float(max_cfo)
        self.search = cp                      #: fine-timing search +-search samples around the coarse estimate
        m = n  # conservative dimension, see module docstring
        n_hyp = 2 * int(np.ceil((self.max_cfo + 1) / 2)) + 1
        self._j_max = int(np.ceil((self.max_cfo + 1) / 2)) + 1
        k_trials = n_hyp * (2 * self.search + 1)
        q = min(0.5, false_alarm_rate / (fa_window * detect_pfa))
        #: rho^2 threshold of the LTS verification
        self.lts_threshold = float(1.0 - (q / k_trials) ** (1.0 / (m - 1)))
        self._lts_pair = np.concatenate([fmt.lts_symbol, fmt.lts_symbol]).astype(np.complex64)
        self._lts_pair_conj = np.conj(self._lts_pair) / np.float32(np.sqrt(np.sum(np.abs(self._lts_pair) ** 2)))
        self._m2n = np.arange(2 * n, dtype=np.float64)
        self._m_seg = np.arange(2 * n + 2 * self.search, dtype=np.float64)
        self._template_table = np.zeros((0, 2 * n + 2 * self.search), np.complex64)

    def acquire(self, buf: np.ndarray, cands: list[tuple[int, complex, complex]]
                ) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Acquire F candidates at once; each result is the one the candidate gets alone.

        Parameters
        ----------
        buf : complex64 ndarray [M]
            The stream buffer.
        cands : list of (int, complex, complex)
            Candidates (buffer index, P1, P2) from the detector.

        Returns
        -------
        verified : list of int
            Indices into ``cands`` of the verified candidates (ascending).
        start : int64 ndarray [len(verified)]
            Their frame starts, buffer indices.
        eps : float64 ndarray [len(verified)]
            Their CFOs, subcarrier spacings.
        """
        cfg = self.cfg
        n, cp, sl, S = cfg.fft_size, cfg.cp_len, cfg.symbol_len, self.search
        seg_len = 2 * n + 2 * S
        ok = [f for f, (i0, _, _) in enumerate(cands)
              if i0 + sl + 2 * cp - S >= 0 and i0 + sl + 2 * cp - S + seg_len <= buf.size]
        none = ([], np.zeros(0, np.int64), np.zeros(0))
        if not ok:
            return none
        i0s = np.array([cands[f][0] for f in ok])
        eps_b = np.array([cmath.phase(cands[f][2]) for f in ok]) / (2 * np.pi)
        e_a = np.array([cmath.phase(cands[f][1]) for f in ok]) / np.pi
        # hypotheses eps_b + k for the integers k consistent with eps_a (ambiguous by 2) within the search range:
        # k = round(eps_a + 2 j - eps_b) for the j with |eps_a + 2 j| <= max_cfo + 1 (a contiguous, ascending run of
        # j); shorter runs are padded with their last entry (a repeated hypothesis never wins argmax's first maximum)
        jj = np.arange(-self._j_max, self._j_max + 1)
        e_j = e_a[:, None] + 2 * jj[None, :]
        valid = np.abs(e_j) <= self.max_cfo + 1.0
        first = np.argmax(valid, axis=1)
        count = valid.sum(axis=1)
        n_h = int(count.max())
        col = np.minimum(first[:, None] + np.arange(n_h)[None, :], (first + count - 1)[:, None])
        ks = np.round(np.take_along_axis(e_j, col, axis=1) - eps_b[:, None]).astype(np.int64)    # [F, n_h]
        lo = i0s + (sl + 2 * cp - S)
        seg = rows(buf, lo, seg_len)                                                   # [F, 2N + 2S]
        e2 = seg.real * seg.real + seg.imag * seg.imag
        pw = np.zeros((len(ok), seg_len + 1))
        np.cumsum(e2, axis=1, out=pw[:, 1:])
        energy = np.maximum(pw[:, 2 * n:2 * n + 2 * S + 1] - pw[:, :2 * S + 1], 1e-30)    # [F, 2S+1]
        # |corr| for CFO hypothesis eps_b + k: removing exp(j 2 pi eps_b t / N) from the segment once changes every
        # correlation only by a per-lag phase (irrelevant for the magnitude); the integer part k is a cached rotated
        # template. All (candidate, hypothesis) correlations c[f, h, tau] = sum_m tmpl_k[m] seg_r[f, tau + m] at once
        # as circular correlations over the segment length (no wrap-around for tau <= 2S): one FFT of the segments,
        # one product with the templates' cached spectra, one inverse FFT
        seg_r = seg * cis((-2 * np.pi / n) * eps_b[:, None] * self._m_seg[None, :])
        spec = fftlib.fft(seg_r, axis=1, overwrite_x=True)
        prod = spec[:, None, :] * self._templates(ks)                                  # [F, n_h, 2N + 2S]
        c = fftlib.ifft(prod, axis=2, overwrite_x=True)[:, :, :2 * S + 1].transpose(0, 2, 1)  # [F, 2S+1, n_h]
        rho2 = (c.real * c.real + c.imag * c.imag) / energy[:, :, None]               # [F, 2S+1, n_h]
        best = np.argmax(rho2.reshape(len(ok), -1), axis=1)
        k_pk, h_pk = np.divmod(best, n_h)
        rws = np.arange(len(ok))
        rho_max = rho2[rws, k_pk, h_pk]
        e = eps_b + ks[rws, h_pk]
        # earliest significant path within cp/2 before the peak
        rho = rho2[rws, :, h_pk]                                                      # [F, 2S+1]
        tau = np.arange(2 * S + 1)[None, :]
        near = (tau >= (k_pk - cp // 2)[:, None]) & (tau <= k_pk[:, None]) & (rho >= 0.3 * rho_max[:, None])
        start = i0s + (np.argmax(near, axis=1) - S)
        good = (rho_max > self.lts_threshold) & (start >= 0)
        if not good.any():
            return none
        sel = np.flatnonzero(good)
        start, e = start[sel], e[sel]
        # fine CFO: lag-N correlation over the N + cp periodic LTS products (Moose), unwrapped onto hypothesis e
        r = rows(buf, start + (sl + cp), 2 * n + cp)
        eps_f = np.angle((np.conj(r[:, :n + cp]) * r[:, n:]).sum(axis=1)) / (2 * np.pi)
        eps = eps_f + np.round(e - eps_f)
        return [ok[f] for f in sel.tolist()], start, eps

    def _templates(self, ks: np.ndarray) -> np.ndarray:
        """Spectra for the circular correlations of :meth:`acquire`: conj(FFT) over 2N + 2S samples of the
        normalized LTS pair rotated by k subcarriers (zero-padded), complex64 [..., 2N + 2S], for the integers
        ``ks`` [...]; the table grows to cover the largest |k| asked for."""
        kmax = int(np.abs(ks).max())
        tab = self._template_table
        if tab.shape[0] < 2 * kmax + 1:
            kk = np.arange(-kmax, kmax + 1, dtype=np.float64)
            n2 = self._lts_pair_conj.size
            tmpl = np.zeros((kk.size, self._m_seg.size), np.complex64)
            tmpl[:, :n2] = np.conj(self._lts_pair_conj[None, :] * cis((-2 * np.pi / self.cfg.fft_size) * kk[:, None]
                                                                      * self._m2n[None, :]))
            tab = np.conj(fftlib.fft(tmpl, axis=1)).astype(np.complex64)
            self._template_table = tab
        return tab[ks + (tab.shape[0] // 2)]


def genie_acquisition(cfg: OfdmConfig, genie: dict, i0: int, t0: int, backoff: int) -> Acquisition | None:
    """Acquisition from known values (test hook), for the candidate at buffer index ``i0`` (buffer time ``t0``).

    Parameters
    ----------
    cfg : OfdmConfig
    genie : dict
        ``{"channel": complex [N] per FFT bin or scalar, "noise_var": float, "cfo_hz": float, "frame_starts": int
        array of sample times}``.
    i0, t0 : int
    backoff : int
        FFT windows start this many samples inside the CP.

    Returns
    -------
    Acquisition or None
        For the nearest true frame start within one symbol of ``i0``; None when there is none.
    """
    starts = np.asarray(genie["frame_starts"], dtype=np.int64) - t0
    j = int(np.argmin(np.abs(starts - i0)))
    if abs(int(starts[j]) - i0) > cfg.symbol_len:
        return None
    start = int(starts[j])
    if start < 0:
        return None
    k = np.fft.fftfreq(cfg.fft_size, 1.0 / cfg.fft_size)
    H = np.broadcast_to(np.asarray(genie.get("channel", 1.0), np.complex64), (cfg.fft_size,)) \
        * np.exp(-2j * np.pi * k * backoff / cfg.fft_size)
    sigma2 = float(genie["noise_var"])
    eps = float(genie.get("cfo_hz", 0.0)) / cfg.subcarrier_spacing
    lts0 = start + cfg.symbol_len + 2 * cfg.cp_len - backoff
    # the true channel seen with the receiver's phase reference (the first LTS FFT window)
    H = H * np.exp(2j * np.pi * eps * (lts0 - start) / cfg.fft_size)
    return Acquisition(start=start, eps=eps, H=H.astype(np.complex64), sigma2=sigma2,
                       err_var=np.zeros(cfg.fft_size, np.float32),
                       snr=float(np.mean(np.abs(H[cfg.used_bins]) ** 2)) / sigma2, genie=True, ref=lts0)
