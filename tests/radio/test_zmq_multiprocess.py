"""ZeroMQ air across processes: three transmitter processes and one receiver process reproduce the in-process Air,
and a killed transmitter neither stalls the others nor keeps its name from coming back.

The broker runs in a thread of the test process (bound to 127.0.0.1 port 0); endpoints are ``python -c`` child
processes running the small scripts below.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

from radio.sim.air import Air, AirConfig
from radio.servers.zmq_broker import BrokerConfig, ChannelBroker
from radio.servers.zmq_wire import SC16_SCALE, decode_samples, encode_samples

FS, FC = 1e6, 2.4e9
N_TOTAL = 20_000
TX_WIRES = {"tx0": "fc32", "tx1": "sc16", "tx2": "fc32"}
RECEIVERS = {"rx_fc32": "fc32", "rx_sc16": "sc16"}

#: transmitter: send its bursts (a .npz of times and sample arrays written by the test) at their times, then leave
TX_SCRIPT = """
import json, sys
import numpy as np
from radio.drivers.zmq import ZmqRadio
a = json.loads(sys.argv[1])
data = np.load(a["bursts"])
with ZmqRadio(a["address"], a["name"], wire=a["wire"], receive=False, timeout_s=20) as radio:
    for i, at in enumerate(data["at"]):
        assert radio.tx(data[f"x{i}"], at=int(at)) == at
"""

#: receiver: two endpoints (one per wire format), each read in blocks by its own thread (in free pacing each endpoint
#: holds the clock, so one thread must not block on one endpoint while the other is idle); saves what they got
RX_SCRIPT = """
import json, sys, threading
import numpy as np
from radio.drivers.zmq import ZmqRadio
a = json.loads(sys.argv[1])
radios = {name: ZmqRadio(a["address"], name, wire=wire, timeout_s=20) for name, wire in a["receivers"].items()}
got = {}
def read(name, radio):
    parts, t = [], 0
    while t < a["n"]:
        y, t0 = radio.rx(min(a["block"], a["n"] - t))
        assert t0 == t, (name, t0, t)
        parts.append(y)
        t += y.size
    got[name] = np.concatenate(parts)
threads = [threading.Thread(target=read, args=item) for item in radios.items()]
for th in threads:
    th.start()
for th in threads:
    th.join()
for radio in radios.values():
    radio.close()
np.savez(a["out"], **got)
"""


#: endless streamer (transmit blocks back to back, or receive them) for the loss/reconnect test
STREAM_SCRIPT = """
import json, sys
import numpy as np
from radio.drivers.zmq import ZmqRadio
a = json.loads(sys.argv[1])
radio = ZmqRadio(a["address"], a["name"], heartbeat_s=0.05, timeout_s=20, receive=a["mode"] == "rx")
x = np.full(a["block"], 0.1, np.complex64)
while True:
    if a["mode"] == "tx":
        radio.tx(x)
    else:
        radio.rx(a["block"])
