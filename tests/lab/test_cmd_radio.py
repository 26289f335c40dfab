"""`otalab radio probe`, `otalab replay` and lab.factory.open_radio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lab.cli import main
from lab.experiments.radio_checks import run_probe, run_replay
from lab.config import load_config
from lab.factory import open_radio
from radio.base import RadioError
from tests.radio.uhd_double import make_uhd

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = str(REPO / "hw_configs" / "loopback.yaml")


def _probe_json(capsys, *args) -> tuple[int, dict]:
    rc = main(["radio", "probe", "--config", LOOPBACK, "--json", "-", *args])
    return rc, json.loads(capsys.readouterr().out)


def test_probe_loopback_frames_arrive_at_the_link_delay_with_the_configured_snr(capsys):
    """Over an AWGN link with an integer delay D, every frame is detected exactly D samples after it was scheduled;
    the estimated per-subcarrier SNR is the air's snr_db plus 20 log10(0.5) (the probe's amplitude back-off),
    i.e. SNR = P_sc / N0 with P_sc = 0.25 and N0 = 10**(-snr_db/10), within the estimator's spread (±1.5 dB on the
    mean of 6 frames)."""
    rc, result = _probe_json(capsys, "--frames", "6", "--set", "air.delay_samples=9", "--set", "air.snr_db=25")
    assert rc == 0 and result["ok"]
    frames = result["frames"]
    assert frames["payload_ok"] == frames["sent"] == 6
    assert frames["timing_error"] == [9] * 6
    assert frames["snr_db_mean"] == pytest.approx(25 + 20 * np.log10(0.5), abs=1.5)
    assert {c["check"].split(" (")[0] for c in result["checks"]} == {"timed capture", "frames TX→RX"}
    assert result["settings"]["driver"] == "loopback"


def test_probe_fails_when_the_link_is_too_noisy(capsys):
    rc, result = _probe_json(capsys, "--set", "air.snr_db=-10")
    assert rc == 1 and not result["ok"] and result["frames"]["payload_ok"] < result["frames"]["sent"]


def test_probe_prints_tables_and_config_errors_are_clear(capsys):
    assert main(["radio", "probe", "--config", LOOPBACK]) == 0
    out = capsys.readouterr().out
    assert "radio settings" in out and "self-test" in out and "PASS" in out and "probe passed" in out
    assert main(["radio", "probe", "--config", LOOPBACK, "--set", "radio.driver=hackrf"]) == 2
    err = capsys.readouterr().err
    assert "loopback.yaml: radio.driver = 'hackrf': expected one of" in err


def test_recorded_probe_replays_to_the_same_frames(tmp_path, capsys):
    """A recording of the live probe, replayed, yields the same frames (times, sequence numbers, SNR)."""
    cfg = load_config(LOOPBACK)
    live = run_probe(cfg, n_frames=3, record=tmp_path / "probe")
    assert live["ok"]
    rc = main(["replay", str(tmp_path / "probe-rx.sigmf-meta"), "--json", "-"])
    replay = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [(f["t_start"], f["seq"], f["crc_ok"]) for f in replay["frame_list"]] == \
        [(f["t_start"], f["seq"], f["crc_ok"]) for f in live["frames"]["frame_list"]]
    np.testing.assert_allclose([f["snr_db"] for f in replay["frame_list"]],
                               [f["snr_db"] for f in live["frames"]["frame_list"]], atol=1e-3)
    assert replay["recording"]["annotations"] == 3 and not replay["recording"]["truncated"]


def test_replay_of_a_truncated_recording_stops_at_its_end_and_says_so(tmp_path, capsys):
    cfg = load_config(LOOPBACK)
    live = run_probe(cfg, n_frames=3, record=tmp_path / "cut")
    data = tmp_path / "cut-rx.sigmf-data"
    t_rx0 = json.loads((tmp_path / "cut-rx.sigmf-meta").read_text())["captures"][1]["core:global_index"]
    last = live["frames"]["frame_list"][-1]["t_start"]
    captured = data.stat().st_size // 8
    keep = 4096 + (last - t_rx0) + 600          # the timed-capture check's 4096 samples, then up to 600 into frame 2
    with open(data, "r+b") as f:
        f.truncate(8 * keep)
    rc = main(["replay", str(data)])
    captured_io = capsys.readouterr()
    assert rc == 0
    assert f"recording cut short: replayed {keep} of {captured} samples (up to its end)" in captured_io.err
    report = run_replay(data)
    assert report["recording"]["truncated"] and report["frames"] == 2 and report["receiver"]["truncated"] == 1


def test_replay_bad_file_is_a_clear_error(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "nothing")]) == 2
    assert "no SigMF metadata file" in capsys.readouterr().err


def test_probe_usrp_over_the_air_with_the_uhd_double():
    """A USRP whose TX is cabled to its RX with a D-sample latency: frames arrive D samples after their time; the
    double's clock runs in host time, so the sample-clock check measures the configured rate."""
    uhd, dev, _ = make_uhd()
    dev.wallclock = True
    dev.loop_delay = 7
    rng = np.random.default_rng(3)
    dev.rx_source = lambda t: (0.003 * (rng.standard_normal(t.size) + 1j * rng.standard_normal(t.size))
                               ).astype(np.complex64)
    cfg = load_config(REPO / "hw_configs" / "usrp-b210.yaml", ["radio.sample_rate=1e6",
                                                               "radio.args.master_clock_rate=16e6"])
    result = run_probe(cfg, n_frames=2, over_the_air=True, uhd_module=uhd)
    assert result["ok"], result["checks"]
    assert result["frames"]["timing_error"] == [7, 7]
    assert result["settings"]["mboard"] == "B210 (double)" and result["stats"]["tx_bursts"] == 1
    names = [c["check"] for c in result["checks"]]
    assert names == ["timed capture", "sample clock", "frames TX→RX (over the air)"]


def test_open_radio_dispatch_and_missing_driver(tmp_path):
    cfg = load_config(LOOPBACK)
    with open_radio(cfg) as rx, open_radio(cfg, "tx", air=rx.air) as tx:
        assert (rx.name, tx.name) == ("radio0", "radio0-tx") and tx.air is rx.air
    uhd, _, _ = make_uhd()
    usrp_cfg = load_config(REPO / "hw_configs" / "usrp-n2xx.yaml")
    with open_radio(usrp_cfg, uhd_module=uhd, record=tmp_path / "u") as radio:
        assert radio.driver == "usrp" and radio.sample_rate == 10e6
        radio.rx(256, at=radio.time_now() + 1000)      # a recording is written for streams that hold samples
    assert (tmp_path / "u-rx.sigmf-meta").exists()
    cfg.radio_args = None
    with pytest.raises(RadioError, match="driver 'loopback' is not available"):
        open_radio(cfg)
