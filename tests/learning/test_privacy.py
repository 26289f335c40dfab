"""Differential privacy of FEEL: the accountant against dp-accounting and a hand computation, the calibration, and
the mechanisms' sensitivities and noise against their formulas (learning.privacy.mechanism docstring)."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
import torch
from dp_accounting.rdp import RdpAccountant

from learning.feel.channel import SymbolChannel
from learning.feel.schemes import AnalogScheme, gaussian_projection
from learning.privacy.accountant import PrivacyAccountant, gaussian_epsilon, noise_multiplier_for
from learning.privacy.feel import FeelPrivacy
from learning.privacy.mechanism import (SPECTRAL_MARGIN, adsgd_alpha, analog_noise_multiplier, analog_sensitivity,
                                        artificial_noise_var, clip_rows, spectral_norm)


def test_account_matches_library_and_hand_computation():
    """T = 10 Gaussian rounds, z = 1.2, delta = 1e-5: RDP of the Gaussian at order a is T a / (2 z^2) (Mironov 2017,
    Prop. 7); dp-accounting converts with eps = min_a rdp(a) + log1p(-1/a) - (log delta + log a) / (a - 1) over its
    orders. Our running account equals the library's value and this hand computation; the classic conversion
    rdp(a) + log(1/delta)/(a - 1) (Mironov Prop. 3) is an upper bound of it."""
    z, t, delta = 1.2, 10, 1e-5
    acc = PrivacyAccountant(delta)
    for _ in range(t):
        eps = acc.step(z)
    lib = RdpAccountant()
    lib.compose(dp_accounting.GaussianDpEvent(z), t)
    assert eps == pytest.approx(lib.get_epsilon(delta), rel=1e-12)
    orders = np.array(lib._orders, dtype=np.float64)  # the library's default orders
    orders = orders[orders > 1]
    rdp = t * orders / (2 * z * z)
    hand = np.min(rdp + np.log1p(-1 / orders) - (np.log(delta) + np.log(orders)) / (orders - 1))
    assert eps == pytest.approx(hand, rel=1e-9)
    classic = np.min(rdp + np.log(1 / delta) / (orders - 1))
    assert eps <= classic
    # T Gaussian rounds with multiplier z are one Gaussian with z / sqrt(T) (RDP adds: T a/(2 z^2))
    assert gaussian_epsilon(z / math.sqrt(t), 1, delta) == pytest.approx(eps, rel=1e-9)


def test_account_is_monotone_in_rounds_and_handles_exact_and_empty_rounds():
    acc = PrivacyAccountant(1e-6)
    eps = [acc.step(0.8) for _ in range(30)]
    assert all(b > a for a, b in zip(eps, eps[1:]))
    assert acc.step(math.inf) == pytest.approx(eps[-1])       # a round that released nothing costs nothing
    assert acc.step(0.0) == math.inf                           # an exact release
    assert gaussian_epsilon(0.8, 30, 1e-6) == pytest.approx(eps[-1], rel=1e-12)
    with pytest.raises(ValueError, match="delta"):
        PrivacyAccountant(0.0)


@pytest.mark.parametrize("target, rounds", [(1.0, 100), (8.0, 300), (200.0, 50)])
def test_noise_multiplier_for_target_is_the_smallest_that_reaches_it(target, rounds):
    z = noise_multiplier_for(target, 1e-5, rounds)
    assert gaussian_epsilon(z, rounds, 1e-5) <= target
    assert gaussian_epsilon(z * (1 - 1e-4), rounds, 1e-5) > target


def test_spectral_norm_bounds_the_largest_singular_value():
    a = gaussian_projection(120, 300, 4)
    exact = float(torch.linalg.svdvals(a.double())[0])
    est = spectral_norm(a)
    assert exact <= est <= exact * (1 + 2 * SPECTRAL_MARGIN)
    assert est == pytest.approx(1 + math.sqrt(300 / 120), rel=0.1)  # Marchenko-Pastur edge 1 + sqrt(d/r)


@pytest.mark.parametrize("fading", ["none", "rayleigh"])
def test_clipped_adsgd_meets_power_and_its_sensitivity_bound(fading):
    """With clip C: ||x_m||^2 <= P for every device and any update, and the contributions of two devices with
    different data differ by at most Delta = 2 max h sqrt(alpha) ||A||_2 C, alpha = P / (||A||_2^2 C^2 + 1)."""
    gen = torch.Generator().manual_seed(3)
    m, d, s, power, clip = 30, 300, 121, 50.0, 0.7
    scheme = AnalogScheme(d, s, power, k=40, seed=5, clip=clip)
    csi = SymbolChannel(m, 1.0, fading, threshold=0.2, seed=2).csi(0)
    act = csi.active
    ec = torch.randn(m, d, generator=gen) * torch.logspace(-2, 2, m)[:, None]
    tx, _ = scheme.encode(ec[act], csi.gain[act], int(act.sum()))
    rows = tx.radiated().double()
    assert float((rows ** 2).sum(1).max()) <= power * (1 + 1e-5)
    arriving = rows * csi.gain[act].double()[:, None]
    diff = torch.cdist(arriving[:, :-1], arriving[:, :-1]).max()   # the scale entry is common: data-independent
    h = float(csi.gain[act].max())
    bound = analog_sensitivity(power, clip, scheme.spectral_norm, gain_max=h)
    assert bound == pytest.approx(2 * h * math.sqrt(adsgd_alpha(power, clip, scheme.spectral_norm))
                                  * scheme.spectral_norm * clip, rel=1e-12)
    assert float(diff) <= bound
    assert float(tx.represented.norm(dim=1).max()) <= clip * (1 + 1e-6)


def test_unclipped_adsgd_arrives_with_norm_sqrt_p():
    """The paper's alpha_m = P h^2 / (||A g||^2 + 1): every device's contribution arrives with norm h sqrt(P),
    whatever its data, so Delta = 2 h_max sqrt(P) without clipping."""
    gen = torch.Generator().manual_seed(4)
    m, d, s, power = 8, 200, 81, 30.0
    scheme = AnalogScheme(d, s, power, k=20, seed=1)
    gain = torch.rand(m, generator=gen) + 0.5
    tx, _ = scheme.encode(torch.randn(m, d, generator=gen) * 100, gain, m)
    norms = (tx.radiated().double() * gain.double()[:, None]).norm(dim=1)
    torch.testing.assert_close(norms, math.sqrt(power) * gain.double(), rtol=1e-5, atol=0)
    assert analog_sensitivity(power, None, 2.0, gain_max=1.5) == pytest.approx(2 * 1.5 * math.sqrt(power))


def test_artificial_noise_tops_up_the_receiver_noise_to_the_target():
    """sigma_a^2 = (z^2 Delta^2 - sigma^2)/M', so analog_noise_multiplier returns z exactly; zero when the receiver
    noise alone already gives z."""
    delta_s, sigma2, m = 3.0, 1.0, 20
    var = artificial_noise_var(2.0, sigma2, m, delta_s)
    assert var == pytest.approx((36.0 - 1.0) / 20)
    assert analog_noise_multiplier(sigma2, var, m, delta_s) == pytest.approx(2.0)
    assert artificial_noise_var(0.1, sigma2, m, delta_s) == 0.0


def test_feel_privacy_adsgd_needs_m_times_less_noise_per_device_than_ddsgd():
    """At the same target: D-DSGD devices add sigma_d = z 2C each (local DP); A-DSGD devices add
    sigma_a^2 = (z^2 Delta^2 - sigma^2)/M' per channel use; both rounds compose to the target epsilon."""
    rounds, target, clip, power, m = 20, 4.0, 1.0, 10.0, 25
    ana = FeelPrivacy("analog", 1.0, power, clip, 1e-5, rounds, target, s_max=2.4, channel_uses=50)
    dig = FeelPrivacy("digital", 1.0, power, clip, 1e-5, rounds, target)
    z = noise_multiplier_for(target, 1e-5, rounds)
    assert dig.local_std == pytest.approx(2 * z * clip)
    v = torch.full((3, 4), 10.0)
    out = dig.privatize(0, v)
    assert not torch.equal(out, v) and torch.equal(v, torch.full((3, 4), 10.0))  # a new tensor
    noise = dig.privatize(1, torch.zeros(m, 4000)).flatten()
    assert float(noise.std()) == pytest.approx(dig.local_std, rel=4 * math.sqrt(1 / (2 * noise.numel())))
    extra = ana.artificial_noise(0, m, 1.0, 20000)
    delta_s = analog_sensitivity(power, clip, 2.4)
    assert ana.artificial_var == pytest.approx(((z * delta_s) ** 2 - 1.0) / m)
    assert float(extra.var()) == pytest.approx(m * ana.artificial_var, rel=4 * math.sqrt(2 / 20000))
    for t in range(rounds):
        ana.artificial_noise(t, m, 1.0, 10)
        ra = ana.account(m)
        rd = dig.account(m)
    assert ra["noise_multiplier"] == pytest.approx(z) and rd["noise_multiplier"] == pytest.approx(z)
    assert ra["epsilon"] == pytest.approx(target, rel=1e-4) and rd["epsilon"] == pytest.approx(target, rel=1e-4)
    # noise each device adds, as a variance per entry: A-DSGD's share is ~ 1/M of the total, D-DSGD's is all of it
    assert ana.artificial_var < (z * delta_s) ** 2 / m * 1.0001


