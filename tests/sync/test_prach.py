"""PRACH: Zadoff–Chu properties, detection statistics and the delay estimator against its Cramér–Rao bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sync.prach import (PrachConfig, PrachDetector, PrachWaveform, delay_crlb_samples, largest_prime_at_most,
                        zadoff_chu)

CFG = PrachConfig(fft_size=1024, n_zc=829, cp_len=704, guard_len=704, n_cs=1024)


def _received(wf, index, delay, snr, rng, gain=1.0):
    """Window after the CP of a preamble arriving ``delay`` samples late (cyclic within the CP), plus AWGN of
    variance 1/snr per complex sample (per-subcarrier SNR = snr for the unit-power-per-subcarrier preamble)."""
    body = wf.preamble(index, advance=-delay)[CFG.cp_len:] * gain
    noise = (rng.standard_normal(CFG.fft_size) + 1j * rng.standard_normal(CFG.fft_size)) * math.sqrt(0.5 / snr)
    return body + noise


def test_zadoff_chu_constant_amplitude_and_ideal_autocorrelation():
    """|x_u(n)| = 1 and the periodic autocorrelation of a prime-length ZC sequence is zero at every nonzero lag."""
    x = zadoff_chu(25, 139)
    assert np.allclose(np.abs(x), 1)
    ac = np.array([np.vdot(x, np.roll(x, k)) for k in range(139)])
    assert abs(ac[0]) == pytest.approx(139)
    assert np.max(np.abs(ac[1:])) < 1e-9
    # different roots: |cross-correlation| = sqrt(N) at every lag (ZC property for prime N)
    y = zadoff_chu(34, 139)
    cc = np.array([np.vdot(x, np.roll(y, k)) for k in range(139)])
    assert np.allclose(np.abs(cc), math.sqrt(139), rtol=1e-9)


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="n_zc"):
        PrachConfig(n_zc=830)
    with pytest.raises(ValueError, match="fft_size"):
        PrachConfig(fft_size=1000)
    with pytest.raises(ValueError, match="root"):
        zadoff_chu(0, 139)
    assert largest_prime_at_most(832) == 829


def test_preamble_power_matches_ofdm_convention():
    """Unit power per ZC subcarrier with the orthonormal IFFT: mean |x|^2 = n_zc / fft_size."""
    p = PrachWaveform(CFG).preamble(0)
    assert p.dtype == np.complex64 and p.shape == (CFG.cp_len + CFG.fft_size,)
    assert np.mean(np.abs(p[CFG.cp_len:]) ** 2) == pytest.approx(CFG.n_zc / CFG.fft_size, rel=1e-5)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_delay_rmse_within_1p5_crlb(snr_db):
    """RMSE of the ML delay estimate ≤ 1.5 × CRLB, std ≥ 1/sqrt(8 pi^2 SNR Σ((m − m̄)/N)^2) (see delay_crlb_samples)."""
    rng = np.random.default_rng(int(snr_db) + 7)
    wf, det = PrachWaveform(CFG), PrachDetector(CFG)
    snr = 10 ** (snr_db / 10)
    errors = []
    for _ in range(300):
        tau = rng.uniform(0, 600)
        found = [d for d in det.detect(_received(wf, 5, tau, snr, rng)) if d.index == 5]
        assert found, "preamble missed"
        errors.append(found[0].delay - tau)
    rmse = math.sqrt(np.mean(np.square(errors)))
    crlb = delay_crlb_samples(snr, CFG.subcarriers, CFG.fft_size)
    assert rmse <= 1.5 * crlb, (rmse, crlb)
    assert rmse >= 0.7 * crlb  # an estimator "better" than the bound would mean a broken test


def test_power_estimate_and_several_devices_in_one_slot():
    """Four devices on different roots in one slot: all found, delays and received powers right."""
    rng = np.random.default_rng(3)
    wf, det = PrachWaveform(CFG), PrachDetector(CFG)
    gains = [1.0, 0.5, 2.0, 0.8]
    delays = [10.3, 250.7, 0.4, 611.0]
    window = sum(wf.preamble(i, advance=-d)[CFG.cp_len:] * g for i, (g, d) in enumerate(zip(gains, delays)))
    window = window + (rng.standard_normal(CFG.fft_size) + 1j * rng.standard_normal(CFG.fft_size)) * math.sqrt(0.05)
    found = {d.index: d for d in det.detect(window)}
    assert set(found) == {0, 1, 2, 3}
    for i in range(4):
        assert found[i].delay == pytest.approx(delays[i], abs=0.15)  # cross-root interference ~1/sqrt(n_zc)
        assert found[i].power == pytest.approx(gains[i] ** 2, rel=0.3)  # other roots leak in at 1/n_zc in power
        assert not found[i].collision


def test_false_alarm_rate_on_noise():
    """Pure noise: detections per (zone × window) ≤ the configured rate (binomial 4-sigma margin)."""
    rng = np.random.default_rng(11)
    det = PrachDetector(CFG, false_alarm_rate=1e-2)
    trials = 300
    hits = sum(len(det.detect((rng.standard_normal(CFG.fft_size) + 1j * rng.standard_normal(CFG.fft_size))))
               for _ in range(trials))
    zones = trials * CFG.n_preambles
    assert hits <= zones * 1e-2 + 4 * math.sqrt(zones * 1e-2)


def test_collision_of_two_devices_on_one_preamble_is_flagged():
    """Two devices pick the same preamble at different distances: two peaks in one zone → collision."""
    rng = np.random.default_rng(5)
    wf, det = PrachWaveform(CFG), PrachDetector(CFG)
    window = (wf.preamble(2, advance=-20.0) + wf.preamble(2, advance=-300.0))[CFG.cp_len:]
    window = window + (rng.standard_normal(CFG.fft_size) + 1j * rng.standard_normal(CFG.fft_size)) * 0.1
    (d,) = [x for x in det.detect(window) if x.index == 2]
    assert d.collision
    assert sorted(round(p) for p in d.peaks) == [20, 300]


def test_garbage_windows():
    det = PrachDetector(CFG)
    with pytest.raises(ValueError, match="shape"):
        det.detect(np.zeros(10, complex))
    assert det.detect(np.full(CFG.fft_size, np.nan, complex)) == []
    det.detect(np.zeros(CFG.fft_size, complex))  # silence must not crash


def test_a_prach_too_short_for_the_cell_is_refused():
    """A cyclic-shift zone shorter than the round trip would alias far devices onto wrong delays: refuse it."""
    with pytest.raises(ValueError, match="prach_oversampling"):
        PrachConfig.for_cell(64, 52 / 64, 20e6, max_rtt_samples=640, delay_spread_samples=8, oversampling=4)
