"""Full waveform chain (FrameBuilder -> channel -> Receiver) against theory: uncoded BER, analog NMSE, LDPC BLER."""

from __future__ import annotations

import numpy as np
import pytest

from phy.frame import FrameBuilder
from phy.ofdm import OfdmConfig
from phy.receiver import Receiver
from phy.theory import ber_qam_awgn
from tests.phy import chan

WIFI = OfdmConfig.preset("wifi64")
ORDERS = {"bpsk": 2, "qpsk": 4, "16qam": 16}


def _digital_run(rng, modem, snr_db, n_frames, n_bytes, genie, eps=0.0, code_rate=None, cfg=WIFI):
    """Send n_frames random payloads; returns (payload bit errors, payload bits, frame errors, frames received)."""
    fb = FrameBuilder(cfg)
    payloads = [rng.integers(0, 256, n_bytes, dtype=np.uint8).tobytes() for _ in range(n_frames)]
    x, starts = chan.stream([fb.build_digital(p, seq=i, modem=modem, code_rate=code_rate)
                             for i, p in enumerate(payloads)], 100, lead=100)
    x = chan.awgn(chan.cfo(x, eps, cfg.fft_size), snr_db, rng)
    g = dict(channel=1.0, noise_var=10 ** (-snr_db / 10), cfo_hz=0.0, frame_starts=starts) if genie else None
    rx = Receiver(cfg, genie=g)
    got = {f.seq: f for f in rx.process(x, 0)}
    bit_err = frame_err = 0
    for i, p in enumerate(payloads):
        if i not in got:
            bit_err += 4 * n_bytes          # a lost frame counts as half its bits wrong
            frame_err += 1
            continue
        d = np.unpackbits(np.frombuffer(p, np.uint8) ^ np.frombuffer(got[i].payload, np.uint8))
        bit_err += int(d.sum())
        frame_err += int(d.any() or not got[i].crc_ok)
    return bit_err, 8 * n_bytes * n_frames, frame_err, len(got)


@pytest.mark.parametrize("modem, snr_db", [("bpsk", 4.0), ("qpsk", 7.0), ("16qam", 12.5)])
def test_uncoded_ber_genie_matches_theory(rng, modem, snr_db):
    """Genie channel/noise/timing: uncoded Gray BER equals phy.theory.ber_qam_awgn (BPSK/QPSK Q(sqrt(2 Es/N0)),
    16-QAM the exact Gray expression) within 10 % relative. 160 kbit at BER ~1e-2 -> ~1600+ errors, so 10 % is
    >= 4 sigma of the binomial count."""
    err, bits, _, n = _digital_run(rng, modem, snr_db, 20, 1000, genie=True)
    theory = float(ber_qam_awgn(ORDERS[modem], snr_db))
    assert n == 20
    assert theory * bits > 1500
    assert abs(err / bits / theory - 1) < 0.10, (err / bits, theory)


@pytest.mark.parametrize("modem, snr_db", [("bpsk", 4.0), ("qpsk", 7.0), ("16qam", 12.5)])
def test_uncoded_ber_with_estimation_within_1db(rng, modem, snr_db):
    """Full estimation (detection, CFO 0.37 spacings, LS channel, pilot tracking, estimated noise): the BER at SNR is
    at most the theoretical BER at SNR - 1 dB (SNR penalty < 1 dB), and not better than theory at SNR (-10 %)."""
    err, bits, _, n = _digital_run(rng, modem, snr_db, 20, 1000, genie=False, eps=0.37)
    assert n == 20
    ber = err / bits
    assert ber <= float(ber_qam_awgn(ORDERS[modem], snr_db - 1.0)), ber
    assert ber >= 0.9 * float(ber_qam_awgn(ORDERS[modem], snr_db)), ber


