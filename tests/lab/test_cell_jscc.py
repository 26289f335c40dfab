"""The image side of ``otalab cell --task jscc`` (lab.experiments.cell_jscc) without radios: the device's latent is
the PS's reference latent, the link turns a data round's estimate back into a latent, and its SNR estimate is the
PS's noise variance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab.experiments.cell_jscc import CellLink, device_values, latent_to_values, load_images, load_model, \
    values_to_latent
from lab.experiments.cell_run import RoundRecord
from lab.experiments.jscc_air import SymbolLink, encode_latents, send_images


def _images(n=2):
    try:
        return load_images(0, n)
    except FileNotFoundError as exc:
        pytest.skip(f"no CIFAR-10 here: {exc}")


def test_values_and_latent_round_trip_and_odd_latents_are_refused():
    z = np.arange(8, dtype=np.float32)
    u = latent_to_values(z)
    assert u.dtype == np.complex64 and np.allclose(u, [0 + 1j, 2 + 3j, 4 + 5j, 6 + 7j])
    assert np.array_equal(values_to_latent(u), z)
    with pytest.raises(ValueError, match="even"):
        latent_to_values(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="first >= 0"):
        load_images(-1, 1)


def test_device_values_are_the_latent_the_ps_encodes_with_unit_power_per_complex_value():
    imgs = _images(2)
    model, meta = load_model(None)
    z, _ = encode_latents(model, imgs, 20.0, meta.get("snr_range_db"))
    u = device_values({"image": 1, "encoder_snr_db": 20.0, "n": z.shape[1] // 2})
    assert np.allclose(u, latent_to_values(z[1]), atol=1e-5)
    # the encoder's power normalisation: unit mean power per complex pair (what the cell's data burst expects)
    assert math.isclose(float(np.mean(np.abs(u) ** 2)), 1.0, rel_tol=1e-3)
    with pytest.raises(ValueError, match="expects n=7"):
        device_values({"image": 0, "encoder_snr_db": 20.0, "n": 7})


class _FakeRun:
    """A CellRun stand-in whose data round returns the device's values plus complex Gaussian noise of variance
    ``noise_var`` (what the PS's estimate is after its normalisation by alpha), or no burst at all."""

    def __init__(self, noise_var, send=True):
        self.noise_var, self.send, self.live, self.calls = noise_var, send, ["dev0"], []
        self.rng = np.random.default_rng(0)

    def data_round(self, values, *, seed=None):
        self.calls.append(values)
        u = device_values(values)
        w = (self.rng.standard_normal(u.size) + 1j * self.rng.standard_normal(u.size)) * math.sqrt(self.noise_var / 2)
        est = (u + w).astype(np.complex64) if self.send else np.full(u.size, np.nan, np.complex64)
        return RoundRecord(round=len(self.calls), slot=0, active=[0] if self.send else [], estimate=est,
                           noise_var=self.noise_var, alpha=1.0, stats={"dev0": {"sent": self.send}}, values={},
                           control_s=0.0, wall_s=0.0)


def test_cell_link_decodes_like_a_symbol_level_link_at_the_same_snr():
    """Over an AWGN stand-in of noise variance N per complex value: the link's SNR estimate is 10·log10(1/N), the
    measured SNR (against the PS's reference latent) agrees within 0.5 dB (1024 reals: the estimate's spread is
    ~0.3 dB), and the decoded PSNR is within 1 dB of the symbol-level link's at that SNR."""
    imgs = _images(2)
    model, meta = load_model(None)
    snr = 15.0
    link = CellLink(_FakeRun(10 ** (-snr / 10)), {"encoder_snr_db": snr}, first=0)
    recs = send_images(model, imgs, link, snr, snr_range_db=meta.get("snr_range_db"))
    assert [c["image"] for c in link.run.calls] == [0, 1] and link.images == [0, 1]
    assert link.stats == {"sent": 2, "received": 2, "lost": 0, "non_finite": 0}
    for r in recs:
        assert math.isclose(r["snr_est_db"], snr, abs_tol=1e-9)
        assert abs(r["snr_db"] - snr) < 0.5
    ref = send_images(model, imgs, SymbolLink(snr, seed=1), snr, snr_range_db=meta.get("snr_range_db"))
    assert abs(np.mean([r["psnr_db"] for r in recs]) - np.mean([r["psnr_db"] for r in ref])) < 1.0


def test_cell_link_reports_a_silent_device_as_lost_and_never_decodes_it():
    imgs = _images(1)
    model, meta = load_model(None)
    link = CellLink(_FakeRun(0.01, send=False), {"encoder_snr_db": 20.0})
    recs = send_images(model, imgs, link, 20.0, snr_range_db=meta.get("snr_range_db"))
    assert recs[0]["status"] == "lost" and recs[0]["psnr_db"] is None
    assert link.stats["lost"] == 1
