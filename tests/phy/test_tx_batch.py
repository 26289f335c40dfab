"""The batched transmitter (``FrameBuilder.build_batch``): every frame equals the one built alone, sample for sample,
and equals the frame format written out plainly (preamble, then the orthonormal IFFT of the header/payload grid with
its cyclic prefix) to float32 rounding; for any mix of kinds, modulations, code rates, lengths and chunk sizes."""

from __future__ import annotations

import numpy as np
import pytest

import phy.frame as frame_mod
from phy.frame import FrameBuilder, FrameHeader, FrameRequest, MODULATIONS
from phy.modulation import QamModem
from phy.ofdm import OfdmConfig, grid_to_time


def _requests(rng, count):
    reqs = []
    for i in range(count):
        kind = rng.choice(["analog", *MODULATIONS])
        if kind == "analog":
            v = rng.standard_normal(int(rng.integers(1, 2500))) * 10.0 ** rng.uniform(-3, 3)
            reqs.append(FrameRequest.analog(v, seq=i, power=float(rng.uniform(0.5, 2.0))))
        else:
            rate = [None, 0.5, "2/3", 0.75, 5 / 6][int(rng.integers(0, 5))] if rng.random() < 0.25 else None
            payload = rng.integers(0, 256, int(rng.integers(1, 600)), dtype=np.uint8).tobytes()
            reqs.append(FrameRequest.digital(payload, seq=i, modem=str(kind), code_rate=rate))
    return reqs


