"""lab.flower.supernode: Flower's SuperNode with its idle wait shortened, everything else as Flower has it."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("flwr")

from flwr.supernode import start_client_internal as loop  # noqa: E402

from lab.flower.supernode import IDLE_WAIT_S, main, shorten_idle_wait  # noqa: E402


def test_only_the_idle_wait_is_shortened(monkeypatch):
    monkeypatch.setattr(loop, "time", time)      # restored after the test
    assert shorten_idle_wait(0.05)
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    loop.time.sleep(IDLE_WAIT_S)
    loop.time.sleep(0.5)                          # the loop's other waits keep their length
    assert slept == [0.05, 0.5]
    assert loop.time.monotonic is time.monotonic


def test_bad_poll_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(loop, "time", time)
    with pytest.raises(ValueError, match="--poll-s 5"):
        shorten_idle_wait(5.0)
    assert main(["--poll-s", "x"]) == 2
    assert main(["--poll-s", "0"]) == 2
    assert "--poll-s" in capsys.readouterr().err
