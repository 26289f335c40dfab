"""Fixtures shared by the radio tests."""

from __future__ import annotations

import pytest

from radio.servers.iiod_emulator import EmulatorSettings, start_emulated_pluto


@pytest.fixture
def served():
    """Factory: start an emulator on ``radio`` (None: loopback-only); stopped at teardown."""
    servers = []

    def start(radio=None, **settings):
        server, uri = start_emulated_pluto(radio, 0, settings=EmulatorSettings(**settings))
        servers.append(server)
        return server, uri

    yield start
    for s in servers:
        s.close()
