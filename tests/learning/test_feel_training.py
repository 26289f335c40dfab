"""FEEL rounds end to end on MNIST (small; Fashion-MNIST where MNIST is absent): bad devices, drop-outs,
checkpoint/resume, the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from learning.feel.runner import CHECKPOINT_KIND, FeelConfig, FeelExperiment, run_feel
from learning.safeio import read_checkpoint_file

SMALL = dict(devices=5, samples_per_device=100, rounds=4, lr=1e-2, channel_uses=1000)
#: accuracy the resumed A-DSGD run (SMALL, 6 rounds) must exceed: 3x chance (0.1 on both data sets). Measured after
#: round 6: MNIST 0.7285, Fashion-MNIST 0.6215
MIN_RESUME_ACCURACY = {"mnist": 0.3, "fashion-mnist": 0.3}


@pytest.fixture
def data_dir(feel_data):
    return feel_data.dir


@pytest.fixture
def small(feel_data):
    """SMALL on the data set the tests found (MNIST, else Fashion-MNIST)."""
    return {**SMALL, "dataset": feel_data.name}


@pytest.mark.parametrize("kind", ["nan", "explode"])
def test_bad_device_update_is_excluded_and_reported(data_dir, small, kind):
    """A NaN or exploding (x1e6) update from device 2 in round 1 is screened out and reported; the server applies the
    exact average of the other four (error-free scheme: NMSE vs their mean is the -300 dB floor) and keeps training."""
    exp = FeelExperiment(FeelConfig(scheme="ideal", faults=(f"1:2:{kind}",), **small), data_dir)
    exp.step()
    rec = exp.step()
    assert rec["devices"] == 4 and rec["applied"]
    assert [e["device"] for e in rec["excluded"]] == [2]
    assert ("non-finite" if kind == "nan" else "exploding") in rec["excluded"][0]["reason"]
    assert rec["nmse_db"] == -300.0
    assert torch.isfinite(exp.server.theta).all()
    assert exp.step()["devices"] == 5  # the device is back next round


def test_bad_update_never_reaches_the_air_in_adsgd(data_dir, small):
    """Over the air the server cannot see single updates: the device is told not to transmit, so the superposed
    signal stays finite and the round's estimate is finite."""
    exp = FeelExperiment(FeelConfig(scheme="analog", faults=("0:1:nan",), **small), data_dir)
    rec = exp.step()
    assert rec["devices"] == 4 and rec["applied"] and math.isfinite(rec["nmse_db"])


def test_device_dropping_out_mid_round_does_not_stop_the_round(data_dir, small):
    """Device 3 is scheduled but vanishes before transmitting: the round completes with 4 devices; A-DSGD's scale
    symbol only counts the devices on air, and the dropped device keeps its error accumulator for later."""
    exp = FeelExperiment(FeelConfig(scheme="analog", faults=("1:3:drop",), **small), data_dir)
    exp.step()
    before = exp.fleet.error.clone()
    rec = exp.step()
    assert rec["devices"] == 4 and rec["dropped"] == [3] and rec["applied"]
    assert torch.equal(exp.fleet.error[3], before[3])
    assert not torch.equal(exp.fleet.error[0], before[0])
    ideal = FeelExperiment(FeelConfig(scheme="ideal", faults=("0:3:drop",), **small), data_dir)
    assert ideal.step()["nmse_db"] == -300.0  # exact mean of the four that transmitted


def test_random_dropouts_with_everyone_gone_skip_the_update(data_dir, small):
    exp = FeelExperiment(FeelConfig(scheme="digital", dropout_prob=0.999, **small), data_dir)
    theta = exp.server.theta.detach().clone()
    rec = exp.step()
    assert rec["devices"] == 0 and not rec["applied"] and torch.equal(exp.server.theta.detach(), theta)


def test_interrupted_run_resumes_bit_identically(data_dir, small, feel_data, tmp_path):
    """Stop after round 3 (checkpoint), resume to round 6: theta, error accumulators and every record equal the
    uninterrupted run bit for bit (A-DSGD: AMP, channel noise and error feedback all involved)."""
    cfg = FeelConfig(scheme="analog", **{**small, "rounds": 6})
    full = run_feel(cfg, tmp_path / "full.json", tmp_path / "full.pt", data_dir=data_dir)
    run_feel(cfg, None, tmp_path / "part.pt", data_dir=data_dir, stop_after=3, checkpoint_every=2)
    state = read_checkpoint_file(tmp_path / "part.pt", CHECKPOINT_KIND)[1]
    assert state["server"]["round"] == 3
    resumed = run_feel(cfg, tmp_path / "resumed.json", tmp_path / "part.pt", data_dir=data_dir)
    assert resumed["rounds"] == full["rounds"]
    a, b = (read_checkpoint_file(tmp_path / n, CHECKPOINT_KIND)[1] for n in ("full.pt", "part.pt"))
    assert torch.equal(a["server"]["theta"], b["server"]["theta"]) and torch.equal(a["error"], b["error"])
    assert full["rounds"][-1]["accuracy"] > MIN_RESUME_ACCURACY[feel_data.name]  # it learned something
    with pytest.raises(ValueError, match="different configuration"):
        run_feel(FeelConfig(scheme="analog", **{**small, "power": 5.0}), None, tmp_path / "part.pt", data_dir=data_dir)


def test_cli_writes_json_png_and_rejects_unsupported_radio(data_dir, feel_data, tmp_path, capsys):
    """`otalab feel` writes per-run JSON with the documented keys and a PNG; unsupported --radio uses fail clearly."""
    from lab.cli import main
    assert main(["feel", "--radio", "nonsense"]) == 2     # (--radio zmq is wired now: tests/lab/test_feel_zmq.py)
    assert "--radio 'nonsense'" in capsys.readouterr().err
    assert main(["feel", "--scheme", "digital", "--radio", "loopback"]) == 2
    assert "superposed analog schemes" in capsys.readouterr().err
    rc = main(["feel", "--scheme", "ideal,digital", "--devices", "3", "--samples-per-device", "50", "--rounds", "2",
               "--power", "100", "--out", str(tmp_path), "--data-dir", str(data_dir), "--no-progress",
               "--dataset", feel_data.name])
    assert rc == 0
    res = json.loads((tmp_path / f"feel_{feel_data.name}_digital_iid_P100_M3.json").read_text())
    assert {"round", "accuracy", "loss", "nmse_db", "devices", "air_time_s"} <= set(res["rounds"][0])
    assert res["final_accuracy"] == res["rounds"][-1]["accuracy"] and len(res["rounds"]) == 2
    assert res["rounds"][0]["air_time_s"] == pytest.approx(3925 / 1e6)
    assert (tmp_path / f"feel_{feel_data.name}_accuracy.png").stat().st_size > 1000
