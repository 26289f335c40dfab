"""The MMSE equalizer's symbol-power prior on a channel with a near-null subcarrier.

``phy.rx.equalization.equalize`` estimates the analog payload's symbol power P from the frame, E|Y_k|^2 = P |H_k|^2 +
sigma_eff^2. The estimate sum(|Y|^2 - sigma_eff^2) / sum |H|^2 weighs each subcarrier by |H_k|^2; its relative
standard deviation follows from Var|Y_k|^2 = (P |H_k|^2 + sigma^2)^2 (Gaussian symbols): sqrt(S sum_k (P |H_k|^2 +
sigma^2)^2) / (S sum_k |H_k|^2) for S OFDM symbols, dominated by the strong subcarriers. Averaging
|Y_k|^2/|H_k|^2 - sigma_eff^2/|H_k|^2 instead gives a null of |H|^2 = 1e-3 a term with standard deviation ~ N0/|H|^2 / 2
~ 50: P then comes out negative on a large share of frames, is floored at 1e-6, and the whole frame's values are zeroed
(found on TDL-A, air seed 0: 39 of 300 two-symbol frames; docs/infer.md).
"""

from __future__ import annotations

import numpy as np

from phy.rx.equalization import equalize
from phy.rx.ofdm_demodulation import Segments

N_DATA, N_SYM, N_FRAMES, N0 = 48, 2, 400, 0.1


def _frames(rng):
    """N_FRAMES frames of N_SYM OFDM symbols, unit-power Gaussian symbols, one channel with a null at subcarrier 20."""
    H = (rng.standard_normal(N_DATA) + 1j * rng.standard_normal(N_DATA)) / np.sqrt(2)
    H[20] = 0.03
    H = np.broadcast_to(H, (N_FRAMES, N_DATA)).astype(np.complex64)
    shape = (N_FRAMES * N_SYM, N_DATA)
    cn = lambda var: np.sqrt(var / 2) * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    X = cn(1.0)
    Y = (X * np.repeat(H, N_SYM, axis=0) + cn(N0)).astype(np.complex64)
    return X, Y, H


def test_power_prior_survives_a_null():
    rng = np.random.default_rng(7)
    X, Y, H = _frames(rng)
    h2 = (np.abs(H) ** 2).astype(np.float32)
    noise = np.full((N_FRAMES, N_DATA), N0, np.float32)
    seg = Segments(np.full(N_FRAMES, N_SYM))
    Xh, nv = equalize(Y, H, h2, noise, np.ones(N_FRAMES, bool), seg)
    # nv = P N0 / (P |H|^2 + N0)  =>  P = nv N0 / (N0 - nv |H|^2), read on the strongest subcarrier
    k = int(np.argmax(h2[0]))
    p = nv[:, k] * N0 / (N0 - nv[:, k] * h2[0, k])
    sd = np.sqrt(N_SYM * np.sum((h2[0] + N0) ** 2)) / (N_SYM * np.sum(h2[0]))
    assert abs(np.std(p) / sd - 1) < 0.15, (np.std(p), sd)
    assert abs(np.mean(p) - 1.0) < 4 * sd / np.sqrt(N_FRAMES)
    assert p.min() > 0.3, p.min()
    # no frame is zeroed (a frame equalized with the 1e-6 floor has power ~1e-12)
    power = np.mean(np.abs(Xh.reshape(N_FRAMES, N_SYM, N_DATA)) ** 2, axis=(1, 2))
    assert power.min() > 0.2
    # the per-subcarrier average of the ZF-domain terms (the old estimator) is unusable here: many frames negative
    y2 = np.abs(Y.reshape(N_FRAMES, N_SYM, N_DATA)) ** 2
    old = np.mean(y2 / h2[:, None, :], axis=(1, 2)) - np.mean(noise / h2, axis=1)
    assert np.mean(old < 0) > 0.1
