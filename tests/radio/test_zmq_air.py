"""ZeroMQ air in one process: wire formats, protocol errors, LateError over the wire, pacing rules, CURVE, config.

The broker runs in a thread, endpoints are ZmqRadio objects (or raw DEALER sockets for malformed messages); every
socket binds tcp://127.0.0.1:0 and reads the port back. Multi-process reproduction and endpoint loss are in
test_zmq_multiprocess.py.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from radio.sim.air import Air, AirConfig
from radio.base import LateError, RadioError
from radio.servers.zmq_broker import BrokerConfig, ChannelBroker
from radio.drivers.zmq import ZmqArgs, ZmqRadio
from radio.servers.zmq_wire import SC16_SCALE, ProtocolError, decode_samples, encode_samples, pack, unpack

LOCAL = "tcp://127.0.0.1:0"
CONFIGS = Path(__file__).resolve().parents[2] / "hw_configs"


def _noise(rng, n, scale=0.3):
    return ((rng.standard_normal(n) + 1j * rng.standard_normal(n)) * scale).astype(np.complex64)


@pytest.fixture
def broker():
    air = Air(1e6, 2.4e9, seed=3)
    with ChannelBroker(air, BrokerConfig(endpoints=["a", "b"], heartbeat_timeout_s=5), bind=LOCAL) as b:
        yield b


# ------------------------------------------------------------------------------------------------------ wire
def test_sc16_quantization_error_is_bounded_by_half_an_lsb(rng):
    """Rounding to the nearest of 2**15-1 levels: |x - Q(x)| ≤ 0.5/(2**15-1) per component for |I|,|Q| ≤ 1, and
    values beyond full scale clip to ±1."""
    x = _noise(rng, 10_000, 0.4)
    x[:2] = [1.0 + 1.0j, -1.0 - 1.0j]
    y = decode_samples(encode_samples(x, "sc16"), "sc16", x.size)
    inside = (np.abs(x.real) <= 1) & (np.abs(x.imag) <= 1)
    err = np.abs(np.concatenate([(y - x).real[inside], (y - x).imag[inside]]))
    assert err.max() <= 0.5 / SC16_SCALE + 1e-7
    assert err.max() > 0.25 / SC16_SCALE           # it really quantizes
    big = np.array([3 - 2j, -7 + 0.5j], np.complex64)
    np.testing.assert_allclose(decode_samples(encode_samples(big, "sc16"), "sc16", 2), [1 - 1j, -1 + 0.5j],
                               atol=0.5 / SC16_SCALE)


def test_fc32_is_lossless_and_sizes_are_checked(rng):
    x = _noise(rng, 257)
    np.testing.assert_array_equal(decode_samples(encode_samples(x, "fc32").tobytes(), "fc32", 257), x)
    with pytest.raises(ProtocolError, match=r"2048 bytes, expected n=257 samples × 8 bytes \(fc32\) = 2056"):
        decode_samples(b"\0" * 2048, "fc32", 257)
    with pytest.raises(ProtocolError, match="not supported"):
        encode_samples(x, "cs8")
    with pytest.raises(ProtocolError, match="not UTF-8 JSON"):
        unpack([b"\xff\x00garbage"])


# ------------------------------------------------------------------------------------------------------ broker
def test_broker_delivers_what_the_air_computes(rng):
    """r_rx = Σ_tx channel(s_tx) + w: the endpoint's samples equal an in-process Air with the same seed, config and
    schedule (block-cut independence lets the reference advance in one call)."""
    cfg = AirConfig(seed=11, snr_db=20.0, delay_samples=2.5, cfo_ppm=0.5)
    names = ["a", "b", "rx"]
    bursts = {"a": [(100, _noise(rng, 700))], "b": [(40, _noise(rng, 300)), (900, _noise(rng, 500))]}
    n_total = 3000

    ref = Air.from_config(cfg, 1e6, 2.4e9)
    for name in names:
        ref.add_endpoint(name)
    for name, items in bursts.items():
        for at, x in items:
            ref.schedule(name, x, at)
    expected = ref.advance(n_total)["rx"]

    with ChannelBroker(Air.from_config(cfg, 1e6, 2.4e9), BrokerConfig(endpoints=names), bind=LOCAL) as b, \
            ZmqRadio(b.endpoint, "a", receive=False) as a, ZmqRadio(b.endpoint, "b") as bb, \
            ZmqRadio(b.endpoint, "rx") as rx:
        assert (a.sample_rate, a.center_freq) == (1e6, 2.4e9)
        for radio, name in ((a, "a"), (bb, "b")):
            for at, x in bursts[name]:
                assert radio.tx(x, at=at) == at
        a.advance(n_total)
        bb.advance(n_total)
        got, t0s = [], []
        for n in (1000, 1, 1999):          # odd cuts; at=None: the first call starts at now (0), then continues
            y, t0 = rx.rx(n)
            got.append(y)
            t0s.append(t0)
    assert t0s == [0, 1000, 1001]
    np.testing.assert_allclose(np.concatenate(got), expected, rtol=0, atol=1e-6)


def test_late_errors_come_back_over_the_wire(broker, rng):
    with ZmqRadio(broker.endpoint, "a") as a, ZmqRadio(broker.endpoint, "b") as b:
        a.advance(5000)
        y, t0 = b.rx(4000, at=0)
        assert broker.now == 4000 and t0 == 0
        with pytest.raises(LateError) as info:
            a.tx(_noise(rng, 10), at=3000)
        assert (info.value.at, info.value.now) == (3000, 4000)
        assert "1000 samples late" in str(info.value)
        with pytest.raises(LateError, match="oldest buffered"):
            b.rx(10, at=100)                # already delivered and forgotten
        assert a.tx(_noise(rng, 10)) == 5000  # at=None: after its declared horizon; still working after errors
        y, t0 = b.rx(0)                     # zero samples: allowed, the stream position stays
        assert (y.size, t0) == (0, 4000)
        assert a.tx(np.zeros(0, np.complex64), at=6000) == 6000


def test_buffer_bound_drops_old_samples_but_never_those_a_pending_rx_asked_for():
    air = Air(1e6, 1e9)
    cfg = BrokerConfig(endpoints=["a", "b"], buffer_samples=1000, max_advance=800)
    with ChannelBroker(air, cfg, bind=LOCAL) as broker, ZmqRadio(broker.endpoint, "a") as a, \
            ZmqRadio(broker.endpoint, "b") as b:
        b.advance(5000)                                 # b is done far ahead; the clock waits only for a
        result = {}
        reader = threading.Thread(target=lambda: result.setdefault("rx", b.rx(1000, at=0)))
        reader.start()
        time.sleep(0.1)                                 # the rx is pending before the clock moves
        a.advance(5000)                                 # clock runs in 800-sample steps to 5000
        reader.join(5)
        assert result["rx"][1] == 0 and result["rx"][0].size == 1000
        with pytest.raises(RadioError, match="exceeds the broker's buffer_samples=1000"):
            b.rx(1001)
        deadline = time.monotonic() + 10               # advance() returns at once; the clock runs on its own
        while b.time_now() < 5000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b.time_now() == 5000
        with pytest.raises(LateError):                 # unread samples beyond the bound were dropped
            b.rx(10, at=1000)
        assert b.rx(1000, at=4000)[1] == 4000


def test_malformed_messages_get_clear_errors_and_do_not_stop_the_broker(broker):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(broker.endpoint)

    def ask(frames):
        sock.send_multipart(frames)
        assert sock.poll(5000), "broker did not answer"
        return unpack(sock.recv_multipart())[0]

    try:
        hello = ask(pack({"op": "hello", "seq": 1, "name": "a", "wire": "fc32", "version": 1}))
        assert hello["op"] == "welcome"
        session = hello["session"]
        bad_size = ask(pack({"op": "tx", "seq": 2, "session": session, "n": 100, "at": 0},
                            np.zeros(99, np.complex64)))
        assert bad_size["kind"] == "protocol" and bad_size["seq"] == 2
        assert "792 bytes, expected n=100 samples × 8 bytes (fc32) = 800 bytes" in bad_size["message"]
        odd = ask(pack({"op": "tx", "seq": 3, "session": session, "n": 2, "at": 0}, np.zeros(5, np.uint8)))
        assert "5 bytes" in odd["message"]
        no_payload = ask(pack({"op": "tx", "seq": 4, "session": session, "n": 2, "at": 0}))
        assert "no payload" in no_payload["message"]
        assert "not UTF-8 JSON" in ask([b"\x00\xffjunk"])["message"]
        assert "unknown op 'fly'" in ask(pack({"op": "fly", "seq": 5}))["message"]
        assert "expected int" in ask(pack({"op": "rx", "seq": 6, "session": session, "n": "many"}))["message"]
        assert "3 frames" in ask([b"{}", b"", b""])["message"]
        assert ask(pack({"op": "rx", "seq": 7, "session": "nope", "n": 1}))["kind"] == "session"
        assert "version 9" in ask(pack({"op": "hello", "seq": 8, "name": "x", "wire": "fc32", "version": 9}))[
            "message"]
        ok = ask(pack({"op": "tx", "seq": 9, "session": session, "n": 2, "at": 0}, np.ones(2, np.complex64)))
        assert ok == {"op": "ok", "seq": 9, "at": 0, "now": 0}
    finally:
        sock.close()
        ctx.term()
    assert sum(e.kind == "protocol_error" for e in broker.events) >= 7


def test_free_pacing_waits_for_the_slowest_endpoint(broker, monkeypatch):
    """The clock never passes an endpoint's horizon: a receiver's rx(n, at) waits until the transmitter declares it
    is done up to at+n (tx end or advance); a long wait is reported as a "stalled" event naming the holder."""
    monkeypatch.setattr("radio.servers.zmq_broker.STALL_REPORT_S", 0.05)
    with ZmqRadio(broker.endpoint, "a") as a, ZmqRadio(broker.endpoint, "b") as b:
        result = {}
        reader = threading.Thread(target=lambda: result.setdefault("rx", b.rx(2000, at=0)))
        reader.start()
        a.tx(np.full(500, 0.5, np.complex64), at=0)     # horizon 500
        time.sleep(0.3)
        assert reader.is_alive() and broker.now == 500
        assert [(e.name, e.sample) for e in broker.events if e.kind == "stalled"] == [("a", 500)]
        a.advance(1500)
        time.sleep(0.2)
        assert reader.is_alive() and broker.now == 1500
        a.advance(10_000)
        reader.join(5)
        y, t0 = result["rx"]
        assert t0 == 0 and broker.now == 2000
        np.testing.assert_allclose(y[:500], 0.5, atol=1e-6)   # ideal unit link, no noise (default Air)
        assert np.all(y[500:] == 0)


def test_a_waiting_call_fails_cleanly_when_the_broker_goes_away():
    """rx waits as long as the broker answers heartbeats, and raises RadioError ``timeout_s`` after it stops."""
    b = ChannelBroker(Air(1e6, 1e9), BrokerConfig(endpoints=["a", "b"]), bind=LOCAL).start()
    a = ZmqRadio(b.endpoint, "a", timeout_s=0.5)
    r = ZmqRadio(b.endpoint, "b", timeout_s=0.5, heartbeat_s=0.05)
    threading.Timer(0.8, b.stop).start()        # longer than timeout_s: the wait outlives it while the broker lives
    started = time.monotonic()
    with pytest.raises(RadioError, match="stopped answering heartbeats"):
        r.rx(100, at=0)                          # "a" holds the clock at 0
    assert 0.8 + 0.5 - 0.1 <= time.monotonic() - started < 10
    r.close()
    a.close()


def test_endpoint_that_does_not_hold_the_clock_is_not_waited_for(broker, rng):
    with ZmqRadio(broker.endpoint, "a", hold_clock=False) as a, ZmqRadio(broker.endpoint, "b") as b:
        b.rx(3000, at=0)                    # a never declared anything
        assert broker.now == 3000
        with pytest.raises(LateError):
            a.tx(_noise(rng, 4), at=10)


def test_expected_endpoint_that_never_comes_is_reported_missing_after_the_join_timeout():
    air = Air(1e6, 1e9)
    cfg = BrokerConfig(endpoints=["a", "ghost"], join_timeout_s=0.3)
    started = time.monotonic()
    with ChannelBroker(air, cfg, bind=LOCAL) as b, ZmqRadio(b.endpoint, "a") as a:
        y, t0 = a.rx(100, at=0)                        # the clock waits for "ghost" until the join timeout
        assert time.monotonic() - started >= 0.3 and t0 == 0
        assert [(e.kind, e.name) for e in b.events if e.kind == "missing"] == [("missing", "ghost")]
        assert b.endpoints()["ghost"]["state"] == "lost"


def test_realtime_pacing_never_runs_ahead_of_the_wall_clock():
    """Realtime pacing: sample t exists no earlier than t / sample_rate seconds after the clock started (which is
    after ChannelBroker.start()), and the first rx(at=None) starts at the broker's now."""
    air = Air(50_000.0, 1e9)
    cfg = BrokerConfig(pacing="realtime", block_size=500)
    started = time.monotonic()
    with ChannelBroker(air, cfg, bind=LOCAL) as b, ZmqRadio(b.endpoint, "r", heartbeat_s=0.05) as r:
        t_first = r.time_now()
        y, t0 = r.rx(10_000)
        assert t0 >= t_first
        assert time.monotonic() - started >= (t0 + 10_000) / 50_000.0
        with pytest.raises(LateError):
            r.tx(np.ones(8, np.complex64), at=0)
        stats = b.pacing_error()
        assert stats["steps"] >= 1 and stats["lag_us_mean"] >= 0 and 0 < stats["rate_ratio"] <= 1.0 + 1e-9


