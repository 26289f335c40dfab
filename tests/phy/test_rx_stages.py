"""The receiver's stages (phy.rx), each against its definition or theory, with the shapes it states; and streams of
frames of varying length and kind through the whole receiver."""

from __future__ import annotations

import numpy as np
import pytest

from phy.detector import SchmidlCoxDetector
from phy.frame import FrameBuilder, FrameHeader, frame_format
from phy.ofdm import OfdmConfig
from phy.receiver import Receiver
from phy.rx.acquisition import LtsAcquisition, cfo_crlb_hz
from phy.rx.channel_estimation import LtsChannelEstimator, SignificantTapEstimator
from phy.rx.demapping import PayloadDecoder
from phy.rx.detection import DetectionScan
from phy.rx.equalization import effective_noise, equalize, post_equalization_snr_db
from phy.rx.header import decode_header, decode_headers
from phy.rx.ofdm_demodulation import OfdmDemodulator, Segments, cis, rows
from phy.rx.phase_tracking import PilotTracker, sum3
from tests.phy import chan

WIFI = OfdmConfig.preset("wifi64")
FMT = frame_format(WIFI)


def _cn(rng, shape, var=1.0):
    return (np.sqrt(var / 2) * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))).astype(np.complex64)


def test_segments_sums_rows_and_select(rng):
    seg = Segments([3, 1, 4])
    assert seg.total == 8 and list(seg.offsets) == [0, 3, 4] and list(seg.frame) == [0, 0, 0, 1, 2, 2, 2, 2]
    assert list(seg.index) == [0, 1, 2, 0, 0, 1, 2, 3] and list(np.flatnonzero(seg.last())) == [2, 3, 7]
    x = rng.standard_normal((8, 2))
    np.testing.assert_allclose(seg.sum(x), [x[:3].sum(0), x[3], x[4:].sum(0)])
    assert seg.rows(np.array([[1], [2], [3]])).ravel().tolist() == [1, 1, 1, 2, 3, 3, 3, 3]
    sub, r = seg.select(np.array([0, 2]))
    assert list(sub.counts) == [3, 4] and list(r) == [0, 1, 2, 4, 5, 6, 7]


def test_cis_and_rows_definitions(rng):
    ph = rng.uniform(-10, 10, (3, 5))
    np.testing.assert_allclose(cis(ph), np.exp(1j * ph), atol=2e-6)
    assert cis(ph).dtype == np.complex64 and cis(ph).shape == (3, 5)
    x = _cn(rng, 100)
    np.testing.assert_array_equal(rows(x, np.array([0, 7, 90]), 10), np.stack([x[0:10], x[7:17], x[90:100]]))


def test_symbol_rows_is_the_windowed_fft_for_frames_of_different_lengths(rng):
    """Row s of frame f = orthonormal FFT of the N samples from start + preamble + (first + s) symbols + cp - backoff,
    each multiplied by exp(-j 2 pi eps m / N); residual phase 2 pi eps (t_w - ref) / N. The ragged call equals each
    frame alone, to the bit."""
    demod = OfdmDemodulator(WIFI, FMT, backoff=4)
    buf = _cn(rng, 20_000)
    start, eps, ref = np.array([100, 5000, 11000]), np.array([0.3, -1.2, 0.0]), np.array([190, 5090, 11090])
    seg = Segments([5, 2, 7])
    Y, ph = demod.symbol_rows(buf, start, eps, ref, 4, seg)
    assert Y.shape == (14, 64) and Y.dtype == np.complex64 and ph.shape == (14,)
    n, sl = 64, 80
    for f in range(3):
        for s in range(seg.counts[f]):
            t = start[f] + FMT.preamble_len + (4 + s) * sl + 16 - 4
            want = np.fft.fft(buf[t:t + n] * np.exp(-2j * np.pi * eps[f] * np.arange(n) / n), norm="ortho")
            np.testing.assert_allclose(Y[seg.offsets[f] + s], want, atol=2e-5)
            assert ph[seg.offsets[f] + s] == pytest.approx(2 * np.pi * eps[f] * (t - ref[f]) / n)
        one = slice(f, f + 1)
        alone, ph1 = demod.symbol_rows(buf, start[one], eps[one], ref[one], 4, Segments(seg.counts[one]))
        np.testing.assert_array_equal(Y[seg.offsets[f]:seg.offsets[f] + seg.counts[f]], alone)
        np.testing.assert_array_equal(ph[seg.offsets[f]:seg.offsets[f] + seg.counts[f]], ph1)


