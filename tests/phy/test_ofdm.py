"""OfdmConfig validation/presets, the orthonormal grid<->time transforms and the frame format."""

from __future__ import annotations

import numpy as np
import pytest

from phy.frame import FrameBuilder, FrameHeader, frame_format, golay_codebook, golay_decode_soft, golay_encode
from phy.ofdm import OfdmConfig, OfdmSection, grid_to_time, time_to_grid


def test_presets_have_contract_numerology():
    w = OfdmConfig.preset("wifi64")
    assert (w.fft_size, w.cp_len, w.n_data, w.n_pilots, w.symbol_len) == (64, 16, 48, 4, 80)
    assert w.pilot_subcarriers == (-21, -7, 7, 21) and 0 not in w.used_subcarriers
    assert w.subcarrier_spacing == 20e6 / 64
    v = OfdmConfig.preset("wide256", sample_rate=10e6)
    assert (v.fft_size, v.n_data, v.n_pilots) == (256, 200, 8)
    assert v.subcarrier_spacing == 10e6 / 256


@pytest.mark.parametrize("changes, words", [
    (dict(fft_size=100), ["fft_size", "100", "power of two"]),
    (dict(cp_len=0), ["cp_len", "0"]),
    (dict(cp_len=40), ["cp_len", "40", "32"]),
    (dict(sample_rate=-1.0), ["sample_rate", "-1"]),
    (dict(data_subcarriers=(0, 1, 2)), ["data_subcarriers", "0"]),
    (dict(data_subcarriers=(40, 1)), ["data_subcarriers", "40", "-32"]),
    (dict(data_subcarriers=(1, 1)), ["duplicate"]),
    (dict(pilot_subcarriers=(-21, -7, 7, 1)), ["subcarrier 1", "data and a pilot"]),
    (dict(pilot_values=(1, 1, 1)), ["pilot_values", "3"]),
    (dict(pilot_values=(1, 1, 1, 2)), ["pilot_values", "unit"]),
])
def test_validation_errors_name_field_value_and_allowed(changes, words):
    base = dict(fft_size=64, cp_len=16, sample_rate=20e6,
                data_subcarriers=OfdmConfig.preset("wifi64").data_subcarriers,
                pilot_subcarriers=(-21, -7, 7, 21), pilot_values=(1, 1, 1, -1))
    base.update(changes)
    with pytest.raises(ValueError) as exc:
        OfdmConfig(**base)
    for w in words:
        assert w in str(exc.value)


def test_unknown_preset_and_section():
    with pytest.raises(ValueError, match="wifi64"):
        OfdmConfig.preset("lte")
    with pytest.raises(ValueError, match="preset"):
        OfdmSection(preset="lte")
    cfg = OfdmSection(preset="wide256", cp_len=64).to_config(5e6)
    assert cfg.cp_len == 64 and cfg.sample_rate == 5e6


def test_section_through_config_loader():
    from lab.config import ConfigError, load_config
    lc = load_config(None, ["ofdm.preset=wide256", "ofdm.cp_len=64"])
    assert lc.ofdm.to_config(lc.radio.sample_rate).cp_len == 64
    with pytest.raises(ConfigError, match="cp_len"):
        load_config(None, ["ofdm.cp_len=500"])


def test_orthonormal_transforms_roundtrip_and_snr_definition(rng):
    """Parseval with norm="ortho": time-domain noise of variance N0 per sample has variance N0 per FFT bin, so a
    unit-power subcarrier sees SNR = 1/N0 (the project's SNR definition). 4-sigma bound on the sample variance."""
    cfg = OfdmConfig.preset("wifi64")
    grid = np.zeros((50, 64), np.complex64)
    grid[:, cfg.used_bins] = np.exp(2j * np.pi * rng.random((50, cfg.n_used)))
    x = grid_to_time(cfg, grid)
    assert x.dtype == np.complex64 and x.size == 50 * 80
    np.testing.assert_allclose(time_to_grid(cfg, x, 50), grid, atol=1e-5)
    np.testing.assert_allclose(x.reshape(50, 80)[:, :16], x.reshape(50, 80)[:, 64:], atol=0)  # cyclic prefix
    # per-sample power of a fully loaded symbol = n_used / N
    assert np.mean(np.abs(x.reshape(50, 80)[:, 16:]) ** 2) == pytest.approx(cfg.n_used / 64, rel=1e-4)
    n0, m = 0.3, 4000
    w = np.sqrt(n0 / 2) * (rng.standard_normal((m, 80)) + 1j * rng.standard_normal((m, 80)))
    per_bin = np.mean(np.abs(time_to_grid(cfg, w.reshape(-1).astype(np.complex64), m)) ** 2)
    assert abs(per_bin - n0) < 4 * n0 / np.sqrt(m * 64)


