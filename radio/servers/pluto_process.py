"""An emulated Pluto in a process of its own, as a real Pluto is a device of its own.

An in-process emulator shares the client's interpreter: its DMA and iiod threads and the client's RX thread, TX
feeder and node threads take turns on one GIL, so a push that left the client on time can reach the emulated DAC
late (an underflow the hardware would not have had), and the emulator's work is charged to the host. In its own
process the device model keeps its own time and the client is judged alone, as against hardware.

    with EmulatorProcess(EmulatorSettings(wallclock=True, ppm=20.0)) as emu:
        radio = PlutoRadio(PlutoArgs(uri=emu.uri), sample_rate=1e6)
        ...
        emu.state()["stats"]["tx_underflows"]

The child (``python -m radio.servers.pluto_process SPEC_JSON``, :mod:`radio.servers.child`) serves one emulator with
no RF side (digital or RF loopback, DDS; ``ppm`` allowed), or several on one simulated air of its own (devices and
air in one process apart from their clients), or emulators whose RF side is an endpoint on the ZeroMQ air
(``EmulatorSettings.air = "zmq"``: endpoint ``endpoint`` on the broker at ``address``; one device per process is
what ``otalab node`` starts, and what the multi-Pluto timing test runs: each device its own process, on the
realtime air of ``otalab air``). Commands: ``state [I]`` ->
device I's ``{"clock": {"rate", "epoch", "ppm", "m0"}, "rx_opened_at", "stats", "overflow_gaps"}`` (``m0`` on the
host's monotonic clock, which every process on a Linux host shares: CLOCK_MONOTONIC); ``stall S [I]`` ->
:meth:`PlutoEmulator.stall_host`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from radio.servers.child import ChildServer, serve_commands
from radio.servers.iiod_emulator import EmulatorSettings, start_emulated_pluto
from radio.servers.pluto_dma import DeviceClock
from radio.thread_priority import raise_thread_priority, shorten_switch_interval


class EmulatorProcess(ChildServer):
    """Emulated Plutos served by a child process. ``settings``: one device's
    :class:`radio.servers.iiod_emulator.EmulatorSettings` (no RF side), or a list of them, one per device, all on one
    simulated air of ``air`` = ``{"sample_rate", "center_freq", "seed"}`` in that process (each device an endpoint
    named by its settings' ``endpoint``; every pair linked by the air's ideal default link, none hears itself).
    ``uri``/``uris``: their libiio URIs. RadioError if the child does not come up within ``timeout_s``."""

    def __init__(self, settings: EmulatorSettings | list[EmulatorSettings] | None = None, timeout_s: float = 30.0,
                 air: dict | None = None):
        many = isinstance(settings, list)
        devices = settings if many else [settings or EmulatorSettings()]
        if many and air is None and any(d.air != "zmq" for d in devices):
            raise ValueError("EmulatorProcess: a list of devices needs air={'sample_rate', 'center_freq', 'seed'} "
                             "(or each device on the ZeroMQ air: EmulatorSettings(air='zmq', address=...))")
        if air is not None and any(d.air == "zmq" for d in devices):
            raise ValueError("EmulatorProcess: devices on the ZeroMQ air (air='zmq') cannot share a simulated air "
                             "of the process (air=...)")
        if len({d.endpoint for d in devices}) != len(devices):
            raise ValueError(f"EmulatorProcess: endpoint names must differ, got {[d.endpoint for d in devices]}")
        super().__init__("radio.servers.pluto_process",
                         {"devices": [dataclasses.asdict(d) for d in devices], "air": air},
                         "emulated Pluto process", timeout_s)
        self.uris: list[str] = self.ready["uris"]
        self.uri = self.uris[0]
        #: each device's RF side's sample rate (S/s; None without one): a client must stream at it
        self.rf_rates: list[float | None] = self.ready["rf_rates"]

    def state(self, device: int = 0) -> dict:
        """Device ``device``'s clock, the device time of the client's RX count 0 (``rx_opened_at``; None before the
        RX buffer is opened), its counters and overflow gaps (module docstring)."""
        return self.ask(f"state {int(device)}")

    def clock(self) -> DeviceClock:
        """The device's free-running clock (wall-clock mode), rebuilt in this process (valid until the client
        changes the sample rate)."""
        c = self.state()["clock"]
        if c is None:
            raise ValueError("the emulated Pluto has no free-running clock: EmulatorSettings.wallclock is false")
        return DeviceClock(c["rate"], c["epoch"], c["ppm"], c["m0"])

    def stall_host(self, seconds: float) -> None:
        """Make the device's next buffer transfers wait ``seconds`` from now (a host busy elsewhere)."""
        self.ask(f"stall {float(seconds)!r}")


