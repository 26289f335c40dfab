"""DeepJSCC models: shapes, bandwidth ratio, power normalization, bad input."""

from __future__ import annotations

import pytest
import torch

from learning.jscc.channels import AwgnChannel
from learning.jscc.models import (
    GDN,
    MODELS,
    build_model,
    channels_for_ratio,
    power_normalize,
    psnr_db,
    ratio_string,
)

SMALL = (4, 8, 8, 8)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("hw", [(32, 32), (48, 64)])
def test_shapes_ratio_and_unit_power(name, hw):
    """k/n = c/96: an H×W×3 image (n = 3HW reals) gives k = c·HW/32 complex symbols, each image with mean |s|^2 = 1."""
    torch.manual_seed(0)
    model = build_model(name, channels_for_ratio("1/6"), SMALL)
    h, w = hw
    x = torch.rand(3, 3, h, w)
    z = model.encode(x, torch.full((3,), 10.0))
    assert z.shape == (3, 16, h // 4, w // 4)
    k = model.n_channel_uses(h, w)
    assert k == z[0].numel() // 2 and k / (3 * h * w) == pytest.approx(1 / 6)
    pairs = z.flatten(1).reshape(3, -1, 2)
    assert torch.allclose(pairs.pow(2).sum(-1).mean(1), torch.ones(3), atol=1e-5)
    y = model.decode(z, torch.full((3,), 10.0))
    assert y.shape == x.shape and float(y.detach().min()) >= 0 and float(y.detach().max()) <= 1
    out = model(x, lambda zz, s: AwgnChannel()(zz, s), torch.full((3,), 5.0))
    assert out.shape == x.shape


def test_ratio_helpers():
    assert channels_for_ratio("1/6") == 16 and channels_for_ratio(1 / 12) == 8
    assert ratio_string(16) == "1/6" and ratio_string(8) == "1/12"
    with pytest.raises(ValueError, match="c/96"):
        channels_for_ratio("1/7")


def test_power_normalize_scales_each_image():
    """sum z^2 = k = (number of values)/2 per image, whatever the input scale."""
    z = torch.randn(5, 16, 8, 8) * torch.tensor([0.01, 1, 10, 100, 1e3]).view(5, 1, 1, 1)
    out = power_normalize(z)
    assert torch.allclose(out.flatten(1).pow(2).sum(1), torch.full((5,), 512.0), rtol=1e-5)


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 1, 32, 32), "expected \\[batch, 3, H, W\\]"),
    (torch.rand(2, 3, 30, 32), "multiples of 4"),
    (torch.rand(3, 32, 32), "expected \\[batch, 3, H, W\\]"),
    (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
    ((torch.rand(1, 3, 32, 32) * 255).byte(), "dtype"),
])
def test_bad_images_raise_clear_errors(bad, match):
    model = build_model("bourtsoulatze", 16, SMALL)
    with pytest.raises(ValueError, match=match):
        model.encode(bad)


def test_adaptive_model_requires_snr_and_uses_it():
    """The SNR-adaptive model's outputs depend on snr_db (attention modules); a missing SNR is a clear error."""
    torch.manual_seed(1)
    model = build_model("adjscc", 16, SMALL)
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="snr_db is required"):
        model.encode(x)
    z0, z20 = model.encode(x, 0.0), model.encode(x, 20.0)
    assert not torch.allclose(z0, z20)


def test_gdn_closed_form():
    """GDN: y = x / sqrt(beta + gamma x^2) (gamma = 0, beta = 1: identity); IGDN: y = x · sqrt(beta + gamma x^2)."""
    x = torch.randn(2, 4, 5, 5)
    g, ig = GDN(4), GDN(4, inverse=True)
    with torch.no_grad():
        g.gamma.zero_()
        assert torch.allclose(g(x), x)
        g.gamma.copy_(0.3 * torch.eye(4))
        ig.gamma.copy_(0.3 * torch.eye(4))
        y = g(x)
        assert torch.allclose(y, x / torch.sqrt(1 + 0.3 * x * x), atol=1e-6)
        assert torch.allclose(ig(x), x * torch.sqrt(1 + 0.3 * x * x), atol=1e-6)


def test_psnr_formula():
    """PSNR = 10 log10(1/MSE) for [0, 1] images."""
    x = torch.zeros(1, 3, 4, 4)
    assert psnr_db(x, x + 0.1).item() == pytest.approx(20.0, abs=1e-4)


def test_unknown_model():
    with pytest.raises(ValueError, match="expected one of adjscc, bourtsoulatze"):
        build_model("resnet", 16)
