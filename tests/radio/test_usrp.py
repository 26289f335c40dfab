"""The USRP driver (radio/drivers/usrp.py) against a recording double of UHD's API, plus hardware tests that need a USRP.

Hardware tests (marked ``hardware``) skip without a USRP; on a lab machine run::

    OTALAB_USRP_ARGS="type=b200" .venv/bin/python -m pytest -m hardware tests/radio/test_usrp.py -v
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lab.config import ConfigError, build
from radio.drivers import usrp as usrp_mod
from radio.base import LateError, RadioError
from radio.drivers.usrp import UsrpArgs, UsrpRadio
from tests.radio.uhd_double import make_uhd

RATE = 20e6
HW_COMMAND = 'OTALAB_USRP_ARGS="type=b200" .venv/bin/python -m pytest -m hardware tests/radio/test_usrp.py -v'


def _open(args: UsrpArgs | None = None, rate=RATE, quantum=None, **kw):
    uhd, dev, log = make_uhd(quantum)
    radio = UsrpRadio(rate, 2.45e9, 10.0, 20.0, args or UsrpArgs(args="type=b200"), uhd_module=uhd, **kw)
    return radio, dev, log


def test_open_configures_rates_tuning_gains_streams_and_time():
    radio, dev, log = _open(UsrpArgs(args="type=b200", tx_antenna="TX/RX", rx_antenna="RX2", lo_offset=2e6,
                                     bandwidth=18e6, master_clock_rate=40e6))
    assert dev.args == "type=b200" and dev.master_clock_rate == 40e6
    assert dev.tx_rate == dev.rx_rate == RATE and radio.sample_rate == RATE
    assert dev.tx_freq == dev.rx_freq == 2.45e9
    assert ["TuneRequest", [{"float": 2.45e9}, {"float": 2e6}]] in [list(c) for c in log.constructed]
    assert (dev.tx_gain, dev.rx_gain) == (10.0, 20.0) and (radio.tx_gain, radio.rx_gain) == (10.0, 20.0)
    assert (dev.tx_antenna, dev.rx_antenna, dev.rx_bandwidth) == ("TX/RX", "RX2", 18e6)
    assert ("StreamArgs", "channels", {"list": [{"int": 0}]}) in log.sets
    assert log.calls_to("set_time_now") == [[{"obj": "TimeSpec", "made": {"ctor": [{"float": 0.0}]}, "sets": {}}, {"int": 0}]]
    caps = radio.capabilities
    assert caps.timed_tx and caps.timed_rx and not caps.simulated
    s = radio.settings()
    assert s["driver"] == "usrp" and s["device_args"] == "type=b200" and s["mboard"] == "B210 (double)"
    assert s["rx_overflows"] == 0 and s["tx_underflows"] == 0
    radio.close()
    radio.close()  # idempotent
    with pytest.raises(RadioError, match="closed"):
        radio.rx(10)


def test_gain_setter_reports_what_the_device_set():
    radio, dev, _ = _open()
    radio.tx_gain = 120.0           # the double clips at the B210's 89.75 dB like UHD does
    assert radio.tx_gain == 89.75 and dev.tx_gain == 89.75
    radio.center_freq = 915e6
    assert dev.rx_freq == 915e6 and radio.center_freq == 915e6


def test_rate_actually_set_becomes_sample_rate():
    radio, dev, _ = _open(rate=20e6 + 123, quantum=1e3)
    assert radio.sample_rate == 20e6


@settings(max_examples=200, deadline=None)
@given(t=st.integers(0, 2**53), rate=st.sampled_from([1e6, 20e6, 30.72e6, 61.44e6, 200e6 / 3, 250e3]))
def test_sample_time_timespec_round_trip_is_exact(t, rate):
    """from_ticks/to_ticks at the sample rate: t -> TimeSpec -> t is the identity for every integer t (UHD's
    algorithm, reproduced by the double; the real library is checked in test_uhd_api.py)."""
    uhd, dev, _ = make_uhd()
    radio = UsrpRadio.__new__(UsrpRadio)
    radio._uhd, radio._rate = uhd, rate
    assert radio.from_time_spec(radio.to_time_spec(t)) == t


def test_rx_stream_is_contiguous_and_timestamps_are_sample_exact():
    """Each sample's value is its own device time (double), so x[i] == t0 + i checks timing exactly."""
    radio, dev, _ = _open()
    x, t0 = radio.rx(2500)
    assert dev.commands[0] == ("start_cont", t0, 0)
    assert t0 == round(radio.args.start_delay * RATE)          # start_delay from time 0
    y, t1 = radio.rx(777)
    z, t2 = radio.rx(10, at=t1 + 777 + 4000)                   # skip ahead inside the running stream
    assert t1 == t0 + 2500 and t2 == t1 + 777 + 4000
    for arr, t in ((x, t0), (y, t1), (z, t2)):
        assert arr.dtype == np.complex64
        np.testing.assert_array_equal(arr.real, np.arange(t, t + arr.size, dtype=np.float32))
    assert len(dev.commands) == 1 and radio.stats["rx_samples"] == 2500 + 777 + 10
    with pytest.raises(LateError):
        radio.rx(10, at=t0)                                    # those samples are gone
    assert radio.stats["rx_late"] == 1


