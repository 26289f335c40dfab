"""Phase tracking: the common phase (residual CFO, phase noise) and the phase slope across subcarriers (timing drift
from a sampling-clock offset) of every OFDM symbol after the LTS, from the pilots and optionally the data decisions.

* **Header** (:meth:`PilotTracker.header_phase`): common phase only, from the pilots, smoothed over 3 symbols (at low
  SNR a per-symbol slope from a few pilots costs more than the sub-sample drift it would remove over a few symbols).
* **Frame** (:meth:`PilotTracker.track`): the pilot phases of the whole frame (header + payload symbols) are fitted by
  least squares to ``a + b s + d (s - s_lts) k`` (s the symbol index, k the subcarrier): ``a + b s`` is the residual
  CFO, ``d (s - s_lts) k`` a slope across subcarriers growing from zero at the LTS (where the channel was estimated,
  1.5 symbols before the first header symbol), kept only where significant (3 sigma). Averaging the pilot noise over
  all ``n_sym n_p`` pilots of the frame. With ``smoothing`` = w >= 3 the residual common phase is also tracked per
  symbol by a centred moving average over w symbols (phase noise; costs noise).
* **Decision-directed refinement** (:meth:`PilotTracker.decision_directed`, digital payloads at low SNR): ``a + b s``
  fitted to the per-symbol correlations of the equalized data with their hard decisions (four pilots per symbol leave
  a common-phase error of ~0.06 rad at 4 dB SNR, which costs QPSK ~0.3 dB; 48 data subcarriers per symbol do not).
* **Phase-error variance** (:meth:`PilotTracker.phase_var`) for the effective noise of the equalizer:
  ``var(phi_k) ~ sigma^2 / (2 |H_p|^2) [(1/n_p + k^2 / sum k_p^2) / (n_sym / 2) + 1 / (w n_p)]``.
"""

from __future__ import annotations

import numpy as np

from phy.frame import FrameFormat
from phy.ofdm import OfdmConfig
from phy.rx.ofdm_demodulation import cis


def sum3(z: np.ndarray) -> np.ndarray:
    """Centred sum of 3 along the last axis (``z[..., s-1] + z[..., s] + z[..., s+1]``, missing ends left out).

    Parameters
    ----------
    z : ndarray [..., n_sym]

    Returns
    -------
    ndarray [..., n_sym], dtype of ``z``
    """
    if z.shape[-1] < 2:
        return z
    zs = z.copy()
    zs[..., 1:] += z[..., :-1]
    zs[..., :-1] += z[..., 1:]
    return zs


