"""`otalab ht`: the symbol-level sweep writes JSON + PNG; over the in-process air (hw_configs/loopback.yaml) the
joint scheme's type-II error matches the symbol-level simulation at the measured SNR."""

from __future__ import annotations

import json
import math
from pathlib import Path

from lab.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_sweep_json_and_plot(tmp_path):
    out = tmp_path / "ht.json"
    rc = main(["ht", "--snr-db", "0,10", "--n", "64,512", "--trials", "400", "--out", str(tmp_path),
               "--json", str(out), "--no-progress"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert (tmp_path / "ht_exponents.png").stat().st_size > 1000
    assert {(r["scheme"], r["snr_db"], r["n"]) for r in res["results"]} == {
        (s, snr, n) for s in ("joint", "separation-sq") for snr in (0.0, 10.0) for n in (64, 512)}
    for row in res["theory"]:   # TAI, one channel use per sample: uncoded reaches the optimal separation exponent
        assert math.isclose(row["theta_joint"], row["theta_separation_opt"], rel_tol=1e-12)
        assert row["theta_separation_sq"] < row["theta_joint"]
    for r in res["results"]:
        assert 0 < r["exponent"] < r["theory"] * 1.05
        assert abs(r["type1"] - 0.1) < 0.01


def test_over_the_in_process_air_matches_symbol_level(tmp_path):
    out = tmp_path / "air.json"
    rc = main(["ht", "--config", str(REPO / "hw_configs" / "loopback.yaml"), "--snr-db", "5", "--air-n", "8",
               "--air-frames", "400", "--seed", "2", "--json", str(out), "--no-progress"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["config"]["air_snr_db"] == 5.0
    assert res["frames_dropped"] == 0 and res["link_stats"]["received"] == 800
    assert abs(res["measured_snr_db"] - 5.0) < 1.0
    air, sim = res["air"], res["symbol_level_at_measured_snr"]
    # plain Monte-Carlo type-II error of 400 H1 frames vs the simulation at the same measured SNR (4 sigma)
    se = math.sqrt(sim["beta_mc"] * (1 - sim["beta_mc"]) / air["trials_h1"])
    assert 0.02 < sim["beta_mc"] < 0.5
    assert abs(air["beta_mc"] - sim["beta_mc"]) < 4 * se
    assert abs(air["exponent"] / sim["exponent"] - 1) < 0.15


def test_bad_input_exits_2(tmp_path, capsys):
    assert main(["ht", "--n", "1.5", "--out", str(tmp_path)]) == 2
    assert main(["ht", "--eps", "1.5", "--n", "16", "--trials", "200", "--out", str(tmp_path)]) == 2
    assert "eps" in capsys.readouterr().err
    assert main(["ht", "--config", str(REPO / "hw_configs" / "loopback.yaml"), "--snr-db", "0,5"]) == 2
    assert "one SNR" in capsys.readouterr().err
    assert main(["ht", "--rho", "1.2", "--n", "16", "--trials", "200", "--out", str(tmp_path)]) == 2