def zmq_endpoint(settings: EmulatorSettings):
    """The RF side of an emulator on the ZeroMQ air: endpoint ``settings.endpoint`` on the broker at
    ``settings.address``. A wall-clock emulator needs the broker in realtime pacing (its DMA runs on the wall clock;
    on a free-paced air it would wait on a clock that only moves when everyone reads): ValueError otherwise."""
    from radio.drivers.zmq import ZmqRadio  # noqa: PLC0415  (only this RF side needs pyzmq)

    rf = ZmqRadio(settings.address, settings.endpoint, hold_clock=not settings.wallclock)
    if settings.wallclock and rf.pacing != "realtime":
        rf.close()
        raise ValueError(f"emulated Pluto {settings.endpoint!r} in wall-clock mode on the ZeroMQ air at "
                         f"{settings.address}: the broker paces {rf.pacing!r}; start it with "
                         f"radio.args.broker.pacing=realtime (otalab air)")
    return rf


def main(argv: list[str] | None = None) -> None:
    """The child: serve the emulators until stdin ends (module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m radio.servers.pluto_process SETTINGS_JSON")
    spec = json.loads(argv[0])
    devices = [EmulatorSettings(**d) for d in spec["devices"]]
    # a stand-in for hardware (a device's DMA) is not slowed by the host's other work: every thread of this
    # process (they inherit it) above the host's ordinary ones where allowed
    priority = raise_thread_priority()
    shorten_switch_interval()      # its DMA threads get the GIL back promptly from the server's (thread_priority)
    lock, rfs = None, [None] * len(devices)
    if any(d.air == "zmq" for d in devices):
        rfs = [zmq_endpoint(d) if d.air == "zmq" else None for d in devices]
    elif spec.get("air"):
        from radio.drivers.loopback import LoopbackRadio  # noqa: PLC0415  (the air's endpoints)
        from radio.drivers.pluto import air_lock  # noqa: PLC0415
        from radio.sim.air import Air  # noqa: PLC0415
        a = spec["air"]
        air = Air(a["sample_rate"], a["center_freq"], int(a.get("seed", 0)))
        lock = air_lock(air)
        with lock:
            rfs = [LoopbackRadio(air, d.endpoint) for d in devices]
    servers = []
    try:
        for d, rf in zip(devices, rfs):
            servers.append(start_emulated_pluto(rf, d.port, host=d.host, settings=d, lock=lock)[0])

        def state(device: str = "0") -> dict:
            emu = servers[int(device)].emulator
            with emu.lock:
                clock = getattr(emu, "_clock", None)
                return {"clock": None if clock is None else {"rate": clock.rate, "epoch": clock.epoch,
                                                             "ppm": clock.ppm, "m0": clock.m0},
                        "rx_opened_at": getattr(emu, "rx_opened_at", None), "stats": dict(emu.stats),
                        "overflow_gaps": [list(g) for g in getattr(emu, "overflow_gaps", [])],
                        "tx_slips": list(getattr(emu, "tx_slips", []))}

        def pushes(device: str = "0") -> dict:
            emu = servers[int(device)].emulator
            with emu.lock:
                return {"tx_pushes": list(getattr(emu, "tx_pushes", []))}

        def stall(seconds: str, device: str = "0") -> dict:
            servers[int(device)].emulator.stall_host(float(seconds))
            return {"stalled": float(seconds)}

        serve_commands({"uris": [s.uri for s in servers], "pid": os.getpid(), "priority": priority,
                        "rf_rates": [None if rf is None else rf.sample_rate for rf in rfs]},
                       {"state": state, "stall": stall, "pushes": pushes})
    finally:
        for server in servers:
            server.close()
        for rf in rfs:
            if rf is not None:
                rf.close()


if __name__ == "__main__":
    main()
