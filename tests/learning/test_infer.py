"""learning.infer: transform coding, the digital chain through phy.fec/phy.modulation, image-first, checkpoint checks,
and (with the shipped model and Fashion-MNIST) the Done-when claims of the Fig. 3 experiment."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from learning.infer import schemes
from learning.infer.data import DataNotFoundError, check_images, load
from learning.infer.schemes import CheckpointMismatch, InferenceModel

REPO = Path(__file__).resolve().parents[2]


def _fmnist():
    try:
        return load("fashion-mnist", "test")
    except DataNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A checkpoint trained for seconds (its accuracy does not matter here)."""
    try:
        load("fashion-mnist", "train")
    except DataNotFoundError as exc:
        pytest.skip(str(exc))
    from learning.infer.train import TrainConfig, train

    path = tmp_path_factory.mktemp("infer") / "tiny.pt"
    train(TrainConfig(out=str(path), epochs=1, jscc_steps=20, train_images=1000), log=lambda m: None)
    model = InferenceModel(path)
    model.path = path
    return model


def test_capacity_bits_formula():
    assert schemes.capacity_bits(10.0) == math.floor(128 * 0.5 * math.log2(11.0))
    assert schemes.capacity_bits(0.0) == 64


def test_bit_allocation_and_roundtrip(tiny):
    b = schemes.allocate_bits(np.array([4.0, 1.0, 0.25]), 5)
    assert b.tolist() == [3, 1, 1] or b.sum() == 5   # greedy on var * 4^-b: 4 -> 1 -> (1, 1) -> ...
    x, _ = _fmnist()
    f = tiny.features(x[:64])
    for bits in (16, 96, 400):
        packed, f_hat = schemes.quantize_features(tiny, f, bits)
        assert packed.shape[1] <= bits
        np.testing.assert_array_equal(schemes.dequantize_bits(tiny, packed, bits), f_hat)
    # more bits, less distortion
    errs = [np.mean((schemes.quantize_features(tiny, f, b)[1] - f) ** 2) for b in (16, 96, 400)]
    assert errs[0] > errs[1] > errs[2]


def test_digital_chain_is_error_free_at_high_snr_and_cliffs_below(tiny):
    x, _ = _fmnist()
    f = tiny.features(x[:32])
    rng = np.random.default_rng(0)
    f_hat, info = schemes.digital_chain(tiny, f, 30.0, rng)
    assert info["crc_ok"] == 1.0 and info["symbols"] <= 64
    np.testing.assert_array_equal(f_hat, schemes.quantize_features(tiny, f, info["bits"])[1])
    f_low, info_low = schemes.digital_chain(tiny, f, -5.0, rng)
    assert info_low["status"] == "nothing fits"
    np.testing.assert_allclose(f_low, np.broadcast_to(tiny.feat_mean, f.shape), rtol=1e-6)


def test_image_first_mmse(tiny):
    """At very high SNR image-first returns the 128-component PCA projection; at low SNR it shrinks to the mean."""
    x, _ = _fmnist()
    rng = np.random.default_rng(1)
    hi = schemes.image_first(tiny, x[:16], 60.0, rng).astype(np.float64) / 255
    v = x[:16].reshape(16, -1) / 255.0 - tiny.img_mean
    proj = (v @ tiny.img_basis @ tiny.img_basis.T + tiny.img_mean).reshape(16, 28, 28)
    assert np.max(np.abs(hi - np.clip(proj, 0, 1))) < 3 / 255
    lo = schemes.image_first(tiny, x[:16], -40.0, rng).astype(np.float64) / 255
    assert np.max(np.abs(lo - np.clip(tiny.img_mean.reshape(28, 28), 0, 1))) < 0.05


def test_bad_inputs(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"expected uint8 \[N, 28, 28\]"):
        check_images(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        tiny.decode(np.full((2, 128), np.nan), 10.0)
    with pytest.raises(ValueError, match=r"expected \[B, 128\]"):
        tiny.decode(np.zeros((2, 96)), 10.0)
    with pytest.raises(CheckpointMismatch, match="otalab-infer-v1"):
        InferenceModel(REPO / "lab" / "assets" / "jscc_adjscc_r6.pt")   # a DeepJSCC checkpoint, not ours
    from learning.safeio import read_checkpoint_file, write_checkpoint

    header, ck = read_checkpoint_file(tiny.path, "otalab-infer-v1")
    ck["task"] = "retrieval-of-faces"
    write_checkpoint(tmp_path / "other.pt", "otalab-infer-v1", ck, header["config"])
    with pytest.raises(CheckpointMismatch, match="task 'retrieval-of-faces'"):
        InferenceModel(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatch, match="expected an otalab checkpoint"):
        InferenceModel(tmp_path / "junk.pt")
    blob = bytearray(tiny.path.read_bytes())
    blob[len(blob) // 2] ^= 1
    (tmp_path / "flipped.pt").write_bytes(bytes(blob))
    with pytest.raises(CheckpointMismatch, match="SHA-256"):
        InferenceModel(tmp_path / "flipped.pt")
    with pytest.raises(ValueError, match="scheme"):
        schemes.predict(tiny, "telepathy", np.zeros((1, 28, 28), np.uint8), 0.0, np.random.default_rng(0))


@pytest.mark.parametrize("name", ["infer_fmnist_cls.pt", "infer_fmnist_ret.pt"])
def test_shipped_model_fig3_claims(name):
    """On the docs' 2.5 dB grid: the analog JSCC is within 2 points of noiseless (accuracy / retrieval top-1) from an
    SNR at least 5 dB below the one from which the real digital chain is; no cliff — no 2.5 dB step costs the analog
    JSCC more than a quarter of the noiseless metric, while the digital chain loses more than half in one step;
    image-first is evaluated too."""
    from lab.experiments.infer import evaluate, summarize

    path = REPO / "lab" / "assets" / name
    if not path.exists():
        pytest.skip(f"{path} missing")
    x, y = _fmnist()
    model = InferenceModel(path, expect_task=None)
    assert path.stat().st_size < 2_000_000
    n = 600 if model.task == "classification" else 1000
    snrs = [-5.0 + 2.5 * i for i in range(11)]
    rec = evaluate(model, x[:n], y[:n], snrs, ("noiseless", "analog-jscc", "digital-chain", "image-first"))
    s = summarize(rec)
    ref = s["noiseless"]
    assert ref > (0.85 if model.task == "classification" else 0.8)
    assert s["analog_advantage_db"] >= 5.0
    assert s["analog-jscc"]["max_step_drop"] < 0.25 * ref
    assert s["digital-chain"]["max_step_drop"] > 0.5 * ref
    assert {r["scheme"] for r in rec} >= {"image-first"}


def test_encoder_power_and_awgn_variance(tiny):
    """Encoder output has mean z^2 = 1 per row (unit power per real channel use), and awgn() adds variance
    10^(-SNR/10) per real value, so SNR per real channel use is as stated."""
    from learning.infer.models import awgn

    x, _ = _fmnist()
    z = tiny.encode(tiny.features(x[:256]), 5.0)
    np.testing.assert_allclose((z.astype(np.float64) ** 2).mean(1), 1.0, rtol=1e-5)
    zt = torch.zeros(4000, 128)
    n = awgn(zt, 7.0, torch.Generator().manual_seed(0)).numpy().astype(np.float64)
    assert n.var() == pytest.approx(10 ** -0.7, rel=0.01)
