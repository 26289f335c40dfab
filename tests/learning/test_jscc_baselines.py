"""Separation bound and digital-chain source side: capacity formula, byte accounting, budget fitting, MCS choice."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learning.jscc import baselines as bl
from learning.jscc import digital as dg


@pytest.fixture(scope="module")
def image():
    """A smooth 32×32 test image (deterministic)."""
    yy, xx = np.mgrid[0:32, 0:32]
    img = np.stack([128 + 100 * np.sin(xx / 5), 128 + 100 * np.cos(yy / 7), (xx * yy) % 256], -1)
    return img.astype(np.uint8)


def test_capacity_formula():
    """C = k·log2(1 + SNR): 512 uses at 0 dB carry 512 bits, at 10 dB 512·log2(11)."""
    assert bl.capacity_bits(512, 0.0) == pytest.approx(512.0)
    assert bl.capacity_bits(512, 10.0) == pytest.approx(512 * math.log2(11))


@pytest.mark.parametrize("name", ["webp", "jpeg", "jpeg2000", "heif"])
def test_payload_is_part_of_the_file_and_decodes(image, name):
    codec = bl.CODECS[name]
    q = codec.qualities[len(codec.qualities) // 2]
    data = codec.encode(image, q)
    assert 0 < codec.payload(data) < len(data)
    assert codec.decode(data).shape == image.shape


def test_best_fit_respects_budget_and_prefers_quality(image):
    table = bl.rate_table(image, ["webp", "jpeg"])
    for budget in (400.0, 1200.0, 4000.0):
        for acc in ("payload", "full"):
            p = bl.best_fit(table, budget, acc)
            if p is None:
                continue
            size = p.payload_bytes if acc == "payload" else p.full_bytes
            assert 8 * size <= budget
            fits = [t for t in table if 8 * (t.payload_bytes if acc == "payload" else t.full_bytes) <= budget]
            assert p.psnr_db == max(t.psnr_db for t in fits)
    recs = bl.separation_bound(image[None], [0.0, 10.0, 20.0], 1 / 6, ["webp", "jpeg"])
    for acc in ("payload", "full"):
        ps = [r["psnr_db"] for r in recs if r["method"] == f"separation-{acc}"]
        assert ps == sorted(ps)  # a bigger budget never hurts
    pay = {r["snr_db"]: r["psnr_db"] for r in recs if r["method"] == "separation-payload"}
    full = {r["snr_db"]: r["psnr_db"] for r in recs if r["method"] == "separation-full"}
    assert all(pay[s] >= full[s] for s in pay)  # headers for free can only help


def test_mcs_choice_and_payload_budget():
    """Higher SNR never picks a lower spectral efficiency; the payload budget matches the coded-bit count."""
    from phy.fec import DigitalCodec

    eff = []
    for snr in range(-2, 25):
        m, r = dg.choose_mcs(snr)
        eff.append({"bpsk": 1, "qpsk": 2, "16qam": 4, "64qam": 6}[m] * r)
    assert eff == sorted(eff)
    p = dg.max_payload_bytes(512, "qpsk", 0.5)
    codec = DigitalCodec("qpsk", 0.5)
    assert math.ceil(codec.n_coded_bits(p) / 2) <= 512 < math.ceil(codec.n_coded_bits(p + 1) / 2)


def test_digital_payload_roundtrip_and_garbage(image):
    data, info = dg.encode_for_budget(image, 400)
    assert data is not None and len(data) <= 400 and info["bytes"] == len(data)
    rec = dg.decode_payload(data, image.shape)
    assert rec.shape == image.shape
    assert np.array_equal(dg.decode_payload(b"\x01garbage", image.shape),
                          np.broadcast_to(bl.MEAN_RGB, image.shape))
    assert dg.encode_for_budget(image, 10)[0] is None
