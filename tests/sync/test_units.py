"""Timing-advance quantization, truncated inversion, uplink pilots and feedback serialization."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sync.precomp import cfo_precompensate, truncated_inversion
from sync.timing_advance import TimingAdvanceCommand, TimingAdvanceLoop, quantize_ta, ta_step_samples
from sync.uplink import UplinkEstimator, cover_codes, decode_feedback, delay_basis, encode_feedback


def test_ta_step_scales_lte_16ts_with_the_fft():
    """LTE: 16·Ts of a 2048-point symbol = 16/2048 of the useful symbol; NR divides by 2**mu."""
    assert ta_step_samples(2048) == 16.0
    assert ta_step_samples(64) == 0.5
    assert ta_step_samples(256, nr_mu=1) == 1.0
    with pytest.raises(ValueError, match="mu"):
        ta_step_samples(64, nr_mu=7)


def test_quantize_ta_rounds_and_clips():
    assert quantize_ta(10.26, 0.5) == 21
    assert quantize_ta(-3.0, 0.5) == 0                     # absolute TA never negative
    assert quantize_ta(-3.0, 0.5, absolute=False) == -6
    assert quantize_ta(100.0, 0.5, absolute=False, max_steps=31) == 31
    rng = np.random.default_rng(0)
    d = rng.uniform(0, 600, 10_000)
    err = d - np.array([quantize_ta(x, 0.5) for x in d]) * 0.5
    assert np.max(np.abs(err)) <= 0.25 + 1e-12               # |error| ≤ step / 2
    assert np.std(err) == pytest.approx(0.5 / math.sqrt(12), rel=0.05)  # uniform quantization noise


def test_alignment_timer_expires():
    loop = TimingAdvanceLoop(step=0.5, timer=1000)
    assert not loop.aligned(0)
    loop.apply(TimingAdvanceCommand(0, 20, 0.5), now=100)
    assert loop.advance == 10.0 and loop.aligned(1100) and not loop.aligned(1101)
    loop.apply(TimingAdvanceCommand(0, -2, 0.5, absolute=False), now=1100)
    assert loop.advance == 9.0


def test_cfo_precompensation_is_phase_continuous():
    """Two bursts pre-rotated separately equal one burst pre-rotated as a whole (phase follows absolute time)."""
    x = np.ones(100, np.complex64)
    whole = cfo_precompensate(x, 1234.0, 20e6, 5000)
    parts = np.concatenate([cfo_precompensate(x[:37], 1234.0, 20e6, 5000),
                            cfo_precompensate(x[37:], 1234.0, 20e6, 5037)])
    assert np.allclose(whole, parts, atol=1e-6)


def test_truncated_inversion_power_and_threshold():
    """Active devices meet the budget (alpha² q_k ≤ P, equality for the weakest); weak ones are silent."""
    rng = np.random.default_rng(1)
    h = (rng.standard_normal((6, 52)) + 1j * rng.standard_normal((6, 52))) / math.sqrt(2)
    h[2] *= 0.05                                              # a device in a deep fade
    plan = truncated_inversion(h, power=2.0, gain_threshold=0.05)
    assert not plan.active[2] and "too weak" in plan.reasons[2]
    q = np.mean(1 / np.abs(h) ** 2, axis=1)
    tx_power = np.mean(np.abs(plan.precoders) ** 2, axis=1)
    assert np.all(tx_power[plan.active] <= 2.0 + 1e-6)
    assert tx_power[plan.active].max() == pytest.approx(2.0, rel=1e-5)
    assert np.allclose((plan.precoders * h)[plan.active], plan.alpha, rtol=1e-5)  # the PS receives alpha·x
    # with estimation error the regularized inverse conj(h)/(|h|²+e) never costs more power than 1/h
    reg = truncated_inversion(h, power=2.0, gain_threshold=0.05, error_var=np.full(6, 0.05))
    assert np.all(np.mean(np.abs(reg.precoders) ** 2, axis=1)[reg.active] <= 2.0 + 1e-6)
    assert np.allclose(plan.q, q)
    nan = truncated_inversion(np.full((2, 4), np.nan), 1.0, 0.1)
    assert not nan.active.any() and nan.alpha == 0.0


def test_code_multiplexed_pilots_separate_devices_at_theory_noise():
    """K devices' pilots at once. Despreading leaves noise sigma²/n_symbols per subcarrier on each device's LS
    estimate; the delay-domain fit on the kept taps S then leaves sigma²/n_symbols · |S| / n_used (least squares on |S|
    parameters from n_used observations). Checked against that formula with the estimator's own |S|."""
    rng = np.random.default_rng(2)
    sub = np.r_[-26:0, 1:27]
    k, n_sym, taps, first, fft = 4, 8, 12, 2, 64   # noise level from the 4 spare code dimensions
    est = UplinkEstimator(sub, fft, k, n_sym, taps=taps, first_delay=first)
    basis = delay_basis(sub, fft, first, taps)
    sigma2 = 0.1
    errs, predicted = [], []
    for _ in range(200):
        c = np.zeros((k, taps), complex)
        c[:, 4:7] = (rng.standard_normal((k, 3)) + 1j * rng.standard_normal((k, 3))) / math.sqrt(6)
        h = c @ basis.T                                       # 3-tap channels inside the estimator's window
        rx = sum(est.transmit_grid(i) * h[i][None, :] for i in range(k))
        rx = rx + (rng.standard_normal(rx.shape) + 1j * rng.standard_normal(rx.shape)) * math.sqrt(sigma2 / 2)
        e = est.estimate(rx)
        errs.append(np.mean(np.abs(e.channel - h) ** 2))
        predicted.append(np.mean(e.error_var))
        assert e.present.mean() >= 0.75  # a 3-tap Rayleigh channel can fade below the detection margin
    # the fractional alignment and the tap selection add a little bias on top of the LS variance
    assert np.mean(predicted) * 0.8 <= np.mean(errs) <= np.mean(predicted) * 1.6
    assert np.mean(errs) < sigma2 / n_sym * 0.3               # far below the raw despread LS error
    assert np.allclose(np.abs(cover_codes(4, 8) @ cover_codes(4, 8).conj().T), 8 * np.eye(4), atol=1e-4)
    with pytest.raises(ValueError, match="pilot symbols"):
        cover_codes(5, 4)