def test_acquisition_finds_start_and_cfo_within_crlb(rng):
    """Clean-channel frames at 15 dB with CFO 0.37 and -1.6 spacings: exact start, CFO error within 4 CRB."""
    fb = FrameBuilder(WIFI)
    acq = LtsAcquisition(WIFI, FMT, max_cfo=2.0, false_alarm_rate=1e-4, fa_window=4096, detect_pfa=1e-5)
    det = SchmidlCoxDetector(WIFI)
    for eps in (0.37, -1.6):
        x, _starts = chan.stream([fb.build_analog(rng.standard_normal(200), seq=1)], 300, lead=123)
        x = chan.awgn(chan.cfo(x, eps, 64), 15.0, rng)
        T, P1, P2 = det.metric(x)
        peak, _ = det.first_candidate(T)
        verified, start, e = acq.acquire(x, [(peak, complex(P1[peak]), complex(P2[peak]))])
        assert verified == [0] and start.tolist() == [123]
        crb_sc = cfo_crlb_hz(WIFI, 10 ** 1.5) / WIFI.subcarrier_spacing
        assert abs(e[0] - eps) < 4 * crb_sc
    # pure noise is not verified
    noise = _cn(rng, 4000)
    assert acq.acquire(noise, [(500, 1 + 0j, 1 + 0j)])[0] == []


def test_cfo_crlb_formula():
    """std(f) >= fs / (2 pi N sqrt((N + 3 cp) g)), g = snr n_used / N."""
    g = 10.0 * WIFI.n_used / 64
    assert cfo_crlb_hz(WIFI, 10.0) == pytest.approx(20e6 / (2 * np.pi * 64 * np.sqrt((64 + 48) * g)))


def test_omp_keeps_the_true_taps_and_equals_least_squares_on_them(rng):
    """A 3-path channel (delays -1, 0, 2 in a -4..11 window) at high SNR: matching pursuit keeps exactly those taps, and
    the fit equals the least-squares projection of h_ls on them (the one-shot estimator's fit_matrix)."""
    used = np.array(WIFI.used_subcarriers)
    est = SignificantTapEstimator(used, 64, -4, 16, threshold=9.0, out_subcarriers=np.fft.fftfreq(64, 1 / 64))
    taps = {-1: 0.3j, 0: 0.9, 2: -0.4 + 0.2j}
    h = sum(g * np.exp(-2j * np.pi * used * d / 64) for d, g in taps.items())
    nv = 1e-3
    h_ls = (h + _cn(rng, (5, used.size), nv)).astype(np.complex64)
    H, kept = est.fit_omp(h_ls, np.full(5, nv))
    assert H.shape == (5, 64) and H.dtype == np.complex64 and kept.tolist() == [3] * 5
    keep = np.zeros(16, bool)
    keep[[3, 4, 6]] = True
    for f in range(5):
        np.testing.assert_allclose(H[f], est.fit_matrix(keep) @ h_ls[f], atol=1e-4)
        alone, _ = est.fit_omp(h_ls[f:f + 1], np.array([nv]))
        np.testing.assert_allclose(alone[0], H[f], rtol=1e-5, atol=1e-6)
    true = sum(g * np.exp(-2j * np.pi * np.fft.fftfreq(64, 1 / 64) * d / 64) for d, g in taps.items())
    assert np.mean(np.abs(H[0] - true) ** 2) < 3 * nv * 3 / used.size


def test_lts_noise_variance_and_estimation_error(rng):
    """Two LTS looks with noise sigma^2 per bin: sigma^2 = mean |Y1 - Y2|^2 / 2 is unbiased; over AWGN one tap is kept
    and the channel error is about sigma^2 / 2 * 1 / n_used (err_var reports that on the used bins, 0 elsewhere)."""
    est = LtsChannelEstimator(WIFI, 4, 9.0, FMT.lts_grid)
    sigma2, n = 0.05, 400
    H0 = np.exp(-2j * np.pi * np.fft.fftfreq(64, 1 / 64) * -4 / 64) * 0.8j          # one tap, 4 samples "late"
    Y = (H0 * FMT.lts_grid)[None, None, :] + _cn(rng, (n, 2, 64), sigma2)
    Y[:, :, np.setdiff1d(np.arange(64), WIFI.used_bins)] = 0
    H, s2, snr, err = est.estimate(Y.astype(np.complex64))
    assert H.shape == (n, 64) and s2.shape == snr.shape == (n,) and err.shape == (n, 64)
    assert np.mean(s2) == pytest.approx(sigma2, rel=0.03)
    assert 10 * np.log10(np.mean(snr)) == pytest.approx(10 * np.log10(0.64 / sigma2), abs=0.2)
    mse = np.mean(np.abs(H[:, WIFI.used_bins] - H0[WIFI.used_bins]) ** 2)
    assert mse == pytest.approx(sigma2 / 2 / WIFI.n_used, rel=0.15)
    assert np.all(err[:, np.setdiff1d(np.arange(64), WIFI.used_bins)] == 0)


