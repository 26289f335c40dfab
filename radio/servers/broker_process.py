"""The ZeroMQ air's broker in a process of its own, as ``otalab air`` runs it in real use.

A realtime broker in the same process as the nodes it serves shares their GIL: starved, it releases the air's
samples late and every endpoint sees the lateness as its own. Tests and benchmarks of realtime nodes start it here.

    with BrokerProcess(1e6, 2.4e9, BrokerConfig(pacing="realtime", block_size=1000)) as b:
        radio = ZmqRadio(b.endpoint, "a")
        mono, sample = b.state()["wall_anchor"]

The child (``python -m radio.servers.broker_process SETTINGS_JSON``, :mod:`radio.servers.child`) serves an ideal air
(:class:`radio.sim.air.Air` with the given seed and default noise power) with a :class:`ChannelBroker` bound to
``bind`` (port 0: a free one). Commands: ``state`` -> ``{"now", "wall_anchor": [monotonic s, sample] or null,
"stats", "pacing_error", "endpoints": {name: {"state", ...}}}`` (the monotonic clock is the host's, shared by
every process on Linux).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from radio.servers.child import ChildServer, serve_commands
from radio.servers.zmq_broker import BrokerConfig, ChannelBroker
from radio.thread_priority import raise_thread_priority


class BrokerProcess(ChildServer):
    """A broker on an air of ``sample_rate`` S/s at ``center_freq`` Hz (``seed``, ``noise_power`` per complex
    sample), with ``config``, bound to ``bind``, in a child process; ``endpoint`` is where ZmqRadios connect."""

    def __init__(self, sample_rate: float, center_freq: float, config: BrokerConfig | None = None, *, seed: int = 0,
                 noise_power: float = 0.0, bind: str = "tcp://127.0.0.1:0", timeout_s: float = 30.0):
        settings = {"sample_rate": float(sample_rate), "center_freq": float(center_freq), "seed": int(seed),
                    "noise_power": float(noise_power), "bind": bind,
                    "config": dataclasses.asdict(config or BrokerConfig())}
        super().__init__("radio.servers.broker_process", settings, "ZeroMQ broker process", timeout_s)
        self.endpoint = self.ready["endpoint"]

    def state(self) -> dict:
        """The air's clock, the realtime wall anchor, counters and pacing error (module docstring)."""
        return self.ask("state")


def main(argv: list[str] | None = None) -> None:
    """The child: serve the air until stdin ends (module docstring)."""
    from radio.sim.air import Air  # noqa: PLC0415

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m radio.servers.broker_process SETTINGS_JSON")
    s = json.loads(argv[0])
    # a stand-in for hardware (a device's DMA, the air) is not slowed by the host's other work: every thread of
    # this process (they inherit it) above the host's ordinary ones where allowed
    priority = raise_thread_priority()
    air = Air(s["sample_rate"], s["center_freq"], s["seed"], default_noise_power=s["noise_power"])
    broker = ChannelBroker(air, BrokerConfig(**s["config"]), bind=s["bind"]).start()

    def state() -> dict:
        anchor = broker.wall_anchor()
        return {"now": broker.now, "wall_anchor": None if anchor is None else [anchor[0], int(anchor[1])],
                "stats": {k: int(v) for k, v in broker.stats.items()}, "pacing_error": broker.pacing_error(),
                "endpoints": {n: {k: v for k, v in e.items() if isinstance(v, (str, int, float, bool))}
                              for n, e in broker.endpoints().items()}}

    try:
        serve_commands({"endpoint": broker.endpoint, "pid": os.getpid(), "priority": priority}, {"state": state})
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
