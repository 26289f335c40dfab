"""PlutoRadio streaming against the emulator's wall-clock DMA mode: the clock keeps tracking the device while the host
is busy, TX stays locked to RX (a constant offset, bursts placed to the sample), and a host stall longer than the
kernel buffers gives a flagged gap of the right length (within the stated uncertainty) and a reported loss of lock.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from radio.base import LateError, RadioError
from radio.drivers.pluto import PlutoArgs, PlutoRadio
from radio.servers.iiod_emulator import EmulatorSettings
from tests.radio.realtime import timing_judged

try:
    import adi  # noqa: F401
    WHY = ""
except (ImportError, OSError) as exc:
    WHY = f"pyadi-iio and the system libiio0 are needed ({exc})"
pytestmark = [pytest.mark.iio, pytest.mark.skipif(bool(WHY), reason=WHY or "ok")]

RATE = 1e6


@pytest.fixture
def streaming_radio():
    radios = []

    def make(block=16384, kernel_buffers=8, **settings):
        """1 MS/s; RX: kernel_buffers x block (131 ms by default: slack for a loaded CI host), TX buffers of 8192."""
        args = PlutoArgs(emulate=True, loopback=1, rx_buffer_size=block, tx_buffer_size=8192,
                         kernel_buffers=kernel_buffers, emulator=EmulatorSettings(wallclock=True, **settings))
        r = PlutoRadio.emulated(None, args, process=True, sample_rate=RATE, tx_gain=0.0, rx_gain=0.0)
        radios.append(r)
        return r

    yield make
    for r in radios:
        r.close()


def test_clock_tracks_the_device_while_the_host_is_busy(streaming_radio):
    r = streaming_radio(seed=11)
    assert r.tx_lock["locked"] and r.settings()["streaming"]
    time.sleep(0.3)                                          # start-up: the first buffers are drained
    points = []
    for _ in range(21):                                      # nobody calls rx(): the receive thread keeps the count
        points.append((time.monotonic(), r.time_now()))
        time.sleep(0.1)
    m, t = np.array(points).T
    slope = np.polyfit(m - m[0], t - t[0], 1)[0]             # the count's rate over 2 s (lag jitter averages out)
    assert slope == pytest.approx(RATE, rel=0.2)                # (a starved host lags; gaps catch up later)
    assert np.max(np.abs(t - t[0] - slope * (m - m[0]))) <= 9 * 16384   # lag bounded by the kernel buffers + 1
    epoch = r.tx_lock["epoch"]
    at = r.time_now() + r.min_lead_samples() + 16384
    r.tx(np.full(16, 0.1, np.complex64), at)
    status = r.tx_status(at, timeout_s=3.0)                  # pushed, and the DAC status read since
    assert status.state == "on_time" or (status.state == "underflow" and r.tx_lock["epoch"] > epoch), status
    assert r.tx_status(at + 1).state == "unknown"            # nothing was scheduled there
    with pytest.raises(LateError, match="schedule at least"):
        r.tx(np.ones(10, np.complex64) * 0.1, at=r.time_now())
    with pytest.raises(RadioError, match="while streaming"):
        r.rx_buffer_size = 1000


def test_refill_stamps_say_when_each_block_was_complete_at_the_device(streaming_radio):
    """rx_arrivals(): when each refill returned, and the shortest refill (a block already queued), reported only.
    Against the emulator's device clock (its ADC, 15 ppm off the host): a refill never returns before the block's last
    sample existed, and the most prompt returns within 1 ms of it (judged on a host that is not overloaded), so the
    node maps by the stamps as they are. The shortest refill is no estimate of that lateness: it also holds the
    request's round trip (subtracted, it put a fresh clone's stamps 5 ms early in CI). Stamps after an RX gap are left
    out: the index there is an estimate."""
    r = streaming_radio(block=8192, kernel_buffers=16, seed=5, ppm=-15.0)
    load_before = os.getloadavg()[0]
    r.rx_arrivals()
    time.sleep(1.5)
    stamps, transfer = r.rx_arrivals()
    emu = r.emulator_process
    clock, rx0 = emu.clock(), emu.state()["rx_opened_at"]
    first_gap = min((a for a, _ in r.rx_gaps()), default=None)
    raw = np.array([m - clock.mono_at(rx0 + t) for t, m in stamps if first_gap is None or t <= first_gap])
    assert len(stamps) >= 1 and np.all(np.diff([t for t, _ in stamps]) > 0)    # in order
    assert 0 < transfer < 0.1 and raw.size >= 1 and raw.min() > 0, (transfer, raw.min())
    with timing_judged(load_before):
        assert raw.size >= 100 and raw.min() < 1e-3, (raw.size, raw.min())   # (183 blocks in 1.5 s)


def test_a_pluto_on_the_realtime_zeromq_air_keeps_its_bursts_apart_to_the_sample():
    """emulator.air = zmq: the emulated Pluto is endpoint "p" on a realtime broker (in its own process), the emulator
    in its own. Two bursts 20,000 RX counts apart reach another endpoint exactly 20,000 air samples apart, bit-true up
    to the int16 TX words (|error| <= 2**-14: unit link, no noise); a wall-clock emulator on a free-paced air and a
    client rate other than the air's are refused, naming the setting."""
    from radio.drivers.zmq import ZmqRadio
    from radio.servers.broker_process import BrokerProcess
    from radio.servers.zmq_broker import BrokerConfig

    with BrokerProcess(RATE, 2.4e9, BrokerConfig(pacing="free")) as free:
        with pytest.raises(RadioError, match="pacing=realtime"):
            PlutoRadio.emulated(None, PlutoArgs(emulate=True, emulator=EmulatorSettings(
                wallclock=True, air="zmq", address=free.endpoint, endpoint="q")), process=True, sample_rate=RATE)
    rng = np.random.default_rng(9)
    burst = (0.5 * np.exp(0.5j * np.pi * (rng.integers(0, 4, 500) + 0.5))).astype(np.complex64)
    with BrokerProcess(RATE, 2.4e9, BrokerConfig(pacing="realtime", block_size=10_000)) as broker:
        settings = EmulatorSettings(wallclock=True, air="zmq", address=broker.endpoint, endpoint="p",
                                    tx_latency_samples=77)
        args = PlutoArgs(emulate=True, rx_buffer_size=8192, tx_buffer_size=4096, kernel_buffers=8,
                         tx_kernel_buffers=8, emulator=settings)
        with pytest.raises(RadioError, match="runs at 1e\\+06 S/s"):
            PlutoRadio.emulated(None, args, process=True, sample_rate=2e6, tx_gain=0.0, rx_gain=0.0)
        probe = ZmqRadio(broker.endpoint, "probe")
        r = PlutoRadio.emulated(None, args, process=True, sample_rate=RATE, tx_gain=0.0, rx_gain=0.0)
        try:
            assert "p" in broker.state()["endpoints"] and r.tx_lock["locked"]
            t_start = probe.time_now()
            load_before = os.getloadavg()[0]
            at1 = r.time_now() + r.min_lead_samples() + 20_000
            r.tx(burst, at1)
            r.tx(burst, at1 + 20_000)
            states = [r.tx_status(at, timeout_s=3.0).state for at in (at1, at1 + 20_000)]
            y, t0 = probe.rx(probe.time_now() - t_start, t_start)
        finally:
            r.close()
            probe.close()
    ref = np.conj(burst[::-1])
    c = np.abs(np.convolve(y, ref, mode="valid"))
    peaks = np.flatnonzero(c > 0.5 * np.sum(np.abs(burst) ** 2))
    with timing_judged(load_before):       # (a slip on a starved host: reported, and the bursts may move)
        assert states == ["on_time", "on_time"], states
    if states == ["on_time", "on_time"]:
        assert peaks.size == 2 and peaks[1] - peaks[0] == 20_000, peaks[:10]
        for p in peaks:
            assert np.max(np.abs(y[p:p + burst.size] - burst)) <= 2.0 ** -14


