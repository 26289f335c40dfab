"""DeepJSCC channels: the SNR convention and the fading statistics against their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from learning.jscc.channels import (
    AwgnChannel,
    OfdmChannel,
    RayleighBlockChannel,
    build_channel,
    measured_snr_db,
)
from learning.jscc.models import power_normalize


def _latent(batch=64, c=16, h=8, w=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return power_normalize(torch.randn(batch, c, h, w, generator=gen) * 3.0 + 0.5)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_awgn_measured_snr_matches_nominal(snr_db):
    """SNR = Es/N0 with Es = 1 per complex symbol and complex noise variance N0 = 1/SNR (1/(2 SNR) per real part):
    measured 10 log10(mean|s|^2 / mean|n|^2) is within ±0.1 dB of nominal (a per-real-part variance of 1/SNR would
    measure 3.01 dB low)."""
    z = _latent()
    pairs = z.flatten(1).reshape(z.shape[0], -1, 2)
    assert torch.allclose(pairs.pow(2).sum(-1).mean(1), torch.ones(z.shape[0]), atol=1e-5)
    z_hat, snr_eff = AwgnChannel()(z, snr_db, generator=torch.Generator().manual_seed(1))
    assert abs(measured_snr_db(z, z_hat) - snr_db) < 0.1
    assert torch.all(snr_eff == snr_db)
    # the noise is circular: real and imaginary parts carry half of N0 each (N0/2 = 1/(2 SNR))
    noise = (z_hat - z).flatten(1).reshape(-1, 2)
    half = 0.5 * 10 ** (-snr_db / 10)
    assert noise[:, 0].var().item() == pytest.approx(half, rel=0.03)
    assert noise[:, 1].var().item() == pytest.approx(half, rel=0.03)


def test_awgn_per_image_snr_vector():
    """Each image gets the noise of its own SNR: measured per-image SNR within ±0.5 dB (k = 512 symbols, std of the
    estimate ≈ 4.34/sqrt(512) ≈ 0.19 dB)."""
    z = _latent(batch=4)
    snrs = torch.tensor([0.0, 5.0, 10.0, 20.0])
    z_hat, _ = AwgnChannel()(z, snrs, generator=torch.Generator().manual_seed(2))
    for i, s in enumerate(snrs):
        assert abs(measured_snr_db(z[i], z_hat[i]) - float(s)) < 0.5


def test_rayleigh_gain_distribution_and_post_equalization_snr():
    """Block Rayleigh h ~ CN(0,1): |h|^2 ~ Exp(1) (Kolmogorov-Smirnov against 1 - exp(-x)), E|h|^2 = 1, and after
    zero forcing with perfect CSI the SNR of image i is SNR·|h_i|^2 (= the reported snr_eff)."""
    from scipy import stats

    z = _latent(batch=2000, c=4, h=4, w=4)
    ch = RayleighBlockChannel(csi="perfect", min_gain_db=-60)
    z_hat, snr_eff = ch(z, 10.0, generator=torch.Generator().manual_seed(3))
    gain = 10 ** ((snr_eff - 10.0) / 10)
    assert stats.kstest(gain.numpy(), "expon").pvalue > 0.01
    assert gain.mean().item() == pytest.approx(1.0, abs=0.08)  # std of the mean 1/sqrt(2000) = 0.022
    # pool the noise of 200 images: mean over images of (noise energy · |h|^2) recovers N0 = 0.1
    err = (z_hat - z).flatten(1).pow(2).sum(1) / (z[0].numel() / 2)  # per-image E|n/h|^2
    n0_hat = (err * gain).mean().item()
    assert n0_hat == pytest.approx(0.1, rel=0.05)


def test_rayleigh_without_csi_keeps_fading():
    """csi='none': the output is h·s + n, so its power per image is |h|^2 + N0 (mean over images ≈ 1 + N0)."""
    z = _latent(batch=2000, c=4, h=4, w=4)
    y, snr_eff = RayleighBlockChannel(csi="none")(z, 20.0, generator=torch.Generator().manual_seed(4))
    power = y.flatten(1).pow(2).sum(1) / (z[0].numel() / 2)
    assert power.mean().item() == pytest.approx(1.01, abs=0.08)
    assert torch.all(snr_eff == 20.0)


def test_ofdm_frequency_response_unit_power_and_estimation_error():
    """Exponential PDP normalized to sum P_l = 1 gives E|H_f|^2 = 1 on every subcarrier; the LS estimate from
    n_training unit-power training symbols has error variance N0/n_training; at 60 dB the chain is transparent."""
    ch = OfdmChannel(n_training=2)
    h = ch.frequency_response(4000, torch.Generator().manual_seed(5))
    assert h.shape == (4000, 48)
    assert h.abs().pow(2).mean(0).mean().item() == pytest.approx(1.0, abs=0.03)
    z = _latent(batch=8)
    z_hat, _ = ch(z, 60.0, generator=torch.Generator().manual_seed(6))
    assert (z_hat - z).pow(2).mean().item() < 1e-3
    z_hat_lo, _ = ch(z, 10.0, generator=torch.Generator().manual_seed(6))
    assert measured_snr_db(z, z_hat_lo) < 10.0  # fading + estimation error cost SNR relative to AWGN


def test_ofdm_estimation_error_variance():
    """H_est - H ~ CN(0, N0/n_training): checked through a flat channel (n_taps = 1, H = h0 for all subcarriers)
    at high SNR, where s_hat/s - 1 ≈ -e/H, so E|s_hat - s|^2 ≈ E[N0 (1 + 1/n_training)/|H|^2] for unit |s|."""
    ch = OfdmChannel(n_taps=1, n_training=4, min_gain_db=-60)
    gen = torch.Generator().manual_seed(7)
    batch = 3000
    s = torch.ones(batch, 48, 2) / math.sqrt(2)  # unit-power complex symbols 1+j over one OFDM symbol
    z = s.reshape(batch, 96)
    z_hat, _ = ch(z, 30.0, generator=gen)
    gen2 = torch.Generator().manual_seed(7)
    h = ch.frequency_response(batch, gen2)[:, 0]
    err = (z_hat - z).reshape(batch, 48, 2).pow(2).sum(-1).mean(1)  # per image mean |s_hat - s|^2
    expected = 1e-3 * (1 + 1 / 4) / h.abs().pow(2)
    ratio = (err / expected)
    assert torch.median(ratio).item() == pytest.approx(1.0, abs=0.1)


def test_build_channel_rejects_unknown():
    with pytest.raises(ValueError, match="expected one of awgn"):
        build_channel("rician")
    with pytest.raises(ValueError, match="csi"):
        RayleighBlockChannel(csi="partial")


def test_channels_are_differentiable():
    """Gradients flow through every channel (training with the channel in the loop)."""
    for ch in (AwgnChannel(), RayleighBlockChannel(), OfdmChannel()):
        z = _latent(batch=2).requires_grad_(True)
        out, _ = ch(z, 10.0, generator=torch.Generator().manual_seed(0))
        out.sum().backward()
        assert z.grad is not None and torch.isfinite(z.grad).all()
