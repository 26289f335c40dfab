"""DeepJSCC training: resuming after a crash gives bit-identical weights; the CLI trains and writes checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from learning.jscc.checkpoint import load_checkpoint, read_checkpoint
from learning.jscc.train import TrainConfig, learning_rate, train
from tests.learning.test_jscc_data_ckpt import make_fake_cifar


def _cfg(tmp_path, out, **kw):
    base = dict(out_dir=str(tmp_path / out), model="adjscc", filters=(4, 8, 8, 8), steps=8, batch_size=8,
                data_dir=str(tmp_path), val_images=8, eval_every=4, ckpt_every=3, progress=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


class Crash(RuntimeError):
    pass


def test_resume_after_crash_is_identical(tmp_path):
    """Run A trains 8 steps straight; run B crashes after step 5 (last checkpoint at step 3) and resumes: the final
    weights, Adam state and validation log agree exactly (batch order, SNRs and noise are checkpointed)."""
    make_fake_cifar(tmp_path, "npz", n_train=72)
    quiet = lambda msg: None
    train(_cfg(tmp_path, "a"), log=quiet)

    def crash(step):
        if step == 5:
            raise Crash("simulated power cut")

    with pytest.raises(Crash):
        train(_cfg(tmp_path, "b"), on_step=crash, log=quiet)
    assert read_checkpoint(tmp_path / "b" / "last.pt")["train_state"]["step"] == 3
    summary = train(_cfg(tmp_path, "b"), log=quiet)
    assert summary["steps"] == 8
    a, _ = load_checkpoint(tmp_path / "a" / "last.pt")
    b, meta = load_checkpoint(tmp_path / "b" / "last.pt")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    log_a = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["val_psnr_db"] for r in log_a] == [r["val_psnr_db"] for r in log_b][-len(log_a):]
    assert meta["steps"] == 8 and meta["ratio"] == "1/6" and meta["model_name"] == "adjscc"


def test_learning_rate_is_cosine():
    """lr(t) = lr_min + (lr - lr_min)(1 + cos(pi t/T))/2: lr at 0, the midpoint at T/2, lr_min at T."""
    cfg = TrainConfig(out_dir="x", steps=100, lr=1e-3, lr_min=1e-5)
    assert learning_rate(cfg, 0) == pytest.approx(1e-3)
    assert learning_rate(cfg, 50) == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert learning_rate(cfg, 100) == pytest.approx(1e-5)


def test_cli_train_and_bad_resume(tmp_path, capsys):
    """`otalab jscc train` writes best.pt with the training budget; resuming with another ratio is a clear error."""
    from lab.cli import main

    make_fake_cifar(tmp_path, "torchvision", n_train=40)
    out = tmp_path / "run"
    args = ["jscc", "train", "--out", str(out), "--model", "bourtsoulatze", "--filters", "4,8,8,8",
            "--snr-db", "10", "--steps", "4", "--batch-size", "8", "--data-dir", str(tmp_path), "--val-images", "8",
            "--eval-every", "2", "--no-progress"]
    assert main(args) == 0
    model, meta = load_checkpoint(out / "best.pt", expect_ratio="1/6")
    assert meta["snr_range_db"] == [10.0, 10.0] and meta["steps"] in (2, 4) and meta["images_seen"] > 0
    assert main(args[:-1] + ["--ratio", "1/12", "--steps", "6", "--no-progress"]) == 2
    assert "cannot resume" in capsys.readouterr().err
    assert main(["jscc", "train", "--out", str(out / "x"), "--data-dir", str(tmp_path / "nowhere"),
                 "--no-progress"]) == 2
    assert "no cifar10.npz" in capsys.readouterr().err


def test_warm_start_copies_the_trunk_and_slices_the_bottleneck():
    """A 1/12 model initialised from a 1/6 one: every trunk tensor equal, the encoder's last convolution and the
    decoder's first keep the source's first c = 8 latent channels; a larger c or other filters are refused."""
    from learning.jscc.models import build_model
    from learning.jscc.train import warm_start

    torch.manual_seed(0)
    src = build_model("adjscc", 16, (4, 8, 8, 8))
    dst = build_model("adjscc", 8, (4, 8, 8, 8))
    report = warm_start(dst, src)
    assert {k for k, v in report.items() if v == "sliced"} == {"enc_out.weight", "enc_out.bias", "dec_convs.0.weight"}
    s, d = src.state_dict(), dst.state_dict()
    for k in d:
        if report[k] == "copied":
            assert torch.equal(d[k], s[k]), k
    assert torch.equal(d["enc_out.weight"], s["enc_out.weight"][:8])
    assert torch.equal(d["dec_convs.0.weight"], s["dec_convs.0.weight"][:8])
    with pytest.raises(ValueError, match="enc_out"):
        warm_start(build_model("adjscc", 32, (4, 8, 8, 8)), src)
    with pytest.raises(ValueError, match="shape"):
        warm_start(build_model("adjscc", 8, (4, 8, 8, 16)), src)


def test_train_init_from_another_ratio(tmp_path):
    """--init-from a 1/6 run starts a 1/12 run from its weights (its trunk weights within one Adam step of the source), and a
    checkpoint of another architecture is refused with a message naming --init-from."""
    from learning.jscc.checkpoint import CheckpointError

    make_fake_cifar(tmp_path, "npz", n_train=72)
    quiet = lambda msg: None
    train(_cfg(tmp_path, "src", steps=4), log=quiet)
    out = train(_cfg(tmp_path, "dst", ratio="1/12", steps=1, init_from=str(tmp_path / "src" / "best.pt")), log=quiet)
    assert out["steps"] == 1
    dst, meta = load_checkpoint(tmp_path / "dst" / "last.pt", expect_ratio="1/12")
    src, _ = load_checkpoint(tmp_path / "src" / "best.pt")
    assert meta["config"]["init_from"].endswith("best.pt")
    # one Adam step at lr 1e-3 moves a weight by at most ~1e-3
    assert torch.allclose(dst.state_dict()["enc_convs.0.weight"], src.state_dict()["enc_convs.0.weight"], atol=2e-3)
    with pytest.raises(CheckpointError, match="--init-from"):
        train(_cfg(tmp_path, "bad", model="bourtsoulatze", ratio="1/12", init_from=str(tmp_path / "src" / "best.pt")),
              log=quiet)
