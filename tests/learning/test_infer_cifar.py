"""Remote classification of 32x32 RGB images (CIFAR-10's shape) at 128 real channel uses: the same pipeline as
Fashion-MNIST (one implementation) on a tiny synthetic CIFAR-shaped data set, so no test needs CIFAR-10 itself; the
shipped CIFAR-10 checkpoint's Fig. 3 claims run where CIFAR-10 is found offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from learning.infer import schemes
from learning.infer.data import DataNotFoundError, check_images, image_shape, load
from learning.infer.schemes import CheckpointMismatch, InferenceModel

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "lab" / "assets" / "infer_cifar10_cls.pt"


def _synthetic_cifar(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [n, 32, 32, 3] images whose class (0-9) sets a base colour and a stripe orientation, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    colours = np.random.default_rng(99).integers(40, 215, (10, 3))
    x = colours[y][:, None, None, :] + rng.normal(0, 20, (n, 32, 32, 3))
    stripes = np.sin(np.arange(32) * (0.3 + 0.1 * y[:, None]))[:, :, None, None] * 30
    x = x + np.where((y % 2 == 0)[:, None, None, None], stripes, stripes.transpose(0, 2, 1, 3))
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_rgb(tmp_path_factory):
    """A CIFAR-shaped checkpoint trained for seconds on synthetic data (``cifar10.npz`` in a temporary data dir)."""
    from learning.infer.train import TrainConfig, train

    d = tmp_path_factory.mktemp("rgb")
    xtr, ytr = _synthetic_cifar(512, 0)
    xte, yte = _synthetic_cifar(128, 1)
    np.savez(d / "cifar10.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    path = d / "tiny_rgb.pt"
    train(TrainConfig(out=str(path), dataset="cifar10", epochs=8, jscc_steps=200, batch_size=64,
                      data_dir=str(d)), log=lambda m: None)
    model = InferenceModel(path)
    model.path, model.data_dir = path, d
    return model


def test_shapes_and_every_scheme(tiny_rgb):
    x, y = load("cifar10", "test", tiny_rgb.data_dir)
    assert x.shape[1:] == image_shape("cifar10") == (32, 32, 3)
    f = tiny_rgb.features(x[:16])
    assert f.shape == (16, 64) and f.dtype == np.float32
    assert tiny_rgb.img_basis.shape == (3072, 128)
    rng = np.random.default_rng(0)
    for scheme in schemes.SCHEMES:
        pred, _ = schemes.predict(tiny_rgb, scheme, x[:16], 10.0, rng)
        assert pred.shape == (16,) and pred.dtype.kind == "i" and pred.min() >= 0 and pred.max() < 10
    img = schemes.image_first(tiny_rgb, x[:4], 60.0, rng)
    assert img.shape == (4, 32, 32, 3) and img.dtype == np.uint8


def test_learns_the_synthetic_classes(tiny_rgb):
    """The colour/stripe classes are easy: far above chance (10 %) noiselessly and through the analog JSCC at 10 dB."""
    from lab.experiments.infer import evaluate

    x, y = load("cifar10", "test", tiny_rgb.data_dir)
    rec = {r["scheme"]: r["accuracy"] for r in evaluate(tiny_rgb, x, y, [10.0], ("noiseless", "analog-jscc"))}
    assert rec["noiseless"] > 0.5 and rec["analog-jscc"] > 0.4, rec


def test_wrong_image_shape_is_refused(tiny_rgb):
    with pytest.raises(ValueError, match=r"expected uint8 \[N, 32, 32, 3\] \(RGB, HWC"):
        tiny_rgb.features(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"expected uint8 \[N, 32, 32, 3\]"):
        tiny_rgb.features(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[N, 28, 28\] \(grayscale"):
        check_images(np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="dataset = 'imagenet'"):
        image_shape("imagenet")


def test_checkpoint_for_an_unknown_dataset_is_refused(tiny_rgb, tmp_path):
    from learning.safeio import read_checkpoint_file, write_checkpoint

    header, ck = read_checkpoint_file(tiny_rgb.path, "otalab-infer-v1")
    ck["dataset"] = "imagenet"
    write_checkpoint(tmp_path / "other.pt", "otalab-infer-v1", ck, header["config"])
    with pytest.raises(CheckpointMismatch, match="imagenet"):
        InferenceModel(tmp_path / "other.pt")


def test_shipped_cifar10_model_fig3_claims():
    """On CIFAR-10 (where found offline), 2.5 dB grid, 1000 test images: the analog JSCC within 2 points of the
    noiseless accuracy from an SNR at least 5 dB below the real digital chain's; no 2.5 dB step costs the analog JSCC
    more than a quarter of the noiseless accuracy while the digital chain loses more than half in one step
    (the cliff); image-first evaluated too."""
    from lab.experiments.infer import evaluate, summarize

    if not SHIPPED.exists():
        pytest.skip(f"{SHIPPED} missing")
    try:
        x, y = load("cifar10", "test")
    except DataNotFoundError as exc:
        pytest.skip(str(exc))
    model = InferenceModel(SHIPPED)
    assert model.meta["dataset"] == "cifar10" and SHIPPED.stat().st_size < 2_500_000
    snrs = [-5.0 + 2.5 * i for i in range(11)]
    rec = evaluate(model, x[:1000], y[:1000], snrs, ("noiseless", "analog-jscc", "digital-chain", "image-first"))
    s = summarize(rec)
    assert s["noiseless"] > 0.55
    assert s["analog_advantage_db"] >= 5.0
    assert s["analog-jscc"]["max_step_drop"] < 0.25 * s["noiseless"]
    assert s["digital-chain"]["max_step_drop"] > 0.5 * s["noiseless"]
    assert {r["scheme"] for r in rec} >= {"image-first"}