def test_timed_capture_starts_a_stream_at_the_exact_time_that_rx_none_continues():
    """rx(n, at) outside a running stream issues start_cont with stream_now=False at ``at``; the next rx(at=None)
    continues it exactly (t0 = at + n: no LateError, no restart); an ``at`` more than 1 s ahead restarts it there."""
    radio, dev, log = _open()
    at = 12_345_678
    x, t0 = radio.rx(3001, at=at)
    assert t0 == at and dev.commands == [("start_cont", at, 0)]
    np.testing.assert_array_equal(x.real, np.arange(at, at + 3001, dtype=np.float32))
    assert ("StreamCMD", "stream_now", {"bool": False}) in log.sets
    dev.now += 50                                              # the host took 50 samples to come back
    z, t2 = radio.rx(10)
    assert t2 == at + 3001 and len(dev.commands) == 1         # the same stream, continued
    np.testing.assert_array_equal(z.real, np.arange(t2, t2 + 10, dtype=np.float32))
    far = t2 + 10 + 3 * int(RATE)
    y, t3 = radio.rx(100, at=far)
    assert t3 == far and dev.commands[-2:] == [("stop_cont", None, 0), ("start_cont", far, 0)]
    _, t4 = radio.rx(10)
    assert t4 == far + 100 and radio.stats["rx_restarts"] == 0


def test_rx_late_command_reported_by_device_raises_late_error():
    radio, dev, _ = _open()
    dev.poll_step = 0
    now = radio.time_now()
    with pytest.raises(LateError):
        radio.rx(10, at=now - 1)
    assert radio.stats["rx_late"] == 1 and dev.commands == []  # refused on the host, nothing issued
    dev.late_pending = True                                    # the device says the command came late
    dev.stream = {"next": now + 100, "left": 10}
    with pytest.raises(LateError, match="too late"):
        radio._receive(10, now + 100)
    assert radio.stats["rx_late"] == 2


def test_overflow_zero_fills_lost_samples_and_counts_them():
    """An overflow that loses D samples at time T: x[T-t0 : T-t0+D] == 0, everything else keeps its exact time."""
    radio, dev, _ = _open()
    t_start = round(radio.args.start_delay * RATE)
    T, D = t_start + 1500, 321
    dev.overflow_at, dev.overflow_drop = T, D
    x, t0 = radio.rx(4000)
    gap = slice(T - t0, T - t0 + D)
    assert np.all(x[gap] == 0)
    keep = np.ones(x.size, bool)
    keep[gap] = False
    np.testing.assert_array_equal(x.real[keep], np.arange(t0, t0 + x.size, dtype=np.float32)[keep])
    assert radio.stats["rx_overflows"] == 1 and radio.stats["rx_dropped_samples"] == D


def test_overflow_gap_straddling_two_requests_keeps_the_stream_aligned():
    radio, dev, _ = _open()
    t_start = round(radio.args.start_delay * RATE)
    dev.overflow_at, dev.overflow_drop = t_start + 900, 500
    x, t0 = radio.rx(1000)                                     # gap covers x[900:1000] and 400 samples after it
    y, t1 = radio.rx(1000)
    assert t1 == t0 + 1000
    assert np.all(x[900:] == 0) and np.all(y[:400] == 0)
    np.testing.assert_array_equal(y.real[400:], np.arange(t1 + 400, t1 + 1000, dtype=np.float32))
    assert radio.stats["rx_dropped_samples"] == 500


