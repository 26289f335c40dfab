"""A radio node's lead covers its radio's own: a burst the radio could only send late is not accepted."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from radio.drivers.loopback import LoopbackRadio
from radio.node import RadioNode
from radio.node.port import NodePort
from radio.sim.air import Air
from radio.thread_priority import shorten_switch_interval
from radio.wrappers import RadioWrapper

FS = 1e5


class _QueuedTx(RadioWrapper):
    """A realtime loopback radio that, like a streaming Pluto, needs its bursts ``lead`` samples ahead."""

    def __init__(self, inner, lead: int):
        super().__init__(inner)
        self.lead = lead

    def min_lead_samples(self) -> int:
        return self.lead


class _PushedTx(_QueuedTx):
    """Like a streaming Pluto, whose ``tx`` returns only once the burst is pushed into the TX stream, ``lead``
    samples before its time (the loopback radio takes a burst at once: more lenient than the radio it stands for)."""

    def tx(self, samples, at=None):
        while at is not None and self.time_now() < at - self.lead:
            time.sleep(0.002)
        return self.inner.tx(samples, at)


def test_the_node_lead_is_the_radios_own_when_that_is_longer():
    air = Air(FS, 2.4e9, seed=0)
    radio = _QueuedTx(LoopbackRadio(air, "a", noise_power=0.0, realtime=True), lead=int(0.3 * FS))
    node = RadioNode(radio, name="a", lead_s=0.02).start()
    port = NodePort(node)
    try:
        st = node.status()
        assert st["lead_requested_s"] == 0.02 and st["radio_lead_s"] == 0.3 and st["lead_s"] == 0.3
        assert port.lead == int(0.3 * FS)
        burst = np.ones(64, np.complex64)
        now = node.time_now()
        res = node.submit(burst, now + int(0.1 * FS)).result(5)        # ahead of 20 ms, not of the radio's 300 ms
        assert res.state == "rejected" and "lead 30000" in res.detail
        res = node.submit(burst, node.time_now() + int(0.5 * FS)).result(5)
        assert res.state != "rejected"
    finally:
        port.close()
        node.close()


def test_a_shorter_radio_lead_leaves_the_requested_one():
    air = Air(FS, 2.4e9, seed=0)
    node = RadioNode(LoopbackRadio(air, "a", noise_power=0.0, realtime=True), name="a", lead_s=0.05)
    try:
        assert node.lead_s == 0.05 and node.radio_lead_s == 0.0
    finally:
        node.close()


def test_streaming_processes_hand_the_gil_over_within_half_a_millisecond():
    old = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        assert shorten_switch_interval() == pytest.approx(0.0005) == sys.getswitchinterval()
        sys.setswitchinterval(0.0001)                 # never lengthened
        assert shorten_switch_interval() == pytest.approx(0.0001)
    finally:
        sys.setswitchinterval(old)


@pytest.mark.parametrize("remote", [False, True])
def test_a_phase_of_many_bursts_scheduled_at_once_is_all_accepted(remote):
    """An actor hands a whole phase to its port at once (the access beacons and their ladder: 7 bursts). Each must
    reach the node while it is still ``lead`` ahead: none may wait for an earlier one to leave. With 4 port workers
    each blocked until its burst left, the 5th to 12th burst here (20 ms apart, the first 0.4 s ahead, lead 0.2 s)
    reached the node after the first had left and were refused as too late."""
    from radio.node.server import NodeClient, NodeServer

    air = Air(FS, 2.4e9, seed=0)
    radio = _PushedTx(LoopbackRadio(air, "a", noise_power=0.0, realtime=True), lead=int(0.1 * FS))
    node = RadioNode(radio, name="a", lead_s=0.2).start()
    srv = NodeServer(node).start() if remote else None
    client = NodeClient(srv.endpoint) if remote else None
    port = NodePort(client if remote else node)
    try:
        start = port.time_now() + int(0.4 * FS)
        for k in range(12):
            port.tx(np.ones(64, np.complex64), start + k * int(0.02 * FS))
        states = port.flush(timeout_s=10.0)
        assert states == {"on_time": 12}, (states, port.tx_errors)
    finally:
        port.close()
        if remote:
            client.close()
            srv.stop()
        node.close()
