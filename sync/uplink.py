"""Uplink pilots and CSI feedback for over-the-air computation.

Pilots are code-multiplexed: all K devices send ``n_symbols`` pilot OFDM symbols at the same time, device k
multiplying its pilot by the k-th row of an orthogonal cover code (DFT code of length n_symbols ≥ K). The PS despreads,
so each device's estimate collects the energy of all ``n_symbols`` symbols — K times what time-division pilots of the
same air time would give. The despread LS estimate is then denoised in the delay domain with phy's significant-tap
estimator (:class:`phy.chest.SignificantTapEstimator`) over the window the CP tolerates (``taps`` delays from
``first_delay`` on, relative to the PS's FFT window start), which cuts the estimation noise to about
kept taps / n_used of the LS noise.

The estimate also gives the device's timing error (single-path ML delay, the same estimator as the PRACH) and its
received SNR. Feedback (channel, timing-advance update, common amplitude) is serialized to bytes with ``bits`` per real
number, for a digital downlink frame, by :func:`sync.messages.encode_feedback` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phy.chest import SignificantTapEstimator, ml_delay
# feedback serialization lives with every other control message in sync.messages (one implementation)
from sync.messages import decode_feedback, encode_feedback  # noqa: F401  (re-exported)


def delay_basis(subcarriers: np.ndarray, fft_size: int, first_delay: int, taps: int) -> np.ndarray:
    """Frequency responses of unit taps at delays first_delay .. first_delay+taps-1: complex128[n_used, taps]."""
    delays = np.arange(taps) + first_delay
    return np.exp(-2j * np.pi * np.outer(np.asarray(subcarriers, dtype=np.float64), delays) / fft_size)


def pilot_sequence(n_used: int, seed: int = 0x5EED) -> np.ndarray:
    """Known BPSK pilot on the used subcarriers (complex64[n_used], |p| = 1); the same for every device."""
    bits = np.random.default_rng(seed).integers(0, 2, n_used)
    return (1 - 2 * bits).astype(np.complex64)


def cover_codes(n_devices: int, n_symbols: int) -> np.ndarray:
    """Orthogonal DFT cover codes: complex64[n_devices, n_symbols], rows orthogonal, |c| = 1."""
    if n_symbols < n_devices:
        raise ValueError(f"need at least as many pilot symbols as devices for orthogonal codes: "
                         f"n_symbols={n_symbols} < devices={n_devices}")
    k = np.arange(n_devices)[:, None]
    s = np.arange(n_symbols)[None, :]
    return np.exp(-2j * np.pi * k * s / n_symbols).astype(np.complex64)


@dataclass
class UplinkEstimate:
    """PS's view of each device from the pilots: ``channel`` complex64[K, n_used] (per used subcarrier, denoised),
    ``delay`` float[K] delay in samples relative to the FFT window start (ML single path), ``snr`` float[K]
    per-subcarrier received SNR estimate, ``present`` bool[K] (pilot energy above the detection threshold),
    ``error_var`` float[K] estimation-error variance per subcarrier (noise / n_symbols · kept taps / n_used)."""

    channel: np.ndarray
    delay: np.ndarray
    snr: np.ndarray
    present: np.ndarray
    error_var: np.ndarray
    taps: np.ndarray     # complex64[K, taps]: the compact model the feedback carries (see SignificantTapEstimator)
    shift: np.ndarray    # float[K]: its fractional delay
    span: np.ndarray     # float[K, 2]: first and last path (≥ 10 % of the strongest's power), window coordinates


class UplinkEstimator:
    """Despreads code-multiplexed uplink pilots and estimates every device's channel, timing error and SNR.

    ``subcarriers``: signed indices of the used subcarriers (int[n_used]); ``fft_size``; ``taps``: delay-domain
    support of the denoiser (≥ delay spread + timing uncertainty); ``first_delay``: its first delay, in samples after
    the PS's FFT window start (an aligned device appears at the window back-off)."""

    def __init__(self, subcarriers: np.ndarray, fft_size: int, n_devices: int, n_symbols: int, taps: int,
                 first_delay: int, noise_var: float | None = None):
        self.m = np.asarray(subcarriers, dtype=np.float64)
        self.fft_size = fft_size
        self.codes = cover_codes(n_devices, n_symbols)
        self.pilot = pilot_sequence(self.m.size)
        self.first_delay = first_delay
        self.taps = taps
        self.chest = SignificantTapEstimator(self.m, fft_size, first_delay, taps, align=True)
        self.noise_var = noise_var

    def transmit_grid(self, device: int) -> np.ndarray:
        """Device ``device``'s pilot values: complex64[n_symbols, n_used] (pilot × its cover code)."""
        return self.codes[device][:, None] * self.pilot[None, :]

    def estimate(self, grid: np.ndarray) -> UplinkEstimate:
        """``grid``: complex[n_symbols, n_used] received pilot symbols on the used subcarriers."""
        grid = np.asarray(grid)
        n_sym = self.codes.shape[1]
        if grid.shape != (n_sym, self.m.size):
            raise ValueError(f"pilot grid has shape {grid.shape}: expected ({n_sym}, {self.m.size})")
        k = self.codes.shape[0]
        ls = (self.codes.conj() @ grid) / n_sym * self.pilot.conj()[None, :]  # [K, n_used], noise sigma²/n_sym
        # noise sigma² per subcarrier: what the code space does not explain (needs n_symbols > K), else given
        if self.noise_var is not None:
            noise = self.noise_var
        elif n_sym > k:
            resid = grid - (self.codes.T @ ls) * self.pilot[None, :]
            noise = float(np.mean(np.abs(resid) ** 2)) * n_sym / (n_sym - k)
        else:
            raise ValueError("the noise level cannot be estimated with n_symbols == devices: give noise_var")
        # per device: its own set of significant taps (a loop over devices: each needs its own least squares)
        fits = [self.chest.fit_taps(ls[i], noise / n_sym) for i in range(k)]
        taps = np.stack([f[0] for f in fits])
        shift = np.array([f[1] for f in fits])
        h = self.chest.response(taps, shift)
        error_var = np.array([noise / n_sym * f[2] / self.m.size for f in fits])
        power = np.mean(np.abs(h) ** 2, axis=1)
        snr = power / max(noise, 1e-30)
        present = np.isfinite(snr) & (snr * n_sym * self.m.size / self.taps > 20.0)  # ≈ 13 dB detection margin
        self.last_noise_var = noise
        centre = self.first_delay + self.taps / 2
        delay = np.array([ml_delay(ls[k], self.m, self.fft_size, centre, span=self.taps / 2)[0]
                          for k in range(ls.shape[0])])
        p = np.abs(taps) ** 2
        strong = p >= 0.1 * p.max(axis=1, keepdims=True).clip(1e-30)
        lags = np.arange(self.taps) + self.first_delay
        first = np.where(strong.any(axis=1), np.argmax(strong, axis=1), 0)
        last = self.taps - 1 - np.argmax(strong[:, ::-1], axis=1)
        span = np.stack([lags[first], lags[last]], axis=1) + shift[:, None]
        return UplinkEstimate(channel=h.astype(np.complex64), delay=delay, snr=snr, present=present,
                              error_var=error_var, taps=taps, shift=shift, span=span)