def constant_offsets(r, rng, count: int) -> tuple[int, int, list[int], list[int]]:
    """Send ``count`` bursts, each a little more than min_lead ahead of a different time_now(), read each back
    (digital loopback) and return (first offset, its epoch, offsets, epochs): the offset (arrival − at) is found once
    with a wide window, then looked for right where it must be while the lock's epoch is unchanged. A burst the radio
    reports not on time (a slip) is skipped; one it reports on time must be there."""

    def send(window_start: int, window: int) -> tuple[int, int]:
        burst = ((rng.integers(1, 4, 64) + 1j) * 0.05).astype(np.complex64)
        at = r.time_now() + r.min_lead_samples() + 16384 + int(rng.integers(0, 3000))   # margin: the feeder runs
        r.tx(burst, at)
        status = r.tx_status(at, timeout_s=3.0)    # pushed, and the DAC's status read since
        if status.state != "on_time":              # a slip (or an RX gap) reported: no known offset
            return None, r.tx_lock["epoch"]
        y, t = r.rx(window + 64, at + window_start)
        # this burst (random, so told from earlier ones in a window that may reach back before ``at``)
        found = [k for k in np.flatnonzero(np.abs(y[:window] - burst[0]) < 1e-4)
                 if np.allclose(y[k:k + 64], burst, atol=1e-4)]
        assert len(found) == 1, f"burst found {len(found)} times while the lock claims to hold ({status})"
        return t + int(found[0]) - at, status.lock_epoch

    for _ in range(5):                 # (a slip on a busy host: try again)
        offset0, epoch0 = send(-500_000, 1_000_000)   # (the constant may be negative: PlutoStream's labels)
        if offset0 is not None:
            break
    assert offset0 is not None, "none of 5 bursts left on time"
    offsets, epochs = [], []
    for _ in range(count):
        o, e = send(offset0 - 1000, 2000) if r.tx_lock["epoch"] == epoch0 else send(-500_000, 1_000_000)
        if o is not None:
            offsets.append(o)
            epochs.append(e)
    return offset0, epoch0, offsets, epochs


