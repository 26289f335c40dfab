"""LoopbackRadio: timed TX/RX to the sample, several radios on one air, bounded buffers, LateError."""

from __future__ import annotations

import numpy as np
import pytest

from radio.sim.air import Air
from radio.base import LateError
from radio.sim.channel import LinkParams
from radio.drivers.loopback import LoopbackArgs, LoopbackRadio, loopback_pair

FS = 1e6
FC = 915e6


def test_pair_delivers_burst_at_tx_time_plus_delay():
    """Noise-free integer-delay link: rx sees burst[n − at − D] exactly (timed TX/RX are sample exact)."""
    tx, rx = loopback_pair(None, LinkParams(delay_samples=7), seed=1, sample_rate=FS, center_freq=FC)
    burst = (np.arange(50) + 1j).astype(np.complex64)
    at = tx.time_now() + 123
    assert tx.tx(burst, at=at) == at
    y, t0 = rx.rx(300)
    assert t0 == 0
    expected = np.zeros(300, np.complex64)
    expected[at + 7:at + 57] = burst
    np.testing.assert_array_equal(y, expected)
    assert rx.time_now() == 300 and tx.time_now() == 300
    assert rx.capabilities.timed_tx and rx.capabilities.timed_rx and rx.capabilities.simulated


def test_pair_snr_matches_request(rng):
    """loopback_pair(snr_db): receiver noise variance 10^(−SNR/10) per complex sample → SNR of a unit-power white
    signal within ±0.1 dB (100 000 samples: standard error ≈ 0.014 dB)."""
    tx, rx = loopback_pair(8.0, seed=3, sample_rate=FS, center_freq=FC)
    x = ((rng.standard_normal(100_000) + 1j * rng.standard_normal(100_000)) / np.sqrt(2)).astype(np.complex64)
    tx.tx(x)                                             # at=None: now
    y, _ = rx.rx(x.size, at=0)
    assert 10 * np.log10(1 / np.mean(np.abs(y - x) ** 2)) == pytest.approx(8.0, abs=0.1)


def test_parameter_server_hears_sum_and_devices_read_later():
    """Several radios on one air: 3 devices transmit at once, the PS receives the sum (over-the-air superposition);
    a device that reads afterwards still gets the PS's earlier broadcast from the shared buffer."""
    air = Air(FS, FC, seed=2)
    ps = LoopbackRadio(air, "ps")
    devs = [LoopbackRadio(air, f"dev{k}") for k in range(3)]
    for d in devs:                                       # devices do not hear each other in this test
        for e in devs:
            if d is not e:
                air.set_link(d.name, e.name, None)
    beacon = np.full(20, 0.5, np.complex64)
    ps.tx(beacon, at=10)
    for k, d in enumerate(devs):
        d.tx(np.full(30, k + 1, np.complex64), at=100)
    y, t0 = ps.rx(200, at=0)
    assert t0 == 0
    np.testing.assert_array_equal(y[100:130], 1 + 2 + 3)
    np.testing.assert_array_equal(y[:100], 0)
    for d in devs:
        z, t = d.rx(50, at=0)
        np.testing.assert_array_equal(z[10:30], 0.5)
        z2, t2 = d.rx(150)                               # continues where the last rx ended
        assert t2 == 50 and z2.size == 150


def test_reading_dropped_samples_raises_late_error():
    """Consumed samples are gone: rx(at) before the read cursor raises LateError (base.Radio contract)."""
    tx, rx = loopback_pair(None, sample_rate=FS, center_freq=FC)
    rx.rx(100)
    with pytest.raises(LateError) as exc:
        rx.rx(10, at=50)
    assert exc.value.at == 50
    y, t = rx.rx(10, at=500)                             # skipping ahead is fine
    assert t == 500
    with pytest.raises(LateError):
        tx.tx(np.ones(4, np.complex64), at=100)          # the air is already at 510


def test_buffer_of_a_radio_that_never_reads_is_bounded():
    """A radio that only transmits keeps at most max_buffer_samples of received samples; older ones are dropped and
    asking for them raises LateError."""
    air = Air(FS, FC)
    quiet = LoopbackRadio.from_args(air, LoopbackArgs(endpoint="quiet", max_buffer_samples=1000))
    busy = LoopbackRadio(air, "busy")
    for _ in range(50):
        busy.rx(500)
    from radio.drivers.loopback import _hub
    buf = _hub(air).buffers["quiet"]
    assert buf.size <= 1000
    with pytest.raises(LateError):
        quiet.rx(10, at=0)
    y, t = quiet.rx(100, at=air.now - 200)
    assert t == air.now - 200 and y.size == 100


def test_args_validation_and_closed_radio():
    with pytest.raises(ValueError, match="max_buffer_samples"):
        LoopbackArgs(max_buffer_samples=0)
    with pytest.raises(ValueError, match="endpoint"):
        LoopbackArgs(endpoint="")
    air = Air(FS, FC)
    with LoopbackRadio(air, "a") as a:
        assert a.settings()["endpoint"] == "a"
        with pytest.raises(ValueError, match="'a'"):
            LoopbackRadio(air, "a")
    with pytest.raises(ValueError, match="closed"):
        a.rx(1)