def test_timed_tx_burst_lands_at_the_requested_sample():
    """A burst sent at sample A and captured from sample B appears at index A - B + loop delay."""
    radio, dev, log = _open()
    dev.rx_source = lambda t: np.zeros(t.size, np.complex64)
    dev.loop_delay = 37
    rng = np.random.default_rng(7)
    burst = ((rng.standard_normal(500) + 1j * rng.standard_normal(500)) * 0.1).astype(np.complex64)
    at = radio.time_now() + 200_000
    assert radio.tx(burst, at=at) == at
    md = [s for s in log.sets if s[0] == "TXMetadata"]
    assert ("TXMetadata", "start_of_burst", {"bool": True}) in md and ("TXMetadata", "end_of_burst", {"bool": True}) in md
    assert ("TXMetadata", "has_time_spec", {"bool": True}) in md
    y, t0 = radio.rx(2000, at=at - 1000)
    idx = at - t0 + dev.loop_delay
    np.testing.assert_array_equal(y[idx:idx + 500], burst)
    assert np.all(y[:idx] == 0) and np.all(y[idx + 500:] == 0)
    assert radio.wait_tx_done(1.0) and radio.stats["tx_bursts"] == 1 and radio.stats["tx_bursts_acked"] == 1
    result = radio.wait_tx_result(at)
    assert result.done and result.acked and result.ok and result.at == at


def test_tx_in_the_past_and_late_burst_and_underflow_are_counted():
    radio, dev, _ = _open()
    now = radio.time_now()
    with pytest.raises(LateError) as info:
        radio.tx(np.zeros(10, np.complex64), at=now - 5)
    assert info.value.at == now - 5 and radio.stats["tx_late"] == 1
    dev.send_latency = 1000                                    # the burst reaches the device after its time
    late_at = radio.tx(np.zeros(10, np.complex64), at=radio.time_now() + 10)
    dev.send_latency = 0
    dev.underflow_next = True
    under_at = radio.tx(np.ones(10, np.complex64) * 0.5)
    # the device's verdicts reach the caller, burst by burst (read from the async messages on the driver's thread)
    late = radio.wait_tx_result(late_at, timeout=2.0)
    assert late.done and late.late and not late.acked and late.error_time == late_at and not late.ok
    under = radio.wait_tx_result(timeout=2.0)                   # the last burst sent
    assert under.at == under_at and under.done and under.acked and under.underflow and not under.ok
    assert not radio.wait_tx_done(0.5)                          # not every burst was acknowledged
    assert radio.stats["tx_late"] == 2 and dev.bursts[-1][0] == under_at and len(dev.bursts) == 1
    assert radio.stats["tx_underflows"] == 1 and radio.settings()["tx_underflows"] == 1
    with pytest.raises(ValueError, match="no burst was sent for sample time 5"):
        radio.wait_tx_result(5)
    with pytest.raises(ValueError, match="empty"):
        radio.tx(np.zeros(0, np.complex64))
    with pytest.raises(ValueError, match="NaN"):
        radio.tx(np.array([np.nan], np.complex64))


def test_partial_sends_complete_the_burst_and_stalls_raise():
    radio, dev, _ = _open()
    dev.send_limit = 300
    x = np.arange(1000, dtype=np.float32).astype(np.complex64) * 1e-3
    at = radio.tx(x)
    assert len(dev.bursts) == 1 and dev.bursts[0][0] == at
    np.testing.assert_array_equal(dev.bursts[0][1], x)
    dev.send_limit = 0
    with pytest.raises(RadioError, match="accepted 0 of 10 samples"):
        radio.tx(np.zeros(10, np.complex64))
    assert radio.stats["tx_timeouts"] == 3


def test_external_reference_without_lock_fails_clearly(monkeypatch):
    monkeypatch.setattr(usrp_mod, "LOCK_TIMEOUT_S", 0.02)
    uhd, dev, _ = make_uhd()
    dev.sensors["ref_locked"] = False
    with pytest.raises(RadioError, match="no 10 MHz reference on clock source 'external'"):
        UsrpRadio(RATE, 2.4e9, args=UsrpArgs(clock_source="external"), uhd_module=uhd)
    assert dev.clock_source == "external"


