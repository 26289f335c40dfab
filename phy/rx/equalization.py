"""Equalization of the data subcarriers, with the effective noise each equalized symbol carries.

Effective noise per data subcarrier k (estimation error + pilot-phase error)::

    sigma_eff^2 = sigma^2 + err_var_k + |H_k|^2 var(phi_k)

with ``err_var_k = sigma^2 L_kept / (2 n_used)`` from the channel estimator and ``var(phi_k)`` from the phase tracker.

* **MMSE** (analog payloads, default): ``x = P conj(H) Y / (P |H|^2 + sigma_eff^2)`` with error variance
  ``P sigma_eff^2 / (P |H|^2 + sigma_eff^2)``; ``P`` (the symbol power) is estimated from the data.
* **ZF** / unbiased (digital payloads, or ``equalizer="zf"``): ``x = Y / H`` with error variance
  ``sigma_eff^2 / |H|^2`` (for one stream per subcarrier the unbiased MMSE estimate equals ZF).

The post-equalization SNR of a unit-power symbol is ``1 / error variance`` (:func:`post_equalization_snr_db`).
"""

from __future__ import annotations

import numpy as np

from phy.rx.ofdm_demodulation import Segments


def effective_noise(sigma2: np.ndarray, err_var: np.ndarray, h2: np.ndarray | None = None,
                    phase_var: np.ndarray | None = None) -> np.ndarray:
    """``sigma_eff^2`` per data subcarrier of F frames.

    Parameters
    ----------
    sigma2 : float ndarray [F]
        Noise variance per bin.
    err_var : float32 ndarray [F, n_data]
        Channel-estimation error variance.
    h2 : float32 ndarray [F, n_data], optional
        ``|H_k|^2`` (needed with ``phase_var``).
    phase_var : float ndarray [F, n_data], optional
        Variance of the tracked phase, radians^2 (None: genie phase, no phase error).

    Returns
    -------
    float32 ndarray [F, n_data]
    """
    noise = np.asarray(sigma2).astype(np.float32)[:, None] + err_var
    if phase_var is not None:
        noise = noise + h2 * phase_var
    return noise.astype(np.float32)


def equalize(Yd: np.ndarray, Hd: np.ndarray, h2: np.ndarray, noise: np.ndarray, mmse: np.ndarray, seg: Segments
             ) -> tuple[np.ndarray, np.ndarray]:
    """Equalize the data subcarriers of F frames of different lengths.

    Parameters
    ----------
    Yd : complex64 ndarray [T, n_data]
        Data subcarriers of every payload OFDM symbol, phase-corrected, frame after frame (layout ``seg``).
    Hd : complex64 ndarray [F, n_data]
        Channel on the data subcarriers.
    h2 : float32 ndarray [F, n_data]
        ``|H_k|^2``, floored at 1e-30.
    noise : float32 ndarray [F, n_data]
        ``sigma_eff^2`` (:func:`effective_noise`).
    mmse : bool ndarray [F]
        MMSE (with the symbol power estimated from the frame's ``Yd``) for these frames, ZF for the others.
    seg : Segments
        Payload OFDM symbols per frame.

    Returns
    -------
    X : complex64 ndarray [T, n_data]
        Equalized symbols.
    nv : float32 ndarray [F, n_data]
        Error variance per data subcarrier (the same in every OFDM symbol of a frame).
    """
    coef = (1.0 / Hd).astype(np.complex64)
    nv = noise / h2
    if mmse.any():
        m = np.flatnonzero(mmse)
        sub, rws = seg.select(m)
        y = Yd[rws]
        # symbol power prior estimated from the data (AnalogMapper makes it `power`, 1 by default): E|Y|^2 =
        # P |H|^2 + sigma_eff^2 on every cell, so P = sum(|Y|^2 - sigma_eff^2) / sum |H|^2. Summed before dividing,
        # the faded subcarriers weigh by their |H|^2; averaging |Y|^2/|H|^2 - sigma_eff^2/|H|^2 per subcarrier
        # instead let one near-null (|H|^2 ~ 1e-3) swing P below 0 and the 1e-6 floor zero the whole frame
        y2 = sub.sum(y.real * y.real + y.imag * y.imag)                             # [F', n_data]
        h2m, nm = h2[m], noise[m]
        cnt = np.asarray(sub.counts, dtype=np.float64)
        p = (y2.sum(axis=1) - cnt * nm.sum(axis=1)) / (cnt * h2m.sum(axis=1))
        p = np.maximum(p, 1e-6).astype(np.float32)[:, None]
        den = p * h2m + nm
        coef[m] = (p * np.conj(Hd[m]) / den).astype(np.complex64)
        nv[m] = p * nm / den
    return seg.times(Yd, coef), nv.astype(np.float32)


def post_equalization_snr_db(nv: np.ndarray, power: float = 1.0) -> np.ndarray:
    """Post-equalization SNR ``10 log10(power / nv)`` of symbols with error variance ``nv`` (float [...]), dB."""
    return 10 * np.log10(power / np.maximum(np.asarray(nv, dtype=np.float64), 1e-30))
