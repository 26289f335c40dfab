"""A radio node's lead covers its radio's own: a burst the radio could only send late is not accepted."""

from __future__ import annotations

import sys

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