def test_clip_rows():
    v = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    clip_rows(v, 1.0)
    torch.testing.assert_close(v, torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]]))


SMALL = dict(devices=5, samples_per_device=100, rounds=4, lr=1e-2, channel_uses=1000)


@pytest.fixture
def data_dir(shared_data):
    if not (shared_data / "mnist.npz").is_file():
        pytest.skip("mnist.npz not in the shared data directory")
    return shared_data


def test_feel_result_reports_epsilon_per_round_and_resumes_the_account(data_dir, tmp_path):
    """Every FEEL result carries top-level epsilon/delta and per-round epsilon (monotone); a run resumed from its
    checkpoint replays the account to the same values; the target is met at the last round for A-DSGD and D-DSGD;
    an exact digital release reports epsilon None (infinite)."""
    from learning.feel.runner import FeelConfig, run_feel
    cfg = FeelConfig(scheme="analog", clip=1.0, target_epsilon=30.0, dp_delta=1e-6, **SMALL)
    full = run_feel(cfg, tmp_path / "full.json", tmp_path / "full.pt", data_dir=data_dir)
    eps = [r["epsilon"] for r in full["rounds"]]
    assert all(b > a for a, b in zip(eps, eps[1:]))
    assert full["epsilon"] == eps[-1] == pytest.approx(30.0, rel=1e-4) and full["delta"] == 1e-6
    run_feel(cfg, None, tmp_path / "part.pt", data_dir=data_dir, stop_after=2, checkpoint_every=1)
    resumed = run_feel(cfg, None, tmp_path / "part.pt", data_dir=data_dir)
    assert resumed["epsilon"] == full["epsilon"] and resumed["rounds"] == full["rounds"]
    dig = run_feel(FeelConfig(scheme="digital", clip=1.0, target_epsilon=30.0, dp_delta=1e-6, **SMALL), None, None,
                   data_dir=data_dir)
    assert dig["epsilon"] == pytest.approx(30.0, rel=1e-4)
    assert dig["rounds"][0]["local_noise_std"] > 0 and full["rounds"][0]["local_noise_std"] == 0
    exact = run_feel(FeelConfig(scheme="digital", **SMALL), None, None, data_dir=data_dir)
    assert exact["epsilon"] is None and exact["privacy"]["note"]
    with pytest.raises(ValueError, match="needs clip"):
        FeelConfig(scheme="digital", target_epsilon=1.0)
    with pytest.raises(ValueError, match="uncoded analog does not clip"):
        FeelConfig(scheme="uncoded", clip=1.0)
