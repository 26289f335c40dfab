"""`otalab stragglers` and `otalab feel-privacy`: JSON with the documented keys and a PNG, bad input exits 2."""

from __future__ import annotations

import json

import pytest

from lab.cli import main


def test_stragglers_cli_writes_results_per_scheme(tmp_path):
    out = tmp_path / "st"
    assert main(["stragglers", "--scheme", "uncoded,gradient-coding-fr", "--iterations", "4", "--shift-ms", "0.5",
                 "--mean-ms", "0.5", "--workers", "4", "--out", str(out), "--no-progress",
                 "--json", str(tmp_path / "r.json")]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert [r["scheme"] for r in res["results"]] == ["uncoded", "gradient-coding-fr"]
    for r in res["results"]:
        assert {"scheme", "mean_completion_s", "theory_completion_s", "time_to_target_s", "final_loss"} <= set(r)
        assert r["final_loss"] == pytest.approx(res["target_loss"], rel=1e-9)   # both decode the exact gradient
    assert (out / "stragglers.png").stat().st_size > 0
    assert main(["stragglers", "--kill", "x"]) == 2
    assert main(["stragglers", "--scheme", "nope", "--iterations", "1"]) == 2


def test_stragglers_cli_logistic_problem(tmp_path):
    """--problem logistic: the default schemes leave out the Lagrange codes (recorded in ``skipped``), the exact
    schemes end at the same loss; naming lcc for it exits 2 with the reason."""
    assert main(["stragglers", "--problem", "logistic", "--scheme", "uncoded,multi-message", "--iterations", "3",
                 "--shift-ms", "0.5", "--mean-ms", "0.5", "--workers", "4", "--rows", "400", "--features", "5",
                 "--out", str(tmp_path / "lg"), "--no-progress", "--json", str(tmp_path / "r.json")]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["problem"]["name"] == "logistic" and res["problem"]["kind"] == "logistic"
    assert res["results"][1]["final_loss"] == pytest.approx(res["results"][0]["final_loss"], rel=1e-9)
    assert main(["stragglers", "--problem", "logistic", "--scheme", "lcc", "--iterations", "1", "--workers", "4",
                 "--rows", "400", "--features", "5", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert main(["stragglers", "--problem", "nope", "--iterations", "1"]) == 2
    from lab.experiments.stragglers import run_stragglers
    with pytest.raises(ValueError, match="problem 'nope'"):
        run_stragglers(problem="nope")


def test_feel_privacy_cli(tmp_path, shared_data, monkeypatch):
    if not (shared_data / "mnist.npz").is_file():
        pytest.skip("mnist.npz not in the shared data directory")
    monkeypatch.setenv("OTALAB_DATA_DIR", str(shared_data))
    out = tmp_path / "fp"
    assert main(["feel-privacy", "--epsilon", "50,none", "--scheme", "analog", "--rounds", "2", "--devices", "3",
                 "--samples-per-device", "50", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "feel_privacy.json").read_text())
    assert [r["target_epsilon"] for r in res["results"]] == [50.0, None]
    assert res["results"][0]["epsilon"] == pytest.approx(50.0, rel=1e-4)
    assert (out / "feel_privacy.png").stat().st_size > 0
    assert main(["feel-privacy", "--epsilon", "abc"]) == 2