def test_header_batch_equals_soft_ml(rng):
    x = FMT.header_symbols(FrameHeader("analog", "bpsk", None, 77, 5, 2.5))
    soft = x[None, :] + 0.8 * rng.standard_normal((20, x.size))
    assert decode_headers(FMT, soft) == [FMT.decode_header(s) for s in soft]
    assert decode_header(FMT, x) == FrameHeader("analog", "bpsk", None, 77, 5, 2.5)


def test_pilot_tracking_recovers_a_linear_phase_for_frames_of_different_lengths(rng):
    """Noise-free pilots rotated by a + b s (residual CFO) and by a timing-drift slope d (s + 1.5) k: the tracker
    returns exactly that phase and slope, per frame, whatever the other frames' lengths."""
    tr = PilotTracker(WIFI, FMT)
    seg = Segments([6, 30, 9])
    kp = np.array(WIFI.pilot_subcarriers, float)
    Hp = _cn(rng, (3, 4)) + 2
    a, b, d = np.array([0.3, -1.0, 2.0]), np.array([0.01, -0.02, 0.005]), np.array([0.0, 0.002, 0.0])
    s = seg.index
    f = seg.frame
    phase = a[f] + b[f] * s
    slope = d[f] * (s + 1.5)
    Yp = FMT.pilot_block(0, 30)[s] * Hp[f] * np.exp(1j * (phase[:, None] + slope[:, None] * kp[None, :]))
    cpe, sl = tr.track(Hp, Yp.astype(np.complex64), seg)
    assert cpe.shape == sl.shape == (45,)
    np.testing.assert_allclose(sl, slope, atol=1e-5)
    np.testing.assert_allclose(np.angle(np.exp(1j * (cpe - phase))), 0, atol=1e-4)
    z = rng.standard_normal((2, 5))
    np.testing.assert_allclose(sum3(z), z + np.pad(z, ((0, 0), (1, 0)))[:, :-1] + np.pad(z, ((0, 0), (0, 1)))[:, 1:])


def test_equalizers_against_their_formulas(rng):
    """ZF: x = Y / H, error variance sigma_eff^2 / |H|^2. MMSE: x = P conj(H) Y / (P |H|^2 + sigma_eff^2) with the
    symbol power P = sum(|Y|^2 - sigma_eff^2) / sum |H|^2 over the frame's cells; error variance P sigma_eff^2 / (P |H|^2 + sigma_eff^2)."""
    seg = Segments([40, 3])
    Hd = _cn(rng, (2, 48)) + 1
    h2 = (np.abs(Hd) ** 2).astype(np.float32)
    noise = effective_noise(np.array([0.1, 0.2]), np.full((2, 48), 0.01, np.float32))
    np.testing.assert_allclose(noise, [[0.11] * 48, [0.21] * 48], rtol=1e-6)
    X0 = _cn(rng, (43, 48))
    Yd = (X0 * np.repeat(Hd, [40, 3], axis=0) + _cn(rng, (43, 48), 0.1)).astype(np.complex64)
    X, nv = equalize(Yd, Hd, h2, noise, np.array([False, True]), seg)
    np.testing.assert_allclose(X[:40], Yd[:40] / Hd[0], rtol=1e-5)
    np.testing.assert_allclose(nv[0], noise[0] / h2[0], rtol=1e-6)
    y = Yd[40:]
    p = (np.sum(np.abs(y) ** 2) - 3 * np.sum(noise[1])) / (3 * np.sum(h2[1]))   # E|Y|^2 = P |H|^2 + sigma_eff^2
    np.testing.assert_allclose(X[40:], p * np.conj(Hd[1]) * y / (p * h2[1] + noise[1]), rtol=1e-4)
    np.testing.assert_allclose(nv[1], p * noise[1] / (p * h2[1] + noise[1]), rtol=1e-4)
    assert post_equalization_snr_db(np.array([0.1]))[0] == pytest.approx(10.0)


