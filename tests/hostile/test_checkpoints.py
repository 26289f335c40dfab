"""Crafted, truncated, random, empty, plain-pickle and bit-flipped checkpoints and CIFAR batches: refused with a message
naming the file, never unpickled into code."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from learning.jscc.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from learning.jscc.models import build_model
from learning.safeio import read_checkpoint_file, restricted_pickle_load, write_checkpoint
from tests.hostile.conftest import MarkerPayload, evil_pickle_bytes


@pytest.fixture
def good(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "good.pt", build_model("adjscc", 8, (4, 4, 4, 4)), {"steps": 1})


def _variants(good, marker, tmp):
    blob = good.read_bytes()
    out = {"empty": b"", "truncated": blob[: len(blob) // 2], "random": np.random.default_rng(0).bytes(4096),
           "plain_pickle": evil_pickle_bytes(marker), "trailer_only": blob[-73:], "extended": blob + b"x"}
    bare = tmp / "bare.pt"
    torch.save({"format": "otalab-jscc/1", "x": MarkerPayload(marker)}, bare)  # torch zip holding the payload
    out["bare_torch_evil"] = bare.read_bytes()
    hashed = tmp / "hashed.pt"                                               # valid hash around an evil payload
    write_checkpoint(hashed, "otalab-jscc/1", {"format": "otalab-jscc/1", "x": MarkerPayload(marker)})
    out["hashed_evil"] = hashed.read_bytes()
    return out


def test_every_bad_checkpoint_is_refused_without_running_code(good, marker, tmp_path):
    for name, blob in _variants(good, marker, tmp_path).items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(blob)
        with pytest.raises(CheckpointError) as exc:
            load_checkpoint(path)
        assert str(path) in str(exc.value) and "expected" in str(exc.value), name


def test_one_flipped_byte_anywhere_is_refused(good, tmp_path):
    """300 byte positions spread over the file (magic, header, payload, trailer), flipped: each is refused."""
    blob = good.read_bytes()
    path = tmp_path / "flipped.pt"
    for i in sorted(set(np.linspace(0, len(blob) - 1, 300).astype(int)) | {0, 20, len(blob) - 2}):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises(CheckpointError, match=str(path)):
            load_checkpoint(path)
    path.write_bytes(blob)                                # and the untouched file still loads
    load_checkpoint(path)


def test_header_carries_the_config(good):
    header, payload = read_checkpoint_file(good, "otalab-jscc/1")
    assert header["config"]["model"] == {"name": "adjscc", "c": 8, "filters": [4, 4, 4, 4]}
    assert header["config"]["meta"]["steps"] == 1 and header["payload_bytes"] > 0
    assert set(payload) >= {"format", "model", "meta", "state_dict"}


def test_crafted_model_config_cannot_allocate(tmp_path):
    """A correctly hashed checkpoint asking for a 10^6-channel model is refused before building it."""
    path = write_checkpoint(tmp_path / "huge.pt", "otalab-jscc/1", {
        "format": "otalab-jscc/1", "model": {"name": "adjscc", "c": 10**6, "filters": [10**6] * 4}, "meta": {},
        "state_dict": {}})
    with pytest.raises(CheckpointError, match="expected a name, c in"):
        load_checkpoint(path)


def test_shipped_checkpoint_weights_unchanged():
    """lab/assets/jscc_adjscc_r6.pt, re-saved in the hashed format, holds the same weights bit for bit as the
    bare-torch original (SHA-256 over sorted names + raw tensor bytes, computed from the original file)."""
    import hashlib
    from pathlib import Path

    import lab
    model, meta = load_checkpoint(Path(lab.__file__).parent / "assets" / "jscc_adjscc_r6.pt")
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.contiguous().numpy().tobytes())
    assert h.hexdigest() == "5a74d03e64a87600cf1d4e3b5eef023791e937080277ed9a40e5bf2db5d7e135"
    assert meta["ratio"] == "1/6"


def test_cifar_batch_pickle_cannot_run_code(tmp_path, marker):
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(evil_pickle_bytes(marker))
    with pytest.raises(ValueError, match="not allowed"):
        restricted_pickle_load(evil)
    ok = tmp_path / "ok"                                   # the real format still loads
    ok.write_bytes(pickle.dumps({b"data": np.arange(12, dtype=np.uint8), b"labels": [1, 2]}, protocol=2))
    batch = restricted_pickle_load(ok)
    assert batch[b"labels"] == [1, 2] and batch[b"data"].tolist() == list(range(12))


def test_cifar_loader_refuses_crafted_batch(tmp_path, marker):
    from learning.jscc.data import TV_DIR, load_cifar10
    d = tmp_path / TV_DIR
    d.mkdir()
    (d / "test_batch").write_bytes(evil_pickle_bytes(marker))
    with pytest.raises(ValueError, match="test_batch"):
        load_cifar10("test", tmp_path)


def test_jscc_send_cli_refuses_flipped_checkpoint(good, tmp_path, cli):
    bad = bytearray(good.read_bytes())
    bad[len(bad) // 2] ^= 0x40
    path = tmp_path / "flip.pt"
    path.write_bytes(bytes(bad))
    img = tmp_path / "x.png"
    from PIL import Image
    Image.new("RGB", (8, 8)).save(img)
    cli(["jscc", "send", "--symbol-level", "--checkpoint", path, "--images", img, "--out", tmp_path / "o"],
        str(path), "SHA-256", "expected")
