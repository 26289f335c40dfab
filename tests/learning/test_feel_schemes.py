"""FEEL schemes and the symbol-level sum channel: bit budgets, quantizer, power constraint, superposition, fading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learning.feel.channel import RoundCsi, SumChannel, SymbolChannel
from learning.feel.device import DeviceFleet
from learning.feel.messages import GlobalModel, Schedule
from learning.feel.models import FlatModel
from learning.feel.schemes import (AnalogScheme, DigitalScheme, UncodedScheme, ddsgd_bits_per_device,
                                   ddsgd_sparsity, gaussian_projection, mean_sign_quantize, top_k_sparsify)


@pytest.mark.parametrize("s, m, power", [(3925, 25, 200.0), (3925, 25, 1000.0), (1000, 10, 50.0), (500, 100, 5.0)])
def test_ddsgd_bit_budget_matches_capacity_formula(s, m, power):
    """R_t = s/(2M) log2(1 + M P_t/(s sigma^2)) (equal share of the Gaussian MAC sum capacity, TSP Sec. III) and
    q_t = max{q : log2 C(d, q) + 33 <= R_t} (TSP Sec. III), checked with exact integer binomials."""
    d = 7850
    bits = ddsgd_bits_per_device(s, m, power, 1.0)
    assert bits == pytest.approx(s / (2 * m) * math.log2(1 + m * power / s), rel=1e-12)
    q = ddsgd_sparsity(d, bits)
    fits = lambda qq: math.log2(math.comb(d, qq)) + 33 <= bits  # noqa: E731
    assert (q == 0 or fits(q)) and not fits(q + 1)


def test_ddsgd_fig5_budget_is_a_handful_of_entries():
    """Fig. 5 numbers: d = 7850, s = d/2, M = 25, P = 200 -> R = 78.5 log2(1 + 5000/3925) ~ 93 bits -> q = 5."""
    bits = ddsgd_bits_per_device(3925, 25, 200.0, 1.0)
    assert 92 < bits < 94 and ddsgd_sparsity(7850, bits) == 5


def test_mean_sign_quantizer():
    """Top-q mean/sign quantization: q positions sharing the mean of the dominant side (TSP Sec. III)."""
    v = torch.tensor([[5.0, -1.0, 4.0, -2.0, 0.5, 3.0], [-6.0, 1.0, -5.0, 2.0, 0.1, -1.0]])
    pos, val, quant = mean_sign_quantize(v, 2)
    assert torch.allclose(val, torch.tensor([4.5, -5.5]))
    assert set(pos[0].tolist()) == {0, 2} and set(pos[1].tolist()) == {0, 2}
    assert torch.equal((quant != 0).sum(1), torch.tensor([2, 2]))
    assert torch.allclose(quant[0], torch.tensor([4.5, 0, 4.5, 0, 0, 0]))


def test_top_k_keeps_largest_magnitudes():
    v = torch.tensor([[0.1, -3.0, 2.0, 0.5], [1.0, 1.5, -0.2, -4.0]])
    assert torch.equal(top_k_sparsify(v, 2), torch.tensor([[0.0, -3.0, 2.0, 0.0], [0.0, 1.5, 0.0, -4.0]]))


def test_projection_is_reproducible_from_the_shared_seed():
    """Devices and server regenerate the same A from the seed; entries have variance 1/(s-1)."""
    a = gaussian_projection(400, 1000, 5)
    gaussian_projection.cache_clear()
    b = gaussian_projection(400, 1000, 5)
    assert torch.equal(a, b)
    assert float(a.var()) == pytest.approx(1 / 400, rel=0.02)


@pytest.mark.parametrize("fading", ["none", "rayleigh"])
def test_analog_power_constraint_met_exactly(fading):
    """A-DSGD: alpha_m = P h_m^2 / (||A g_sp||^2 + 1) and x_m = sqrt(alpha_m)[A g_sp; 1]/h_m, so the radiated energy
    ||x_m||^2 = P exactly (float32), with or without channel inversion; the channel's energy meter agrees."""
    gen = torch.Generator().manual_seed(0)
    m, d, s, power = 6, 300, 120, 200.0
    scheme = AnalogScheme(d, s, power, k=30, seed=3)
    ch = SymbolChannel(m, 1.0, fading, threshold=0.05, seed=1)
    csi = ch.csi(0)
    ec = torch.randn(m, d, generator=gen)
    tx, err = scheme.encode(ec, csi.gain, m)
    energy = (tx.symbols.double() ** 2).sum(1)
    torch.testing.assert_close(energy, torch.full((m,), power, dtype=torch.float64), rtol=1e-5, atol=0)
    rec = ch.transmit(tx.symbols, RoundCsi(0, csi.gain, torch.ones(m, dtype=torch.bool)))
    torch.testing.assert_close(rec.energy, torch.full((m,), power), rtol=1e-5, atol=0)
    torch.testing.assert_close(err + top_k_sparsify(ec, 30), ec)  # Delta = g_ec - sp_k(g_ec)


