"""The house rules of issue "One house a newcomer can walk": the layering of lab/ (and of the packages), one CLI
convention for every command, precedence of flags over --set over YAML, readable result files, `--json -`, and no
silent hangs on the ZeroMQ air."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.cli import app, main

ROOT = Path(__file__).resolve().parents[2]

#: package (folder) -> top-level modules it must never import (docs/design.md, "who may import whom")
LAYERS = {
    "phy": {"radio", "sync", "learning", "lab", "flwr"},
    "radio": {"phy", "sync", "learning", "lab", "torch", "flwr"},
    "sync": {"learning", "lab", "torch", "flwr"},
    "learning": {"radio", "lab", "flwr"},
    "lab/experiments": {"lab.cli"},
    "lab/bench": {"lab.cli"},
    "lab/factory.py": {"lab.cli", "lab.experiments", "lab.bench"},
    "lab/config.py": {"lab.cli", "lab.experiments", "lab.bench"},
    "lab/results.py": {"lab.cli", "lab.experiments", "lab.bench"},
    "lab/plots.py": {"lab.cli", "lab.experiments", "lab.bench"},
}


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def test_imports_follow_the_layering():
    """Walk every module's imports (also the lazy ones inside functions): arrows point down only."""
    bad = []
    for where, banned in LAYERS.items():
        target = ROOT / where
        files = [target] if target.suffix == ".py" else sorted(target.rglob("*.py"))
        assert files, f"{where}: nothing to check (moved?)"
        for f in files:
            for line, name in _imports(f):
                if any(name == b or name.startswith(b + ".") for b in banned):
                    bad.append(f"{f.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_lab_has_three_parts_and_no_stray_modules():
    lab = ROOT / "lab"
    assert {p.name for p in lab.iterdir() if p.is_dir() and not p.name.startswith("__")} >= {"cli", "experiments",
                                                                                                "bench"}
    top = {p.stem for p in lab.glob("*.py")} - {"__init__"}
    assert top <= {"config", "factory", "plots", "results"}, f"lab/ holds more than the shared pieces: {top}"
    assert not (ROOT / "bench").exists(), "the top-level bench/ wrappers are gone: benchmarks live in lab/bench"


def _commands():
    """(argv prefix, click command) of every leaf command."""
    import typer.main

    root = typer.main.get_command(app)
    out = []

    def walk(cmd, prefix):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, prefix + [name])
        else:
            out.append((prefix, cmd))
    walk(root, [])
    return out


def _options(cmd) -> dict[str, list[str]]:
    return {p.name: list(p.opts) + list(getattr(p, "secondary_opts", [])) for p in cmd.params}


def test_every_command_shares_the_same_options():
    """--config is always -c (never a checkpoint), --json always takes a PATH ('-' = stdout), --set/--seed/--out/
    --snr-db/--progress mean the same everywhere; every --help renders."""
    seen = 0
    for argv, cmd in _commands():
        if argv[0] == "bench":
            continue   # benchmarks parse their own options (checked below)
        opts = _options(cmd)
        flat = {o for v in opts.values() for o in v}
        name = " ".join(argv)
        if "-c" in flat:
            assert "--config" in opts.get("config", []) + opts.get(next((k for k, v in opts.items() if "-c" in v),
                                                                        ""), []), f"{name}: -c is not --config"
        if "--config" in flat:
            assert "-c" in flat, f"{name}: --config without -c"
        if "--json" in flat:
            p = next(p for p in cmd.params if "--json" in p.opts)
            assert not p.is_flag, f"{name}: --json must take a PATH ('-' = stdout), not be a switch"
        if "--progress" in flat:
            assert "--no-progress" in flat, f"{name}: --progress without --no-progress"
        for opt in ("--snr-db", "--seed", "--set", "--out"):
            if opt in flat:
                seen += 1
        rc = main([*argv, "--help"])
        assert rc == 0, f"{name} --help failed"
        seen += 1
    assert seen > 20