def test_preamble_structure_and_power():
    """SC symbol: two identical halves (periodic with lag N/2 over cp+N samples); LTS block: CP of 2cp then two
    identical N-sample copies; every used subcarrier carries unit average power over the frame."""
    for name in ("wifi64", "wide256"):
        cfg = OfdmConfig.preset(name)
        fmt = frame_format(cfg)
        n, cp = cfg.fft_size, cfg.cp_len
        sc = fmt.sc_time
        np.testing.assert_allclose(sc[:cp + n // 2], sc[n // 2:], atol=1e-6)
        lts = fmt.lts_time
        np.testing.assert_allclose(lts[:2 * cp + n], lts[n:], atol=1e-6)
        assert np.mean(np.abs(fmt.sc_grid[cfg.used_bins]) ** 2) == pytest.approx(1.0, rel=1e-5)
        assert np.all(np.abs(fmt.lts_grid[cfg.used_bins]) == 1)
        fb = FrameBuilder(cfg)
        x = fb.build_digital(bytes(range(200)), seq=5, modem="qpsk", code_rate=None)
        assert x.size == fb.frame_len(n_bytes=200, modem="qpsk", code_rate=None)
        y = time_to_grid(cfg, x[fmt.preamble_len:], (x.size - fmt.preamble_len) // cfg.symbol_len)
        assert np.mean(np.abs(y[:, cfg.pilot_bins]) ** 2) == pytest.approx(1.0, rel=1e-4)
        assert np.mean(np.abs(y[:, cfg.data_bins]) ** 2) == pytest.approx(1.0, rel=0.05)  # last symbol padded
        a = fb.build_analog(np.linspace(-1, 1, 1001), seq=1)
        assert a.size == fb.frame_len(n_values=1001) and a.dtype == np.complex64


def test_golay_code_distance_and_soft_decoding(rng):
    """Extended Golay (24,12): minimum distance 8 (weights 0, 8, 12, 16, 24) so any 3 hard errors are corrected."""
    cw, _ = golay_codebook()
    assert sorted(set(cw.sum(axis=1).tolist())) == [0, 8, 12, 16, 24]
    bits = rng.integers(0, 2, 96).astype(np.uint8)
    soft = 1.0 - 2.0 * golay_encode(bits).astype(np.float32)
    for c in range(8):
        flip = c * 24 + rng.choice(24, 3, replace=False)
        soft[flip] *= -1
    np.testing.assert_array_equal(golay_decode_soft(soft), bits)


def test_header_roundtrip_and_crc():
    h = FrameHeader("digital", "64qam", 3 / 4, 123456, 65535, 1.0)
    assert FrameHeader.from_bits(h.to_bits()) == h
    a = FrameHeader("analog", "bpsk", None, 7, 0, 0.125)
    assert FrameHeader.from_bits(a.to_bits()) == a
    bits = h.to_bits().copy()
    for i in range(96):   # every single-bit corruption is caught by CRC-16
        b = bits.copy()
        b[i] ^= 1
        assert FrameHeader.from_bits(b) != h


def test_uncoded_frame_carries_the_codec_bits():
    """The uncoded fast path (payload + CRC-32 bytes mapped byte-wise) carries exactly DigitalCodec.encode's bits:
    the frame equals one assembled from the codec's bits, for every modulation (64-QAM needs zero padding), and the
    header bytes are the packed header bits."""
    from phy.fec import DigitalCodec
    from phy.modulation import QamModem
    fb = FrameBuilder(OfdmConfig.preset("wifi64"))
    payload = bytes(range(37))
    for modem in ("bpsk", "qpsk", "16qam", "64qam", "256qam"):
        bits = DigitalCodec(modem, None).encode(payload)
        hdr = FrameHeader("digital", modem, None, len(payload), 9, 1.0)
        want = fb._assemble(hdr, QamModem.from_name(modem).modulate(bits))
        np.testing.assert_array_equal(fb.build_digital(payload, 9, modem=modem, code_rate=None), want)
        assert hdr.to_bytes() == np.packbits(hdr.to_bits()).tobytes()


@pytest.mark.parametrize("kwargs, words", [
    (dict(payload=b"", seq=0), ["payload", "0 bytes"]),
    (dict(payload=b"x", seq=70000), ["seq", "70000"]),
    (dict(payload=b"x", seq=0, modem="8psk"), ["modem", "8psk"]),
    (dict(payload=b"x", seq=0, code_rate=0.3), ["code_rate", "0.3"]),
])
def test_builder_errors(kwargs, words):
    fb = FrameBuilder(OfdmConfig.preset("wifi64"))
    with pytest.raises(ValueError) as exc:
        fb.build_digital(**kwargs)
    for w in words:
        assert w in str(exc.value)
    with pytest.raises(ValueError, match="finite"):
        fb.build_analog([1.0, np.nan], seq=0)
