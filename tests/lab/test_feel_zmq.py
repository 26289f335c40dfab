"""FEEL A-DSGD over the ZeroMQ air (issue "Done when": a short run over the ZeroMQ air works in an integration test).

:class:`lab.factory.build_cell(air="zmq")` serves the :mod:`lab.experiments.sync_trials` cell (TDL-A, CFO/SCO, clock offsets, delays) from
a :class:`radio.servers.zmq_broker.ChannelBroker` on 127.0.0.1 port 0 to a PS endpoint and K device endpoints in this process;
:func:`lab.experiments.feel_air.zmq_sum_channel` runs the sync procedure over them. The broker computes the same
``Air.advance`` as the loopback hub and the air's noise is random-access, so the reference is exact: the run over
ZeroMQ must equal the in-process run with the same seed (calibration error, every received sum, accuracy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lab.experiments.feel_air import loopback_sum_channel
from lab.experiments.feel_air import zmq_sum_channel
from learning.feel.runner import FeelConfig, run_feel

DEVICES, ROUNDS, S = 4, 3, 7850 // 2


@pytest.mark.timeout(180)
def test_feel_over_zmq_equals_the_in_process_air(feel_data):
    """4 devices, 3 A-DSGD rounds over ZeroMQ endpoints: the same calibrated σ²_eff, noise estimates, received sums
    (history) and accuracies as over the in-process air (identical air, identical procedure); every sample of the
    cell crossed the sockets (broker rx counters), and the broker never stalled or lost an endpoint."""
    torch.set_num_threads(1)
    cfg = FeelConfig(scheme="analog", dataset=feel_data.name, devices=DEVICES, samples_per_device=200, power=200.0,
                     rounds=ROUNDS, seed=0)
    ref = loopback_sum_channel(DEVICES, snr_db=10.0, seed=0, power=cfg.power, channel_uses=S)
    zmq_channel = zmq_sum_channel(DEVICES, snr_db=10.0, seed=0, power=cfg.power, channel_uses=S)
    try:
        assert zmq_channel.cell.address.startswith("tcp://127.0.0.1:") and zmq_channel.cell.broker.port > 0
        assert zmq_channel.expected_active().all()
        assert zmq_channel.effective_noise_var == ref.effective_noise_var
        over_zmq = run_feel(cfg, data_dir=feel_data.dir, channel=zmq_channel)
        broker = zmq_channel.cell.broker
        stats, events, now = dict(broker.stats), broker.events, broker.now
    finally:
        zmq_channel.cell.close()
    in_process = run_feel(cfg, data_dir=feel_data.dir, channel=ref)

    assert zmq_channel.stats == ref.stats and zmq_channel.stats["rounds"] == ROUNDS
    for a, b in zip(zmq_channel.history, ref.history, strict=True):
        assert a["noise_var"] == b["noise_var"] and a["sent"] == b["sent"] and a["sent"]
    assert [r["accuracy"] for r in over_zmq["rounds"]] == [r["accuracy"] for r in in_process["rounds"]]
    assert np.isfinite(over_zmq["final_accuracy"])
    # the PS read every sample of the air's clock through the broker, the devices theirs too
    assert stats["rx_samples"] >= (DEVICES + 1) * now * 0.9 and stats["tx_samples"] > 0
    assert not [e for e in events if e.kind in ("stalled", "lost", "protocol_error", "overrun")]
    closed = zmq_channel.cell.broker.events           # after close(): every endpoint left, then the broker stopped
    assert sum(e.kind == "left" for e in closed) == DEVICES + 1 and closed[-1].kind == "stopped"


@pytest.mark.timeout(120)
def test_otalab_feel_radio_zmq(feel_data, tmp_path):
    """`otalab feel --radio zmq` runs A-DSGD over an in-process broker and writes its JSON; the channel it names is
    the radio one (RadioSumChannel), not the symbol-level default."""
    import json

    from lab.cli import main
    rc = main(["feel", "--radio", "zmq", "--devices", "3", "--rounds", "1", "--samples-per-device", "100",
               "--radio-snr-db", "10", "--out", str(tmp_path), "--no-progress", "--data-dir", str(feel_data.dir),
               "--dataset", feel_data.name])
    assert rc in (0, None)
    res = json.loads((tmp_path / f"feel_{feel_data.name}_analog_iid_P200_M3_radio.json").read_text())
    assert res["channel"].startswith("RadioSumChannel(") and len(res["rounds"]) == 1
    assert np.isfinite(res["final_accuracy"])


@pytest.mark.timeout(120)
def test_otalab_feel_against_a_running_broker(feel_data, tmp_path, capsys):
    """`otalab feel --radio <zmq YAML>` connects to the broker at radio.args.address (here one started from
    hw_configs/zmq.yaml on a free port, as `otalab air` would) and trains over it; a dead address fails clearly."""
    import json

    import yaml

    from lab.cli import main
    from lab.config import load_config
    from radio.servers.zmq_broker import ChannelBroker
    zmq_yaml = Path(__file__).resolve().parents[2] / "hw_configs" / "zmq.yaml"
    data = yaml.safe_load(zmq_yaml.read_text())
    argv = ["feel", "--devices", "3", "--rounds", "1", "--samples-per-device", "100", "--out", str(tmp_path),
            "--no-progress", "--data-dir", str(feel_data.dir), "--dataset", feel_data.name]
    with ChannelBroker.from_config(load_config(zmq_yaml), bind="tcp://127.0.0.1:0") as broker:
        data["radio"]["args"]["address"] = broker.endpoint
        cfg = tmp_path / "zmq-running.yaml"
        cfg.write_text(yaml.safe_dump(data))
        rc = main([*argv, "--radio", str(cfg)])
        names = set(broker.endpoints())
    assert rc in (0, None)
    assert {"ps", "dev0", "dev1", "dev2"} <= names
    res = json.loads((tmp_path / f"feel_{feel_data.name}_analog_iid_P200_M3_radio.json").read_text())
    assert res["channel"].startswith("RadioSumChannel(") and np.isfinite(res["final_accuracy"])

    data["radio"]["args"].update(address=broker.endpoint, timeout_s=0.5)     # the broker is gone now
    cfg.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    assert main([*argv, "--radio", str(cfg)]) == 2
    assert "is `otalab air --config" in capsys.readouterr().err
