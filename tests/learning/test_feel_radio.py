"""The FEEL radio path: the SumChannel protocol over sync's over-the-air sum on the in-process loopback air
(lab.experiments.feel_air, as `otalab feel --radio loopback` uses it)."""

from __future__ import annotations

import math

import pytest
import torch

from learning.feel.channel import SumChannel

pytest.importorskip("sync.procedure")


@pytest.fixture(scope="module")
def channel():
    from lab.experiments.feel_air import loopback_sum_channel
    return loopback_sum_channel(3, snr_db=25.0, seed=0, profile="none", power=50.0, channel_uses=200)


def test_radio_channel_superposes_with_the_reported_noise(channel):
    """y = sum_m x_m + w: the measured error power matches the channel's reported noise per real value within the
    chi-square spread of 200 values plus the estimate's own error (factor 2.5)."""
    assert isinstance(channel, SumChannel)
    gen = torch.Generator().manual_seed(0)
    x = 0.5 * torch.randn(3, 200, generator=gen)   # energy per device ≈ 50 = P_t
    rec = channel.transmit(x, channel.csi(0))
    err = float(((rec.y - x.sum(0)) ** 2).mean())
    assert math.isfinite(rec.noise_var) and 0.4 < err / rec.noise_var < 2.5
    assert err < 0.05 * float((x.sum(0) ** 2).mean())   # a 25 dB link: the sum arrives cleanly
    torch.testing.assert_close(rec.energy, (x.double() ** 2).sum(1).float())


def test_radio_channel_validates_shapes(channel):
    with pytest.raises(ValueError, match="n_devices=3"):
        channel.transmit(torch.zeros(2, 200), channel.csi(0))
