"""Header repetition (``FrameFormat(cfg, header_repeat)``): the copies' soft values add up, so R copies gain
10 log10 R dB; checked against the union bound of soft-ML Golay (24, 12) decoding, and end to end through the
receiver on an AWGN channel at 0 dB."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from phy.frame import FrameBuilder, FrameFormat, FrameHeader
from phy.ofdm import OfdmConfig
from phy.receiver import Receiver
from phy.rx.header import decode_headers

CFG = OfdmConfig.preset("wifi64")


def _golay_header_fail_bound(es_n0_db: float, repeat: int) -> float:
    """Union bound on the header failure probability for BPSK soft values Re(s + n), noise variance N0/2 per real
    part: per codeword 759 Q(sqrt(2 * 8 * R Es/N0)) + 2576 Q(sqrt(2 * 12 * R Es/N0)) (Golay weights 8 and 12),
    8 codewords per header."""
    g = repeat * 10 ** (es_n0_db / 10)
    p_cw = 759 * norm.sf(math.sqrt(16 * g)) + 2576 * norm.sf(math.sqrt(24 * g))
    return 1 - (1 - min(p_cw, 1.0)) ** 8


@pytest.mark.parametrize("repeat", [1, 2, 3])
def test_layout_and_roundtrip(repeat):
    fmt = FrameFormat(CFG, repeat)
    assert fmt.n_hdr_symbols == 4 * repeat
    assert fmt.hdr_perms.shape == (repeat, 192)
    assert len(np.unique(fmt.hdr_perms)) == 192 * repeat          # every copy in its own slots
    np.testing.assert_array_equal(fmt.hdr_perms[0], fmt.hdr_perm)  # copy 0 = the one-copy layout
    hdr = FrameHeader("analog", "bpsk", None, 512, 17, 1.25)
    soft = fmt.header_symbols(hdr).astype(np.float64)
    assert fmt.decode_header(soft) == hdr
    assert decode_headers(fmt, soft[None])[0] == hdr


def test_bad_repeat():
    for bad in (0, 9, 1.5, True):
        with pytest.raises(ValueError, match="header_repeat"):
            FrameFormat(CFG, bad)


def _fail_rate(repeat: int, es_n0_db: float, n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hdr = FrameHeader("analog", "bpsk", None, 512, 3, 1.0)
    fmt = FrameFormat(CFG, repeat)
    s = fmt.header_symbols(hdr).astype(np.float64)
    soft = s[None, :] + math.sqrt(0.5 * 10 ** (-es_n0_db / 10)) * rng.standard_normal((n, s.size))
    return sum(h != hdr for h in decode_headers(fmt, soft)) / n


def test_header_failure_rate_repetition_gain_and_union_bound():
    """One copy at Es/N0 = 0 dB fails under the union bound (0.185; measured ~0.09: the bound is loose at low
    SNR); two copies at -3 dB fail as often as one at 0 dB (the copies add 3 dB), and two copies at 0 dB almost never
    (bound 5e-5)."""
    n = 1500
    one = _fail_rate(1, 0.0, n, 0)
    assert 0.03 < one <= _golay_header_fail_bound(0.0, 1)
    two_low = _fail_rate(2, -10 * math.log10(2), n, 1)
    assert abs(two_low - one) < 0.035, (one, two_low)          # 4.6 standard deviations of the difference
    assert _fail_rate(2, 0.0, n, 2) <= 2 / n
    assert _golay_header_fail_bound(0.0, 2) < 1e-4


def test_receiver_with_repeated_header_at_0db():
    """Through the full receiver on AWGN at 0 dB: two header copies deliver every analog frame."""
    rng = np.random.default_rng(1)
    fb, rx = FrameBuilder(CFG, 2), Receiver(CFG, header_repeat=2)
    frames = [fb.build_analog(rng.standard_normal(192).astype(np.float32) / math.sqrt(2), seq) for seq in range(40)]
    gap = np.zeros(300, np.complex64)
    x = np.concatenate([gap] + [np.concatenate([f, gap]) for f in frames])
    y = x + math.sqrt(0.5) * (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size)).astype(np.complex64)
    got = rx.process(y.astype(np.complex64), 0) + rx.flush()
    assert sorted(f.seq for f in got if f.kind == "analog") == list(range(40))
    assert rx.stats["header_crc_fail"] == 0