def test_pps_alignment_loads_the_next_utc_second(monkeypatch):
    """pps_align: after a PPS edge the host's UTC second S names it; S + 1 is armed for the next edge."""
    monkeypatch.setattr(usrp_mod, "LOCK_TIMEOUT_S", 0.5)
    monkeypatch.setattr(usrp_mod.time, "sleep", lambda s: None)
    uhd, dev, log = make_uhd()
    dev.pps_period = int(RATE)
    dev.now = 123_456
    before = int(time.time()) + 1
    radio = UsrpRadio(RATE, 2.4e9, args=UsrpArgs(time_source="external", pps_align=True), uhd_module=uhd)
    after = int(time.time()) + 1
    armed = log.calls_to("set_time_next_pps")
    assert len(armed) == 1 and not log.calls_to("set_time_now") and not log.calls_to("set_time_unknown_pps")
    second = armed[0][0]["made"]["ctor"][0]["float"]
    assert before <= second <= after and second == int(second)
    assert second * RATE <= radio.time_now() < (second + 1) * RATE   # loaded at the edge, less than a second ago
    uhd, dev, _ = make_uhd()                                   # no PPS on the connector
    monkeypatch.setattr(usrp_mod, "LOCK_TIMEOUT_S", 0.02)
    monkeypatch.setattr(usrp_mod, "PPS_PERIOD_S", 0.0)
    with pytest.raises(RadioError, match="no PPS edge"):
        UsrpRadio(RATE, 2.4e9, args=UsrpArgs(time_source="external", pps_align=True), uhd_module=uhd)


def test_several_usrps_opened_one_after_another_share_one_absolute_time():
    """Three wall-clock doubles on one PPS (edges on whole UTC seconds), opened with pps_align one after another
    (each open takes up to two PPS periods): afterwards all hold the same time (to the sample) and it is UTC."""
    radios, devices = [], []
    for _ in range(3):
        uhd, dev, _ = make_uhd(wallclock=True)
        dev.pps_period = 1
        radios.append(UsrpRadio(1e6, 2.4e9, args=UsrpArgs(time_source="external", pps_align=True), uhd_module=uhd))
        devices.append(dev)
    m = time.monotonic()
    ticks = [dev._ticks_at(m) for dev in devices]
    assert max(ticks) - min(ticks) <= 1                        # int truncation of the same instant
    assert ticks[0] / 1e6 == pytest.approx(time.time(), abs=0.05)
    t = [r.time_now() for r in radios]                         # read one after another: microseconds apart
    assert 0 <= t[2] - t[0] < 0.05 * 1e6
    for r in radios:
        r.close()


def test_several_motherboards_are_aligned_with_unknown_pps_and_all_get_the_sources(monkeypatch):
    monkeypatch.setattr(usrp_mod.time, "sleep", lambda s: None)
    uhd, dev, log = make_uhd()
    dev.pps_period, dev.mboards = int(RATE), 2
    radio = UsrpRadio(RATE, 2.4e9, args=UsrpArgs(args="addr0=192.168.10.2,addr1=192.168.10.3",
                                                 clock_source="external", time_source="external",
                                                 pps_align=True), uhd_module=uhd)
    assert dev.clock_sources == {0: "external", 1: "external"} and dev.time_sources == {0: "external", 1: "external"}
    (arg,), = log.calls_to("set_time_unknown_pps")
    second = arg["made"]["ctor"][0]["float"]
    assert not log.calls_to("set_time_next_pps") and second == int(second)
    assert second * RATE <= radio.time_now() < (second + 1) * RATE


def test_gpsdo_lock_timeout_is_configurable_and_says_lock_can_take_minutes():
    uhd, dev, _ = make_uhd()
    dev.sensors["gps_locked"] = False
    t = time.monotonic()
    with pytest.raises(RadioError, match=r"(?s)GPSDO lock.*several minutes.*gpsdo_lock_timeout.*after 0.2 s"):
        UsrpRadio(RATE, 2.4e9, args=UsrpArgs(clock_source="gpsdo", time_source="gpsdo", gpsdo_lock_timeout=0.2),
                  uhd_module=uhd)
    assert 0.2 <= time.monotonic() - t < 2.0
    with pytest.raises(ConfigError, match="gpsdo_lock_timeout must be > 0"):
        build(UsrpArgs, {"gpsdo_lock_timeout": 0}, "usrp.yaml: radio.args")


