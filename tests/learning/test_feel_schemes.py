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
                                   ddsgd_sparsity, gaussian_projection, mean_sign_quantize, top_k_payload,
                                   top_k_sparsify)


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
    energy = (tx.radiated().double() ** 2).sum(1)
    torch.testing.assert_close(energy, torch.full((m,), power, dtype=torch.float64), rtol=1e-5, atol=0)
    rec = ch.transmit(tx.radiated(), RoundCsi(0, csi.gain, torch.ones(m, dtype=torch.bool)))
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
    y = ch.transmit(tx.radiated(), csi).y
    w = tx.weight / tx.weight.sum()
    torch.testing.assert_close(y[:-1] / y[-1], analog.projection @ (w @ tx.represented), rtol=1e-4, atol=1e-5)
    unc = UncodedScheme(d, d + 1, 100.0, noise_var=0.0)
    tx, _ = unc.encode(ec, csi.gain, m)
    agg = unc.decode(ch.transmit(tx.radiated(), csi), m)
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
        rows.append(t.radiated())
    torch.testing.assert_close(torch.cat(rows), tx.radiated(), rtol=1e-4, atol=1e-5)


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


@pytest.mark.parametrize("fading, drop", [("none", ()), ("rayleigh", (1, 4))])
def test_one_projection_superposition_equals_per_device_projection(fading, drop):
    """transmit_linear forms y = [A sum_m c_m g_sp_m ; sum_m c_m] + z with c_m = h_m sqrt(alpha_m)/h_m from ONE
    projection; it equals the superposition of the M per-device rows x_m = sqrt(alpha_m)/h_m [A g_sp_m; 1] (same
    noise draw) to float32 rounding, with exact per-device power scaling, truncated-inversion silence and drop-outs."""
    gen = torch.Generator().manual_seed(5)
    m, d, s, power = 40, 500, 201, 300.0
    scheme = AnalogScheme(d, s, power, k=50, seed=9)
    ch = SymbolChannel(m, 0.7, fading, threshold=0.3, seed=4)
    csi = ch.csi(3)
    went = csi.active.clone()
    went[list(drop)] = False
    ec = torch.randn(m, d, generator=gen) * torch.rand(m, 1, generator=gen) * 3
    tx, _ = scheme.encode(ec[went], csi.gain[went], int(went.sum()))
    rows = tx.radiated()
    # per-device reference built from scratch: float64 projection of each sparse update
    sp = top_k_sparsify(ec[went], 50).double()
    proj = sp @ scheme.projection.double().T
    alpha = power * csi.gain[went].double() ** 2 / ((proj ** 2).sum(1) + 1)
    ref_rows = torch.cat([proj, torch.ones(len(proj), 1, dtype=torch.float64)], 1) * (alpha.sqrt() / csi.gain[went]
                                                                                         .double())[:, None]
    torch.testing.assert_close(rows.double(), ref_rows, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(tx.linear.energy.double(), torch.full((len(proj),), power, dtype=torch.float64),
                               rtol=1e-5, atol=0)
    full = torch.zeros(m, s)
    full[went] = rows
    round_csi = RoundCsi(3, csi.gain, csi.active & went)
    y_rows = ch.transmit(full, round_csi)
    y_one = ch.transmit_linear(tx.linear, round_csi, torch.nonzero(went).flatten())
    scale = float(y_rows.y.abs().max())
    eps = torch.finfo(torch.float32).eps
    assert float((y_one.y - y_rows.y).abs().max()) <= 50 * eps * scale  # float32 rounding of sums over <= 40 rows
    torch.testing.assert_close(y_one.energy, y_rows.energy, rtol=1e-5, atol=1e-5)
    assert scheme.decode(y_one, int(went.sum())).ok


def test_sparse_power_norm_meets_power_on_average():
    """power_norm="sparse": alpha_m from ||g_sp||^2 = E_A||A g_sp||^2, so ||x_m||^2 / P = (||A g||^2 + 1)/(||g||^2 + 1)
    has mean ~1 with relative spread <= sqrt(2/(s-1)) (chi-square, s-1 degrees of freedom)."""
    gen = torch.Generator().manual_seed(6)
    m, d, s, power = 400, 600, 301, 50.0
    scheme = AnalogScheme(d, s, power, k=60, seed=2, power_norm="sparse")
    tx, _ = scheme.encode(torch.randn(m, d, generator=gen), torch.ones(m), m)
    ratio = (tx.radiated().double() ** 2).sum(1) / power
    spread = math.sqrt(2 / (s - 1))
    assert abs(float(ratio.mean()) - 1) < 4 * spread / math.sqrt(m)
    assert float(ratio.std()) < 1.2 * spread
    with pytest.raises(ValueError, match="power_norm"):
        AnalogScheme(d, s, power, power_norm="bogus")


def test_top_k_payload_matches_top_k_with_ties_and_short_rows():
    """The partition-threshold top-k keeps the same entries as torch.topk, exactly k per row even with tied
    magnitudes, all of a row with fewer than k nonzeros, and the unit scale entry last."""
    gen = torch.Generator().manual_seed(8)
    v = torch.randn(50, 40, generator=gen)
    v[3] = torch.tensor([1.0, -1.0] * 20)           # every magnitude tied
    v[4, 5:] = 0.0                                  # 5 nonzeros < k
    v[5, :12] = torch.tensor([2.0, -2.0] * 6)       # ties straddling the threshold
    out = top_k_payload(v, 10)
    assert torch.equal(out[:, -1], torch.ones(50))
    body = out[:, :-1]
    assert torch.equal((body != 0).sum(1), torch.tensor([10] * 4 + [5] + [10] * 45))
    assert torch.equal(body[6:], top_k_sparsify(v[6:], 10))
    assert torch.equal(body[4], v[4])
    assert torch.all((body == 0) | (body == v))
    assert torch.equal(top_k_payload(v, 40)[:, :-1], v)
