"""otalab's PlutoRadio (unmodified: pyadi-iio + libiio underneath) against the iiod emulator, plus one hardware test.

Hardware: ``OTALAB_PLUTO_URI=ip:192.168.2.1 pytest -m hardware tests/radio/test_pluto.py`` with a Pluto attached.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from lab.config import ConfigError, load_config
from radio.sim.air import Air
from radio.base import LateError, RadioError
from radio.sim.channel import LinkParams
from radio.servers.iiod_emulator import EmulatorSettings
from radio.drivers.pluto import INSTALL_HINT, PlutoArgs, PlutoRadio
from radio.servers.pluto_context import TX_FULL_SCALE

try:
    import adi  # noqa: F401
    HAVE_IIO, WHY = True, ""
except (ImportError, OSError) as exc:     # OSError: pylibiio present but the system libiio0 missing
    HAVE_IIO, WHY = False, f"pyadi-iio and the system libiio0 are needed ({exc})"
needs_iio = pytest.mark.skipif(not HAVE_IIO, reason=WHY or "libiio is installed")
pytestmark = pytest.mark.iio

CONFIGS = Path(__file__).resolve().parents[2] / "hw_configs"
EMULATED = CONFIGS / "pluto-emulated.yaml"
#: TX words are rounded to integers: |error| <= 0.5 word per component after dividing by TX_FULL_SCALE
TX_ROUNDING = 0.5 / TX_FULL_SCALE


def burst(rng, n: int, amplitude: float = 0.3) -> np.ndarray:
    """complex64 [n] Gaussian samples of RMS ``amplitude``."""
    return ((rng.standard_normal(n) + 1j * rng.standard_normal(n)) * amplitude / np.sqrt(2)).astype(np.complex64)


@pytest.fixture
def loop_radio():
    """Factory: a PlutoRadio on an emulator in digital loopback (no air), closed at teardown."""
    radios = []

    def make(**settings):
        args = PlutoArgs(emulate=True, loopback=1, rx_buffer_size=1000, tx_buffer_size=256,
                         emulator=EmulatorSettings(**settings))
        r = PlutoRadio.emulated(None, args, sample_rate=1e6, tx_gain=0.0, rx_gain=0.0)
        radios.append(r)
        return r

    yield make
    for r in radios:
        r.close()


def test_config_files_validate():
    """Both shipped configs build PlutoArgs; bad values are ConfigErrors naming file, key and what is allowed."""
    real = load_config(CONFIGS / "pluto.yaml")
    assert real.radio.driver == "pluto" and real.radio_args.uri == "ip:192.168.2.1" and not real.radio_args.emulate
    emu = load_config(EMULATED)
    assert emu.radio_args.emulate and emu.radio_args.emulator.endpoint == "pluto0"
    with pytest.raises(ConfigError, match="gain_control_mode"):
        load_config(EMULATED, ["radio.args.gain_control_mode=turbo"])
    with pytest.raises(ConfigError, match="loopback"):
        load_config(EMULATED, ["radio.args.loopback=3"])
    with pytest.raises(ConfigError, match="rx_buffer_size"):
        load_config(EMULATED, ["radio.args.rx_buffer_size=0"])
    with pytest.raises(ConfigError, match="tx_latency_samples"):
        load_config(EMULATED, ["radio.args.emulator.tx_latency_samples=-1"])
    with pytest.raises(ConfigError, match="uri"):
        load_config(CONFIGS / "pluto.yaml", ["radio.args.uri=192.168.2.1"])


@needs_iio
def test_every_property_round_trips(loop_radio):
    """Each PlutoRadio setter reaches the device and the getter reads it back (the emulator stores exactly)."""
    r = loop_radio()
    r.sample_rate = 5e6
    r.center_freq = 915e6
    assert (r.sample_rate, r.center_freq, r.rx_lo, r.tx_lo) == (5e6, 915e6, 915e6, 915e6)
    r.tx_lo = 920e6
    assert (r.rx_lo, r.tx_lo) == (915e6, 920e6)
    r.rf_bandwidth = 4e6
    assert r.rf_bandwidth == 4e6
    for mode in ("fast_attack", "slow_attack", "manual"):
        r.gain_control_mode = mode
        assert r.gain_control_mode == mode
    r.rx_gain = 33.5
    r.tx_gain = -12.25
    assert (r.rx_gain, r.tx_gain, r.tx_attenuation_db) == (33.5, -12.25, 12.25)
    r.tx_attenuation_db = 3
    assert r.tx_gain == -3
    r.rx_buffer_size = 2048
    assert r.rx_buffer_size == 2048
    r.tx_cyclic_buffer = True
    assert r.tx_cyclic_buffer
    for mode in (2, 0, 1):
        r.loopback = mode
        assert r.loopback == mode
    s = r.settings()
    assert s["driver"] == "pluto" and s["emulated"] and s["rx_gain"] == 33.5 and s["uri"].startswith("ip:127.0.0.1:")
    assert "PlutoRadio(" in repr(r)
    caps = r.capabilities
    # host-timed TX (read-driven, not streaming): off by up to the kernel's unread RX buffers, as on hardware; the
    # contract suite measures it (tests/radio/test_contract.py)
    from radio.drivers.pluto import KERNEL_RX_BUFFERS
    assert not caps.timed_tx and not caps.timed_rx and caps.simulated
    assert caps.timing_accuracy_samples == KERNEL_RX_BUFFERS * r.args.rx_buffer_size
    with pytest.raises(ValueError, match="sample_rate"):
        r.sample_rate = 100e3
    with pytest.raises(ValueError, match="tx_gain"):
        r.tx_gain = 3
    with pytest.raises(ValueError, match="gain_control_mode"):
        r.gain_control_mode = "turbo"
    r.gain_control_mode = "slow_attack"
    with pytest.raises(RadioError, match="manual"):
        r.rx_gain = 10
    with pytest.raises(RadioError, match="rx_lo"):      # the device's -EINVAL, named with the value
        r.rx_lo = 10e9


@needs_iio
def test_host_timed_tx_is_sample_exact_in_loopback(loop_radio, rng):
    """tx(x, at) lands at RX-count time ``at`` exactly; rx continues the stream and rx(at=...) skips ahead."""
    r = loop_radio()
    x1, x2 = burst(rng, 700), burst(rng, 300)
    assert r.tx(x1, at=1234) == 1234
    y, t0 = r.rx(2500)
    assert t0 == 0 and r.time_now() == 3000               # three 1000-sample hardware buffers fetched
    assert np.max(np.abs(y[1234:1934] - x1)) <= TX_ROUNDING * 1.5
    assert np.all(y[:1234] == 0) and np.all(y[1934:] == 0)
    assert r.tx(x2, at=4321) == 4321                      # relative to the counter, which is at 3000 now
    y2, t2 = r.rx(1000, at=4000)                          # skip [2500, 4000)
    assert t2 == 4000
    assert np.max(np.abs(y2[321:621] - x2)) <= TX_ROUNDING * 1.5
    assert np.all(y2[:321] == 0)
    y3, t3 = r.rx(10)
    assert t3 == 5000                                     # at=None continues


@needs_iio
def test_constant_tx_latency_shifts_every_burst(loop_radio, rng):
    """The emulator's tx_latency_samples L models the device's constant TX->RX latency: a burst at ``at`` appears
    at at + L for every burst (what sync's timing advance measures)."""
    r = loop_radio(tx_latency_samples=25)
    x = burst(rng, 200)
    for at in (100, 1500, 2600):
        r.tx(x, at=at)
    y, _ = r.rx(3000)
    for at in (100, 1500, 2600):
        assert np.max(np.abs(y[at + 25:at + 225] - x)) <= TX_ROUNDING * 1.5
        assert np.all(y[at + 225:at + 256] == 0)


@needs_iio
def test_late_requests_raise_lateerror(loop_radio, rng):
    """``at`` in the past, ``at`` inside a queued burst, and rx of consumed samples are LateErrors."""
    r = loop_radio()
    r.rx(1500)
    with pytest.raises(LateError, match="late"):
        r.tx(burst(rng, 10), at=1999)                     # the counter is at 2000 (two buffers fetched)
    r.tx(burst(rng, 100), at=2000)                        # occupies one 256-sample TX buffer: [2000, 2256)
    with pytest.raises(LateError, match="queued transmission runs until sample 2256"):
        r.tx(burst(rng, 10), at=2100)
    assert r.tx(burst(rng, 10)) == 2256                   # at=None: right after the queued stream
    with pytest.raises(LateError):
        r.rx(10, at=1000)


@needs_iio
def test_cyclic_mode_repeats_and_stops(loop_radio, rng):
    """tx_cyclic_buffer: one tx() repeats forever (y[t] = x[(t - t_start) mod N]) until stop_tx()."""
    r = loop_radio()
    r.tx_cyclic_buffer = True
    x = burst(rng, 400)
    with pytest.raises(ValueError, match="tx_cyclic_buffer"):
        r.tx(x, at=10)
    r.tx(x)
    y, _ = r.rx(2000)
    assert np.max(np.abs(y - np.tile(x, 5))) <= TX_ROUNDING * 1.5
    r.stop_tx()
    y, _ = r.rx(1000)
    assert np.all(y == 0)


@needs_iio
def test_link_of_two_plutos_through_the_air(rng):
    """Two PlutoRadios from pluto-emulated.yaml on one Air, link tx->rx with delay D and gain g, receiver noise N0
    (snr_db): the burst sent at ``at`` arrives at at + D with y − g·x of variance N0 + 2·Δ²/12 (Δ = 2**-11, ADC
    rounding), checked against the sample variance (relative std 1/√N)."""
    cfg = load_config(EMULATED, ["air.snr_db=25", "radio.sample_rate=2e6",
                                 "air.links={'tx->rx': {'delay_samples': 7, 'gain': 0.5}}"])
    air = Air.from_config(cfg.air, cfg.radio.sample_rate, cfg.radio.center_freq)
    tx = PlutoRadio.from_config(cfg.radio, cfg.radio_args, air=air, endpoint="tx")
    rx = PlutoRadio.from_config(cfg.radio, cfg.radio_args, air=air, endpoint="rx")
    try:
        x = burst(rng, 20_000, amplitude=0.25)
        assert tx.tx(x, at=1000) == 1000
        y, t0 = rx.rx(40_000)
        assert t0 == 0
        noise = 10 ** (-25 / 10)
        theory = noise + 2 * (2.0 ** -11) ** 2 / 12
        err = y[1007:21007] - 0.5 * x
        assert abs(np.var(err) / theory - 1) < 5 / np.sqrt(err.size)
        idle = y[22_000:]
        assert abs(np.mean(np.abs(idle) ** 2) / theory - 1) < 5 / np.sqrt(idle.size)
        assert rx.settings()["emulated"] and tx.sample_rate == 2e6
        _, t_tx = tx.rx(100)                            # emulators created together: RX clocks aligned at 0
        assert t_tx == 0 and rx.time_now() == 3 * 16384 and tx.time_now() == 16384
    finally:
        tx.close()
        rx.close()
    assert "tx" in air.endpoints                          # the endpoints stay; closing released the radios


@needs_iio
def test_cyclic_transmission_through_the_air_has_no_gaps(rng):
    """A cyclic TX on one emulated Pluto, read by another on the same Air far beyond the scheduling horizon:
    y[t] = x[t mod N] at every sample (noiseless air; ADC/DAC rounding |e| <= (2**-11 + 2**-14)/√2 per component)."""
    cfg = load_config(EMULATED, ["air.snr_db=null", "radio.sample_rate=2e6",
                                 "radio.args.emulator.cyclic_horizon_samples=20000"])
    air = Air.from_config(cfg.air, cfg.radio.sample_rate, cfg.radio.center_freq)
    tx = PlutoRadio.from_config(cfg.radio, cfg.radio_args, air=air, endpoint="tx")
    rx = PlutoRadio.from_config(cfg.radio, cfg.radio_args, air=air, endpoint="rx")
    try:
        tx.tx_cyclic_buffer = True
        x = burst(rng, 3000, amplitude=0.25)         # well inside the ADC range: no clipping
        tx.tx(x)
        y, t0 = rx.rx(200_000)                            # 10 x the horizon, in 16384-sample hardware buffers
        assert t0 == 0
        err = y - np.tile(x, -(-y.size // x.size))[:y.size]
        assert np.max(np.abs(err.view(np.float32))) <= (2.0 ** -11 + 2.0 ** -14) / 2 + 1e-7
        assert tx.emulator.stats["cyclic_gaps"] == 0
        tx.stop_tx()                                     # repetitions already on the air still arrive, then silence
        y, _ = rx.rx(100_000)
        assert np.all(y[-50_000:] == 0)
    finally:
        tx.close()
        rx.close()


@needs_iio
def test_emulator_on_a_zeromq_air_endpoint(rng):
    """The RF side can be any Radio: a ZmqRadio on a ChannelBroker. Self-link delay D and receiver noise N0: the
    burst sent at ``at`` is found at at + D with error variance N0 + 2·Δ²/12 (Δ = 2**-11)."""
    from radio.servers.zmq_broker import BrokerConfig, ChannelBroker
    from radio.drivers.zmq import ZmqRadio

    air = Air(2e6, 2.4e9, seed=4, default_noise_power=1e-3)
    broker = ChannelBroker(air, BrokerConfig(endpoints=["p"]), bind="tcp://127.0.0.1:0")
    air.set_link("p", "p", LinkParams(delay_samples=5))
    broker.start()
    z = ZmqRadio(f"tcp://127.0.0.1:{broker.port}", "p", timeout_s=10)
    pluto = PlutoRadio.emulated(z, PlutoArgs(emulate=True, rx_buffer_size=8192), sample_rate=2e6, tx_gain=0.0,
                                rx_gain=0.0)
    try:
        x = burst(rng, 6000, amplitude=0.25)
        assert pluto.tx(x, at=1000) == 1000
        y, t0 = pluto.rx(16384)
        assert t0 == 0
        err = y[1005:7005] - x
        theory = 1e-3 + 2 * (2.0 ** -11) ** 2 / 12
        assert abs(np.var(err) / theory - 1) < 5 / np.sqrt(err.size)
    finally:
        pluto.close()
        z.close()
        broker.stop()


@contextlib.contextmanager
def emulate_clients(cfg, sample_rate: float, center_freq: float = 2.4e9):
    """`otalab emulate pluto --count 2` (lab.cli.emulate.serve_pluto) in a thread and a client on each printed URI;
    yields (clients, result): result["stats"] holds serve_pluto's per-device stats once the block has ended."""
    from lab.cli.emulate import serve_pluto

    ready, stop, result = threading.Event(), threading.Event(), {}
    thread = threading.Thread(target=lambda: result.update(
        stats=serve_pluto(cfg, 0, count=2, ready=lambda uris: (result.update(uris=uris), ready.set()), stop=stop)))
    thread.start()
    try:
        assert ready.wait(10) and len(result["uris"]) == 2
        radios = [PlutoRadio(PlutoArgs(uri=uri, rx_buffer_size=8192), sample_rate=sample_rate,
                             center_freq=center_freq, tx_gain=0.0, rx_gain=0.0) for uri in result["uris"]]
        try:
            yield radios, result
        finally:
            for r in radios:
                r.close()
    finally:
        stop.set()
        thread.join(10)


@needs_iio
def test_emulate_command_serves_plutos_that_share_one_air(rng):
    """`otalab emulate pluto --count 2`: clients of the printed URIs share one air and their RX clocks start together
    (at the emulators' power-on), whoever reads first. Device 1 hears device 0's burst through the default unit link
    and device 0 hears itself (hear_self), each at amplitude 1 plus the air's noise N0 = 10**(-snr_db/10): error
    variance N0 + 2·Δ²/12."""
    from lab.cli.emulate import device_names

    assert device_names("pluto0", 3) == ["pluto0", "pluto1", "pluto2"] and device_names("tx", 2) == ["tx", "tx1"]
    cfg = load_config(EMULATED, ["air.snr_db=20"])
    with emulate_clients(cfg, cfg.radio.sample_rate, cfg.radio.center_freq) as (radios, result):
        x = burst(rng, 10_000, amplitude=0.25)
        radios[0].tx(x, at=500)
        theory = 10 ** (-20 / 10) + 2 * (2.0 ** -11) ** 2 / 12
        for r in (radios[1], radios[0]):
            y, t0 = r.rx(12_000)
            err = y[500:10_500] - x
            assert t0 == 0 and abs(np.var(err) / theory - 1) < 5 / np.sqrt(err.size)
    assert result["stats"][0]["tx_samples"] >= 10_000 and result["stats"][1]["rx_samples"] >= 12_000


@needs_iio
def test_emulate_command_honors_a_zeromq_air(rng):
    """`otalab emulate pluto` with radio.args.emulator.air = zmq serves each device as an endpoint (pluto0, pluto1)
    on the broker at emulator.address, as `otalab node` does, not on an air of its own: device 1 hears device 0's
    burst through the broker's link (delay D = 7, gain 1) with the broker's receiver noise N0: found at at + D with
    error variance N0 + 2·Δ²/12 (Δ = 2**-11); the config's own `air:` section (SNR 0 dB here) plays no part. A
    broker at another sample rate is refused, naming both rates."""
    from lab.cli.emulate import serve_pluto
    from radio.servers.zmq_broker import BrokerConfig, ChannelBroker
    import typer

    air = Air(2e6, 2.4e9, seed=5, default_noise_power=1e-3)
    broker = ChannelBroker(air, BrokerConfig(endpoints=["pluto0", "pluto1"]), bind="tcp://127.0.0.1:0")
    air.set_link("pluto0", "pluto1", LinkParams(delay_samples=7))
    broker.start()
    address = f"tcp://127.0.0.1:{broker.port}"
    try:
        cfg = load_config(EMULATED, ["radio.sample_rate=2e6", "air.snr_db=0", "radio.args.emulator.air=zmq",
                                     f"radio.args.emulator.address={address}"])
        with emulate_clients(cfg, 2e6) as (radios, result):
            x = burst(rng, 6000, amplitude=0.25)
            assert radios[0].tx(x, at=1000) == 1000
            # (a free-paced broker moves its clock once every endpoint has read: both clients read)
            other = threading.Thread(target=radios[0].rx, args=(16384,))
            other.start()
            y, t0 = radios[1].rx(16384)
            other.join(10)
            err = y[t0 + 1007:t0 + 7007] - x
            theory = 1e-3 + 2 * (2.0 ** -11) ** 2 / 12
            assert t0 == 0 and abs(np.var(err) / theory - 1) < 5 / np.sqrt(err.size)
        assert result["stats"][0]["tx_samples"] >= 6000 and result["stats"][1]["rx_samples"] >= 16384
        bad = load_config(EMULATED, ["radio.sample_rate=4e6", "radio.args.emulator.air=zmq",
                                     f"radio.args.emulator.address={address}"])
        with pytest.raises(typer.BadParameter, match=r"4e\+06 S/s but the ZeroMQ air .* runs at 2e\+06 S/s"):
            serve_pluto(bad, 0, duration=0.1)
    finally:
        broker.stop()


@needs_iio
def test_emulate_cli_runs_for_a_duration(capsys):
    """The CLI entry point parses options, prints the URI and exits 0 after --duration."""
    from lab.cli import main

    assert main(["emulate", "pluto", "--config", str(EMULATED), "--port", "0", "--duration", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "emulated PlutoSDR serving at ip:127.0.0.1:" in out and "iio_info -u" in out


@needs_iio
def test_unreachable_uri_is_a_radioerror_naming_it():
    """A closed local port: RadioError names the URI (no hang, no traceback from libiio)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"ip:127.0.0.1:{port}"
    with pytest.raises(RadioError, match=uri):
        PlutoRadio(PlutoArgs(uri=uri))


def test_emulate_without_air_is_a_radioerror():
    cfg = load_config(EMULATED)
    with pytest.raises(RadioError, match="air"):
        PlutoRadio.from_config(cfg.radio, cfg.radio_args, air=None)


def test_missing_pyadi_gives_the_install_command(monkeypatch):
    """Without pyadi-iio the error says what to install (Debian libiio0 + pip pylibiio, pyadi-iio)."""
    monkeypatch.setitem(sys.modules, "adi", None)
    with pytest.raises(RadioError) as info:
        PlutoRadio(PlutoArgs())
    assert INSTALL_HINT in str(info.value) and "libiio0" in str(info.value)


@pytest.mark.hardware
def test_real_pluto_digital_loopback_and_settings(rng):
    """A real PlutoSDR: settings stick (within the driver's quantisation) and a burst sent in digital loopback comes
    back at the timed position (correlation peak within the documented host-side accuracy + a constant latency).

    Run with a Pluto attached:  OTALAB_PLUTO_URI=ip:192.168.2.1 pytest -m hardware tests/radio/test_pluto.py
    """
    uri = os.environ.get("OTALAB_PLUTO_URI")
    if not uri:
        pytest.skip("no PlutoSDR: set OTALAB_PLUTO_URI=ip:192.168.2.1 (see `iio_info -s`) and run "
                    "`OTALAB_PLUTO_URI=ip:192.168.2.1 pytest -m hardware tests/radio/test_pluto.py`")
    args = PlutoArgs(uri=uri, loopback=1, rx_buffer_size=16384)
    with PlutoRadio(args, sample_rate=4e6, center_freq=2.4e9, tx_gain=-10, rx_gain=30) as r:
        assert abs(r.sample_rate - 4e6) < 10 and abs(r.center_freq - 2.4e9) < 1e3 and r.loopback == 1
        assert abs(r.rx_gain - 30) <= 1 and abs(r.tx_gain + 10) <= 0.25
        r.rx(16384)
        x = burst(rng, 4096, amplitude=0.5)
        at = r.time_now() + 20_000
        r.tx(x, at=at)
        y, t0 = r.rx(200_000, at=r.time_now())
        corr = np.abs(np.correlate(y, x, mode="valid"))
        lag = t0 + int(np.argmax(corr)) - at
        print(f"real Pluto digital loopback: burst at {at}, found {lag} samples later; "
              f"peak/median correlation {corr.max() / np.median(corr):.1f}")
        assert corr.max() > 10 * np.median(corr)
        assert 0 <= lag <= r.capabilities.timing_accuracy_samples + 10_000
