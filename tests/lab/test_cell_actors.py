"""The cell's cross-process sequence (lab.experiments.cell_run.CellRun) with the device actors hosted in their radio
nodes (lab.experiments.actor_host.DeviceHost), on a realtime loopback air, with a direct control plane instead of
Flower: the same messages, the same actors, seconds instead of minutes."""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pytest

from lab.experiments.actor_host import DeviceHost
from lab.experiments.cell_run import CellRun, device_step, measure
from phy.ofdm import OfdmConfig
from radio.drivers.loopback import LoopbackRadio
from radio.node import RadioNode
from radio.sim.air import Air
from radio.sim.channel import LinkParams
from sync.config import SyncConfig

FS = 100e3
SNR_DB = 20.0


class DirectControl:
    """A control plane that calls each device host on a thread of its own (what Flower does with a ClientApp per
    message): ``push`` starts them, ``pull`` collects the replies."""

    def __init__(self, hosts: dict):
        self.hosts = hosts
        self.rounds = 0

    def push(self, bodies: dict):
        self.rounds += 1
        out: dict = {}

        def one(d, body):
            host = self.hosts[d]
            out[d] = device_step(body, lambda fields, payload: host.handle(fields, payload)[0]["body"])

        threads = [threading.Thread(target=one, args=item) for item in bodies.items()]
        for t in threads:
            t.start()
        return threads, out

    def pull(self, handle) -> dict:
        threads, out = handle
        for t in threads:
            t.join(timeout=60)
        return out


@contextlib.contextmanager
def _cell(k: int, delays: list[float]):
    air = Air(FS, 2.4e9, seed=1)
    n0 = 10 ** (-SNR_DB / 10)
    radios = [LoopbackRadio(air, "ps", noise_power=n0, realtime=True)]
    radios += [LoopbackRadio(air, f"dev{i}", noise_power=n0 / 10, realtime=True) for i in range(k)]
    for i in range(k):
        for j in range(k):
            if i != j:
                air.set_link(f"dev{i}", f"dev{j}", None)
        air.set_link("ps", f"dev{i}", LinkParams(delay_samples=delays[i]))
        air.set_link(f"dev{i}", "ps", LinkParams(delay_samples=delays[i]))
    nodes = []
    try:
        for r in radios:
            nodes.append(RadioNode(r, name=r.endpoint if hasattr(r, "endpoint") else "n", lead_s=0.02,
                                   ring_s=30.0).start())
        yield nodes
    finally:
        for n in nodes:
            n.close()


def test_cell_run_across_hosted_actors_connects_every_device_and_keeps_bursts_inside_the_cp():
    k = 2
    delays = [3.0, 11.0]            # one-way delays (samples): the round trip must be advanced away
    of = OfdmConfig.preset("wifi64", sample_rate=FS)
    sync = SyncConfig(cell_radius_m=2 * 12 / FS * 299_792_458.0)
    with _cell(k, delays) as nodes:
        hosts = {f"dev{i}": DeviceHost(nodes[1 + i], of, sync) for i in range(k)}
        try:
            run = CellRun(nodes[0], of, sync, list(hosts), DirectControl(hosts), lead=int(1.5 * FS), data_symbols=4,
                          seed=3, diagnostics=True, ps_lead=int(0.5 * FS), ps_turnaround_s=1.0,
                          device_turnaround_s=1.0)
            run.start()
            # every node, host and the PS share this one process (and its GIL): let the hosts' first reads after
            # their set-up pass before the first beacon (in `otalab cell` each is a process of its own)
            time.sleep(3.0)
            run.access()
            rounds = [run.data_round({"kind": "random", "seed": 10 + r, "n": 4 * of.n_data}, seed=10 + r)
                      for r in range(2)]
            tx = run.close()
        finally:
            for h in hosts.values():
                h.close()
    assert run.excluded == {}, run.events
    assert all(st["state"] == "connected" for st in run.state.values()), \
        [(st["state"], st["events"], st["listen_errors"], st["tracker_misses"]) for st in run.state.values()]
    assert all(st["state"] == "connected" for st in run.state.values())
    assert [r.active for r in rounds] == [[0, 1], [0, 1]]
    truths = {f"dev{i}": {"delay_samples": delays[i], "span": (0, 0), "clock_offset": 0, "sco_ppm": 0.0,
                          "cfo_hz": 0.0} for i in range(k)}
    m = measure(run, rounds, truths)
    assert len(m["timing"]) == 2 * k
    assert m["within_cp_fraction"] == 1.0
    # PRACH: the round trip 2·delay is estimated (TA step 16 samples at 64-FFT LTE scaling is finer than the CP)
    assert m["timing_rmse_samples"] < 2.0
    # the over-the-air sum against its own noise estimate: NMSE ≈ σ²/α² / K per value (E|Σ x_k|² = K for
    # unit-power x_k), the pre-equalization error adding at most a few dB (feel_air's docstring: 1.1–1.8×)
    predicted = 10 * np.log10(np.mean([r.noise_var for r in rounds]) / k)
    assert m["nmse_db"] is not None and predicted - 1.0 < m["nmse_db"] < predicted + 4.0
    assert m["nmse_db"] < -10.0
    assert tx.get("on_time", 0) + tx.get("unknown", 0) > 0 and not tx.get("rejected") and not tx.get("late")
    for st in run.state.values():
        assert st["late"] == 0 and not st["node_tx"].get("rejected") and not st["node_tx"].get("late")


