"""Phase tracking over long frames at low SNR: the per-symbol drift of the lag-1 pilot correlations alone was off by
~0.05 rad/symbol at 0 dB (4 pilots), which wrapped the phases of a 128-symbol frame by a full turn before the
least-squares fit (`phy.rx.phase_tracking.DRIFT_LAGS` refines it at longer lags)."""

from __future__ import annotations

import math

import numpy as np

from phy.frame import FrameBuilder
from phy.ofdm import OfdmConfig
from phy.receiver import Receiver

N_FRAMES = 40


def test_long_analog_frames_at_0db_keep_their_phase():
    """AWGN at 0 dB, N_FRAMES analog frames of 128 payload OFDM symbols (6144 values): the phase of the received symbols
    against the sent ones, averaged per OFDM symbol (48 symbols: noise ~0.1 rad), stays within 0.6 rad everywhere;
    with a drift error of 0.05 rad/symbol it would reach pi."""
    cfg = OfdmConfig.preset("wifi64")
    rng = np.random.default_rng(0)
    fb, rx = FrameBuilder(cfg, 2), Receiver(cfg, header_repeat=2)
    sent = [(rng.standard_normal(6144) / math.sqrt(2)).astype(np.float32) for _ in range(N_FRAMES)]
    gap = np.zeros(300, np.complex64)
    x = np.concatenate([gap] + [np.concatenate([fb.build_analog(v, i), gap]) for i, v in enumerate(sent)])
    y = x + math.sqrt(0.5) * (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size))
    frames = {f.seq: f for f in rx.process(y.astype(np.complex64), 0) + rx.flush() if f.kind == "analog"}
    assert sorted(frames) == list(range(N_FRAMES))
    worst = 0.0
    for i, v in enumerate(sent):
        s = v[0::2] + 1j * v[1::2]
        r = frames[i].values[0::2] + 1j * frames[i].values[1::2]
        per_symbol = (np.conj(s) * r).reshape(-1, 48).sum(axis=1)
        worst = max(worst, float(np.max(np.abs(np.angle(per_symbol)))))
    assert worst < 0.6, worst
