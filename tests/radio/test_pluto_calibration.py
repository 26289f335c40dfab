"""A streaming Pluto measures its TX stream's offset against its RX count at open (digital loopback) and takes it out
of every later burst: the emulated device's unknown TX->RX latency and the TX stream's start offset (what the DAC
plays later than the RX count its samples are labelled with) vanish, so a burst for ``at`` is received at ``at`` to
the sample. Without it the offset is thousands of samples (random access could not find a preamble; see
docs/cell.md)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from radio.base import LateError
from radio.drivers.pluto import PlutoArgs, PlutoRadio
from radio.servers.iiod_emulator import EmulatorSettings

try:
    import adi  # noqa: F401
    WHY = ""
except (ImportError, OSError) as exc:
    WHY = f"pyadi-iio and the system libiio0 are needed ({exc})"
pytestmark = [pytest.mark.iio, pytest.mark.skipif(bool(WHY), reason=WHY or "ok")]

RATE = 521e3   # the Pluto's lowest rate (FIR decimating by 4): the cell's
#: how far beyond the radio's own lead the probes are scheduled: a loaded CI host took 9,288 samples (18 ms) between
#: time_now() and tx() where the margin was 3,000 (LateError); where a burst lands does not depend on it
SLACK = int(0.1 * RATE)


def _open(latency: int, calibrate: bool | None, seed: int) -> PlutoRadio:
    args = PlutoArgs(emulate=True, rx_buffer_size=16384, tx_buffer_size=4096, kernel_buffers=8, tx_kernel_buffers=8,
                     calibrate_tx=calibrate,
                     emulator=EmulatorSettings(wallclock=True, tx_latency_samples=latency, seed=seed))
    return PlutoRadio.emulated(None, args, process=True, sample_rate=RATE, tx_gain=0.0, rx_gain=0.0)


def _arrival(radio: PlutoRadio, at: int) -> int:
    """Where a probe scheduled for ``at`` shows in this radio's RX in digital loopback (offset from ``at``)."""
    x = (0.5 * np.exp(2j * np.pi * np.random.default_rng(at % 1000).random(512))).astype(np.complex64)
    radio.loopback = 1
    try:
        radio.tx(x, at)
        y, _ = radio.rx(40_000, at - 1000)
    finally:
        radio.loopback = 0
    c = np.abs(np.correlate(y, x, "valid"))
    assert c.max() > 10 * np.median(c)
    return int(np.argmax(c)) - 1000


@pytest.mark.parametrize("latency", [0, 1999])
def test_calibrated_bursts_arrive_at_the_sample_asked(latency):
    r = _open(latency, None, seed=latency + 1)    # on by default when streaming with the loopback off
    try:
        cal = r.tx_calibration
        assert cal is not None and cal["attempts"] >= 1 and cal["primed"] and r.tx_lock["primed"]
        assert cal["offset_samples"] >= latency    # it holds the device's latency plus the stream's start offset
        assert r.settings()["tx_calibration"] == cal
        # min_lead grows by the offset: the burst must be pushed that much earlier
        assert r.min_lead_samples() == r._stream.min_lead() + cal["offset_samples"]
        for k in range(3):
            at = r.time_now() + r.min_lead_samples() + SLACK + 3000 * k
            assert _arrival(r, at) == 0
            assert r.tx_status(at, 2.0).state == "on_time"
        with pytest.raises(LateError) as late:    # the lead it names is in RX-count time, offset included
            r.tx(np.ones(16, np.complex64), r.time_now() + 10)
        assert late.value.now >= r.time_now() + r._stream.min_lead()
    finally:
        r.close()


def test_without_calibration_the_offset_is_large_and_constant():
    """What the calibration removes: thousands of samples (DMA queues, the stream's start), the same for every
    burst while the lock holds (which is why one measurement at open serves the whole run)."""
    r = _open(777, False, seed=5)
    try:
        assert r.tx_calibration is None
        time.sleep(0.5)    # the feeder fills the DAC's queue first (min_lead grows until then)
        offsets = [_arrival(r, r.time_now() + r.min_lead_samples() + SLACK + 3000 * k) for k in range(3)]
        assert offsets[0] > 777 + 1000 and len(set(offsets)) == 1, offsets
    finally:
        r.close()


def test_calibration_needs_streaming():
    with pytest.raises(ValueError, match="calibrate_tx needs streaming"):
        PlutoArgs(emulate=True, streaming=False, calibrate_tx=True)


def test_after_a_tx_slip_the_next_burst_measures_the_offset_again_and_lands_at_its_sample():
    """The host stalls longer than the TX queue (injected: buffer transfers wait 0.2 s; 8 x 4096 TX samples are 63 ms
    at 521 kS/s): the DAC runs dry, the stream slips (a new lock epoch) and the calibrated offset is stale. The next
    burst measures it again first and lands at its sample in digital loopback; the interval the radio heard its own
    TX instead of the air is reported lost (rx_gaps), and the recalibration is on record."""
    r = _open(300, None, seed=21)
    try:
        epoch0 = r.tx_calibration["lock_epoch"]
        r.emulator_process.stall_host(0.2)
        deadline = time.monotonic() + 10
        while not (r.tx_lock["epoch"] > epoch0 and r.tx_lock["locked"]):
            assert time.monotonic() < deadline, f"no slip and re-lock after the stall: {r.tx_lock}"
            time.sleep(0.05)
        assert r.tx_recalibrations == []
        at = r.time_now() + 10 * r.min_lead_samples() + 100_000    # past the recalibration (it reads 6 leads)
        assert _arrival(r, at) == 0
        rec = r.tx_recalibrations[-1]
        assert rec["epoch"] > epoch0 and r.tx_calibration["lock_epoch"] == r.tx_lock["epoch"]
        assert rec["offset"] == r.tx_calibration["offset_samples"]
        a, b = rec["deaf"]
        assert (a, b) in r.rx_gaps() and b - a > 2 * r._stream.min_lead()
        assert r.timing_state()["tx_recalibrations"][-1] == rec
    finally:
        r.close()