class PilotTracker:
    """Pilot-based phase tracking of F frames at once (see the module docstring).

    Parameters
    ----------
    cfg : OfdmConfig
    fmt : FrameFormat
    smoothing : int
        1: the frame-wide linear model only; odd w >= 3: plus a per-symbol residual common phase averaged over w
        symbols.
    """

    def __init__(self, cfg: OfdmConfig, fmt: FrameFormat, smoothing: int = 1):
        self.cfg, self.fmt, self.smoothing = cfg, fmt, int(smoothing)
        kp = np.asarray(cfg.pilot_subcarriers, dtype=np.float64)
        self._kp = kp - kp.mean()
        self._kp_mean = kp.mean()
        kd = np.asarray(cfg.data_subcarriers, dtype=np.float64)
        #: data subcarrier indices, float32 [n_data] (the slope's k)
        self.kd32 = kd.astype(np.float32)
        self._phase_var_shape = (1.0 / cfg.n_pilots + (kd - self._kp_mean) ** 2
                                 / max(float(self._kp @ self._kp), 1e-12)).astype(np.float32)
        self._grids: dict[int, tuple] = {}

    def header_phase(self, Y: np.ndarray, H: np.ndarray, ph: np.ndarray) -> np.ndarray:
        """Phase to remove from the header symbols: the pilots' common phase, smoothed over 3 symbols, plus ``ph``.

        Parameters
        ----------
        Y : complex64 ndarray [F, n_hdr, N]
            Header symbol FFTs.
        H : complex64 ndarray [F, N]
            Channel per FFT bin.
        ph : float64 ndarray [F, n_hdr]
            Residual CFO phase still in ``Y`` (radians).

        Returns
        -------
        float ndarray [F, n_hdr]
            Radians.
        """
        pb = self.cfg.pilot_bins
        n_sym = Y.shape[1]
        z = (Y[:, :, pb] * cis(-ph)[:, :, None]
             * np.conj(self.fmt.pilot_block(0, n_sym)[None, :, :] * H[:, None, pb])).sum(axis=2)
        return np.angle(sum3(z)) + ph

    def _grid(self, n_sym: int) -> tuple:
        """Constants of :meth:`track` for n_sym symbols, cached: (s float64 [n_sym], s - mean(s), sum of its
        squares, s + 1.5 (symbols from the LTS), u = (s + 1.5) k_p [n_sym, n_p], sum of u^2)."""
        grid = self._grids.get(n_sym)
        if grid is None:
            s_idx = np.arange(n_sym, dtype=np.float64)
            sc = s_idx - s_idx.mean()
            s_lts = s_idx + 1.5
            u = s_lts[:, None] * self._kp[None, :]
            grid = (s_idx, sc, sc @ sc, s_lts, u, float(np.sum(u * u)))
            if len(self._grids) < 256:
                self._grids[n_sym] = grid
        return grid

    def track(self, Hp: np.ndarray, Yp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-symbol common phase and phase slope of F frames from their pilots.

        Parameters
        ----------
        Hp : complex64 ndarray [F, n_p]
            Pilot channels.
        Yp : complex64 ndarray [F, n_sym, n_p]
            Pilot columns (symbol 0 = first header symbol), residual CFO phase already removed.

        Returns
        -------
        cpe : float64 ndarray [F, n_sym]
            Common phase at subcarrier 0, radians.
        slope : float64 ndarray [F, n_sym]
            Phase slope, radians per subcarrier.
        """
        n_frames, n_sym = Yp.shape[:2]
        smooth = self.smoothing
        z = Yp * np.conj(self.fmt.pilot_block(0, n_sym)[None, :, :] * Hp[:, None, :])
        s_idx, sc, scsc, s_lts, u, uu = self._grid(n_sym)
        if n_sym > 1:
            drift = np.angle((np.conj(z[:, :-1]) * z[:, 1:]).sum(axis=(1, 2)))
        else:
            drift = np.zeros(n_frames)
        z = z * cis(-drift[:, None] * s_idx)[:, :, None]
        theta0 = np.angle(z.sum(axis=(1, 2)))
        phi = np.angle(z * np.exp(-1j * theta0).astype(np.complex64)[:, None, None])      # [F, n_sym, n_p], small
        kp = self._kp
        # common phase: a + b s (least squares over all pilots of the frame)
        w_s = phi.sum(axis=2) / phi.shape[2]                                  # mean over the pilots
        b = (w_s @ sc) / scsc if n_sym > 1 else np.zeros(n_frames)
        cpe = (w_s.sum(axis=1) / n_sym)[:, None] + b[:, None] * sc[None, :]
        # slope across subcarriers: d (s - s_ref) k, zero at the LTS, kept only where it is significant (> 3 sigma) -
        # four pilots per symbol cannot afford free per-symbol slopes at low SNR
        resid = phi - cpe[:, :, None]
        d = (resid * u).sum(axis=(1, 2)) / uu
        var_phi = np.square(resid - d[:, None, None] * u).sum(axis=(1, 2)) / resid[0].size
        d = np.where(d * d * uu < 9.0 * var_phi, 0.0, d)
        slope = d[:, None] * s_lts[None, :]
        if smooth > 1 and n_sym > 1:
            res = (z * cis(-(theta0[:, None, None] + cpe[:, :, None] + slope[:, :, None] * kp))).sum(axis=2)
            c = np.concatenate([np.zeros((n_frames, 1), res.dtype), np.cumsum(res, axis=1)], axis=1)
            h = smooth // 2
            idx = np.arange(n_sym)
            res = c[:, np.minimum(idx + h + 1, n_sym)] - c[:, np.maximum(idx - h, 0)]
            cpe = cpe + np.angle(res)
        return theta0[:, None] + drift[:, None] * s_idx + cpe - slope * self._kp_mean, slope

    def phase_var(self, sigma2: np.ndarray, Hp: np.ndarray, n_tot: int) -> np.ndarray:
        """Variance of the tracked phase per data subcarrier (see the module docstring).

        Parameters
        ----------
        sigma2 : float ndarray [F]
            Noise variance per bin.
        Hp : complex64 ndarray [F, n_p]
            Pilot channels.
        n_tot : int
            Symbols tracked (header + payload).

        Returns
        -------
        float ndarray [F, n_data]
            Radians^2.
        """
        w = self.smoothing
        hp2 = (Hp.real * Hp.real + Hp.imag * Hp.imag).sum(axis=1) / Hp.shape[1]
        return (sigma2 / (2 * np.maximum(hp2, 1e-30)))[:, None] \
            * (self._phase_var_shape / max(n_tot / 2, 1.0) + (1.0 / (w * self.cfg.n_pilots) if w > 1 else 0.0))

    @staticmethod
    def decision_directed(X: np.ndarray, h2: np.ndarray, modem, n_sym: int) -> np.ndarray:
        """Decision-directed refinement of the common phase of F digital payloads.

        Per frame, the phase ``a + b s`` (s = OFDM symbol index) is fitted to the per-symbol correlations
        ``c_s = sum_k |H_k|^2 X conj(slice(X))`` over the real data symbols.

        Parameters
        ----------
        X : complex64 ndarray [F, n_pay, n_data]
            Payload after pilot correction and ZF.
        h2 : float32 ndarray [F, n_data]
            ``|H_k|^2``.
        modem : QamModem
        n_sym : int
            Data symbols per frame (the rest of the last OFDM symbol is filler).

        Returns
        -------
        complex64 ndarray [F, n_pay, n_data]
        """
        n_frames, n_pay = X.shape[:2]
        flat = X.reshape(n_frames, -1)
        if modem.order <= 4:                         # BPSK/QPSK: the decision is the sign pattern
            dec = np.sign(flat.real) if modem.order == 2 else np.sign(flat.real) + 1j * np.sign(flat.imag)
            dec = dec.astype(np.complex64)
            dec[:, n_sym:] = 0
        else:
            dec = np.zeros_like(flat)
            dec[:, :n_sym] = modem.constellation[modem.demodulate_hard(flat[:, :n_sym])
                                                 .reshape(n_frames, -1, modem.bits_per_symbol)
                                                 @ (1 << np.arange(modem.bits_per_symbol - 1, -1, -1))]
        c = (X * np.conj(dec.reshape(X.shape)) * h2[:, None, :]).sum(axis=2)         # [F, n_pay]
        a = np.angle(c.sum(axis=1))
        ang = np.angle(c * np.exp(-1j * a)[:, None])
        wgt = np.abs(c)
        s_idx = np.arange(n_pay, dtype=np.float64)
        sc = s_idx[None, :] - ((wgt @ s_idx) / np.maximum(wgt.sum(axis=1), 1e-30))[:, None]
        if n_pay > 1:
            b = ((wgt * sc) * ang).sum(axis=1) / np.maximum(((wgt * sc) * sc).sum(axis=1), 1e-30)
        else:
            b = np.zeros(n_frames)
        return X * cis(-(a[:, None] + b[:, None] * sc))[:, :, None]