def test_replaced_and_returning_names_are_reported(broker):
    first = ZmqRadio(broker.endpoint, "a")
    second = ZmqRadio(broker.endpoint, "a")          # same name again: the newer registration wins
    with pytest.raises(RadioError, match="unknown session"):
        first.advance(10)
    first.close()                                    # its "bye" is refused (unknown session); close still works
    first.close()                                    # idempotent
    second.close()
    third = ZmqRadio(broker.endpoint, "a")
    third.close()
    kinds = [(e.kind, e.name) for e in broker.events if e.name == "a"]
    assert kinds == [("registered", "a"), ("replaced", "a"), ("left", "a"), ("reconnected", "a"), ("left", "a")]


def test_air_computes_only_live_receiving_endpoints():
    """Transmit-only and departed endpoints are switched off in the air (Air.set_receiving): advance() produces
    samples only for live receivers, and what they receive is unchanged."""
    class RecordingAir(Air):
        def advance(self, n):
            out = super().advance(n)
            self.calls = [*getattr(self, "calls", []), sorted(out)]
            return out

    air = RecordingAir(1e6, 1e9)
    with ChannelBroker(air, BrokerConfig(endpoints=["tx", "rx"]), bind=LOCAL) as b, \
            ZmqRadio(b.endpoint, "tx", receive=False) as tx, ZmqRadio(b.endpoint, "rx") as rx:
        tx.tx(np.full(100, 0.25, np.complex64), at=0)
        tx.close()
        y, _ = rx.rx(200, at=0)
        rx.close()
    assert air.calls and all(c == ["rx"] for c in air.calls)
    np.testing.assert_allclose(y[:100], 0.25)
    assert air.advance(10) == {}                       # everyone left: nothing to compute