def test_superposition_gives_the_weighted_average_noiseless():
    """Noiseless AWGN MAC: y_{1..s-1}/y_s = A sum_m w_m g_sp_m with w_m = sqrt(alpha_m)/sum_j sqrt(alpha_j)
    (TSP Sec. IV); the uncoded scheme returns sum_m w_m g_m exactly."""
    gen = torch.Generator().manual_seed(1)
    m, d = 5, 200
    ch = SymbolChannel(m, noise_var=0.0)
    csi = ch.csi(0)
    ec = torch.randn(m, d, generator=gen)
    analog = AnalogScheme(d, 150, 100.0, k=20, seed=2)
    tx, _ = analog.encode(ec, csi.gain, m)
    y = ch.transmit(tx.symbols, csi).y
    w = tx.weight / tx.weight.sum()
    torch.testing.assert_close(y[:-1] / y[-1], analog.projection @ (w @ tx.represented), rtol=1e-4, atol=1e-5)
    unc = UncodedScheme(d, d + 1, 100.0, noise_var=0.0)
    tx, _ = unc.encode(ec, csi.gain, m)
    agg = unc.decode(ch.transmit(tx.symbols, csi), m)
    w = tx.weight / tx.weight.sum()
    torch.testing.assert_close(agg.vector, w @ ec, rtol=1e-4, atol=1e-6)


def test_channel_noise_variance_and_truncated_inversion_rate():
    """y - sum_m h_m x_m has variance sigma^2 (chi-square: relative std sqrt(2/n)); Rayleigh |h|^2 ~ Exp(1), so a
    device is active with probability P(|h|^2 >= lambda) = exp(-lambda) (binomial tolerance 4 sigma)."""
    ch = SymbolChannel(3, noise_var=2.5, seed=7)
    x = torch.zeros(3, 20000)
    noise = ch.transmit(x, ch.csi(0)).y
    assert float(noise.var()) == pytest.approx(2.5, abs=4 * 2.5 * math.sqrt(2 / 20000))
    lam, rounds, m = 0.3, 200, 50
    fad = SymbolChannel(m, fading="rayleigh", threshold=lam, seed=3)
    active = torch.stack([fad.csi(t).active for t in range(rounds)]).double().mean()
    p = math.exp(-lam)
    assert abs(float(active) - p) < 4 * math.sqrt(p * (1 - p) / (rounds * m))
    assert isinstance(fad, SumChannel)


def test_silent_devices_do_not_reach_the_air():
    ch = SymbolChannel(3, noise_var=0.0)
    x = torch.ones(3, 4)
    y = ch.transmit(x, RoundCsi(0, torch.ones(3), torch.tensor([True, False, True]))).y
    assert torch.equal(y, torch.full((4,), 2.0))


def test_device_steps_give_the_same_transmission_one_by_one_or_batched():
    """The device-side code is batched over devices: running it for each device alone (as remote hosts would) gives
    the same symbols as one batched call; the superposition of the single-device rows equals the batched y."""
    gen = torch.Generator().manual_seed(2)
    m, b = 4, 16
    model = FlatModel.create("softmax", (1, 4, 4), 10, seed=0)
    x, y = torch.randn(m, b, 1, 4, 4, generator=gen), torch.randint(0, 10, (m, b), generator=gen)
    glob = GlobalModel(0, torch.randn(model.dim, generator=gen) * 0.1)
    scheme = AnalogScheme(model.dim, 60, 100.0, k=20, seed=4)
    ch = SymbolChannel(m, noise_var=0.0)
    csi = ch.csi(0)
    fleet = DeviceFleet(torch.arange(m), x, y, model.dim)
    upd = fleet.local_update(model, glob)
    sched = Schedule(0, upd.ids, torch.ones(m, dtype=torch.bool))
    tx, _ = fleet.encode(scheme, upd, sched, csi)
    rows = []
    for i in range(m):  # what M separate devices would compute
        one = DeviceFleet(torch.tensor([i]), x[i:i + 1], y[i:i + 1], model.dim)
        u = one.local_update(model, glob)
        t, _ = one.encode(scheme, u, Schedule(0, u.ids, torch.ones(1, dtype=torch.bool)),
                          RoundCsi(0, csi.gain[i:i + 1], csi.active[i:i + 1]))
        rows.append(t.symbols)
    torch.testing.assert_close(torch.cat(rows), tx.symbols, rtol=1e-4, atol=1e-5)


def test_digital_decode_averages_received_messages():
    d = 50
    scheme = DigitalScheme(d, 40, 1000.0)
    ec = torch.from_numpy(np.random.default_rng(3).standard_normal((3, d)).astype(np.float32))
    tx, err = scheme.encode(ec, torch.ones(3), 3)
    agg = scheme.decode(tx, 3)
    torch.testing.assert_close(agg.vector, tx.represented.mean(0))
    torch.testing.assert_close(err + tx.represented, ec)
    assert agg.info["q"] == ddsgd_sparsity(d, ddsgd_bits_per_device(40, 3, 1000.0, 1.0))


def test_scheme_inputs_are_validated():
    with pytest.raises(ValueError, match="uncoded analog needs s >= d \\+ 1"):
        UncodedScheme(100, 50, 10.0)
    with pytest.raises(ValueError, match="power"):
        AnalogScheme(100, 50, 0.0)
    with pytest.raises(ValueError, match="fading"):
        SymbolChannel(3, fading="rician")
