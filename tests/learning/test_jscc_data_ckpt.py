"""DeepJSCC data loading (npz and torchvision layouts, lookup order, clear errors) and checkpoints (atomic save,
weights_only load, bad files)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from learning.jscc import data as jdata
from learning.jscc.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from learning.jscc.models import build_model


def make_fake_cifar(root, layout: str, n_train=30, n_test=10, seed=0):
    """Write a tiny CIFAR-10 in ``layout`` ('npz' or 'torchvision'); returns (x_train, x_test) uint8 [N,32,32,3]."""
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    if layout == "npz":
        np.savez(root / "cifar10.npz", x_train=x_train, x_test=x_test)
    else:
        d = root / "cifar-10-batches-py"
        d.mkdir()
        chunks = np.array_split(x_train, 5)
        for i, chunk in enumerate(chunks, 1):
            with open(d / f"data_batch_{i}", "wb") as fh:
                pickle.dump({b"data": chunk.transpose(0, 3, 1, 2).reshape(len(chunk), -1),
                             b"labels": [0] * len(chunk)}, fh)
        with open(d / "test_batch", "wb") as fh:
            pickle.dump({b"data": x_test.transpose(0, 3, 1, 2).reshape(len(x_test), -1),
                         b"labels": [0] * len(x_test)}, fh)
    return x_train, x_test


@pytest.mark.parametrize("layout", ["npz", "torchvision"])
def test_both_layouts_load_the_same_pixels(tmp_path, layout):
    x_train, x_test = make_fake_cifar(tmp_path, layout)
    assert jdata.find_data_dir(tmp_path) == (tmp_path, layout)
    np.testing.assert_array_equal(jdata.load_cifar10("test", tmp_path), x_test)
    np.testing.assert_array_equal(jdata.load_cifar10("train", tmp_path, 3, 7), x_train[3:7])


def test_lookup_order_env_var_and_clear_message(tmp_path, monkeypatch):
    make_fake_cifar(tmp_path, "npz")
    monkeypatch.setenv(jdata.ENV_VAR, str(tmp_path))
    assert jdata.find_data_dir(None)[0] == tmp_path
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(jdata.DataNotFoundError, match="--data-dir .*empty: no cifar10.npz"):
        jdata.load_cifar10("test", empty)
    monkeypatch.setenv(jdata.ENV_VAR, str(empty))
    monkeypatch.setattr(jdata, "candidate_dirs", lambda d=None: [empty])
    with pytest.raises(jdata.DataNotFoundError, match="Pass --data-dir DIR or set OTALAB_DATA_DIR"):
        jdata.find_data_dir(None)


def test_cifar10_slice(cifar_data, cifar_standin_dir):
    """The offline CIFAR-10 (JPEG-decoded), where present, loads as uint8 [N, 32, 32, 3]; test mean is
    125.99/123.69/114.85 per README (checked loosely on a 1000-image slice). The conftest stand-in that replaces it
    in a fresh clone is checked everywhere: a slice past its end is clipped like any numpy slice, the pixels are the
    stand-in's (deterministic), there are enough for the 100-image DeepJSCC test, and every image is at least as
    textured as 99 % of CIFAR-10's (the README's means are CIFAR-10's own and are checked only on it)."""
    if cifar_data.real:
        x = jdata.load_cifar10("test", cifar_data.dir, 0, 1000)
        assert x.shape == (1000, 32, 32, 3) and x.dtype == np.uint8
        assert np.allclose(x.reshape(-1, 3).mean(0), [126.0, 123.7, 114.9], atol=4.0)
    from tests.conftest import STANDIN_MIN_STD, make_cifar_standin

    standin = make_cifar_standin()
    x = jdata.load_cifar10("test", cifar_standin_dir, 0, 1000)
    assert x.dtype == np.uint8 and x.shape == standin.shape and 100 <= len(x) < 1000
    np.testing.assert_array_equal(x, standin)
    assert np.all(x.reshape(len(x), -1).std(axis=1) >= STANDIN_MIN_STD)
    np.testing.assert_array_equal(jdata.load_cifar10("test", cifar_standin_dir, 5, 9), standin[5:9])


def test_sample_photo_and_image_checks(tmp_path):
    photo = jdata.load_sample_photo("chelsea")
    assert photo.shape == (300, 448, 3) and photo.dtype == np.uint8
    t = jdata.to_tensor(photo)
    assert t.shape == (1, 3, 300, 448) and float(t.max()) <= 1.0
    np.testing.assert_array_equal(jdata.to_uint8(t)[0], photo)
    with pytest.raises(ValueError, match="expected \\[N, H, W, 3\\]"):
        jdata.check_images_uint8(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="multiples of 4"):
        jdata.check_images_uint8(np.zeros((1, 30, 32, 3), np.uint8))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        jdata.load_image_file(bad)


def _small_model(seed=0, c=16):
    torch.manual_seed(seed)
    return build_model("adjscc", c, (4, 8, 8, 8))


def test_checkpoint_roundtrip_is_exact_and_atomic(tmp_path):
    model = _small_model()
    path = save_checkpoint(tmp_path / "m.pt", model, {"steps": 3, "command": "otalab jscc train ..."})
    assert not list(tmp_path.glob("*.tmp"))
    loaded, meta = load_checkpoint(path, expect_ratio="1/6", expect_model="adjscc")
    assert meta["ratio"] == "1/6" and meta["steps"] == 3
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def test_bad_checkpoints_give_clear_errors(tmp_path):
    model = _small_model()
    good = save_checkpoint(tmp_path / "good.pt", model)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="file not found"):
        read_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="k/n = 1/6 .*expected 1/12"):
        load_checkpoint(good, expect_ratio="1/12")
    with pytest.raises(CheckpointError, match="expected 'bourtsoulatze'"):
        load_checkpoint(good, expect_model="bourtsoulatze")
    # a bare torch file (no content hash) is refused before it is unpickled
    evil = tmp_path / "evil.pt"
    torch.save({"format": "otalab-jscc/1", "obj": np.random.default_rng(0)}, evil)
    with pytest.raises(CheckpointError, match="without otalab's content hash"):
        read_checkpoint(evil)
    # an arbitrary pickled object inside a correctly hashed container is refused by weights_only=True
    from learning.safeio import write_checkpoint
    write_checkpoint(evil, "otalab-jscc/1", {"format": "otalab-jscc/1", "obj": np.random.default_rng(0)})
    with pytest.raises(CheckpointError, match="weights_only"):
        read_checkpoint(evil)
    other = tmp_path / "other.pt"
    write_checkpoint(other, "otalab-jscc/1", {"weights": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="format None"):
        read_checkpoint(other)
    nan_model = _small_model()
    with torch.no_grad():
        next(nan_model.parameters()).fill_(float("nan"))
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(save_checkpoint(tmp_path / "nan.pt", nan_model))