def test_digital_demapping_of_frames_of_different_lengths_equals_one_at_a_time(rng):
    from phy.modulation import QamModem
    dec = PayloadDecoder(FMT, 1 << 16)
    m = QamModem.from_name("16qam")
    pays = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (10, 33)]
    hdrs = [FrameHeader("digital", "16qam", None, len(p), i, 1.0) for i, p in enumerate(pays)]
    xs = [m.modulate_bytes(p + bytes(4)) for p in pays]       # CRC bytes wrong on purpose: crc_ok False
    X = np.concatenate(xs).astype(np.complex64)
    nv = np.full(X.size, 0.01, np.float32)
    stats = {"payload_error": 0, "payload_crc_fail": 0}
    both = dec.digital(hdrs, X, nv, np.array([0, xs[0].size]), stats)
    for f in range(2):
        o = 0 if f == 0 else xs[0].size
        alone = dec.digital([hdrs[f]], X[o:o + xs[f].size], nv[o:o + xs[f].size], np.array([0]), stats)
        assert [r[f] for r in both[:2]] == [r[0] for r in alone[:2]]
    assert both[0] == pays and both[1] == [False, False] and stats["payload_crc_fail"] == 4


def test_detection_scan_look_ahead_reads_the_scans_values(rng):
    """speculate_all (varying lengths) finds the candidates of every following frame (resuming where the shortest
    frame would end, so none is skipped), and the metric values it keeps are the ones the scan reads."""
    fb = FrameBuilder(WIFI)
    frames = [fb.build_analog(rng.standard_normal(int(n)), seq=i) for i, n in enumerate((100, 900, 40, 300))]
    x, starts = chan.stream(frames, 150, lead=60)
    x = chan.awgn(x, 20.0, rng)
    det = SchmidlCoxDetector(WIFI)
    scan = DetectionScan(det)
    step = FMT.frame_len(1) - 32
    need = FMT.preamble_len + FMT.header_len + 16
    T, _, _ = det.metric(x)
    first = det.first_candidate(T)[0]
    got = scan.speculate_all(x, 0, first, step, need)
    cands = np.array([c[0] for c in got])
    assert all(np.min(np.abs(cands - s)) <= 20 for s in starts[1:])        # a superset: bodies may hold crossings
    for c, p1, _ in got:
        assert scan.metric_from(x, 0, c, 1, ahead=True)[1][0] == np.complex64(p1)