@pytest.mark.parametrize("name", ["phy", "sync", "air", "jscc", "feel"])
def test_benchmarks_show_their_own_options(name, capsys):
    assert main(["bench", name, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"otalab bench {name}" in out and "--json" in out


def test_link_set_snr_is_the_snr_measured(tmp_path):
    """`--set air.snr_db=5` on the loopback config runs at 5 dB (the flag's default no longer overrides it), and a
    given --snr-db wins over --set; the YAML's channel stands unless --channel is given."""
    out = tmp_path / "l.json"
    assert main(["link", "-c", "hw_configs/loopback.yaml", "--set", "air.snr_db=5", "--frames", "40", "--json",
                 str(out), "--no-progress"]) == 0
    res = json.loads(out.read_text())
    assert res["config"]["snr_db"] == 5.0 and abs(res["snr_db_est"] - 5.0) < 1.0, res["snr_db_est"]
    assert main(["link", "-c", "hw_configs/loopback.yaml", "--set", "air.snr_db=5", "--snr-db", "15",
                 "--set", "air.channel=TDL-C", "--frames", "20", "--json", str(out), "--no-progress"]) == 0
    res = json.loads(out.read_text())
    assert res["config"]["snr_db"] == 15.0 and res["config"]["channel"] == "TDL-C"
    assert abs(res["snr_db_est"] - 15.0) < 2.5


def test_json_dash_prints_the_record_and_files_are_readable_under_umask_022(tmp_path, capsys):
    assert main(["link", "--frames", "3", "--json", "-", "--no-progress"]) == 0
    cap = capsys.readouterr()
    rec = json.loads(cap.out)                      # stdout holds the record only; the table went to stderr
    assert rec["frames"] == 3 and rec["command"].startswith("otalab link") and "git_revision" in rec
    assert not (Path.cwd() / "-").exists()
    old = os.umask(0o022)
    try:
        assert main(["link", "--frames", "2", "--json", str(tmp_path / "r.json"), "--no-progress"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644


def test_result_writer_replaces_a_symlink_instead_of_writing_through_it(tmp_path):
    from lab.results import write_json

    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    link = tmp_path / "result.json"
    link.symlink_to(target)
    write_json(link, {"a": 1})
    assert target.read_text() == "keep me" and not link.is_symlink() and json.loads(link.read_text()) == {"a": 1}


def test_si_suffixes_in_set_and_options():
    from lab.config import load_config, parse_si

    assert parse_si("2.4G") == 2.4e9 and parse_si("20M") == 2e7 and parse_si("500k") == 5e5
    cfg = load_config("hw_configs/loopback.yaml", ["radio.sample_rate=10M", "radio.center_freq=915M"])
    assert cfg.radio.sample_rate == 10e6 and cfg.radio.center_freq == 915e6


def _start_air(tmp_path) -> tuple[subprocess.Popen, str]:
    """`otalab air` on a free port in its own process; returns it and the address it printed."""
    log = open(tmp_path / "air.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "air", "-c", "hw_configs/zmq.yaml", "--port", "0",
                             "--quiet"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log.seek(0)
        m = re.search(r"ZeroMQ air on (tcp://\S+):", log.read())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    log.seek(0)
    raise AssertionError(f"otalab air did not start: {log.read()}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.mark.timeout(180)
def test_link_over_a_running_broker_completes_and_a_killed_broker_is_a_clear_error(tmp_path):
    """`otalab link -c hw_configs/zmq.yaml` against `otalab air` completes (it used to hang: its transmitter held the
    free-running clock); killing the broker mid-run ends the link within its timeout with an error naming it."""
    air, address = _start_air(tmp_path)
    try:
        sets = ["--set", f"radio.args.address={address}", "--set", "radio.args.timeout_s=3"]
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "lab.cli", "link", "-c", "hw_configs/zmq.yaml", *sets,
                               "--frames", "10", "--json", "-", "--no-progress"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        rec = json.loads(done.stdout)
        assert rec["detected"] == 10 and rec["config"]["driver"] == "zmq"
        assert time.monotonic() - t0 < 60
        # a longer run (about 7 M samples); the broker dies under it, wherever the link is (building frames,
        # sending them or reading them back): it must end with an error naming the broker, not wait forever
        long = subprocess.Popen([sys.executable, "-m", "lab.cli", "link", "-c", "hw_configs/zmq.yaml", *sets,
                                 "--frames", "2000", "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            time.sleep(2.0)
            assert long.poll() is None, long.communicate()
            _stop(air)
            killed = time.monotonic()
            _, err = long.communicate(timeout=60)
            waited = time.monotonic() - killed
        finally:
            _stop(long)
        assert long.returncode == 2 and "broker" in err and address in err, err
        assert waited < 3 + 30, f"link took {waited:.1f} s to notice the broker was gone (timeout_s = 3)"
    finally:
        _stop(air)


def test_fault_injection_into_a_device_that_does_not_exist_is_refused():
    from lab.factory import Scenario

    for bad in (dict(never_answer=(8,)), dict(same_preamble=(-1,)), dict(dropout={9: 1}), dict(dropout={0: 0}),
                dict(lost_beacons=(-2,)), dict(devices=0), dict(cfo_ppm=float("inf"))):
        with pytest.raises(ValueError, match="expected"):
            Scenario(devices=bad.pop("devices", 8), **bad)
    Scenario(devices=8, never_answer=(7,), dropout={0: 2}, lost_beacons=(0,))