def _plain(fb, req):
    """The frame format written out plainly, from the public pieces of FrameFormat (the test's oracle)."""
    fmt, cfg = fb.fmt, fb.cfg
    if req.kind == "analog":
        from phy.analog import AnalogMapper
        x = np.asarray(req.data, np.float32)
        s, scale = AnalogMapper(req.power).to_symbols(x)
        hdr = FrameHeader("analog", "bpsk", None, x.size, req.seq, float(np.float32(scale)))
    else:
        from phy.fec import DigitalCodec
        bits = DigitalCodec(req.modem, req.code_rate).encode(req.data)
        mod = QamModem.from_name(req.modem)
        bits = np.concatenate([bits, np.zeros((-bits.size) % mod.bits_per_symbol, np.uint8)])
        s = mod.modulate(bits)
        hdr = FrameHeader("digital", req.modem, frame_mod.CODE_RATES[frame_mod.code_rate_index(req.code_rate)],
                          len(req.data), req.seq, 1.0)
    n_pay = -(-s.size // cfg.n_data)
    n_sym = fmt.n_hdr_symbols + n_pay
    data = np.concatenate([fmt.header_symbols(hdr), s, fmt.pad_symbols[:n_pay * cfg.n_data - s.size]])
    grid = np.zeros((n_sym, cfg.fft_size), np.complex64)
    grid[:, cfg.data_bins] = data.reshape(n_sym, cfg.n_data)
    grid[:, cfg.pilot_bins] = fmt.pilot_block(0, n_sym)
    return np.concatenate([fmt.preamble, grid_to_time(cfg, grid)])


@pytest.mark.parametrize("preset, header_repeat", [("wifi64", 1), ("wifi64", 2), ("wide256", 1)])
def test_batch_equals_single_frames_and_the_plain_format(preset, header_repeat):
    cfg = OfdmConfig.preset(preset)
    fb = FrameBuilder(cfg, header_repeat=header_repeat)
    reqs = _requests(np.random.default_rng(3), 40)
    x, bounds = fb.build_batch(reqs)
    assert x.dtype == np.complex64 and bounds.dtype == np.int64 and bounds[0] == 0 and bounds[-1] == x.size
    for i, r in enumerate(reqs):
        got = x[bounds[i]:bounds[i + 1]]
        alone = fb.build_analog(r.data, r.seq, r.power) if r.kind == "analog" \
            else fb.build_digital(r.data, r.seq, r.modem, r.code_rate)
        np.testing.assert_array_equal(got, alone)
        np.testing.assert_allclose(got, _plain(fb, r), rtol=0, atol=2e-6)


def test_chunk_size_and_out_buffer_do_not_change_the_samples(monkeypatch):
    fb = FrameBuilder(OfdmConfig.preset("wifi64"))
    reqs = _requests(np.random.default_rng(5), 25)
    want, bounds = fb.build_batch(reqs)
    for chunk in (1, 64, 5000):                  # one frame per chunk .. a few frames per chunk
        monkeypatch.setattr(frame_mod, "TX_CHUNK_SAMPLES", chunk)
        got, b2 = fb.build_batch(reqs)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(b2, bounds)
    buf = np.full(want.size + 7, np.nan, np.complex64)
    got, _ = fb.build_batch(reqs, out=buf)
    assert np.shares_memory(got, buf)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(buf[want.size:]).all()       # nothing written past the frames


def test_batch_errors_name_the_input():
    fb = FrameBuilder(OfdmConfig.preset("wifi64"))
    ok = FrameRequest.digital(b"abc", seq=1, modem="qpsk", code_rate=None)
    with pytest.raises(ValueError, match="requests is empty"):
        fb.build_batch([])
    with pytest.raises(TypeError, match=r"requests\[1\] is a bytes"):
        fb.build_batch([ok, b"abc"])
    with pytest.raises(ValueError, match="kind = 'voice'"):
        FrameRequest("voice", b"abc", 1)
    with pytest.raises(ValueError, match="seq = 70000"):
        fb.build_batch([ok, FrameRequest.digital(b"x", seq=70000)])
    with pytest.raises(ValueError, match="values contains NaN"):
        fb.build_batch([FrameRequest.analog([1.0, np.nan], seq=0)])
    n = fb.build_batch([ok])[0].size
    with pytest.raises(ValueError, match=f"at least {n} samples"):
        fb.build_batch([ok], out=np.empty(n - 1, np.complex64))
    with pytest.raises(ValueError, match="complex64"):
        fb.build_batch([ok], out=np.empty(n, np.complex128))


def test_modulate_bytes_into_out():
    rng = np.random.default_rng(2)
    data = rng.integers(0, 256, 33, dtype=np.uint8).tobytes()
    for name in MODULATIONS:
        mod = QamModem.from_name(name)
        want = mod.modulate_bytes(data)
        out = np.empty(want.size, np.complex64)
        assert mod.modulate_bytes(data, out=out) is out
        np.testing.assert_array_equal(out, want)
        with pytest.raises(ValueError, match="out has shape"):
            mod.modulate_bytes(data, out=np.empty(want.size + 1, np.complex64))


@pytest.mark.parametrize("preset", ["wifi64", "wide256"])
def test_runs_of_one_shape_equal_single_frames(preset, monkeypatch):
    """Consecutive frames of one shape are mapped together (one byte-table gather for uncoded 1/2/4/8-bit
    modulations; one template and filler copy per run): runs of every modulation, with and without filler, analog
    and coded runs, a run broken by another shape, at chunk sizes that cut runs anywhere - every frame equals the
    one built alone and the plain format."""
    cfg = OfdmConfig.preset(preset)
    fb = FrameBuilder(cfg)
    rng = np.random.default_rng(11)
    reqs = []
    for modem in (*MODULATIONS, "analog", "coded"):
        for n_bytes in (cfg.n_data // 4 * 3, 37):          # fills its last symbol exactly (qpsk) / needs filler
            for _ in range(int(rng.integers(2, 6))):
                seq = len(reqs)
                if modem == "analog":
                    reqs.append(FrameRequest.analog(rng.standard_normal(2 * n_bytes), seq=seq))
                elif modem == "coded":
                    reqs.append(FrameRequest.digital(rng.bytes(n_bytes), seq=seq, modem="16qam", code_rate=0.5))
                else:
                    reqs.append(FrameRequest.digital(rng.bytes(n_bytes), seq=seq, modem=modem, code_rate=None))
    want = [fb.build_analog(r.data, r.seq, r.power) if r.kind == "analog"
            else fb.build_digital(r.data, r.seq, r.modem, r.code_rate) for r in reqs]
    for chunk in (1, 700, 3000, frame_mod.TX_CHUNK_SAMPLES, 1 << 22):
        monkeypatch.setattr(frame_mod, "TX_CHUNK_SAMPLES", chunk)
        x, bounds = fb.build_batch(reqs)
        for i, r in enumerate(reqs):
            np.testing.assert_array_equal(x[bounds[i]:bounds[i + 1]], want[i])
    for i, r in enumerate(reqs):
        np.testing.assert_allclose(want[i], _plain(fb, r), rtol=0, atol=2e-6)


def test_modulate_byte_rows_equals_modulate_bytes():
    rng = np.random.default_rng(2)
    data = rng.integers(0, 256, (5, 13), dtype=np.uint8)
    for name in ("bpsk", "qpsk", "16qam", "256qam"):
        mod = QamModem.from_name(name)
        got = mod.modulate_byte_rows(data)
        np.testing.assert_array_equal(got, np.stack([mod.modulate_bytes(row.tobytes()) for row in data]))
    with pytest.raises(ValueError, match="64qam has 6 bits per symbol"):
        QamModem.from_name("64qam").modulate_byte_rows(data)
    with pytest.raises(ValueError, match=r"expected uint8 \[G, B\]"):
        QamModem.from_name("qpsk").modulate_byte_rows(data.reshape(-1))