def test_lo_lock_is_checked_after_tuning_and_subdev_is_set(monkeypatch):
    radio, dev, log = _open(UsrpArgs(args="type=b200", subdev="A:B"))
    assert dev.rx_subdev == dev.tx_subdev == "A:B"
    assert log.calls_to("get_rx_sensor") and log.calls_to("get_tx_sensor")
    monkeypatch.setattr(usrp_mod, "LOCK_TIMEOUT_S", 0.05)
    dev.lo_locked = False
    with pytest.raises(RadioError, match="LO of channel 0 not locked .* after tuning to 5000000000.0 Hz"):
        radio.center_freq = 5e9
    radio.close()


def test_missing_uhd_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "uhd", None)
    with pytest.raises(RadioError) as info:
        UsrpRadio(RATE, 2.4e9)
    msg = str(info.value)
    assert "sudo apt install python3-uhd" in msg and "--system-site-packages" in msg and "radioconda" in msg


def test_open_failure_names_the_device_args():
    uhd, dev, _ = make_uhd()
    dev.open_error = "LookupError: KeyError: No devices found for ----->\nDevice Address:\n    type: x300"
    with pytest.raises(RadioError, match=r"(?s)device args 'type=x300'.*uhd_find_devices"):
        UsrpRadio(RATE, 2.4e9, args=UsrpArgs(args="type=x300"), uhd_module=uhd)


@pytest.mark.parametrize("data, message", [
    ({"pps_align": True}, "pps_align needs a PPS"),
    ({"clock_source": "gps"}, "expected one of 'internal', 'external', 'gpsdo'"),
    ({"channel": -1}, "channel must be >= 0"),
    ({"start_delay": 0}, "start_delay must be > 0"),
])
def test_usrp_args_validation(data, message):
    with pytest.raises(ConfigError, match=message):
        build(UsrpArgs, data, "usrp.yaml: radio.args")


# ---------------------------------------------------------------------------------------------------- hardware
def _hardware_args() -> str:
    """UHD device args of an attached USRP, or skip with the command a lab user runs."""
    try:
        import uhd
    except ImportError:
        pytest.skip(f"no USRP: this Python ({sys.executable}) cannot import uhd. With a USRP attached run: "
                    f"{HW_COMMAND}  (the venv needs --system-site-packages for Debian's python3-uhd)")
    args = os.environ.get("OTALAB_USRP_ARGS")
    if args is None:
        if not uhd.find(""):
            pytest.skip(f"no USRP found by uhd.find; with one attached run: {HW_COMMAND}")
        args = ""
    return args


@pytest.mark.hardware
def test_hardware_timed_capture_starts_at_the_requested_sample():
    args = _hardware_args()
    with UsrpRadio(1e6, 2.45e9, 0.0, 20.0, UsrpArgs(args=args)) as radio:
        at = radio.time_now() + int(0.2 * radio.sample_rate)
        x, t0 = radio.rx(10_000, at=at)
        assert t0 == at and x.shape == (10_000,) and np.all(np.isfinite(x.view(np.float32)))
        assert radio.stats["rx_overflows"] == 0 and radio.stats["rx_late"] == 0


@pytest.mark.hardware
def test_hardware_clock_runs_at_the_sample_rate_and_bursts_are_acknowledged():
    """The device clock advances sample_rate samples per host second (within 1 % over 0.5 s), and a timed burst is
    acknowledged without underflow or late error."""
    args = _hardware_args()
    with UsrpRadio(1e6, 2.45e9, 0.0, 20.0, UsrpArgs(args=args)) as radio:
        t_a, h_a = radio.time_now(), time.monotonic()
        time.sleep(0.5)
        t_b, h_b = radio.time_now(), time.monotonic()
        assert (t_b - t_a) / (h_b - h_a) == pytest.approx(radio.sample_rate, rel=0.01)
        radio.tx(np.full(5000, 0.1, np.complex64), at=radio.time_now() + int(0.1 * radio.sample_rate))
        assert radio.wait_tx_done(2.0)
        assert radio.stats["tx_underflows"] == 0 and radio.stats["tx_late"] == 0
