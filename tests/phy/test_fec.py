"""LDPC (sionna 5G NR) wrapper and DigitalCodec: identity, linearity, coded BLER vs the Shannon limit, CRC."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from phy.fec import DigitalCodec, LdpcCode, simulate_coded_awgn
from phy.modulation import MODEM_NAMES
from phy.theory import ber_qam_awgn, esn0_to_ebn0_db


def test_import_phy_does_not_import_torch() -> None:
    """phy is numpy-only until an LDPC code is built (torch is imported lazily inside LdpcCode)."""
    code = "import sys, phy.fec, phy.modulation, phy.analog, phy.crc, phy.theory; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ldpc_noiseless_identity_and_linearity(rng: np.random.Generator) -> None:
    """decode(encode(u)) == u with error-free LLRs (log P(0)/P(1) > 0 for bit 0), and the code is linear over GF(2):
    encode(u1 xor u2) == encode(u1) xor encode(u2)."""
    code = LdpcCode(k=200, n=300)
    u = rng.integers(0, 2, (2, 3, 200), dtype=np.uint8)
    c = code.encode(u)
    assert c.shape == (2, 3, 300) and c.dtype == np.uint8
    llr = np.where(c == 0, 6.0, -6.0).astype(np.float32)
    np.testing.assert_array_equal(code.decode(llr), u)
    np.testing.assert_array_equal(code.encode(u[0, 0] ^ u[0, 1]), c[0, 0] ^ c[0, 1])
    assert not np.array_equal(code.decode(-llr), u[...])  # the sign convention matters


def test_ldpc_corrects_a_few_flipped_bits(rng: np.random.Generator) -> None:
    """A rate-1/2 code corrects a handful of confidently wrong channel bits (which hard decisions would get wrong)."""
    code = LdpcCode(k=256, n=512)
    u = rng.integers(0, 2, (4, 256), dtype=np.uint8)
    llr = np.where(code.encode(u) == 0, 3.0, -3.0).astype(np.float32)
    for row in range(4):
        llr[row, rng.choice(512, 8, replace=False)] *= -1
    np.testing.assert_array_equal(code.decode(llr), u)


def test_early_stopping_matches_full_iterations(rng: np.random.Generator) -> None:
    """Syndrome-based early termination returns the same decisions as running all 20 iterations (QPSK, rate 1/2,
    Es/N0 = 1.25 dB, where about half the codewords fail and the rest converge after a varying number of iterations)."""
    fast, full = LdpcCode(512, 1024), LdpcCode(512, 1024, early_stop=False)
    u = rng.integers(0, 2, (48, 512), dtype=np.uint8)
    x = (1.0 - 2.0 * fast.encode(u)) / np.sqrt(2)
    noise_var = 10 ** (-1.25 / 10)
    y = x + rng.standard_normal(x.shape) * np.sqrt(noise_var / 2)
    llr = (2 * np.sqrt(2) * y / noise_var).astype(np.float32)  # QPSK per-axis LLR
    got, ref = fast.decode(llr), full.decode(llr)
    np.testing.assert_array_equal(got, ref)
    n_fail = int(np.sum(np.any(ref != u, axis=1)))
    assert 0 < n_fail < 48  # both converged and failed codewords are exercised


@pytest.mark.parametrize("modem", ["bpsk", "qpsk", "16qam", "64qam", "256qam"])
@pytest.mark.parametrize("rate", [None, 1 / 2, 2 / 3, 3 / 4, 5 / 6])
def test_codec_layout(modem: str, rate: float | None) -> None:
    """Coded length is a whole number of symbols and at least 8 (P + 4) / rate bits (CRC-32 appended)."""
    codec = DigitalCodec(modem, rate)
    m = codec.modem.bits_per_symbol
    for size in (0, 1, 17, 124, 125, 1000, 5000):
        n = codec.n_coded_bits(size)
        assert n % m == 0 and n == codec.n_symbols(size) * m
        assert n >= 8 * (size + 4) / (rate or 1.0) - 1
        assert n < 8 * (size + 4) / (rate or 1.0) + m + 2 * (1 + 8 * (size + 4) // 1024)


@pytest.mark.parametrize("rate", [None, 1 / 2, 2 / 3, 3 / 4, 5 / 6])
def test_codec_noiseless_roundtrip(rate: float | None, rng: np.random.Generator) -> None:
    """encode -> perfect LLRs -> decode returns the payload with a good CRC, for one and several codewords."""
    codec = DigitalCodec("16qam", rate)
    for size in (0, 300):
        payload = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        bits = codec.encode(payload)
        assert bits.shape == (codec.n_coded_bits(size),)
        got, ok = codec.decode(np.where(bits == 0, 5.0, -5.0).astype(np.float32), size)
        assert ok and got == payload


def test_crc_flags_corrupted_uncoded_frames(rng: np.random.Generator) -> None:
    """Uncoded: one wrong payload bit fails CRC-32; a wrong bit in the symbol padding does not matter."""
    codec = DigitalCodec("64qam", None)
    payload = rng.integers(0, 256, 21, dtype=np.uint8).tobytes()  # 200 bits -> 204 with padding to 6 bits/symbol
    llr = np.where(codec.encode(payload) == 0, 4.0, -4.0).astype(np.float32)
    assert llr.size == 204
    bad = llr.copy()
    bad[37] *= -1
    got, ok = codec.decode(bad, 21)
    assert not ok and got != payload
    pad = llr.copy()
    pad[-1] *= -1
    assert codec.decode(pad, 21) == (payload, True)


def test_uncoded_reference_matches_theory(rng: np.random.Generator) -> None:
    """simulate_coded_awgn without coding: payload BER of QPSK at Es/N0 = 8 dB equals Q(sqrt(Es/N0)) within 10%
    (3.2e5 bits, ~1900 expected errors: 10% is 4.4 sigma)."""
    res = simulate_coded_awgn(DigitalCodec("qpsk", None), 8.0, 1000, 40, rng)
    p = float(ber_qam_awgn(4, 8.0))
    assert 0.1 >= 4 / np.sqrt(res.n_payload_bits * p)
    assert res.ber == pytest.approx(p, rel=0.1)
    assert res.ebn0_db == pytest.approx(esn0_to_ebn0_db(8.0, 2))


def test_coded_qpsk_bler_against_shannon_limit(rng: np.random.Generator) -> None:
    """Rate-1/2 LDPC (k=1024, n=2048) on QPSK over AWGN, 40 codewords per point, exact LLRs.

    Shannon: for rate R = 1/2 and binary inputs, reliable communication needs Eb/N0 >= 0.19 dB (BI-AWGN capacity
    C = 1/2); with any input, Eb/N0 >= (2^(2R) - 1) / (2R) = 0 dB. Below the limit (Eb/N0 = -0.5 dB) nearly every block
    fails; BLER decreases with SNR; about 1.8 dB above the limit (Eb/N0 = 2.0 dB, QPSK: Es/N0 = Eb/N0) BLER < 0.1 (we
    allow at most 1 error in 40 blocks)."""
    codec = DigitalCodec("qpsk", 0.5, k=1024)
    assert (codec.code_for(124).k, codec.code_for(124).n) == (1024, 2048)  # 124 bytes + CRC-32 = 1024 bits
    fer = {}
    for ebn0_db in (-0.5, 1.0, 2.0):
        res = simulate_coded_awgn(codec, ebn0_db, 124, 40, rng)  # Es/N0 = Eb/N0 for rate-1/2 QPSK
        assert res.ebn0_db == pytest.approx(ebn0_db)
        fer[ebn0_db] = res.fer
    assert fer[-0.5] >= 0.9
    assert fer[-0.5] > fer[1.0] > fer[2.0]
    assert fer[2.0] <= 1 / 40


def test_bad_inputs_raise_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="k="):
        LdpcCode(k=5, n=10)
    with pytest.raises(ValueError, match="n="):
        LdpcCode(k=100, n=100)
    with pytest.raises(ValueError, match="code_rate"):
        DigitalCodec("qpsk", 0.4)
    with pytest.raises(ValueError, match="name"):
        DigitalCodec("8psk", 0.5)
    codec = DigitalCodec("qpsk", 0.5)
    with pytest.raises(ValueError, match="payload"):
        codec.encode("text")  # type: ignore[arg-type]
    n = codec.n_coded_bits(10)
    with pytest.raises(ValueError, match="llr"):
        codec.decode(np.zeros(n - 2, dtype=np.float32), 10)
    nan_llr = np.zeros(n, dtype=np.float32)
    nan_llr[3] = np.nan
    with pytest.raises(ValueError, match="llr"):
        codec.decode(nan_llr, 10)
    code = codec.code_for(10)
    with pytest.raises(ValueError, match="bits"):
        code.encode(np.zeros(code.k + 1, dtype=np.uint8))
    with pytest.raises(ValueError, match="llr"):
        code.decode(np.full(code.n, np.nan, dtype=np.float32))
    assert set(MODEM_NAMES) == {"bpsk", "qpsk", "16qam", "64qam", "256qam"}
