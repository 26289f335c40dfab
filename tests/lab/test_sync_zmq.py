"""`otalab sync --config hw_configs/zmq.yaml`: the sync experiment over ZeroMQ endpoints (lab.factory.build_cell(air="zmq")).

The broker runs the same ``Air.advance`` as the in-process air and its noise is random-access, so the reference is
exact: every metric of the trial over ZeroMQ equals the in-process trial with the same seed.
"""

from __future__ import annotations

import json
from pathlib import Path

from lab.cli import main

ZMQ_YAML = Path(__file__).resolve().parents[2] / "hw_configs" / "zmq.yaml"
METRICS = ("timing_rmse_samples", "timing_crlb_samples", "residual_timing_rms_samples", "within_cp_fraction",
           "cfo_residual_rms_hz", "nmse_db", "nmse_genie_db", "overhead_fraction", "air_time_fraction",
           "excluded_devices", "bursts")


def test_sync_over_zmq_equals_the_in_process_air(tmp_path):
    """3 devices, 1 trial, 1 round over an in-process broker: the same timing/CFO/NMSE/overhead as over loopback;
    the JSON records the driver."""
    common = ["sync", "--devices", "3", "--trials", "1", "--rounds", "1", "--seed", "3", "--out", str(tmp_path)]
    assert main([*common, "--config", str(ZMQ_YAML), "--json", str(tmp_path / "zmq.json")]) == 0
    assert main([*common, "--json", str(tmp_path / "loopback.json")]) == 0
    over_zmq = json.loads((tmp_path / "zmq.json").read_text())
    in_process = json.loads((tmp_path / "loopback.json").read_text())
    assert over_zmq["driver"] == "zmq" and in_process["driver"] == "loopback"
    assert over_zmq["bursts"] == 3 and over_zmq["within_cp_fraction"] == 1.0
    for key in METRICS:
        assert over_zmq[key] == in_process[key], key
