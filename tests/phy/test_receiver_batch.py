"""Receiver speed paths keep the numbers: frames demodulated together equal frames demodulated alone, deferred
(batched) LDPC decoding equals immediate decoding, and the Golay hard-decision shortcut equals soft-ML decoding."""

from __future__ import annotations

import numpy as np
import pytest

from phy.frame import FrameBuilder, FrameHeader, frame_format
from phy.ofdm import OfdmConfig
from phy.receiver import Receiver, decode_frames
from phy.rx.header import decode_header
from tests.phy import chan

WIFI = OfdmConfig.preset("wifi64")


def _mixed_stream(rng, snr_db):
    """Frames of three shapes (two equal QPSK, analog, 16-QAM, QPSK again), multipath, CFO, AWGN."""
    fb = FrameBuilder(WIFI)
    pay = [rng.integers(0, 256, 120, dtype=np.uint8).tobytes() for _ in range(3)]
    frames = [fb.build_digital(pay[0], seq=0, modem="qpsk", code_rate=None),
              fb.build_digital(pay[1], seq=1, modem="qpsk", code_rate=None),
              fb.build_analog(rng.standard_normal(500), seq=2),
              fb.build_digital(pay[2], seq=3, modem="16qam", code_rate=None),
              fb.build_digital(pay[0], seq=4, modem="qpsk", code_rate=None)]
    x, starts = chan.stream(frames, 200, lead=50)
    x = chan.fir(x, chan.exp_taps(rng, 4, 1.5))
    return chan.awgn(chan.cfo(x, 0.3, 64), snr_db, rng), starts, frames


@pytest.mark.parametrize("snr_db,smoothing", [(8.0, 1), (25.0, 3)])
def test_frames_demodulated_together_equal_frames_alone(rng, snr_db, smoothing):
    """All frames of a block go through one batched payload pass; cutting the stream right after each frame (one
    frame per pass) must give the same symbols, noise variances, values and payloads (float32 rounding only).
    At 8 dB the decision-directed phase path runs, at 25 dB it does not."""
    x, starts, frames = _mixed_stream(rng, snr_db)
    together = Receiver(WIFI, pilot_smoothing=smoothing).process(x, 0)
    rx = Receiver(WIFI, pilot_smoothing=smoothing)
    alone, a = [], 0
    for s, f in zip(starts, frames):
        end = int(s + f.size + 100)
        alone += rx.process(x[a:end], a)
        a = end
    alone += rx.process(x[a:], a)
    assert [f.seq for f in together] == [0, 1, 2, 3, 4] == [f.seq for f in alone]
    for p, q in zip(together, alone):
        assert p.t_start == q.t_start and p.crc_ok == q.crc_ok and p.payload == q.payload
        np.testing.assert_allclose(p.symbols, q.symbols, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(p.symbol_noise_var, q.symbol_noise_var, rtol=1e-4)
        if p.kind == "analog":
            np.testing.assert_allclose(p.values, q.values, rtol=1e-4, atol=1e-5)


def test_deferred_decode_equals_immediate_for_many_receivers(rng):
    """The same LDPC-coded broadcast frames heard by two receivers: deferred decoding of all frames from both in one
    decode_frames call gives exactly the payloads and CRC flags of decoding each frame on arrival."""
    fb = FrameBuilder(WIFI)
    pays = [rng.integers(0, 256, 60, dtype=np.uint8).tobytes() for _ in range(3)]
    x, _ = chan.stream([fb.build_digital(p, seq=i, modem="qpsk", code_rate=0.5) for i, p in enumerate(pays)], 300,
                       lead=40)
    streams = [chan.awgn(chan.cfo(x, c, 64), 6.0, rng) for c in (0.2, -0.7)]
    immediate = [Receiver(WIFI).process(s, 0) for s in streams]
    deferred = [Receiver(WIFI, defer_decode=True).process(s, 0) for s in streams]
    flat = [f for fs in deferred for f in fs]
    assert len(flat) == 6 and all(f.payload is None and not f.crc_ok for f in flat)
    assert all(f.extra["llr"].shape == (f.extra["llr"].size,) for f in flat)
    assert decode_frames(flat) == 6
    assert decode_frames(flat) == 0                    # already decoded: skipped
    for fi, fd in zip([f for fs in immediate for f in fs], flat):
        assert fd.payload == fi.payload and fd.crc_ok == fi.crc_ok and "llr" not in fd.extra
    assert [f.payload for f in flat] == pays + pays


def test_golay_shortcut_equals_soft_ml(rng):
    """Soft-ML Golay decoding (correlation with all 4096 codewords) and the shortcut (hard decisions that already
    form a codeword are the ML decision, since sum_j s_j c_j <= sum_j |s_j|) agree, from 0 dB to noiseless."""
    fmt = frame_format(WIFI)
    x = fmt.header_symbols(FrameHeader("digital", "qpsk", 0.5, 1234, 77, 1.0))
    for snr_db in (0.0, 3.0, 10.0, 100.0):
        for _ in range(60):
            soft = x + 10 ** (-snr_db / 20) * rng.standard_normal(x.size)
            assert decode_header(fmt, soft) == fmt.decode_header(soft)
    assert decode_header(fmt, np.zeros_like(x)) == fmt.decode_header(np.zeros_like(x))