def _analog_prediction(cfg, snr_db, h2, n_taps):
    """Pieces of the predicted MMSE NMSE per data subcarrier (see phy.receiver, stage 6):
    sigma_eff^2 = sigma^2 (1 + L/(2 n_used)) + |H_k|^2 var(phi_k),
    var(phi_k) = sigma^2/(2 |H_p|^2) (1/n_p + (k - mean k_p)^2 / sum (k_p - mean k_p)^2) / (n_sym/2),
    NMSE_k = sigma_eff^2 / (|H_k|^2 + sigma_eff^2) for unit-power symbols; averaged over subcarriers.
    Returns (sigma^2, data subcarriers, the bracketed shape)."""
    s2 = 10 ** (-snr_db / 10)
    kp = np.asarray(cfg.pilot_subcarriers, float)
    kd = np.asarray(cfg.data_subcarriers, float)
    shape = 1 / cfg.n_pilots + (kd - kp.mean()) ** 2 / np.sum((kp - kp.mean()) ** 2)
    return s2, kd, shape


@pytest.mark.parametrize("snr_db", [5.0, 15.0])
def test_analog_nmse_awgn_matches_effective_snr(rng, snr_db):
    """Analog payload over AWGN (CFO 0.2 spacings): NMSE within 0.5 dB of the effective-SNR prediction
    NMSE = s_eff^2/(1 + s_eff^2), s_eff^2 = sigma^2 (1 + 1/(2 n_used) + mean_k var(phi_k)/sigma^2) (one channel tap
    kept over AWGN; pilot-phase error of the frame-wide fit over n_sym = 4 header + 86 payload symbols). The receiver's own per-value noise variance must
    agree with the measured error within 1 dB."""
    fb = FrameBuilder(WIFI)
    vals = [rng.standard_normal(4096) for _ in range(15)]
    x, _ = chan.stream([fb.build_analog(v, seq=i) for i, v in enumerate(vals)], 100, lead=50)
    x = chan.awgn(chan.cfo(x, 0.2, 64), snr_db, rng)
    got = Receiver(WIFI).process(x, 0)
    assert [f.seq for f in got] == list(range(15))
    err = sum(float(np.sum((f.values - vals[f.seq]) ** 2)) for f in got)
    nmse = err / sum(float(np.sum(v ** 2)) for v in vals)
    s2, _, shape = _analog_prediction(WIFI, snr_db, None, 1)
    n_sym = 4 + 86
    s_eff = s2 * (1 + 1 / (2 * WIFI.n_used) + np.mean(shape) / (2 * n_sym / 2))
    pred = s_eff / (1 + s_eff)
    assert abs(10 * np.log10(nmse / pred)) < 0.5, (10 * np.log10(nmse), 10 * np.log10(pred))
    # reported noise variance per real value vs measured squared error (scale^2 cancels in the ratio)
    rep = sum(float(np.sum(f.noise_var)) for f in got)
    assert abs(10 * np.log10(rep / err)) < 1.0


def _multipath(rng, n_frames, snr_db, use_air):
    """Frames through independent block-fading multipath realizations; returns (frames, received, true H per frame,
    number of channel taps)."""
    fb = FrameBuilder(WIFI)
    vals = [rng.standard_normal(2048) for _ in range(n_frames)]
    out, hs = [], []
    for i, v in enumerate(vals):
        f = np.concatenate([np.zeros(60, np.complex64), fb.build_analog(v, seq=i), np.zeros(200, np.complex64)])
        if use_air:
            from radio.sim.channel import LinkChannel, LinkParams
            ch = LinkChannel(LinkParams(profile="TDL-C", delay_spread_s=50e-9), 20e6, 2.4e9, seed=int(i))
            bulk, h = ch.impulse_response
            y = ch.process(f)
            taps = np.concatenate([np.zeros(bulk, np.complex64), h])
        else:
            taps = chan.exp_taps(rng)
            y = chan.fir(f, taps)
        hs.append(chan.response(taps, 64))
        out.append(chan.awgn(y, snr_db, rng))
    return vals, out, hs


