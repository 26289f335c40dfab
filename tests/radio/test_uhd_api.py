"""API conformance: every UHD call the USRP driver makes, checked against the real python3-uhd without hardware.

The driver runs through every path (set-up with all options, PPS alignment, streaming and one-shot reception, an
overflow, timed and partly sent bursts, asynchronous messages, close) against the recording double; the recorded
names, constructions, attribute writes and method calls are then replayed in a subprocess under /usr/bin/python3,
which has Debian's python3-uhd (tests/radio/uhd_api_check.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from radio.drivers import usrp as usrp_mod
from radio.drivers.usrp import UsrpArgs, UsrpRadio
from tests.radio.uhd_double import make_uhd

pytestmark = pytest.mark.uhd

SYSTEM_PYTHON = "/usr/bin/python3"
CHECKER = Path(__file__).with_name("uhd_api_check.py")


def _system_uhd() -> None:
    try:
        probe = subprocess.run([SYSTEM_PYTHON, "-c", "import uhd"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        pytest.skip(f"{SYSTEM_PYTHON} not found: the conformance check needs Debian's python3-uhd "
                    f"(sudo apt install python3-uhd)")
    if probe.returncode != 0:
        pytest.skip(f"{SYSTEM_PYTHON} cannot import uhd ({probe.stderr.strip().splitlines()[-1:]}); "
                    f"install it with: sudo apt install python3-uhd")


def _check(log_json: dict) -> dict:
    proc = subprocess.run([SYSTEM_PYTHON, str(CHECKER)], input=json.dumps(log_json), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _exercise_driver(monkeypatch) -> dict:
    monkeypatch.setattr(usrp_mod.time, "sleep", lambda s: None)
    uhd, dev, log = make_uhd()
    dev.pps_period = 20_000_000
    args = UsrpArgs(args="type=b200", tx_antenna="TX/RX", rx_antenna="RX2", clock_source="external",
                    time_source="external", pps_align=True, master_clock_rate=40e6, bandwidth=18e6, lo_offset=1e6,
                    subdev="A:A")
    radio = UsrpRadio(20e6, 2.45e9, 10.0, 30.0, args, uhd_module=uhd)
    radio.center_freq = 915e6
    radio.rx_gain = 20.0
    x, t0 = radio.rx(3000)                                     # continuous stream
    dev.overflow_at, dev.overflow_drop = t0 + 4000, 100
    radio.rx(2000)                                             # with an overflow
    radio.rx(100, at=t0 + 5500)                                # skip ahead inside the stream
    radio.rx(500, at=radio.time_now() + 10 ** 8)               # a timed (re)start far ahead
    dev.underflow_next = True
    dev.send_limit = 400
    radio.tx(np.zeros(1000, np.complex64), at=radio.time_now() + 10_000)
    dev.send_latency = 10 ** 6
    radio.tx(np.zeros(10, np.complex64))                       # late burst -> async time_error
    radio.wait_tx_done(0.01)
    dev.late_pending, dev.stream = True, {"next": 0, "left": 10}
    try:
        radio._receive(10, 0)
    except Exception:  # noqa: BLE001 - the late path is what is being recorded
        pass
    dev.stream = None                                          # nothing arrives: three timeouts end the capture
    try:
        radio._receive(10, 0)
    except Exception:  # noqa: BLE001
        pass
    radio.settings()
    radio.close()
    UsrpRadio(1e6, 2.4e9, uhd_module=uhd).close()             # defaults: time set immediately, UHD's antennas
    dev.mboards, dev.pps_period = 2, 1_000_000                 # two motherboards on one host: unknown_pps
    UsrpRadio(1e6, 2.4e9, args=UsrpArgs(time_source="external", pps_align=True), uhd_module=uhd).close()
    return log.to_json()


def test_driver_uses_only_real_uhd_api(monkeypatch):
    _system_uhd()
    log = _exercise_driver(monkeypatch)
    called = {m for _, m, _, _ in log["calls"]}
    assert {"set_time_next_pps", "issue_stream_cmd", "recv", "send", "recv_async_msg", "from_ticks", "to_ticks",
            "set_rx_freq", "get_mboard_sensor", "to_bool", "strerror", "set_time_now", "set_time_unknown_pps",
            "set_rx_subdev_spec", "get_rx_sensor", "get_tx_sensor", "get_num_mboards"} <= called
    result = _check(log)
    assert result["problems"] == []
    assert result["checked"] >= 80


def test_checker_catches_wrong_calls(monkeypatch):
    """The conformance check must be able to fail: wrong arity, wrong types, unknown methods and names."""
    _system_uhd()
    log = _exercise_driver(monkeypatch)
    log["calls"] += [["MultiUSRP", "set_rx_rate", [{"str": "fast"}, {"int": 0}], None],
                     ["MultiUSRP", "set_rx_gain", [], None],
                     ["MultiUSRP", "tune_everything", [], None],
                     ["TimeSpec", "from_ticks", [{"float": 1.5}, {"float": 1e6}], "TimeSpec"],
                     ["MultiUSRP", "get_time_now", [{"int": 0}], "float"]]
    log["names"] += ["types.StreamMode.num_forever"]
    log["constructed"] += [["StreamCMD", [{"int": 7}, {"int": 7}]]]
    log["sets"] += [["TXMetadata", "time_spec", {"float": 1.0}]]
    problems = "\n".join(_check(log)["problems"])
    for fragment in ("set_rx_rate: no overload fits", "set_rx_gain: no overload fits",
                     "tune_everything does not exist", "from_ticks: no overload fits", "get_time_now: no overload",
                     "num_forever does not exist", "StreamCMD({'int': 7}, {'int': 7}) cannot be constructed",
                     "TXMetadata.time_spec = {'float': 1.0}"):
        assert fragment in problems


def test_real_timespec_round_trip_is_exact():
    """In the real UHD, TimeSpec.from_ticks(t, rate).to_ticks(rate) == t for integer t up to 2**53 (whole seconds
    by integer division, the remainder rounded), at integer and non-integer rates."""
    _system_uhd()
    code = ("import random, uhd\nrandom.seed(5)\nT = uhd.types.TimeSpec\nbad = []\n"
            "for rate in (250e3, 1e6, 20e6, 30.72e6, 61.44e6, 200e6 / 3):\n"
            "    for _ in range(2000):\n"
            "        t = random.randrange(0, 2 ** 53)\n"
            "        if T.from_ticks(t, rate).to_ticks(rate) != t: bad.append((rate, t))\n"
            "print(len(bad), bad[:3])\n")
    out = subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "0", out.stdout