# ------------------------------------------------------------------------------------------------------ CURVE
def test_curve_accepts_listed_keys_and_rejects_others(tmp_path):
    import zmq.auth
    server_pub, server_sec = zmq.auth.create_certificates(tmp_path, "server")
    client_pub, client_sec = zmq.auth.create_certificates(tmp_path, "client")
    (tmp_path / "other").mkdir()
    _, other_sec = zmq.auth.create_certificates(tmp_path / "other", "intruder")
    cfg = BrokerConfig(secret_key=str(server_sec), allowed_keys=[str(client_pub)])
    with ChannelBroker(Air(1e6, 1e9), cfg, bind=LOCAL) as b:
        with ZmqRadio(b.endpoint, "good", server_key=str(server_pub), client_key=str(client_sec)) as good:
            assert good.time_now() == 0
        with pytest.raises(RadioError, match="rejected the connection.*HANDSHAKE_FAILED_AUTH"):
            ZmqRadio(b.endpoint, "intruder", server_key=str(server_pub), client_key=str(other_sec), timeout_s=5)
        with pytest.raises(RadioError, match="rejected the connection.*requires CURVE"):
            ZmqRadio(b.endpoint, "plain", timeout_s=5)
        time.sleep(0.05)
        assert any(e.kind == "auth_rejected" for e in b.events)
        assert [e.name for e in b.events if e.kind == "registered"] == ["good"]


