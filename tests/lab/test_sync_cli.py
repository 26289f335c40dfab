"""`otalab sync` end to end: JSON keys, plot, and clear errors."""

from __future__ import annotations

import json

from lab.cli import main

KEYS = ("timing_rmse_samples", "timing_crlb_samples", "within_cp_fraction", "cfo_residual_rms_hz", "nmse_db",
        "nmse_genie_db", "overhead_fraction", "excluded_devices")


def test_sync_cli_writes_the_json_keys_and_plots(tmp_path):
    out = tmp_path / "sync.json"
    rc = main(["sync", "--devices", "3", "--trials", "1", "--rounds", "1", "--json", str(out),
               "--out", str(tmp_path / "plots"), "--seed", "5"])
    assert rc == 0
    res = json.loads(out.read_text())
    for key in KEYS:
        assert key in res, key
    assert res["within_cp_fraction"] == 1.0
    assert 0 < res["overhead_fraction"] < 1
    assert res["git_revision"] is None or isinstance(res["git_revision"], str)
    assert (tmp_path / "plots" / "sync_timing_cdf.png").stat().st_size > 1000


def test_sync_cli_rejects_a_hardware_config_and_bad_sweeps(tmp_path):
    cfg = tmp_path / "usrp.yaml"
    cfg.write_text("radio:\n  driver: usrp\n")
    assert main(["sync", "--config", str(cfg), "--trials", "1"]) == 2
    assert main(["sync", "--sweep", "nonsense", "--trials", "1", "--devices", "2", "--rounds", "1",
                 "--out", str(tmp_path)]) == 2