"""


def bursts(seed: int) -> list[tuple[int, np.ndarray]]:
    """Three time-ordered, non-overlapping bursts of complex Gaussian samples (std 0.1 per component)."""
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.choice(np.arange(0, 15_000, 100), size=3, replace=False))
    gaps = np.diff(np.append(starts, 18_000))
    out = []
    for start, gap in zip(starts, gaps):
        n = int(rng.integers(50, gap + 1))
        x = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * 0.1
        out.append((int(start), x.astype(np.complex64)))
    return out


def _spawn(script: str, args: dict, log_path) -> subprocess.Popen:
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, "-c", script, json.dumps(args)], stdout=log, stderr=subprocess.STDOUT,
                            cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))


def _wait(procs, tmp_path, timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    for name, p in procs.items():
        try:
            rc = p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            rc = "timeout"
        assert rc == 0, f"{name} exited with {rc}: {(tmp_path / f'{name}.log').read_text()[-3000:]}"


def test_three_transmitter_processes_reproduce_the_in_process_air(tmp_path):
    """r_rx = Σ_tx channel_{tx→rx}(s_tx) + w_rx: what a receiver process gets over ZeroMQ equals the in-process Air
    with the same seed, links and schedule — to float32 rounding for fc32, and within the sc16 quantization bound
    0.5/(2**15−1) per component (plus the sc16 transmitter's own quantization, reproduced in the reference)."""
    cfg = AirConfig(seed=5, snr_db=25.0, delay_samples=3.25, cfo_ppm=0.2,
                    links={"tx1->rx_fc32": {"gain": 0.5, "delay_samples": 7.5},
                           "tx2->rx_sc16": {"profile": "TDL-A", "delay_spread_s": 1e-6}})
    names = [*TX_WIRES, *RECEIVERS]
    seeds = {name: 100 + i for i, name in enumerate(TX_WIRES)}

    ref = Air.from_config(cfg, FS, FC)
    for name in names:
        ref.add_endpoint(name)
    for name, wire in TX_WIRES.items():
        for at, x in bursts(seeds[name]):
            sent = decode_samples(encode_samples(x, wire), wire, x.size)   # what reaches the air
            ref.schedule(name, sent, at)
    expected = ref.advance(N_TOTAL)

    broker_cfg = BrokerConfig(endpoints=names, heartbeat_timeout_s=10)
    with ChannelBroker(Air.from_config(cfg, FS, FC), broker_cfg, bind="tcp://127.0.0.1:0") as broker:
        procs = {}
        for name, wire in TX_WIRES.items():
            items = bursts(seeds[name])
            np.savez(tmp_path / f"{name}.npz", at=[at for at, _ in items], **{f"x{i}": x for i, (_, x) in
                                                                             enumerate(items)})
            procs[name] = _spawn(TX_SCRIPT, {"address": broker.endpoint, "name": name, "wire": wire,
                                             "bursts": str(tmp_path / f"{name}.npz")}, tmp_path / f"{name}.log")
        out = tmp_path / "rx.npz"
        procs["rx"] = _spawn(RX_SCRIPT, {"address": broker.endpoint, "receivers": RECEIVERS, "n": N_TOTAL,
                                         "block": 4096, "out": str(out)}, tmp_path / "rx.log")
        _wait(procs, tmp_path)
        assert broker.now == N_TOTAL
        assert [e.kind for e in broker.events].count("lost") == 0
    got = np.load(out)
    signal_peak = np.abs(expected["rx_fc32"]).max()
    assert signal_peak > 0.1                                     # the comparison is not of silence
    err = np.abs(got["rx_fc32"] - expected["rx_fc32"]).max()
    assert err <= 2e-6 * max(1.0, signal_peak), err              # float32 rounding of a sum of O(1) terms
    q = got["rx_sc16"] - expected["rx_sc16"]
    assert max(np.abs(q.real).max(), np.abs(q.imag).max()) <= 0.5 / SC16_SCALE + 2e-6


def test_killed_transmitter_is_reported_others_keep_running_and_it_can_reconnect(tmp_path):
    names = ["tx0", "tx1", "rx"]
    cfg = BrokerConfig(endpoints=names, heartbeat_timeout_s=0.5, max_lead_samples=16_384)
    air = Air(FS, FC, seed=1)

    def spawn(name, mode):
        return _spawn(STREAM_SCRIPT, {"address": broker.endpoint, "name": name, "mode": mode, "block": 4096},
                      tmp_path / f"{name}.log")

    def wait_for(predicate, what, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; events: {broker.events}"
            time.sleep(0.02)

    def events(kind, name):
        return [e for e in broker.events if e.kind == kind and e.name == name]

    with ChannelBroker(air, cfg, bind="tcp://127.0.0.1:0") as broker:
        procs = {"tx0": spawn("tx0", "tx"), "tx1": spawn("tx1", "tx"), "rx": spawn("rx", "rx")}
        try:
            wait_for(lambda: broker.now > 100_000, "the air to run with all three endpoints")
            procs["tx1"].kill()
            procs["tx1"].wait(5)
            wait_for(lambda: events("lost", "tx1"), "the broker to report tx1 lost")
            lost_at = broker.now
            wait_for(lambda: broker.now > lost_at + 100_000, "the clock to keep running without tx1")
            assert procs["tx0"].poll() is None and procs["rx"].poll() is None, "survivors must keep running"
            assert broker.endpoints()["tx1"]["state"] == "lost"

            procs["tx1"] = spawn("tx1", "tx")
            wait_for(lambda: events("reconnected", "tx1"), "tx1 to reconnect under its name")
            back_at = broker.now
            wait_for(lambda: broker.now > back_at + 100_000, "the clock to run with tx1 back")
            assert broker.endpoints()["tx1"]["state"] == "live"
            assert all(p.poll() is None for p in procs.values())
        finally:
            for p in procs.values():
                p.kill()
                p.wait(5)
