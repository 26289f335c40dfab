"""`otalab cell`: the launcher's process ownership, the Flower control plane, and failure handling.

The multi-process tests start a real ZeroMQ air, radio nodes, a Flower SuperLink and SuperNodes on 127.0.0.1 (every
port picked free by the OS), and check with /proc that nothing is left running afterwards. Flower starts one
ClientApp process per message and SuperNodes poll every few seconds, so each of them takes a minute: marked slow.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.experiments.procs import ProcessSet, alive, descendants

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "hw_configs" / "cell-zmq.yaml")

pytest.importorskip("flwr")


def test_stop_ends_a_grandchild_in_a_session_of_its_own(tmp_path):
    """Flower's superexec runs in a new session under its parent: a process-group kill would miss it; the
    /proc walk must not."""
    procs = ProcessSet(tmp_path)
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); "
            "print(p.pid, flush=True); time.sleep(60)")
    item = procs.start("parent", [sys.executable, "-c", code])
    child = int(procs.first_line(item, 30.0))
    assert alive(child) and child in descendants(item.pid)
    procs.stop(grace_s=2.0)
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child) and not alive(item.pid)
    assert procs.leftovers() == []


def test_stop_is_idempotent_and_first_line_reports_an_early_exit(tmp_path):
    procs = ProcessSet(tmp_path)
    item = procs.start("quitter", [sys.executable, "-c", "import sys; print('bye'); sys.exit(3)"])
    with pytest.raises(RuntimeError, match="exited with code 3"):
        procs.first_line(item, 30.0, "never printed")
    procs.stop()
    procs.stop()
    assert procs.leftovers() == []


def _replies(procs: ProcessSet, role: str) -> int:
    """How many answers the SuperNode ``role`` has sent (its log's "Sending:" lines)."""
    try:
        return procs.by_role(role).log.read_text(errors="replace").count("Sending:")
    except (KeyError, OSError):
        return 0


def _assert_nothing_left(record):
    pids = [p["pid"] for p in record["processes"]]
    assert record["leftover_pids"] == []
    assert not [p for p in pids if alive(p)], "processes of the cell still running after it returned"


@pytest.mark.slow
def test_cell_probe_runs_every_device_as_its_own_process(tmp_path):
    from lab.experiments.cell import CellOptions, run_cell

    rec = run_cell(CellOptions(config=CONFIG, devices=2, rounds=2, run_dir=str(tmp_path)))
    assert "error" not in rec, rec.get("error")
    roles = {p["role"] for p in rec["processes"]}
    assert {"air", "ps-node", "dev0-node", "dev1-node", "superlink", "dev0-supernode", "dev1-supernode"} <= roles
    radio_pids = [p["pid"] for p in rec["processes"] if p["role"].endswith("-node")]
    assert len(set(radio_pids)) == 3                      # PS + 2 devices, distinct processes
    assert [r["devices"] for r in rec["rounds"]] == [2, 2]
    assert rec["excluded_devices"] == []
    assert sorted(rec["device_names"].values()) == ["dev0", "dev1"]
    # every device had its instruction before the slot it names (the slot lead covers Flower's latency)
    assert rec["slot_margin_s_min"] > 0
    assert rec["wall_clock"] is True and rec["late_bursts"] == 0
    # nothing measured on the air in the probe task: null, never invented
    assert rec["nmse_db"] is None and rec["timing_rmse_samples"] is None
    _assert_nothing_left(rec)


@pytest.mark.slow
def test_killing_a_device_excludes_it_and_the_run_finishes(tmp_path):
    from lab.experiments.cell import CellOptions, run_cell

    killed = {}

    def monitor(procs, elapsed):
        if not killed and _replies(procs, "dev1-supernode") >= 1:    # dev1 answered round 0: kill its radio node
            node = procs.by_role("dev1-node")
            node.proc.kill()
            killed["pid"] = node.pid

    rec = run_cell(CellOptions(config=CONFIG, devices=2, rounds=3, reply_timeout_s=60.0, run_dir=str(tmp_path)),
                   monitor=monitor)
    assert killed, "the device was never killed"
    assert "error" not in rec, rec.get("error")
    assert [e["device"] for e in rec["excluded_devices"]] == ["dev1"]
    assert "radio node of dev1" in rec["excluded_devices"][0]["reason"]
    devices = [r["devices"] for r in rec["rounds"]]
    assert len(devices) == 3 and devices[0] == 2 and devices[-1] == 1
    _assert_nothing_left(rec)


@pytest.mark.slow
def test_killing_the_ps_stops_the_devices_within_10_s(tmp_path):
    from lab.experiments.cell import CellOptions, run_cell

    killed = {}

    def monitor(procs, elapsed):
        if not killed and _replies(procs, "dev0-supernode") >= 1:
            node = procs.by_role("ps-node")
            node.proc.kill()
            killed["pid"] = node.pid

    rec = run_cell(CellOptions(config=CONFIG, devices=2, rounds=5, run_dir=str(tmp_path)), monitor=monitor)
    assert killed
    assert "PS radio node" in rec["error"] and "stopping the cell" in rec["error"]
    assert rec["device_exit_s"] is not None and rec["device_exit_s"] <= 10.0
    _assert_nothing_left(rec)


#: CFO pre-compensation off: the ZeroMQ air has one clock and no CFO, and a beacon estimate's residual (0.05–0.2 Hz
#: measured at 100 kS/s) would turn each device's phase by 2π·δf·Δt over the ~2.5 s between its pilots and its data
#: (docs/cell.md)
#: the actor tasks at 100 kS/s (the broker steps 5 ms, as the config does at 1 MS/s): five processes stream the
#: realtime air on a loaded 2-core host
LOW_RATE = ["radio.sample_rate=1e5", "radio.args.broker.block_size=500"]
#: leads and turnarounds for a host at load 10-20 (measured: a device node starved ~2 s between the feedback and its
#: data slot; the PS's access beacons late three times over at the default 1 s lead); with CFO pre-compensation off
#: the longer gaps cost nothing on the one-clock ZeroMQ air
SLACK = dict(ps_lead_s=2.0, ps_turnaround_s=3.0, device_turnaround_s=3.0)


@pytest.mark.slow
def test_cell_sync_connects_every_device_and_keeps_every_burst_inside_the_cp(tmp_path):
    """Two device processes: beacons, random access, one round of pilots/feedback/data over the ZeroMQ air, every
    phase announced over Flower. On this air the truth is known (one broker clock, the config's link delays)."""
    from lab.experiments.cell import CellOptions, run_cell

    rec = run_cell(CellOptions(config=CONFIG, sets=LOW_RATE, devices=2, task="sync", rounds=1, diagnostics=True,
                               cfo_precomp=False, run_dir=str(tmp_path)))
    assert "error" not in rec, rec.get("error")
    radio_pids = [p["pid"] for p in rec["processes"] if p["role"].endswith("-node")]
    assert len(set(radio_pids)) == 3
    assert rec["excluded_devices"] == []
    assert sorted(st["state"] for st in rec["device_state"].values()) == ["connected", "connected"]
    assert [r["devices"] for r in rec["rounds"]] == [2]
    assert len(rec["timing"]) == 2 and rec["within_cp_fraction"] == 1.0
    # the PRACH measures the round trip: 0 on this air, within a sample
    assert rec["timing_rmse_samples"] < 1.0
    assert rec["late_bursts"] == 0 and rec["overflows"] == 0
    # the over-the-air sum at the config's 20 dB: well below the signal (diagnostics mode gives the truth)
    assert rec["nmse_db"] is not None and rec["nmse_db"] < -10.0
    _assert_nothing_left(rec)


@pytest.mark.slow
def test_cell_feel_runs_a_dsgd_rounds_over_the_air(tmp_path):
    from lab.experiments.cell import CellOptions, run_cell

    rec = run_cell(CellOptions(config=CONFIG, sets=LOW_RATE, devices=2, task="feel", rounds=2, cfo_precomp=False,
                               feel={"samples_per_device": 100}, run_dir=str(tmp_path)))
    assert "error" not in rec, rec.get("error")
    assert [r["devices"] for r in rec["rounds"]] == [2, 2]
    assert all(r["applied"] for r in rec["rounds"])
    assert rec["final_accuracy"] is not None and 0.0 <= rec["final_accuracy"] <= 1.0
    assert rec["within_cp_fraction"] == 1.0
    _assert_nothing_left(rec)


def test_cli_refuses_jscc_with_more_than_one_device_before_starting_anything(capsys):
    from lab.cli import main

    rc = main(["cell", "-c", CONFIG, "--devices", "2", "--task", "jscc"])
    assert rc == 2
    assert "--devices 1" in capsys.readouterr().err


@pytest.mark.slow
def test_cell_jscc_sends_images_from_a_device_process_to_the_ps(tmp_path):
    """One device process sends two CIFAR-10 test images as DeepJSCC latents over the ZeroMQ air (one image per
    data round); the PS decodes them. The measured SNR (the PS's reference latent against what it received) agrees
    with the PS's own estimate, and the PSNR is what the symbol-level AWGN link gives at that measured SNR."""
    import numpy as np

    from lab.experiments.cell import CellOptions, run_cell
    from lab.experiments.cell_jscc import load_images, load_model
    from lab.experiments.jscc_air import SymbolLink, send_images

    try:
        imgs = load_images(0, 2)
    except FileNotFoundError as exc:
        pytest.skip(f"no CIFAR-10 here: {exc}")
    rec = run_cell(CellOptions(config=CONFIG, sets=LOW_RATE, devices=1, task="jscc", rounds=2, diagnostics=True,
                               cfo_precomp=False, run_dir=str(tmp_path), **SLACK))
    assert "error" not in rec, rec.get("error")
    assert len({p["pid"] for p in rec["processes"] if p["role"].endswith("-node")}) == 2
    assert [r["image"] for r in rec["rounds"]] == [0, 1] and [r["devices"] for r in rec["rounds"]] == [1, 1]
    assert rec["within_cp_fraction"] == 1.0
    got = [im for im in rec["images"] if im["method"].startswith("deepjscc")]
    assert [im["status"] for im in got] == ["ok", "ok"]
    for im in got:
        # the air's 20 dB minus what pre-equalization and estimation cost; the PS's estimate within 2 dB of it
        assert 10.0 < im["snr_db"] < 25.0 and abs(im["snr_est_db"] - im["snr_db"]) < 2.0
    model, meta = load_model(None)
    snr = float(np.mean([im["snr_db"] for im in got]))
    ref = send_images(model, imgs, SymbolLink(snr, seed=0), rec["jscc"]["encoder_snr_db"],
                      snr_range_db=meta.get("snr_range_db"))
    assert abs(np.mean([im["psnr_db"] for im in got]) - np.mean([r["psnr_db"] for r in ref])) < 1.5
    _assert_nothing_left(rec)


@pytest.mark.hardware
def test_hardware_cell_on_radios_named_by_environment(tmp_path):
    """On real radios, one per role: OTALAB_CELL_RADIOS="ps=hw_configs/usrp-b210-ps.yaml,dev0=...,dev1=..." (each a
    bench config naming one radio, see docs/cell.md); OTALAB_CELL_TASK (default probe)."""
    import os

    radios = [r for r in os.environ.get("OTALAB_CELL_RADIOS", "").split(",") if r.strip()]
    if not radios:
        pytest.skip("set OTALAB_CELL_RADIOS='ps=CONFIG,dev0=CONFIG,...' to run otalab cell on real radios")
    base = dict(r.split("=", 1) for r in radios)["ps"]
    out = tmp_path / "cell.json"
    argv = [sys.executable, "-m", "lab.cli", "cell", "-c", base, "--devices", str(len(radios) - 1),
            "--task", os.environ.get("OTALAB_CELL_TASK", "probe"), "--json", str(out)]
    argv += [arg for r in radios for arg in ("--radio", r.strip())]
    rc = subprocess.run(argv, check=False, cwd=REPO).returncode
    assert rc == 0 and out.exists()


def _kill_device_when(role: str, replies: int, killed: dict):
    """A run_cell monitor: once ``role``'s SuperNode has sent ``replies`` answers, kill that device's radio node
    (the process its actor lives in)."""
    def monitor(procs, elapsed):
        if not killed and _replies(procs, f"{role}-supernode") >= replies:
            node = procs.by_role(f"{role}-node")
            node.proc.kill()
            killed["pid"], killed["at_s"] = node.pid, elapsed
    return monitor


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sync", "feel"])
def test_killing_a_device_mid_run_excludes_it_and_the_others_finish(tmp_path, task):
    """dev1's node is killed once it has answered setup, PRACH and RAR: the first data round still addresses both
    devices (feel: with the global model; dev1's ClientApp then cannot reach its node), the PS excludes dev1 with the
    reason and runs the second round with dev0 alone."""
    from lab.experiments.cell import CellOptions, run_cell

    killed: dict = {}
    rec = run_cell(CellOptions(config=CONFIG, sets=LOW_RATE, devices=2, task=task, rounds=2, cfo_precomp=False,
                               feel={"samples_per_device": 100}, reply_timeout_s=60.0, run_dir=str(tmp_path),
                               **SLACK), monitor=_kill_device_when("dev1", 3, killed))
    assert killed, "the device was never killed"
    assert "error" not in rec, rec.get("error")
    assert [e["device"] for e in rec["excluded_devices"]] == ["dev1"]
    assert "radio node of dev1" in rec["excluded_devices"][0]["reason"]
    assert len(rec["rounds"]) == 2
    addressed = [c["devices"] for c in rec["control_rounds"] if c["what"] == "pilots+data"]
    assert addressed == [2, 1]
    # dev1 never in a sum after it died (indices follow Flower's node order, not the names: device_index maps them)
    dev0 = rec["device_index"]["dev0"]
    assert all(r["active"] in ([], [dev0]) for r in rec["rounds"])
    # dev0's bursts inside the CP (on a host at load ~15 its access can miss every beacon: then it sent none)
    assert rec["within_cp_fraction"] in (None, 1.0)
    assert rec["within_cp_fraction"] == 1.0 or rec["device_state"]["dev0"]["state"] != "connected"
    _assert_nothing_left(rec)


@pytest.mark.slow
@pytest.mark.parametrize("task,victim", [("sync", "ps-node"), ("feel", "flwr-serverapp")])
def test_killing_the_ps_mid_run_stops_the_device_processes_within_10_s(tmp_path, task, victim):
    """The PS is two processes: its radio node and the ServerApp Flower started. Killing either after the devices'
    setup stops the cell with a message naming it; the device processes are gone within 10 s; nothing is left."""
    import os
    import signal

    from lab.experiments.cell import CellOptions, run_cell

    killed: dict = {}

    def monitor(procs, elapsed):
        if killed or _replies(procs, "dev0-supernode") < 1:
            return
        if victim == "ps-node":
            item = procs.by_role("ps-node")
            item.proc.kill()
            killed["pid"] = item.pid
        else:
            pids = [p for p in procs.pids_of("flwr-serverapp") if alive(p)]
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed["pid"] = pids[0]

    rec = run_cell(CellOptions(config=CONFIG, sets=LOW_RATE, devices=2, task=task, rounds=3, cfo_precomp=False,
                               feel={"samples_per_device": 100}, run_dir=str(tmp_path)), monitor=monitor)
    assert killed, "the PS was never killed"
    want = "PS radio node" if victim == "ps-node" else "PS (Flower ServerApp"
    assert want in rec["error"] and "stopping the cell" in rec["error"] and str(killed["pid"]) in rec["error"]
    assert rec["device_exit_s"] is not None and rec["device_exit_s"] <= 10.0
    _assert_nothing_left(rec)
