"""Phase tracking: the common phase (residual CFO, phase noise) and the phase slope across subcarriers (timing drift
from a sampling-clock offset) of every OFDM symbol after the LTS, from the pilots and optionally the data decisions.

* **Header** (:meth:`PilotTracker.header_phase`): common phase only, from the pilots, smoothed over 3 symbols (at low
  SNR a per-symbol slope from a few pilots costs more than the sub-sample drift it would remove over a few symbols).
* **Frame** (:meth:`PilotTracker.track`): the pilot phases of the whole frame (header + payload symbols) are fitted by
  weighted least squares (pilot weights ``|H_p|^2``, subcarriers centred on their weighted mean) to
  ``a + b s + d (s - s_lts) k`` (after removing a drift estimated from pilot correlations at lags 1, 8 and 32
  symbols, so that the phases do not wrap over long frames at low SNR) (s the symbol index, k the subcarrier):
  ``a + b s`` is the residual
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

from phy.frame import FrameFormat, modem_for
from phy.ofdm import OfdmConfig
from phy.rx.ofdm_demodulation import Segments, cis, row_sum


#: lags (symbols) at which the per-symbol phase drift of a frame is refined after the lag-1 estimate
DRIFT_LAGS = (8, 32)


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

    def track_frames(self, Hp: np.ndarray, y_hdr: np.ndarray, ph_hdr: np.ndarray, y_pay: np.ndarray,
                     ph: np.ndarray, seg: Segments) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`track` over the header and payload symbols of F frames; the phase and slope of the payload rows.

        Parameters
        ----------
        Hp : complex64 ndarray [F, n_p]
            Pilot channels.
        y_hdr : complex64 ndarray [F, n_hdr, n_p]
            Header pilots (from acquisition), with their residual CFO phase ``ph_hdr`` float [F, n_hdr].
        y_pay : complex64 ndarray [T, n_p]
            Payload pilots, rows in the layout ``seg``, with their residual CFO phase ``ph`` float [T].
        seg : Segments
            Payload symbols per frame.

        Returns
        -------
        phase : float64 ndarray [T]
            Phase to remove from each payload row at subcarrier 0 (tracked phase + residual CFO phase), radians.
        slope : float64 ndarray [T]
            Phase slope, radians per subcarrier.
        """
        n_frames, n_hdr, n_p = y_hdr.shape
        y_hdr = y_hdr * cis(-ph_hdr)[:, :, None]
        y_pay = y_pay * cis(-ph)[:, None]
        track = Segments(seg.counts + n_hdr)
        k = int(seg.counts[0])
        if (seg.counts == k).all():             # one length: header and payload rows side by side
            yp = np.concatenate([y_hdr, y_pay.reshape(n_frames, k, n_p)], axis=1).reshape(-1, n_p)
            cpe, slope = self.track(Hp, yp, track)
            return cpe.reshape(n_frames, -1)[:, n_hdr:].reshape(-1) + ph, slope.reshape(n_frames, -1)[:, n_hdr:].ravel()
        yp = np.concatenate([b for f in range(n_frames) for b in
                             (y_hdr[f], y_pay[seg.offsets[f]:seg.offsets[f] + seg.counts[f]])])
        cpe, slope = self.track(Hp, yp, track)
        is_pay = track.index >= n_hdr
        return cpe[is_pay] + ph, slope[is_pay]

    def track(self, Hp: np.ndarray, Yp: np.ndarray, seg: Segments) -> tuple[np.ndarray, np.ndarray]:
        """Per-symbol common phase and phase slope of F frames of different lengths from their pilots.

        Parameters
        ----------
        Hp : complex64 ndarray [F, n_p]
            Pilot channels.
        Yp : complex64 ndarray [T, n_p]
            Pilot columns of every tracked symbol, frame after frame (row ``seg.offsets[f] + s``: symbol s of frame
            f, 0 = first header symbol), residual CFO phase already removed; every frame has >= 2 symbols.
        seg : Segments
            Symbols per frame.

        Returns
        -------
        cpe : float64 ndarray [T]
            Common phase at subcarrier 0, radians.
        slope : float64 ndarray [T]
            Phase slope, radians per subcarrier.
        """
        smooth, n_p, rep = self.smoothing, Yp.shape[1], seg.rows
        s_idx = seg.index.astype(np.float64)
        n_sym = seg.counts.astype(np.float64)
        z = Yp * np.conj(np.take(self.fmt.pilot_block(0, int(seg.counts.max())), seg.index, axis=0) * seg.rows(Hp))
        # mean phase increment per symbol (pairs of consecutive symbols of the same frame), so the phases do not wrap
        pairs = np.zeros(seg.total, np.complex64)
        pairs[:-1] = row_sum(np.conj(z[:-1]) * z[1:])
        pairs[seg.offsets[1:] - 1] = 0                                              # across frames
        drift = np.angle(seg.sum(pairs))
        # refine at longer lags: the lag-1 estimate's error (~0.05 rad/symbol at 0 dB with 4 pilots) accumulates over
        # a long frame beyond +-pi, wrapping the phases the least-squares fit below sees; lag L divides it by ~L
        # (each lag's residual times L stays well inside +-pi)
        for lag in DRIFT_LAGS:
            if seg.counts.max() <= lag:
                break
            zr = z * cis(-rep(drift) * s_idx)[:, None]
            lagged = np.zeros(seg.total, np.complex64)
            same = seg.index[:-lag] + lag < rep(seg.counts)[:-lag]                    # both rows in one frame
            lagged[:-lag] = np.where(same, row_sum(np.conj(zr[:-lag]) * zr[lag:]), 0)
            drift = drift + np.angle(seg.sum(lagged)) / lag
        z = z * cis(-rep(drift) * s_idx)[:, None]
        theta0 = np.angle(seg.sum(row_sum(z)))
        phi = np.angle(z * rep(np.exp(-1j * theta0).astype(np.complex64))[:, None])    # [T, n_p], small
        # pilot weights |H_p|^2 / mean |H_p|^2 (the inverse variance of each pilot's phase): a pilot in a deep fade
        # carries a phase that is nearly uniform on (-pi, pi], and an unweighted mean over 4 pilots passed a quarter
        # of it to every symbol (TDL-A at 10 dB: frames arriving at 0-4 dB while the receiver reported 5-8 dB)
        hp2 = np.square(np.abs(Hp)).astype(np.float64)
        wf = hp2 / np.maximum(hp2.mean(axis=1, keepdims=True), 1e-30)                # [F, n_p], mean 1
        wp = rep(wf)
        # pilot subcarriers centred on their weighted mean, so that the common phase and the slope decouple
        k_ref = (wf * (self._kp + self._kp_mean)).mean(axis=1)                        # [F], subcarriers
        kp = (self._kp + self._kp_mean)[None, :] - rep(k_ref)[:, None]                # [T, n_p]
        # common phase: a + b s (weighted least squares over all pilots of the frame)
        w_s = row_sum(phi * wp) / n_p                                                  # weighted mean over the pilots
        sc = s_idx - rep((n_sym - 1) / 2)
        b = seg.sum(w_s * sc) / seg.sum(sc * sc)
        cpe = rep(seg.sum(w_s) / n_sym) + rep(b) * sc
        # slope across subcarriers: d (s - s_ref) k, zero at the LTS, kept only where it is significant (> 3 sigma) -
        # four pilots per symbol cannot afford free per-symbol slopes at low SNR
        resid = phi - cpe[:, None]
        s_lts = s_idx + 1.5
        u = s_lts[:, None] * kp
        uu = seg.sum(row_sum(wp * u * u))
        d = seg.sum(row_sum(wp * resid * u)) / uu
        var_phi = seg.sum(row_sum(wp * np.square(resid - rep(d)[:, None] * u))) / (n_sym * n_p)
        d = np.where(d * d * uu < 9.0 * var_phi, 0.0, d)
        slope = rep(d) * s_lts
        if smooth > 1:
            res = (z * cis(-(rep(theta0)[:, None] + cpe[:, None] + slope[:, None] * kp))).sum(axis=1)
            c = np.zeros(seg.total + 1, np.complex128)
            np.cumsum(res, out=c[1:])
            h = smooth // 2
            base = rep(seg.offsets)
            hi = base + np.minimum(seg.index + h + 1, rep(seg.counts))
            lo = base + np.maximum(seg.index - h, 0)
            cpe = cpe + np.angle(c[hi] - c[lo])
        return rep(theta0) + rep(drift) * s_idx + cpe - slope * rep(k_ref), slope

    def phase_var(self, sigma2: np.ndarray, Hp: np.ndarray, n_tot: np.ndarray) -> np.ndarray:
        """Variance of the tracked phase per data subcarrier (see the module docstring).

        Parameters
        ----------
        sigma2 : float ndarray [F]
            Noise variance per bin.
        Hp : complex64 ndarray [F, n_p]
            Pilot channels.
        n_tot : int ndarray [F]
            Symbols tracked per frame (header + payload).

        Returns
        -------
        float ndarray [F, n_data]
            Radians^2.
        """
        w = self.smoothing
        hp2 = (Hp.real * Hp.real + Hp.imag * Hp.imag).sum(axis=1) / Hp.shape[1]
        return (sigma2 / (2 * np.maximum(hp2, 1e-30)))[:, None] \
            * (self._phase_var_shape[None, :] / np.maximum(np.asarray(n_tot) / 2, 1.0)[:, None]
               + (1.0 / (w * self.cfg.n_pilots) if w > 1 else 0.0))

    def derotate(self, Yd: np.ndarray, cpe: np.ndarray, slope: np.ndarray) -> np.ndarray:
        """Remove the tracked phase from the data subcarriers, in place: ``Yd *= exp(-j (cpe + slope k))``.

        Parameters
        ----------
        Yd : complex64 ndarray [T, n_data]
            Data subcarriers of T OFDM symbols (modified and returned).
        cpe, slope : float64 ndarray [T]
            :meth:`track_frames`'s phase (radians) and slope (radians per subcarrier); the slope is zero for most
            symbols (kept only where significant), which then take one phase per symbol.

        Returns
        -------
        complex64 ndarray [T, n_data]
            ``Yd``.
        """
        drift = np.flatnonzero(slope)
        if drift.size:
            tilted = Yd[drift] * cis(-(cpe[drift, None] + slope[drift, None] * self.kd32))
        Yd *= cis(-cpe)[:, None]
        if drift.size:
            Yd[drift] = tilted
        return Yd

    def refine(self, X: np.ndarray, h2: np.ndarray, modems: list[str], sel: np.ndarray, seg: Segments,
               n_cells: np.ndarray) -> None:
        """:meth:`decision_directed` in place for the frames ``sel`` (bool [F]) of F equalized frames (rows ``seg``
        of ``X`` complex64 [T, n_data]), one call per modulation (``modems`` [F] names, ``h2`` float32 [F, n_data],
        ``n_cells`` int [F] data cells per frame)."""
        for modem in {modems[f] for f in np.flatnonzero(sel)}:
            frames = np.flatnonzero(sel & np.array([m == modem for m in modems]))
            sub, rws = seg.select(frames)
            X[rws] = self.decision_directed(X[rws], h2[frames], modem_for(modem), sub, n_cells[frames])

    @staticmethod
    def decision_directed(X: np.ndarray, h2: np.ndarray, modem, seg: Segments, n_cells: np.ndarray) -> np.ndarray:
        """Decision-directed refinement of the common phase of F digital payloads of different lengths.

        Per frame, the phase ``a + b s`` (s = payload OFDM symbol index) is fitted to the per-symbol correlations
        ``c_s = sum_k |H_k|^2 X conj(slice(X))`` over the real data cells.

        Parameters
        ----------
        X : complex64 ndarray [T, n_data]
            Payload symbols after pilot correction and ZF, frame after frame (layout ``seg``).
        h2 : float32 ndarray [F, n_data]
            ``|H_k|^2``.
        modem : QamModem
        seg : Segments
            Payload OFDM symbols per frame.
        n_cells : int ndarray [F]
            Data cells per frame (the rest of its last OFDM symbol is filler).

        Returns
        -------
        complex64 ndarray [T, n_data]
        """
        rep = seg.rows
        n_data = X.shape[1]
        if modem.order <= 4:                         # BPSK/QPSK: the decision is the sign pattern
            dec = np.sign(X.real) if modem.order == 2 else np.sign(X.real) + 1j * np.sign(X.imag)
            dec = dec.astype(np.complex64)
        else:
            m = modem.bits_per_symbol
            dec = modem.constellation[modem.demodulate_hard(X).reshape(*X.shape, m) @ (1 << np.arange(m - 1, -1, -1))]
        filler = seg.index[:, None] * n_data + np.arange(n_data)[None, :] >= rep(n_cells)[:, None]
        dec[filler] = 0
        c = (X * np.conj(dec) * rep(h2)).sum(axis=1)                                  # [T]
        a = np.angle(seg.sum(c))
        ang = np.angle(c * rep(np.exp(-1j * a)))
        wgt = np.abs(c)
        s_idx = seg.index.astype(np.float64)
        sc = s_idx - rep(seg.sum(wgt * s_idx) / np.maximum(seg.sum(wgt), 1e-30))
        b = seg.sum((wgt * sc) * ang) / np.maximum(seg.sum((wgt * sc) * sc), 1e-30)
        return X * cis(-(rep(a) + rep(b) * sc))[:, None]