# ------------------------------------------------------------------------------------------------------ config
def test_zmq_args_and_broker_settings_load_from_yaml(tmp_path):
    from lab.config import ConfigError, build
    args = build(ZmqArgs, {"address": "tcp://10.0.0.2:5555", "name": "dev3", "wire": "sc16",
                           "broker": {"pacing": "realtime", "endpoints": ["ps", "dev3"]}}, "radio.args")
    assert args.wire == "sc16" and args.broker.pacing == "realtime" and args.broker.endpoints == ["ps", "dev3"]
    with pytest.raises(ConfigError, match="radio.args.broker.pacing = 'fast'"):
        build(ZmqArgs, {"broker": {"pacing": "fast"}}, "radio.args")
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        build(ZmqArgs, {"bogus": 1}, "radio.args")
    with pytest.raises(ConfigError, match="both server_key"):
        build(ZmqArgs, {"server_key": "s.key"}, "radio.args")


# ------------------------------------------------------------------------------------------------------ otalab air
def test_otalab_air_serves_the_configured_air(capsys):
    from lab.cli import main
    from lab.cli.air import bind_address, build_broker
    assert bind_address("tcp://127.0.0.1:5555", 0) == "tcp://127.0.0.1:0"
    with pytest.raises(ValueError, match="--port = 70000"):
        bind_address("tcp://127.0.0.1:5555", 70000)
    broker, cfg = build_broker(str(CONFIGS / "zmq.yaml"), ["air.snr_db=30", "radio.args.broker.endpoints=[ps]"], 0)
    with broker, ZmqRadio.from_args(dataclasses.replace(cfg.radio_args, address=broker.endpoint, name="ps"),
                                    sample_rate=cfg.radio.sample_rate) as ps:
        assert ps.sample_rate == 20e6
        with pytest.raises(RadioError, match="configured sample_rate=1000000.0 but the broker"):
            ZmqRadio(broker.endpoint, "other", sample_rate=1e6)
        y, _ = ps.rx(20_000, at=0)
        # receiver noise only: E|w|² = 10**(-30/10); 20000 samples → relative std of the estimate ≈ 1/sqrt(20000)
        assert np.mean(np.abs(y) ** 2) == pytest.approx(1e-3, rel=0.05)
    assert main(["air", "--config", str(CONFIGS / "zmq.yaml"), "--port", "0", "--seconds", "0.2", "--quiet"]) == 0
    assert "ZeroMQ air on tcp://127.0.0.1:" in capsys.readouterr().out
    assert main(["air", "--config", str(CONFIGS / "pluto.yaml"), "--seconds", "0.1", "--quiet"]) == 2
    assert "expected 'zmq'" in capsys.readouterr().err
