"""Uplink pre-compensation for over-the-air computation: CFO pre-rotation and truncated channel inversion.

For the PS to receive the plain sum Σ_k x_k on every subcarrier, device k transmits

    X_k[m] = alpha · x_k[m] / H_k[m]

where H_k is its (estimated) uplink channel on subcarrier m and alpha is one amplitude common to all devices, which the PS
divides out. Device k's mean transmit power is alpha² · q_k · E|x|² with q_k = mean_m 1/|H_k[m]|² (the power that
inverting its channel costs). Truncated channel inversion (Amiri & Gündüz, TWC 2020, extended per subcarrier): devices
whose q_k exceeds ``1/gain_threshold`` stay silent this round, and alpha = sqrt(P / max_{k active} q_k) is the largest
amplitude every active device can afford under its power budget P (power per subcarrier, unit-power symbols x).

CFO pre-compensation: a device whose downlink shows carrier offset f (PS carrier minus device carrier, measured on the
beacon) rotates its uplink by exp(+j 2 pi f t / fs), t its absolute sample time, so the PS sees no offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phy.ofdm import grid_to_time


def cfo_precompensate(samples: np.ndarray, cfo_hz: float, sample_rate: float, t0: int) -> np.ndarray:
    """Rotate ``samples`` (complex[N], first at sample time t0) by exp(+j 2 pi cfo_hz (t0 + n) / fs); complex64[N].

    The phase is a function of absolute time, so bursts sent at different times stay phase-continuous."""
    n = np.arange(samples.shape[-1], dtype=np.float64) + float(t0)
    return (samples * np.exp(2j * np.pi * (cfo_hz / sample_rate) * n)).astype(np.complex64)


@dataclass
class InversionPlan:
    """Result of truncated channel inversion for one round.

    ``alpha``: common amplitude (the PS divides by it); ``active``: bool[K]; ``q``: float[K] power cost per device;
    ``precoders``: complex64[K, M] per-device multipliers alpha/H (zero for silent devices); ``reasons``: why silent."""

    alpha: float
    active: np.ndarray
    q: np.ndarray
    precoders: np.ndarray
    reasons: dict[int, str]


def regularized_inverse(channels: np.ndarray, error_var=None) -> np.ndarray:
    """conj(H) / (|H|² + e): the inverse of estimated channels regularized by their estimation-error variance e
    (float or float[K]); plain 1/H for e = 0. With noisy estimates the plain inverse blows up where the channel is in a
    deep fade and the estimate is mostly noise; the regularized one stays bounded (an LMMSE-style inverse)."""
    h = np.asarray(channels)
    e = 0.0 if error_var is None else np.asarray(error_var, dtype=np.float64)
    if np.ndim(e):
        e = e.reshape(e.shape + (1,) * (h.ndim - e.ndim))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.conj(h) / (np.abs(h) ** 2 + e)


def truncated_inversion(channels: np.ndarray, power: float, gain_threshold: float,
                        error_var=None) -> InversionPlan:
    """Plan truncated channel inversion for K devices (see module docstring).

    ``channels``: complex[K, M] uplink channel estimates per device and subcarrier; ``power``: per-device power budget
    per subcarrier (relative to unit-power symbols); ``gain_threshold``: a device is active iff its harmonic-mean power
    gain 1/q_k ≥ gain_threshold; ``error_var`` (float[K], optional): estimation-error variance of each device's
    channels, for the regularized inverse (:func:`regularized_inverse`). Non-finite estimates make a device silent."""
    h = np.asarray(channels)
    if h.ndim != 2:
        raise ValueError(f"channels must be complex[K, M], got shape {h.shape}")
    if not power > 0:
        raise ValueError(f"power budget must be > 0, got {power}")
    if not gain_threshold > 0:
        raise ValueError(f"gain_threshold must be > 0, got {gain_threshold}")
    # activity: the plain inverse's power q_k = mean 1/|H|² against the threshold (the TWC rule; with a noisy estimate
    # it is the conservative side); alpha: the power the devices will really spend, that of the regularized inverse
    mag2 = np.abs(h) ** 2
    finite = np.all(np.isfinite(mag2), axis=1) & np.all(mag2 > 0, axis=1)
    q = np.full(h.shape[0], np.inf)
    q[finite] = np.mean(1.0 / mag2[finite], axis=1)
    inv = regularized_inverse(h, error_var)
    active = finite & (q <= 1.0 / gain_threshold)
    reasons = {int(k): ("no valid channel estimate" if not finite[k] else
                        f"channel too weak: harmonic-mean gain {1 / q[k]:.3g} < threshold {gain_threshold:.3g}")
               for k in np.flatnonzero(~active)}
    q_tx = np.mean(np.abs(inv[active]) ** 2, axis=1) if active.any() else np.zeros(0)
    alpha = float(np.sqrt(power / q_tx.max())) if active.any() else 0.0
    pre = np.zeros(h.shape, dtype=np.complex64)
    pre[active] = (alpha * inv[active]).astype(np.complex64)
    return InversionPlan(alpha=alpha, active=active, q=q, precoders=pre, reasons=reasons)


def fractional_delay(x: np.ndarray, frac: float) -> np.ndarray:
    """Delay a burst by ``frac`` samples (any real; exact for a band-limited burst) with a linear phase in the
    frequency domain; the burst is zero-padded so the circular shift wraps into silence. complex64[len(x) + 1]
    (one extra sample holds the tail) unless frac == 0."""
    if frac == 0:
        return np.asarray(x, np.complex64)
    n = 1 << int(np.ceil(np.log2(x.size + 2 * abs(frac) + 8)))
    f = np.fft.fftfreq(n)
    y = np.fft.ifft(np.fft.fft(x, n) * np.exp(-2j * np.pi * f * frac))[:x.size + 1]
    return y.astype(np.complex64)


def ofdm_burst(cfg, grid_used: np.ndarray, frac: float, sco_ppm: float = 0.0) -> np.ndarray:
    """OFDM symbols (complex64[n_sym · symbol_len]) from values on the used subcarriers (complex[n_sym, n_used]) of
    :class:`phy.ofdm.OfdmConfig` ``cfg``, delayed by ``frac`` samples (a linear phase across the subcarriers).

    Sampling-clock pre-compensation: a device whose clock runs ``sco_ppm`` fast (as its beacon tracker measures) would
    compress the burst in PS time, so symbol s is delayed by a further sco_ppm·1e-6 · s · symbol_len samples (a
    per-symbol phase ramp: exact for the cyclic part; the drift inside one symbol is negligible)."""
    n_sym = grid_used.shape[0]
    grid = np.zeros((n_sym, cfg.fft_size), np.complex64)
    delay = frac + sco_ppm * 1e-6 * cfg.symbol_len * np.arange(n_sym)
    ramp = np.exp(-2j * np.pi * np.outer(delay, np.asarray(cfg.used_subcarriers)) / cfg.fft_size)
    grid[:, cfg.used_bins] = grid_used * ramp
    return grid_to_time(cfg, grid)
