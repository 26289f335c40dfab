"""RadioSumChannel (lab/experiments/feel_air.py): FEEL's SumChannel over a SyncSession.

Mapping logic is checked against a stand-in session that returns the exact sum (pairing, scale, odd s, several bursts,
inactive devices, bad data); the physical claims run on the in-process air: the noise accounting
σ²_real = N0 / (2 α² c²), the calibrated total error, and arrivals inside the cyclic prefix after timing advance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from learning.feel.channel import RoundCsi, SumChannel
from learning.feel.schemes import AnalogScheme
from lab.experiments.feel_air import RadioSumChannel, data_symbols_for, loopback_sum_channel
from phy.ofdm import OfdmConfig
from sync.procedure import RoundResult


@dataclass
class _Dev:
    state: str = "connected"
    excluded: str | None = None


@dataclass
class _Plan:
    active: np.ndarray
    alpha: float = 0.5


@dataclass
class FakeSession:
    """Stand-in for SyncSession.data_round: estimate = exact sum over ``transmitting`` devices (+ ``nan`` if asked),
    noise variance per complex symbol ``n_c``; records every values block it was given."""

    k: int = 3
    data_symbols: int = 2
    n_c: float = 0.2
    ofdm: OfdmConfig = field(default_factory=lambda: OfdmConfig.preset("wifi64"))
    fs: float = 20e6
    transmitting: list[int] | None = None
    poison: bool = False
    calls: list[np.ndarray] = field(default_factory=list)
    air_time: dict = field(default_factory=dict)

    def __post_init__(self):
        self.devices = [_Dev() for _ in range(self.k)]
        self.plan = _Plan(np.ones(self.k, bool))

    def data_round(self, values: np.ndarray) -> RoundResult:
        assert values.shape[1] <= self.data_symbols * self.ofdm.n_data
        self.calls.append(values.copy())
        tx = list(range(self.k)) if self.transmitting is None else self.transmitting
        est = values[tx].sum(axis=0).astype(np.complex64)
        if self.poison:
            est[3] = np.nan
        return RoundResult(estimate=est, truth=est, noise_var=self.n_c, alpha=0.5, active=tx, excluded={}, slot=0,
                           tx_local={i: 0.0 for i in tx}, pilot_delay={})


def _updates(k: int, s: int, power: float, seed: int = 0) -> torch.Tensor:
    """k rows with ‖x_m‖² = P_t exactly, as the FEEL schemes radiate them."""
    x = np.random.default_rng(seed).standard_normal((k, s))
    x *= np.sqrt(power / np.sum(x ** 2, axis=1, keepdims=True))
    return torch.from_numpy(x.astype(np.float32))


def test_pairing_scale_and_noise_units():
    """y = Σ_m x_m exactly for an exact sum; u = c (x[2i] + j x[2i+1]) with c = sqrt(⌈s/2⌉ / P_t) gives unit mean
    power per subcarrier (‖x_m‖² = P_t); σ²_real = N_c / (2 c²)."""
    sess = FakeSession(k=3, data_symbols=50)
    ch = RadioSumChannel(sess, power=200.0, channel_uses=1000)
    assert isinstance(ch, SumChannel)
    x = _updates(3, 1000, 200.0)
    rec = ch.transmit(x, ch.csi(0))
    assert ch.scale == pytest.approx(math.sqrt(500 / 200.0))
    torch.testing.assert_close(rec.y, x.sum(0), rtol=0, atol=1e-4)
    u = sess.calls[0]
    assert u.shape == (3, 500)
    np.testing.assert_allclose(u[1, 7], ch.scale * (x[1, 14] + 1j * x[1, 15]).item(), rtol=1e-5)
    np.testing.assert_allclose(np.mean(np.abs(u) ** 2, axis=1), 1.0, rtol=1e-5)
    assert rec.noise_var == pytest.approx(sess.n_c / (2 * ch.scale ** 2))
    torch.testing.assert_close(rec.energy, (x * x).sum(1))


def test_odd_length_spans_several_bursts():
    """s = 201 reals → 101 complex values; 1 OFDM symbol of 48 data subcarriers per burst → ⌈101/48⌉ = 3 bursts,
    and the sum comes back exactly, in order."""
    sess = FakeSession(k=2, data_symbols=1)
    ch = RadioSumChannel(sess, power=10.0, channel_uses=201)
    x = _updates(2, 201, 10.0, seed=3)
    rec = ch.transmit(x, ch.csi(0))
    assert [c.shape[1] for c in sess.calls] == [48, 48, 5]
    assert rec.y.shape == (201,)
    torch.testing.assert_close(rec.y, x.sum(0), rtol=0, atol=1e-5)
    assert ch.stats["bursts"] == 3 and ch.history[-1]["bursts"] == 3


def test_inactive_devices_and_silent_surprises():
    """Excluded / silenced devices are inactive in csi() and send zeros; a device the channel expected but that did
    not transmit is counted as a mismatch, gets energy 0 and is missing from the sum."""
    sess = FakeSession(k=4, data_symbols=50, transmitting=[0, 2])
    sess.devices[1].excluded = "random access failed"
    sess.devices[1].state = "failed"
    sess.plan.active[3] = False
    ch = RadioSumChannel(sess, power=50.0, channel_uses=400)
    csi = ch.csi(5)
    assert csi.active.tolist() == [True, False, True, False]
    assert csi.gain.tolist() == [1.0] * 4
    x = _updates(4, 400, 50.0)
    sess.transmitting = [0, 2, 3]            # device 3 transmits (zeros: it is inactive) anyway
    rec = ch.transmit(x, RoundCsi(5, csi.gain, csi.active))
    assert np.all(sess.calls[0][[1, 3]] == 0)
    torch.testing.assert_close(rec.y, x[[0, 2]].sum(0), rtol=0, atol=1e-4)
    sess.transmitting = [0]                  # device 2 misses its feedback
    rec = ch.transmit(x, ch.csi(6))
    torch.testing.assert_close(rec.y, x[0], rtol=0, atol=1e-4)
    assert rec.energy[2] == 0 and rec.energy[0] > 0
    assert ch.stats["mismatch"] == 1 and ch.history[-1]["mismatch"] == [2]


def test_non_finite_estimate_is_counted_and_rejected():
    """A NaN in the PS's estimate: the round is returned as y = 0 with infinite noise (counted), and A-DSGD's decoder
    refuses it instead of feeding NaN to AMP."""
    sess = FakeSession(k=2, data_symbols=50, poison=True)
    ch = RadioSumChannel(sess, power=100.0, channel_uses=600)
    rec = ch.transmit(_updates(2, 600, 100.0), ch.csi(0))
    assert ch.stats["non_finite"] == 1
    assert torch.all(rec.y == 0) and math.isinf(rec.noise_var)
    agg = AnalogScheme(d=1200, channel_uses=600, power=100.0).decode(rec, 2)
    assert not agg.ok


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="power"):
        RadioSumChannel(FakeSession(), power=0.0, channel_uses=10)
    with pytest.raises(ValueError, match="channel_uses"):
        RadioSumChannel(FakeSession(), power=1.0, channel_uses=0)
    ch = RadioSumChannel(FakeSession(k=3), power=1.0, channel_uses=10)
    with pytest.raises(ValueError, match=r"\[n_devices=3, s >= 1\]"):
        ch.transmit(torch.zeros(2, 10), ch.csi(0))
    with pytest.raises(ValueError, match=r"\(3, 0\)"):
        ch.transmit(torch.zeros(3, 0), ch.csi(0))


def test_data_symbols_for():
    """⌈⌈s/2⌉ / n_data⌉ symbols in one burst while that fits in 64; otherwise equally full bursts."""
    assert data_symbols_for(3925, 48) == 41          # 1963 complex values / 48 = 40.9
    assert data_symbols_for(2, 48) == 1
    assert data_symbols_for(2 * 48 * 100, 48) == 50  # 100 symbols → 2 bursts of 50


@pytest.fixture(scope="module")
def cell():
    """3 devices on an AWGN air at 10 dB (random delays, clock offsets, CFO, SCO), synchronized and calibrated."""
    return loopback_sum_channel(3, snr_db=10.0, seed=1, profile="none", power=100.0, channel_uses=2000)


def test_noise_accounting_matches_theory(cell):
    """The reported noise per real symbol is σ²_real = N0 / (2 α² c²) (N0: the PS's true noise per complex sample,
    α: the round's truncated-inversion amplitude): within 30 % (the PS estimates N0 from ~270 complex pilot
    residuals, 1/sqrt(270) = 6 % per round)."""
    for r in range(3):
        rec = cell.transmit(_updates(3, 2000, 100.0, seed=10 + r), cell.csi(r))
        h = cell.history[-1]
        theory = cell.truth.noise_power / (h["alpha"] ** 2 * 2 * cell.scale ** 2)
        assert rec.noise_var == pytest.approx(theory, rel=0.3)


def test_calibrated_error_predicts_later_rounds(cell):
    """E (ŷ − Σ x_m)² per real symbol = effective_noise_var measured on the probe rounds (to within the
    round-to-round spread of the CSI error, factor 1.6), and it is at least the thermal part (CSI errors only add)."""
    assert cell.effective_noise_var >= 0.9 * cell.calibration["noise_var"]
    for r in range(2):
        x = _updates(3, 2000, 100.0, seed=20 + r)
        csi = cell.csi(r)
        rec = cell.transmit(x, csi)
        sent = cell.history[-1]["sent"]
        err = float(((rec.y - x[sent].sum(0)) ** 2).mean())
        assert cell.effective_noise_var / 1.6 < err < 1.6 * cell.effective_noise_var


def test_arrivals_inside_the_cyclic_prefix(cell):
    """After timing advance every data burst's true arrival error e satisfies −b ≤ e and e + τ_max ≤ cp − b
    (b: the PS's window back-off), and the residual timing RMS is well under one sample."""
    rep = cell.sync_report()
    assert rep["bursts"] >= 3 * 3
    assert rep["within_cp_fraction"] == 1.0
    assert rep["residual_timing_rms_samples"] < 0.5
    assert rep["cfo_residual_rms_subcarriers"] < 0.01
    assert rep["connected"] == [0, 1, 2]


def test_device_that_never_answers_is_inactive():
    """A device that never transmits fails random access: excluded in the report and inactive in csi()."""
    ch = loopback_sum_channel(2, snr_db=15.0, seed=2, profile="none", power=10.0, channel_uses=200,
                              never_answer=(1,))
    assert ch.csi(0).active.tolist() == [True, False]
    assert "1" in ch.sync_report()["excluded_devices"]
    x = _updates(2, 200, 10.0)
    rec = ch.transmit(x, ch.csi(0))
    assert ch.history[-1]["sent"] == [0]
    assert float(((rec.y - x[0]) ** 2).mean()) < 0.2 * float((x[0] ** 2).mean())


def test_any_radios_without_truth():
    """radio_sum_channel over plain radios (one ideal air, common clock): the sum arrives with the calibrated error
    and the report has no truth-based metrics."""
    from lab.experiments.feel_air import radio_sum_channel
    from radio.sim.air import Air
    from radio.drivers.loopback import LoopbackRadio

    air = Air(20e6, 2.4e9, seed=4)
    ps = LoopbackRadio(air, "ps", noise_power=0.01)
    devs = [LoopbackRadio(air, f"d{i}", noise_power=0.001) for i in range(2)]
    air.set_link("d0", "d1", None)
    air.set_link("d1", "d0", None)
    ch = radio_sum_channel(ps, devs, OfdmConfig.preset("wifi64"), power=20.0, channel_uses=300)
    x = _updates(2, 300, 20.0, seed=5)
    rec = ch.transmit(x, ch.csi(0))
    err = float(((rec.y - x.sum(0)) ** 2).mean())
    assert err < 3 * ch.effective_noise_var
    rep = ch.sync_report()
    assert "residual_timing_rms_samples" not in rep and rep["connected"] == [0, 1]
