"""An emulated Pluto in a process of its own, as a real Pluto is a device of its own.

An in-process emulator shares the client's interpreter: its DMA and iiod threads and the client's RX thread, TX
feeder and node threads take turns on one GIL, so a push that left the client on time can reach the emulated DAC
late (an underflow the hardware would not have had), and the emulator's work is charged to the host. In its own
process the device model keeps its own time and the client is judged alone, as against hardware.

    with EmulatorProcess(EmulatorSettings(wallclock=True, ppm=20.0)) as emu:
        radio = PlutoRadio(PlutoArgs(uri=emu.uri), sample_rate=1e6)
        ...
        emu.state()["stats"]["tx_underflows"]

The child (``python -m radio.servers.pluto_process SETTINGS_JSON``, :mod:`radio.servers.child`) serves one emulator
with no RF side (digital or RF loopback, DDS; ``ppm`` allowed). Commands: ``state`` -> ``{"clock": {"rate",
"epoch", "ppm", "m0"}, "rx_opened_at", "stats", "overflow_gaps"}`` (``m0`` on the host's monotonic clock, which every
process on a Linux host shares: CLOCK_MONOTONIC); ``stall S`` -> :meth:`PlutoEmulator.stall_host`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from radio.servers.child import ChildServer, serve_commands
from radio.servers.iiod_emulator import EmulatorSettings, start_emulated_pluto
from radio.servers.pluto_dma import DeviceClock
from radio.thread_priority import raise_thread_priority


class EmulatorProcess(ChildServer):
    """One emulated Pluto (``settings``: :class:`radio.servers.iiod_emulator.EmulatorSettings`, no RF side) served by
    a child process; ``uri`` is its libiio URI. RadioError if the child does not come up within ``timeout_s``."""

    def __init__(self, settings: EmulatorSettings | None = None, timeout_s: float = 30.0):
        super().__init__("radio.servers.pluto_process", dataclasses.asdict(settings or EmulatorSettings()),
                         "emulated Pluto process", timeout_s)
        self.uri = self.ready["uri"]

    def state(self) -> dict:
        """The device's clock, the device time of the client's RX count 0 (``rx_opened_at``; None before the RX
        buffer is opened), its counters and overflow gaps (module docstring)."""
        return self.ask("state")

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


def main(argv: list[str] | None = None) -> None:
    """The child: serve one emulator until stdin ends (module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m radio.servers.pluto_process SETTINGS_JSON")
    settings = EmulatorSettings(**json.loads(argv[0]))
    # a stand-in for hardware (a device's DMA, the air) is not slowed by the host's other work: every thread of
    # this process (they inherit it) above the host's ordinary ones where allowed
    priority = raise_thread_priority()
    server, uri = start_emulated_pluto(None, settings.port, host=settings.host, settings=settings)
    emu = server.emulator

    def state() -> dict:
        with emu.lock:
            clock = getattr(emu, "_clock", None)
            return {"clock": None if clock is None else {"rate": clock.rate, "epoch": clock.epoch, "ppm": clock.ppm,
                                                         "m0": clock.m0},
                    "rx_opened_at": getattr(emu, "rx_opened_at", None), "stats": dict(emu.stats),
                    "overflow_gaps": [list(g) for g in getattr(emu, "overflow_gaps", [])]}

    def stall(seconds: str) -> dict:
        emu.stall_host(float(seconds))
        return {"stalled": float(seconds)}

    try:
        serve_commands({"uri": uri, "pid": os.getpid(), "priority": priority}, {"state": state, "stall": stall})
    finally:
        server.close()


if __name__ == "__main__":
    main()
