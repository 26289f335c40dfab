"""Local numpy channel helpers for phy tests (phy must not depend on radio): stream assembly, CFO, AWGN, a
tapped-delay line with an exponential power-delay profile, and the true per-FFT-bin response."""

from __future__ import annotations

import numpy as np


def stream(frames: list[np.ndarray], gap: int, lead: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate frames with ``gap`` zero samples after each (``lead`` zeros first): (complex64 [M], starts)."""
    parts, starts, t = [np.zeros(lead, np.complex64)], [], lead
    for f in frames:
        starts.append(t)
        parts += [f, np.zeros(gap, np.complex64)]
        t += f.size + gap
    return np.concatenate(parts), np.asarray(starts)


def cfo(x: np.ndarray, eps: float, fft_size: int) -> np.ndarray:
    """Multiply by exp(j 2 pi eps n / N): a CFO of ``eps`` subcarrier spacings, phase 0 at sample 0."""
    return (x * np.exp(2j * np.pi * eps * np.arange(x.size) / fft_size)).astype(np.complex64)


def awgn(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add complex noise of variance 10^(-snr_db/10) per sample (= per-subcarrier SNR for unit-power subcarriers)."""
    n0 = 10 ** (-snr_db / 10)
    w = rng.standard_normal((2, x.size)).astype(np.float32)
    return (x + np.sqrt(n0 / 2) * (w[0] + 1j * w[1])).astype(np.complex64)


def exp_taps(rng: np.random.Generator, n_taps: int = 6, decay: float = 2.0) -> np.ndarray:
    """Rayleigh taps at delays 0..n_taps-1 with exponential PDP exp(-d/decay), unit total average energy."""
    p = np.exp(-np.arange(n_taps) / decay)
    p /= p.sum()
    return (np.sqrt(p / 2) * (rng.standard_normal(n_taps) + 1j * rng.standard_normal(n_taps))).astype(np.complex64)


def fir(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Causal FIR channel, output length = input length."""
    return np.convolve(x, taps)[:x.size].astype(np.complex64)


def response(taps: np.ndarray, fft_size: int) -> np.ndarray:
    """Channel frequency response per FFT bin: H[k] = sum_d h[d] exp(-j 2 pi k d / N), complex [N]."""
    return np.fft.fft(taps, fft_size)


def mixed_frames(builder, rng: np.random.Generator, n_frames: int, max_gap: int, analog_every: int,
                 tail: int) -> np.ndarray:
    """A receiver's hard case: ``n_frames`` frames from ``builder`` (a phy.frame.FrameBuilder), every
    ``analog_every``-th analog (10-899 values), the others uncoded digital (1-299 bytes, BPSK/QPSK/16-QAM in turn),
    each after 0..max_gap-1 zeros, ``tail`` zeros at the end; a CFO of 0.4 subcarrier spacings and noise of standard
    deviation 0.1 per component. complex64 [M]."""
    parts = []
    for i in range(n_frames):
        parts.append(np.zeros(int(rng.integers(0, max_gap)), np.complex64))
        if i % analog_every == 0:
            parts.append(builder.build_analog(rng.standard_normal(int(rng.integers(10, 900))), seq=i))
        else:
            parts.append(builder.build_digital(rng.bytes(int(rng.integers(1, 300))), seq=i,
                                               modem=["bpsk", "qpsk", "16qam"][i % 3], code_rate=None))
    x = cfo(np.concatenate(parts + [np.zeros(tail, np.complex64)]), 0.4, builder.cfg.fft_size)
    return (x + 0.1 * (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size))).astype(np.complex64)