def test_bursts_keep_one_constant_offset(streaming_radio):
    """50 bursts at different lead times: in digital loopback each arrives exactly the same number of samples after
    its ``at`` (the locked TX→RX latency) — std 0 — for as long as the lock holds; a slip (possible on an overloaded
    host) is reported as a new epoch."""
    load_before = os.getloadavg()[0]
    r = streaming_radio(seed=12, tx_latency_samples=321)
    offset0, epoch0, offsets, epochs = constant_offsets(r, np.random.default_rng(3), 50)
    st = r.settings()                     # every slip reported: TX underflows and RX gaps (estimated) each
    assert r.tx_lock["epoch"] == st["stream_tx_underflows"] + st["stream_rx_gaps"]     # start an epoch
    same = [o for o, e in zip(offsets, epochs) if e == epoch0]
    assert set(same) <= {offset0}                            # one constant while the epoch holds, on any host
    with timing_judged(load_before):                         # enough bursts before a slip: a host not overloaded
        assert len(same) >= 10


def test_host_stall_longer_than_the_kernel_buffers_gives_a_flagged_gap_and_reports_the_lock_lost(streaming_radio):
    """1 MS/s, 8 kernel buffers of 16384 (131 ms); the host stalls 500 ms (injected: buffer transfers wait). The RX
    count is not shifted: the stall's gap is zero-filled and listed, its length within the stated uncertainty of the
    samples the device really lost (the emulator's record), so the index after it is true to that bound; the TX
    feeder underflowed, so the lock is reported lost with a new epoch; bursts after it again keep one (new) constant
    offset."""
    load_before = os.getloadavg()[0]
    r = streaming_radio(seed=13, tx_latency_samples=50)
    emu = r.emulator_process
    time.sleep(0.2)
    gaps_before, emu_gaps_before = len(r.gaps), len(emu.state()["overflow_gaps"])
    emu.stall_host(0.5)
    time.sleep(1.0)
    new = r.gaps[gaps_before:]
    assert new, "no gap flagged"
    stall_at, restart = emu.state()["overflow_gaps"][emu_gaps_before]   # the stall's (a loaded host may add more)
    assert abs(new[0][1] - (restart - stall_at)) <= r._stream.gap_uncertainty   # within the stated bound
    with timing_judged(load_before):       # the bound grows with the refills' latency spread: tight on a host
        assert r._stream.gap_uncertainty <= 0.02 * RATE                           # that is not overloaded
    index, length = new[0]
    y, t = r.rx(length, index)
    assert np.all(y == 0)                                     # the gap is there, zero-filled, at its index
    lock = r.tx_lock
    # reported lost (a new epoch; re-locked at a new constant once RX and TX caught up)
    assert lock["epoch"] >= 1 and "lost_at" in lock and r.settings()["stream_tx_underflows"] >= 1
    offset0, epoch0, offsets, epochs = constant_offsets(r, np.random.default_rng(4), 5)
    assert set(o for o, e in zip(offsets, epochs) if e == epoch0) <= {offset0}


def test_tdd_needs_firmware_with_the_tdd_engine():
    with pytest.raises(RadioError, match=r"firmware >= 0.39"):
        PlutoRadio.emulated(None, PlutoArgs(emulate=True, tdd=True), sample_rate=RATE)