def test_feedback_round_trip_and_bad_size():
    rng = np.random.default_rng(3)
    taps = (rng.standard_normal((3, 13)) + 1j * rng.standard_normal((3, 13))).astype(np.complex64)
    blob = encode_feedback(0.7, taps, 6, np.array([1, -2, 0]), np.array([True, False, True]), bits=8,
                           error_var=np.array([1e-3, 2e-3, 3e-3]))
    alpha, t2, first, ta, act, err, shift = decode_feedback(blob)
    assert np.allclose(err, [1e-3, 2e-3, 3e-3])
    assert alpha == pytest.approx(0.7) and first == 6
    assert list(ta) == [1, -2, 0] and list(act) == [True, False, True]
    scale = np.max(np.abs(np.stack([taps.real, taps.imag])), axis=(0, 2))
    assert np.max(np.abs(t2 - taps), axis=1).max() <= (scale / 127).max() * 0.5 * math.sqrt(2) + 1e-6
    with pytest.raises(ValueError, match="ends inside"):
        decode_feedback(blob[:-1])
    with pytest.raises(ValueError, match="expected"):
        decode_feedback(blob + b"\0")
    with pytest.raises(ValueError, match="bits"):
        encode_feedback(1.0, taps, 0, np.zeros(3), np.ones(3, bool), bits=1)


def test_ps_counts_a_burst_its_wall_clock_radio_refuses_as_late_and_goes_on():
    """A PS starved between a phase's anchor and its transmission: the radio refuses the burst (LateError); the PS
    counts it, logs it and carries on (the devices miss that phase), instead of ending the run."""
    from phy.ofdm import OfdmConfig
    from radio.base import LateError
    from sync.config import SyncConfig
    from sync.layout import CellLayout
    from sync.ps import PsActor

    class RefusesEverything:
        sample_rate = 1e5

        def time_now(self):
            return 1000

        def tx(self, x, at):
            raise LateError("test radio tx", int(at), int(at) + 5)

        def rx(self, n, at=None):
            return np.zeros(n, np.complex64), int(at)

    of = OfdmConfig.preset("wifi64", sample_rate=1e5)
    cfg = SyncConfig()
    layout = CellLayout(of, cfg, CellLayout.setup_for(of, cfg, 1, 1e5, preambles=[0]))
    ps = PsActor(RefusesEverything(), layout, [0])
    ps.send_beacons(2)
    assert ps.late == 2 and ps.tx_samples["beacon"] == 0 and ps.beacons_sent == 2
    assert "beacon burst late, not sent" in ps.events[-1] and "5 samples late" in ps.events[-1]