def test_device_host_reports_a_step_before_setup_as_an_error():
    of = OfdmConfig.preset("wifi64", sample_rate=FS)
    air = Air(FS, 2.4e9, seed=0)
    node = RadioNode(LoopbackRadio(air, "dev0", realtime=True), name="dev0").start()
    host = DeviceHost(node, of, SyncConfig())
    try:
        reply = host.handle({"body": {"do": [{"op": "pilots", "plan": {"round": 1}}]}}, None)[0]["body"]
        assert "before 'setup'" in reply["error"]
        reply = host.handle({"body": {"do": [{"op": "nonsense"}]}}, None)[0]["body"]
        assert reply["error"]
    finally:
        host.close()
        node.close()


@pytest.mark.parametrize("bad", [None, "[]", {"do": "x"}])
def test_device_host_refuses_a_malformed_body(bad):
    of = OfdmConfig.preset("wifi64", sample_rate=FS)
    air = Air(FS, 2.4e9, seed=0)
    node = RadioNode(LoopbackRadio(air, "dev0", realtime=True), name="dev0").start()
    host = DeviceHost(node, of, SyncConfig())
    try:
        assert "expected {'do'" in host.handle({"body": bad}, None)[0]["body"]["error"]
    finally:
        host.close()
        node.close()


def _recording_node(seen: list, handed: threading.Event, fail: str | None = None):
    def call(fields, payload):
        ops = [s["op"] for s in fields["body"]["do"]]
        seen.append((ops, payload is not None))
        if "pilots" in ops:
            handed.set()
            if fail:
                return {"steps": [], "state": {}, "error": fail}
        return {"steps": [{"op": o} for o in ops], "state": {"state": "connected"}, "error": None}
    return call


ROUND = {"do": [{"op": "pilots", "plan": {}}, {"op": "feedback", "plan": {}},
                {"op": "data", "msg": {}, "values": {"kind": "feel"}, "index": 0}], "diagnostics": True}


def test_device_step_hands_the_pilots_to_the_node_before_it_makes_the_values():
    """A FEEL ClientApp's local training must not delay its pilots (at load ~4 it left them 0.4-1.4 s late): the steps
    before the data step reach the node first, the values are made meanwhile, then the data step carries them."""
    seen, handed = [], threading.Event()

    def values(step):
        assert handed.wait(5.0), "the values were made before the pilots reached the node"
        return np.arange(6, dtype=np.complex64)

    reply = device_step(ROUND, _recording_node(seen, handed), values)
    assert seen == [(["pilots", "feedback"], False), (["data"], True)]
    assert [s["op"] for s in reply["steps"]] == ["pilots", "feedback", "data"]
    assert reply["state"] == {"state": "connected"} and "values" in reply


def test_device_step_sends_no_data_when_the_pilot_steps_failed():
    seen, handed = [], threading.Event()
    reply = device_step(ROUND, _recording_node(seen, handed, fail="LateError: pilots late"),
                        lambda step: np.ones(4, np.complex64))
    assert seen == [(["pilots", "feedback"], False)]
    assert reply["error"] == "LateError: pilots late"