@pytest.mark.parametrize("preset", ["wifi64", "wide256"])
def test_varying_length_stream_all_received_and_block_size_invariant(rng, preset):
    """Frames of random kind (analog, BPSK, QPSK, 16-QAM) and length with random gaps (some back to back), a fixed
    3-tap channel, CFO, 25 dB: every frame received at its true start with its payload, for blocks of 3001, 65536
    and the whole stream; and each frame's numbers equal those of a receiver given one frame per process call."""
    cfg = OfdmConfig.preset(preset)
    fb = FrameBuilder(cfg)
    frames, pays = [], []
    for i in range(24):
        kind = ["analog", "bpsk", "qpsk", "16qam"][i % 4]
        if kind == "analog":
            pays.append(rng.standard_normal(int(rng.integers(10, 3000))))
            frames.append(fb.build_analog(pays[-1], seq=i))
        else:
            pays.append(rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes())
            frames.append(fb.build_digital(pays[-1], seq=i, modem=kind, code_rate=None))
    gaps = rng.integers(0, 3000, len(frames))
    gaps[::5] = 0
    parts, starts, t = [np.zeros(200, np.complex64)], [], 200
    for f, g in zip(frames, gaps):
        starts.append(t)
        parts += [f, np.zeros(g, np.complex64)]
        t += f.size + g
    x = chan.awgn(chan.cfo(chan.fir(np.concatenate(parts), np.array([1.0, 0.3j, -0.1], np.complex64)), 0.4,
                           cfg.fft_size), 25.0, rng)
    ref = None
    for block in (3001, 1 << 16, x.size):
        rx = Receiver(cfg)
        got = []
        for a in range(0, x.size, block):
            got += rx.process(x[a:a + block], a)
        assert [f.seq for f in got] == list(range(24)) and [f.t_start for f in got] == starts
        assert all(f.crc_ok for f in got) and rx.stats["header_crc_fail"] == 0
        for f, p in zip(got, pays):
            if f.kind == "digital":
                assert f.payload == p
        if ref is None:
            ref = got
        for a, b in zip(ref, got):
            np.testing.assert_allclose(a.symbols, b.symbols, rtol=1e-4, atol=1e-5)
    rx = Receiver(cfg)
    alone, a = [], 0
    for s, f in zip(starts, frames):
        end = int(s + f.size + 50)
        alone += rx.process(x[a:end], a)
        a = end
    assert [f.seq for f in alone] == list(range(24))
    for p, q in zip(ref, alone):
        np.testing.assert_allclose(p.symbols, q.symbols, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(p.symbol_noise_var, q.symbol_noise_var, rtol=1e-4)


@pytest.mark.parametrize("modem", ["bpsk", "qpsk", "64qam"])
@pytest.mark.parametrize("lengths", [(40, 40, 40), (7, 40, 123)])
def test_uncoded_demapping_equals_the_codec_and_isolates_bad_frames(rng, modem, lengths):
    """Uncoded frames of one or several lengths (the one-length path packs all frames at once): payloads and CRC
    checks equal phy.fec's DigitalCodec.decode_batch on the exact LLRs, frame by frame; a frame with a NaN symbol is a
    payload error alone, the others are still decoded."""
    from phy.crc import crc32
    from phy.frame import codec_for
    from phy.modulation import QamModem
    dec = PayloadDecoder(FMT, 1 << 16)
    m, codec = QamModem.from_name(modem), codec_for(modem, None)
    pays = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in lengths]
    hdrs = [FrameHeader("digital", modem, None, len(p), i, 1.0) for i, p in enumerate(pays)]
    xs = [m.modulate_bytes(p + crc32(p).to_bytes(4, "big"), codec.n_coded_bits(len(p))) for p in pays]
    offsets = np.concatenate([[0], np.cumsum([x.size for x in xs])[:-1]])
    X = np.concatenate(xs)
    nv = np.full(X.size, 10 ** (-1.2), np.float32)            # 12 dB: some bit errors in 64-QAM
    X = (X + _cn(rng, X.size, 10 ** (-1.2))).astype(np.complex64)
    want = []
    for o, x, p in zip(offsets, xs, pays):
        data, ok = codec.decode_batch(m.demodulate_llr(X[o:o + x.size], nv[o:o + x.size])[None], len(p))
        want.append((data[0].tobytes(), bool(ok[0])))
    stats = {"payload_error": 0, "payload_crc_fail": 0}
    got = dec.digital(hdrs, X, nv, offsets, stats)
    assert list(zip(got[0], got[1])) == want
    assert stats["payload_crc_fail"] == sum(not ok for _, ok in want) and stats["payload_error"] == 0
    if modem == "bpsk":
        assert all(ok for _, ok in want)                  # BER ~1e-9 at 12 dB
    X[offsets[1] + 3] = np.nan
    stats = {"payload_error": 0, "payload_crc_fail": 0}
    got = dec.digital(hdrs, X, nv, offsets, stats)
    assert stats["payload_error"] == 1 and got[0][1] is None and got[1][1] is False
    assert [(got[0][f], got[1][f]) for f in (0, 2)] == [want[0], want[2]]


def test_speculate_all_claims_are_the_scans_findings(rng):
    """Every look-ahead entry (search start a, first crossing b, candidate c) of speculate_all is what the scan would
    find searching from a: no threshold crossing in [a, b), a crossing at b, c the peak within the peak window from b
    - also where crossings inside frame bodies (64-QAM and analog payloads at 30 dB) are passed over as unlikely
    frames - and every frame that follows is among the candidates."""
    fb = FrameBuilder(WIFI)
    frames = []
    for i in range(12):
        if i % 2:
            frames.append(fb.build_analog(rng.standard_normal(int(rng.integers(100, 3000))), seq=i))
        else:
            frames.append(fb.build_digital(rng.integers(0, 256, int(rng.integers(20, 600)), dtype=np.uint8).tobytes(),
                                           seq=i, modem="64qam", code_rate=None))
    x, starts = chan.stream(frames, 150, lead=60)
    x = chan.awgn(x, 30.0, rng)
    det = SchmidlCoxDetector(WIFI)
    scan = DetectionScan(det)
    T, P1, _ = det.metric(x)
    first = det.first_candidate(T)[0]
    got = scan.speculate_all(x, 0, first, FMT.frame_len(1) - 32, FMT.preamble_len + FMT.header_len + 16)
    assert len(scan.found) == len(got) >= len(frames) - 1
    for (a, b, c, p1, _), g in zip(scan.found, got):
        assert not (T[a:b] > det.threshold).any() and T[b] > det.threshold
        assert c == g[0] == b + int(np.argmax(T[b:b + det.peak_window])) and np.complex64(p1) == P1[c]
    cands = np.array([g[0] for g in got])
    assert all(np.min(np.abs(cands - s)) <= 20 for s in starts[1:])
