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
number, for a digital downlink frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from phy.chest import SignificantTapEstimator, ml_delay


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


# ------------------------------------------------------------------------------------- feedback serialization
_HEAD = struct.Struct("<fHBbB")    # alpha, n_devices, bits, first delay, taps
_DEV = struct.Struct("<HbBfff")    # device, TA steps (relative), flags (1 = active), scale, error var, shift


def _pack(q: np.ndarray, bits: int) -> bytes:
    """Signed integers (|q| < 2**(bits-1)) → a big-endian bit string of ``bits`` bits each."""
    u = (q.astype(np.int64) + (1 << (bits - 1))).astype(np.uint32)
    b = (u[:, None] >> np.arange(bits - 1, -1, -1, dtype=np.uint32)) & 1
    return np.packbits(b.astype(np.uint8).reshape(-1)).tobytes()


def _unpack(data: bytes, count: int, bits: int) -> np.ndarray:
    b = np.unpackbits(np.frombuffer(data, np.uint8))[:count * bits].reshape(count, bits).astype(np.int64)
    return (b << np.arange(bits - 1, -1, -1)).sum(axis=1) - (1 << (bits - 1))


def encode_feedback(alpha: float, taps: np.ndarray, first_delay: int, ta_steps: np.ndarray, active: np.ndarray,
                    bits: int, error_var: np.ndarray | None = None, shift: np.ndarray | None = None) -> bytes:
    """Serialize the common amplitude, per-device TA updates, active flags and delay-domain channels
    (complex[K, taps] plus a fractional delay ``shift`` float[K]; ``bits`` per real number with a per-device scale,
    bit-packed) and the estimates' error variances (float[K], for the regularized inverse) for one downlink frame."""
    if not 2 <= bits <= 16:
        raise ValueError(f"feedback bits must be in 2..16, got {bits}")
    taps = np.asarray(taps)
    k, n_taps = taps.shape
    levels = 2 ** (bits - 1) - 1
    out = [_HEAD.pack(alpha, k, bits, int(first_delay), n_taps)]
    taps = np.nan_to_num(taps, nan=0.0, posinf=0.0, neginf=0.0)
    for i in range(k):
        kept = taps[i] != 0                     # only the significant taps travel: a bit mask, then their values
        iq = np.stack([taps[i][kept].real, taps[i][kept].imag], axis=-1).reshape(-1)
        scale = float(np.max(np.abs(iq))) if iq.size and np.max(np.abs(iq)) > 0 else 1.0
        q = np.clip(np.round(iq / scale * levels), -levels, levels)
        err = 0.0 if error_var is None else float(error_var[i])
        sh = 0.0 if shift is None else float(shift[i])
        out.append(_DEV.pack(i, int(np.clip(ta_steps[i], -127, 127)), int(bool(active[i])), scale, err, sh))
        out.append(np.packbits(kept.astype(np.uint8)).tobytes())
        out.append(_pack(q, bits) if q.size else b"")
    return b"".join(out)


def decode_feedback(data: bytes) -> tuple[float, np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_feedback`: (alpha, taps complex64[K, taps], first_delay, ta_steps int[K],
    active bool[K], error_var float[K], shift float[K]). Raises ValueError on a payload of the wrong size."""
    if len(data) < _HEAD.size:
        raise ValueError(f"feedback payload of {len(data)} bytes is shorter than its header ({_HEAD.size})")
    alpha, k, bits, first_delay, n_taps = _HEAD.unpack_from(data, 0)
    levels = 2 ** (bits - 1) - 1
    mask_len = (n_taps + 7) // 8
    taps = np.zeros((k, n_taps), np.complex64)
    ta = np.empty(k, int)
    act = np.empty(k, bool)
    err = np.empty(k, np.float32)
    shift = np.empty(k, np.float32)
    off = _HEAD.size
    for i in range(k):
        if len(data) < off + _DEV.size + mask_len:
            raise ValueError(f"feedback payload of {len(data)} bytes ends inside device {i} of {k}")
        _, ta[i], flags, scale, err[i], shift[i] = _DEV.unpack_from(data, off)
        act[i] = bool(flags & 1)
        kept = np.unpackbits(np.frombuffer(data, np.uint8, mask_len, off + _DEV.size))[:n_taps].astype(bool)
        n_val = 2 * int(kept.sum())
        size = (n_val * bits + 7) // 8
        off += _DEV.size + mask_len
        if len(data) < off + size:
            raise ValueError(f"feedback payload of {len(data)} bytes ends inside device {i}'s taps")
        q = _unpack(data[off:off + size], n_val, bits).astype(np.float32) / levels * scale
        taps[i, kept] = q[0::2] + 1j * q[1::2]
        off += size
    if off != len(data):
        raise ValueError(f"feedback payload has {len(data)} bytes: expected {off} for {k} devices")
    return float(alpha), taps, int(first_delay), ta, act, err, shift
