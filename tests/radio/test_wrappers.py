"""radio.wrappers: one base class forwards the Radio contract; wrappers override only what they change."""

from __future__ import annotations

import numpy as np
import pytest

from radio.drivers.loopback import loopback_pair
from radio.recording import RecordingRadio
from radio.wrappers import OffsetClockRadio, RadioWrapper


def test_offset_clock_translates_times_and_forwards_everything_else():
    a, b = loopback_pair()
    a.stats = {"tx_bursts": 0}          # a driver-specific attribute is reached through the wrapper
    w = OffsetClockRadio(a, -1000)
    assert isinstance(w, RadioWrapper)
    assert (w.sample_rate, w.center_freq, w.capabilities, w.driver) == (a.sample_rate, a.center_freq,
                                                                        a.capabilities, a.driver)
    assert w.time_now() == a.time_now() - 1000 and w.stats is a.stats
    burst = np.full(8, 0.5, np.complex64)
    t = w.tx(burst, at=w.time_now() + 50)
    assert t == a.time_now() - 1000 + 50
    y, t0 = b.rx(100, at=0)
    np.testing.assert_array_equal(y[50:58], burst)           # left at global time t + 1000
    assert w.settings()["clock_offset"] == -1000
    with pytest.raises(AttributeError):
        w._private_thing
    with pytest.raises(ValueError, match="integer number of samples"):
        OffsetClockRadio(a, 1.5)


def test_wrappers_stack(tmp_path):
    a, _ = loopback_pair()
    rec = RecordingRadio(OffsetClockRadio(a, 7), tmp_path / "r")
    assert rec.time_now() == a.time_now() + 7 and rec.settings()["clock_offset"] == 7
    x, t0 = rec.rx(10)
    assert t0 == 7 and rec.inner.inner is a
    rec.close()