@pytest.mark.parametrize("use_air", [False, True], ids=["local-exp-tdl", "air-TDL-C"])
def test_analog_nmse_multipath_within_2db(rng, use_air):
    """Block-fading multipath (local exponential 6-tap TDL, or radio.sim.channel's 3GPP TDL-C at 50 ns delay spread (longest path 430 ns = 8.7 samples, inside the CP)
    when the air module is present), SNR 15 dB: NMSE within 2 dB of the per-subcarrier MMSE prediction
    mean_k s_eff,k^2 / (|H_k|^2 + s_eff,k^2), s_eff,k^2 = sigma^2 (1 + L/(2 n_used)) + |H_k|^2 var(phi_k) with the
    true |H_k|^2 of each realization (L = channel length)."""
    if use_air:
        pytest.importorskip("radio.sim.channel")
    snr_db = 15.0
    vals, ys, hs = _multipath(rng, 30, snr_db, use_air)
    s2, kd, shape = _analog_prediction(WIFI, snr_db, None, None)
    err = tot = pred = 0.0
    n = 0
    for i, (v, y, H) in enumerate(zip(vals, ys, hs)):
        got = Receiver(WIFI).process(y, 0)
        assert [f.seq for f in got] == [i]
        err += float(np.sum((got[0].values - v) ** 2))
        tot += float(np.sum(v ** 2))
        h2 = np.abs(H[WIFI.data_bins]) ** 2
        hp2 = np.mean(np.abs(H[WIFI.pilot_bins]) ** 2)
        s_eff = s2 * (1 + 16 / (2 * WIFI.n_used)) + h2 * s2 * shape / (2 * (4 + 43) / 2 * hp2)
        pred += float(np.mean(s_eff / (h2 + s_eff)))
        n += 1
    nmse, pred = err / tot, pred / n
    assert abs(10 * np.log10(nmse / pred)) < 2.0, (10 * np.log10(nmse), 10 * np.log10(pred))


def _snr_at_bler(snrs, blers, n, target=1e-2):
    """SNR where the BLER curve crosses ``target``: piecewise-linear interpolation of log10(BLER) between the two
    measured points that bracket it (a zero count is taken as 0.5/n, below the target for n >= 50)."""
    s = np.asarray(snrs, float)
    b = np.log10(np.maximum(np.asarray(blers, float), 0.5 / n))
    t = np.log10(target)
    for i in range(len(s) - 1):
        if b[i] >= t >= b[i + 1]:
            return s[i] + (s[i + 1] - s[i]) * (b[i] - t) / (b[i] - b[i + 1]) if b[i] != b[i + 1] else s[i]
    raise AssertionError(f"BLER curve {blers} at {snrs} dB does not cross {target}")


@pytest.mark.slow
def test_ldpc_qpsk_chain_within_1db_of_symbol_level(rng):
    """LDPC rate-1/2 QPSK (phy.fec DigitalCodec, 5G NR LDPC, 60-byte payloads = one 512-bit codeword): the full
    waveform chain (estimated timing, CFO, channel, noise) needs at most 1 dB more SNR for BLER 1e-2 than the same
    codec on phy.fec.simulate_coded_awgn (symbol-level AWGN, exact LLRs with the true noise variance).
    BLER curves on a 0.5 dB grid, 200 frames per point, log-linear interpolation between the points bracketing 1e-2."""
    from phy.fec import DigitalCodec, simulate_coded_awgn
    codec = DigitalCodec("qpsk", 0.5)
    snrs = [1.0, 1.5, 2.0, 2.5]
    n = 200
    ref = [simulate_coded_awgn(codec, s, 60, n, rng).fer for s in snrs]
    chain = []
    for s in snrs:
        _, _, ferr, _ = _digital_run(rng, "qpsk", s, n, 60, genie=False, eps=0.3, code_rate=0.5)
        chain.append(ferr / n)
    gap = _snr_at_bler(snrs, chain, n) - _snr_at_bler(snrs, ref, n)
    assert gap <= 1.0, (ref, chain, gap)
