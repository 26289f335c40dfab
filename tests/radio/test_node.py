"""The radio node (radio.node): ring indexed by sample time, clock map, streaming on wall-clock radios, host stalls,
the ZeroMQ local interface and `otalab node` in its own process; plus the realtime ZeroMQ air's hardware-true rules
(wall-derived deadlines, untimed-TX endpoints, CURVE name binding, insecure-bind warning)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from radio.base import LateError, RadioError
from radio.drivers.loopback import LoopbackRadio, _hub
from radio.drivers.zmq import ZmqRadio
from radio.node import ClockMap, RadioNode, SampleRing
from radio.node.locked_latency import LockedLatency, numbered_burst
from radio.node.server import NodeClient, NodeServer
from radio.servers.broker_process import BrokerProcess
from radio.servers.zmq_broker import BrokerConfig, ChannelBroker
from radio.sim.air import Air
from tests.radio.realtime import timing_judged

FS = 1e6
LOCAL = "tcp://127.0.0.1:0"
ROOT = Path(__file__).resolve().parents[2]
BURST = numbered_burst(0)


# ------------------------------------------------------------------------------------------------- pieces
def test_ring_fills_a_gap_at_its_own_sample_times_and_flags_it():
    ring = SampleRing(1000)
    ring.write(100, np.full(50, 1, np.complex64))
    ring.write(180, np.full(20, 2, np.complex64))         # [150, 180) lost
    x, gaps = ring.read(140, 60, timeout_s=0.1)
    assert gaps == [(150, 180)]
    np.testing.assert_array_equal(x[:10], 1)
    np.testing.assert_array_equal(x[10:40], 0)
    np.testing.assert_array_equal(x[40:], 2)               # sample 180 is at index 40: no shift
    assert ring.gap_count == 1 and ring.gap_samples == 30
    with pytest.raises(RadioError, match=r"waiting for samples \[190, 210\)"):
        ring.read(190, 20, timeout_s=0.05)
    ring.write(200, np.zeros(1500, np.complex64))          # wraps: only the newest 1000 held
    with pytest.raises(LateError):
        ring.read(600, 10, timeout_s=0.1)
    assert ring.oldest() == 700


def test_clock_map_recovers_rate_and_the_lower_envelope_of_delayed_arrivals():
    """Arrivals m = m0 + t (1 + ppm 1e-6) / f + d with d >= 0 (exponential, mean 300 µs, one in ten prompt): the
    fit's slope is 1/f_true (least squares) and its intercept the prompt arrivals (the envelope), to a few µs."""
    rng = np.random.default_rng(1)
    f, ppm, m0 = 1e6, 40.0, 100.0
    cm = ClockMap(f, window=200)
    ts = np.arange(1, 201) * 5000
    delay = rng.exponential(300e-6, ts.size) * (rng.random(ts.size) > 0.1)
    for t, d in zip(ts, delay):
        cm.add(int(t), m0 + t / (f * (1 + ppm * 1e-6)) + d)
    assert abs(cm.as_dict()["rate_ppm"] - ppm) < 25      # LS slope under 300 µs jitter over 1 s: ~ tens of ppm
    t = int(ts[-1])
    assert abs(cm.to_mono(t) - (m0 + t / (f * (1 + ppm * 1e-6)))) < 20e-6
    assert abs(cm.to_sample(cm.to_mono(t + 1234)) - (t + 1234)) <= 1


def test_clock_map_rests_on_prompt_arrivals_through_a_second_of_late_ones():
    """The map is the line under every arrival closest to them (the lower hull's edge at the mean): 2 s of arrivals
    delayed 0-200 µs, then 1 s in which every one is 3 ms late (a stalled host), 25 ppm off nominal: the map stays
    on the prompt ones (within 20 µs of the true clock), neither lifted nor tilted by the late run; a point that
    comes earlier than the map refits it at once."""
    f, ppm = 1e6, -25.0
    rng = np.random.default_rng(2)
    cm = ClockMap(f, window=2048, refit_every=8)

    def true(t):
        return 5.0 + t / (f * (1 + ppm * 1e-6))
    t = 0
    for k in range(600):                       # 3 s of 5 ms blocks
        t += 5000
        late = 3e-3 if k >= 400 else rng.uniform(0, 200e-6)
        cm.add(t, true(t) + late)
    assert abs(cm.to_mono(t) - true(t)) < 20e-6
    assert abs(cm.as_dict()["rate_ppm"] - ppm) < 5
    cm.add(t + 5000, true(t + 5000) + 1e-3)    # late: joins the window
    cm.add(t + 10000, true(t + 10000) - 1e-3)  # earlier than the map: refitted now, and the envelope moved down
    assert cm.as_dict()["t_ref"] == t + 10000 and cm.to_mono(t + 10000) <= true(t + 10000) - 1e-3 + 1e-9


def test_a_streaming_thread_raises_only_its_own_priority_where_allowed():
    """raise_thread_priority lowers the calling thread's nice value (Linux: per thread), or says why it could not;
    other threads keep theirs; a nice value outside -20..19 is refused."""
    import threading

    from radio.thread_priority import raise_thread_priority
    before = os.getpriority(os.PRIO_PROCESS, 0)
    got = {}

    def worker():
        got["said"] = raise_thread_priority(before - 1 if before > -20 else -20)
        got["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    th = threading.Thread(target=worker)
    th.start()
    th.join()
    assert os.getpriority(os.PRIO_PROCESS, 0) == before
    if "not permitted" in got["said"]:
        assert got["nice"] == before
    else:
        assert got["said"] == f"nice {got['nice']}" and got["nice"] == max(before - 1, -20)
    with pytest.raises(ValueError, match="-20..19"):
        raise_thread_priority(-21)


def test_node_refuses_a_radio_without_a_wall_clock():
    air = Air(FS, 2.4e9)
    with pytest.raises(RadioError, match="wall clock"):
        RadioNode(LoopbackRadio(air, "a")).start()


def test_node_fits_its_map_to_the_radios_own_stamps_when_it_gives_them():
    """A radio whose RX stream stamps its blocks (Radio.rx_arrivals: a Pluto's refills, and its shortest refill) is
    mapped by those stamps, not by when the node's reads returned: here every block is stamped 12.3 ms after its
    samples existed on the realtime air (a read returns within a few ms of that), so the map is 12.3 ms late, to
    0.1 ms; the shortest refill is reported in the node's stats, not subtracted (it also holds the request's round
    trip: subtracted, a quiet host's Pluto map came out 3.2-3.6 ms early)."""
    air = Air(FS, 2.4e9, seed=0)
    late = 12.3e-3

    class Stamped(LoopbackRadio):
        stamps: list = []

        def rx(self, n, at=None):
            x, t0 = super().rx(n, at)
            self.stamps.append((t0 + x.size, _hub(air).wall_of(t0 + x.size) + late))
            return x, t0

        transfer = 2e-3

        def rx_arrivals(self):
            out, self.stamps = self.stamps, []
            return out, self.transfer

    radio = Stamped(air, "a", noise_power=0.0, realtime=True)
    node = RadioNode(radio, name="a").start()
    try:
        time.sleep(0.3)
        t = node.time_now()
        assert abs(node.to_mono(t) - _hub(air).wall_of(t) - late) < 1e-4
        radio.transfer = 5e-3
        time.sleep(0.05)
        assert abs(node.to_mono(t) - _hub(air).wall_of(t) - late) < 1e-4
        assert node.stats["refill_shortest_s"] == 5e-3
        assert abs(node.to_sample(node.to_mono(t)) - t) <= 1
        assert LoopbackRadio.rx_arrivals(radio) is None      # (the contract's default: the node stamps its reads)
    finally:
        node.close()
        radio.close()


# ------------------------------------------------------------------------------------------------- streaming
@contextlib.contextmanager
def _loopback_nodes(buffer_samples: int = 1 << 23):
    air = Air(FS, 2.4e9, seed=0)
    a = LoopbackRadio(air, "a", noise_power=0.0, realtime=True)
    b = LoopbackRadio(air, "b", noise_power=0.0, realtime=True, max_buffer_samples=buffer_samples)
    hub = _hub(air)
    na = nb = None
    try:
        na, nb = RadioNode(a, name="a").start(), RadioNode(b, name="b").start()
        yield na, nb, hub.wall_of, lambda: nb.ring.gap_samples
    finally:
        for n in (na, nb):
            if n is not None:
                n.close()
        a.close(), b.close()


@contextlib.contextmanager
def _zmq_nodes(buffer_samples: int = 1 << 21, timed_tx: bool = True):
    """Two nodes on the ZeroMQ air in realtime pacing; the broker runs in a process of its own, as `otalab air` does
    in real use (in the nodes' process it shares their GIL and, starved, releases samples late). Truth: the broker's
    wall anchor (monotonic time of the sample its clock started at)."""
    cfg = BrokerConfig(pacing="realtime", block_size=1000, buffer_samples=buffer_samples)
    broker = BrokerProcess(FS, 2.4e9, cfg, seed=0, bind=LOCAL)
    radios, nodes = [], []
    try:
        a = ZmqRadio(broker.endpoint, "a", timed_tx=timed_tx, tx_latency_samples=300)   # a node streams RX too
        radios.append(a)
        b = ZmqRadio(broker.endpoint, "b")
        radios.append(b)
        nodes = [RadioNode(a, name="a").start(), RadioNode(b, name="b").start()]
        mono, s = broker.state()["wall_anchor"]

        def truth(t):
            return mono + (t - s) / FS

        yield nodes[0], nodes[1], truth, lambda: b.lost_samples   # (the receiving endpoint's own losses)
    finally:
        for n in nodes:
            n.close()
        for r in radios:
            r.close()
        broker.close()


@contextlib.contextmanager
def _pluto_nodes():
    """One emulated Pluto in the emulator's wall-clock DMA mode (free-running device clock 20 ppm off the host,
    random power-on count, TX->RX latency 321 samples the node is not told), digital loopback: its node sends and
    receives. The emulator runs in a process of its own, as a real Pluto is a device of its own (an in-process one
    shares the client's GIL: its late handling of a push would count as the host's underflow). The client keeps 8 TX
    kernel buffers of 4096 samples queued (32.8 ms at 1 MS/s: what the 50 ms lead leaves room for; libiio's default 4
    left 12 ms of slack and underran on a busy host). Truth: the emulator's device clock at the device time of RX
    count 0."""
    pytest.importorskip("adi", exc_type=ImportError)
    from radio.drivers.pluto import PlutoArgs, PlutoRadio
    from radio.servers.iiod_emulator import EmulatorSettings
    args = PlutoArgs(emulate=True, loopback=1, rx_buffer_size=8192, tx_buffer_size=4096, kernel_buffers=16,
                     tx_kernel_buffers=8, emulator=EmulatorSettings(wallclock=True, seed=14, ppm=20.0,
                                                                    tx_latency_samples=321))
    radio = PlutoRadio.emulated(None, args, process=True, sample_rate=FS, tx_gain=0.0, rx_gain=0.0)
    node = None
    try:
        node = RadioNode(radio, name="pluto").start()
        clock, rx0 = radio.emulator_process.clock(), radio.emulator_process.state()["rx_opened_at"]

        def truth(t):   # (after an RX gap the index is the stream's estimate: device time unknown to the sample)
            return clock.mono_at(rx0 + t) if all(t < a for a, _ in radio.rx_gaps()) else np.nan

        yield node, node, truth, lambda: sum(b - a for a, b in radio.rx_gaps())
    finally:
        if node is not None:
            node.close()
        radio.close()


@contextlib.contextmanager
def _usrp_nodes():
    """One USRP (the UHD double in wall-clock mode: device time on the host's monotonic clock, recv waits for its
    samples), its TX cabled to its RX with no delay and no other signal: its node sends and receives."""
    from radio.drivers.usrp import UsrpArgs, UsrpRadio
    from tests.radio.uhd_double import make_uhd
    uhd, dev, _ = make_uhd(wallclock=True)
    dev.rx_source = lambda t: np.zeros(t.size, np.complex64)
    dev.max_chunk = 5000                      # one recv per node block (the double's per-recv cost is Python)
    radio = UsrpRadio(FS, 2.4e9, args=UsrpArgs(), uhd_module=uhd)
    node = None
    try:
        node = RadioNode(radio, name="usrp").start()

        def truth(t):
            return dev._wall0 + (t - dev._now) / dev.rx_rate

        yield node, node, truth, lambda: radio.stats["rx_dropped_samples"]
    finally:
        if node is not None:
            node.close()
        radio.close()


NODES = {"loopback": _loopback_nodes, "zmq": _zmq_nodes, "pluto": _pluto_nodes, "usrp": _usrp_nodes}
#: how exactly a burst comes back: sample-exact on the simulated airs; the Pluto's int16 TX words (amplitude 1.0 =
#: 2**14) return bit-exactly in digital loopback: I and Q each within half a step, so the complex error < one step
ATOL = {"loopback": 1e-6, "zmq": 1e-6, "pluto": 2.0 ** -14, "usrp": 1e-6}


def _stream(na: RadioNode, nb: RadioNode, truth, seconds: float, period: float = 0.02, lead: float = 0.05,
            stall: tuple[float, float] | None = None, offset=lambda at, result, burst: 0, atol: float = 1e-6):
    """Bursts from na every ``period`` s at ``lead`` s ahead for ``seconds``; each read back from nb's ring
    ~0.2 s later at ``at + offset(at, result, burst)`` (the radio's TX->RX latency: 0 for timed radios; the Pluto's
    constant of the lock epoch the burst left in; None: not known: the burst counts as not exact). Returns (results,
    arrivals: list of (at, exact, flagged)), mapping errors (s: ``to_mono(t) - truth(t)`` of both nodes, every
    burst)."""
    results, arrivals, errors, pending = [], [], [], []
    t_end = time.monotonic() + seconds
    next_t = time.monotonic()
    stalled = False
    while time.monotonic() < t_end or pending:
        now_m = time.monotonic()
        if stall and not stalled and now_m > t_end - seconds + stall[0]:
            nb.pause_rx(stall[1])
            stalled = True
        if now_m < t_end:
            t_now = na.time_now()
            t_b = nb.time_now()
            errors += [na.to_mono(t_now) - truth(t_now), nb.to_mono(t_b) - truth(t_b)]
            burst = numbered_burst(len(results))
            fut = na.submit(burst, t_now + int(lead * FS))     # (no wait for the outcome: the next one is due)
            results.append(fut)
            pending.append((t_now + int(lead * FS), fut, burst))
        while pending and (pending[0][0] + 0.2 * FS < na.time_now() or now_m >= t_end):
            at, fut, burst = pending.pop(0)
            res = fut.result(timeout=5.0)
            if res.state != "on_time":                         # reported: not sent, or not on time
                continue
            off = offset(at, res, burst)
            x, gaps = nb.rx(at + (off or 0) - 8, burst.size + 16, timeout_s=3.0)
            exact = (off is not None and np.allclose(x[8:-8], burst, atol=atol) and not np.any(x[:8])
                     and not np.any(x[-8:]))
            arrivals.append((at, exact, bool(gaps)))
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))
    return [f.result(timeout=5.0) for f in results], arrivals, np.array(errors)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(NODES))
def test_ten_seconds_of_streaming_every_burst_lands_at_its_sample_time(kind):
    """#14 Done when: 10 s at 1 MS/s, bursts scheduled 50 ms ahead every 20 ms. Timed radios (loopback, zmq, USRP:
    accuracy 0 samples): every burst is received exactly at the asked sample time (noiseless ideal link, so
    sample-exact equality), or lies in an interval the node flagged as lost. The Pluto (no timestamps; TX locked to
    RX): every on-time burst at ``at + L`` with L the device's TX->RX constant of the lock epoch it left in (measured
    with a probe at the start; after a reported slip, from the first burst of the new epoch, as timing advance
    would): one constant per epoch; a burst caught in a slip is reported ("underflow") and counts against the 1 %
    of bursts allowed to be reported not on time. Every lost sample
    is flagged (the ring's count equals the radio's); the sample-time <-> monotonic map stays within 1 ms of the
    radio's true clock."""
    with NODES[kind]() as (na, nb, truth, radio_lost):
        latency = LockedLatency(na, ATOL[kind])
        if kind == "pluto":        # the TX->RX constant per lock epoch, as timing advance would learn it
            latency.probe(numbered_burst(-1))

            def offset(at, result, burst):
                return latency.offset(result, burst)
        else:
            def offset(at, result, burst):
                return 0
        load_before = os.getloadavg()[0]
        results, arrivals, errors = _stream(na, nb, truth, 10.0, offset=offset, atol=ATOL[kind])
        # what must hold on any host: a burst not on time is reported (late, or refused by the lead check: not
        # sent; a Pluto reports a slip of its TX stream as "underflow", a burst spanning an estimated RX gap as
        # "unknown"), never silently misplaced; every lost sample is flagged; every slip starts a lock epoch
        assert len(results) >= 400
        late = [r for r in results if r.state != "on_time"]
        reported = ("late", "rejected", "underflow", "unknown") if kind == "pluto" else ("late", "rejected")
        assert all(r.state in reported for r in late), late[:3]
        if kind == "pluto":
            st = na.radio.settings()
            assert na.radio.tx_lock["epoch"] == st["stream_tx_underflows"] + st["stream_rx_gaps"]
        assert all(r.start == r.at for r in results if r.state == "on_time")
        bad = [a for a in arrivals if not a[1] and not a[2]]
        assert not bad, f"{len(bad)} bursts neither at their sample time nor flagged lost: {bad[:3]}"
        assert nb.ring.gap_samples == radio_lost()
        # what needs the CPU the radio needs (judged only on a host that is not overloaded, see _timing)
        # (the Pluto's map is judged before its first RX gap: after it the index is an estimate, and the map maps
        # the shifted index; the estimate's error is test_pluto_streaming's)
        lo, hi = (np.nanmin(errors), np.nanmax(errors)) if np.any(np.isfinite(errors)) else (0.0, 0.0)
        print(f"{kind}: {len(late)} of {len(results)} not on time, {sum(a[1] for a in arrivals)} of {len(arrivals)} "
              f"exact, map {lo * 1e3:.3f}..{hi * 1e3:.3f} ms ({np.isfinite(errors).sum()} checks), load {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
        with timing_judged(load_before):
            assert len(late) <= 0.01 * len(results), f"{len(late)} of {len(results)} not on time: {late[:3]}"
            assert sum(a[1] for a in arrivals) >= 0.98 * len(arrivals)
            assert np.isfinite(errors).sum() >= 100, "fewer than 100 map checks before the first RX gap"
        # (the Pluto's against its ADC's clock: the node maps by when its libiio refills returned, Radio.rx_arrivals;
        # stamped after pyadi-iio's conversion instead, it was 0.31-1.34 ms late; mapped by when the node's 5 ms
        # reads returned, 3-5 ms late at load 6-8: docs/radio-clocks.md)
        with timing_judged(load_before):
            assert max(-lo, hi) < 1e-3, f"clock map {lo * 1e3:.3f}..{hi * 1e3:.3f} ms off"


@pytest.mark.parametrize("kind", ["loopback", "zmq"])   # the Pluto's: tests/radio/test_pluto_streaming.py
def test_host_stall_longer_than_the_radio_buffer_is_a_flagged_gap_not_a_shift(kind):
    """The receiving node's RX thread stalls 0.5 s; the radio holds 0.15 s: samples are lost, the node flags them at
    their own sample times, and every burst before, during and after is either exact at its time or flagged."""
    ctx = _loopback_nodes(buffer_samples=150_000) if kind == "loopback" else _zmq_nodes(buffer_samples=150_000)
    with ctx as (na, nb, truth, radio_lost):
        load_before = os.getloadavg()[0]
        results, arrivals, _ = _stream(na, nb, truth, 1.6, stall=(0.4, 0.5))
        assert nb.ring.gap_count >= 1 and nb.ring.gap_samples >= 0.3 * FS
        gaps = list(nb.ring.gaps)          # one overflow; catching up may lose a few more blocks right after it
        g0, g1 = gaps[0][0], gaps[-1][1]
        assert sum(e - s for s, e in gaps) == nb.ring.gap_samples
        assert not [a for a in arrivals if not a[1] and not a[2]]
        assert any(a[2] for a in arrivals)
        after = [a for a in arrivals if a[0] > g1]
        assert all(a[1] for a in after)                      # the index stayed true after the gap
        if kind == "zmq":
            assert nb.ring.gap_samples == radio_lost()
        with timing_judged(load_before):         # caught up within the run: the lost stretch is the stall's alone
            assert g1 - g0 < 0.5 * FS and after and sum(a[1] for a in arrivals) >= len(arrivals) // 2


def test_lead_check_refuses_late_bursts_and_zmq_untimed_endpoint_keeps_a_constant_latency():
    """A burst less than `lead` ahead is refused (not sent). An endpoint posing as a Pluto (no timestamps, TX stream
    kept fed, TX->RX latency 300 samples) puts every burst exactly 300 samples after its asked time: constant, so
    timing advance absorbs it; the node reports it on time (the radio's own latency, not lateness)."""
    with _zmq_nodes(timed_tx=False) as (na, nb, truth, _):
        assert na.radio.capabilities.timed_tx is False
        r = na.tx(BURST, na.time_now() + 100)
        assert (r.accepted, r.state) == (False, "rejected")
        for _ in range(5):
            r = na.tx(BURST, na.time_now() + int(0.03 * FS))
            assert r.accepted and r.state == "on_time" and r.start - r.at == 300, r
            x, gaps = nb.rx(r.at + 300, BURST.size, timeout_s=2)
            np.testing.assert_allclose(x, BURST, atol=1e-6)


# ------------------------------------------------------------------------------------------------- interface
def test_node_server_and_client_in_process():
    with _loopback_nodes() as (na, nb, truth, _), NodeServer(na).start() as srv, NodeClient(srv.endpoint) as c:
        assert c.name == "a" and c.sample_rate == FS
        t = c.time_now()
        assert abs(t - na.time_now()) < 0.05 * FS
        r = c.tx(BURST, t + int(0.05 * FS))
        assert r.state == "on_time" and r.start == r.at
        assert c.tx(BURST, t).state == "rejected"
        assert c.wait_until(r.at + BURST.size) >= r.at + BURST.size
        with NodeServer(nb).start() as srv_b, NodeClient(srv_b.endpoint) as cb:
            x, gaps = cb.rx(r.at, BURST.size)
            np.testing.assert_allclose(x, BURST, atol=1e-6)
            assert gaps == []
        assert c.mapping()["points"] >= 2 and c.status()["tx_on_time"] == 1
        with pytest.raises(RadioError, match="wait_until"):
            c.wait_until(c.time_now() + int(60 * FS), timeout_s=0.1)


def _own(cmd: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=5)


#: `otalab node` per radio kind: the config and its overrides (1 MS/s; the zmq node and the emulated Pluto on the
#: ZeroMQ air ("pluto-zmq") on an `otalab air` started first; "usrp": the UHD double installed as `uhd`)
NODE_CONFIGS = {"loopback": ("loopback.yaml", []), "pluto-emulated": ("pluto-emulated.yaml", []),
                "zmq": ("zmq.yaml", []),
                "pluto-zmq": ("pluto-emulated.yaml", ["radio.args.emulator.air=zmq", "radio.args.emulator.seed=3",
                                                      "radio.args.emulator.tx_latency_samples=123"]),
                "usrp": ("usrp-b210.yaml", ["radio.args.master_clock_rate=null"])}
#: what `otalab node` is started with: the CLI; for the UHD double, the same CLI with the double as `uhd`
NODE_MAIN = {"usrp": "tests.radio.uhd_node"}


@pytest.mark.parametrize("kind", list(NODE_CONFIGS))
def test_otalab_node_process_serves_clients_and_is_torn_down(kind, tmp_path):
    """`otalab node -c hw_configs/<radio>.yaml --name dev3` in its own process (loopback: its realtime air in the
    node; the emulated Pluto: wall-clock mode forced, on the config's air, or with ``emulator.air=zmq`` an endpoint
    named ``pluto0-dev3`` on the ZeroMQ air, its emulator in a process of its own; zmq: an `otalab air` in realtime
    pacing in a process of its own, as in real use; usrp: the UHD double in wall-clock mode behind the same CLI)
    prints where it serves; a client sends a burst and reads RX; SIGTERM ends it and it writes its final status."""
    config, extra = NODE_CONFIGS[kind]
    sets = ["radio.sample_rate=1e6", *extra]
    load_before = os.getloadavg()[0]
    procs = []
    air = None
    try:
        if kind in ("zmq", "pluto-zmq"):
            air = _own([sys.executable, "-m", "lab.cli", "air", "-c", str(ROOT / "hw_configs" / "zmq.yaml"), "--port",
                        "0", *[a for kv in ["radio.sample_rate=1e6", "radio.args.broker.pacing=realtime",
                                            "radio.args.broker.block_size=1000"] for a in ("--set", kv)]],
                       cwd=tmp_path)
            procs.append(air)
            line = air.stdout.readline()
            assert line.startswith("ZeroMQ air on "), air.stderr.read()
            address = line.split()[3].rstrip(':')
            sets.append(f"radio.args.address={address}" if kind == "zmq" else f"radio.args.emulator.address={address}")
        cmd = [sys.executable, "-m", NODE_MAIN.get(kind, "lab.cli"), "node", "-c", str(ROOT / "hw_configs" / config),
               "--name", "dev3", "--seconds", "30", "--json", str(tmp_path / "node.json"),
               *[a for kv in sets for a in ("--set", kv)]]
        if kind in NODE_MAIN:
            cmd.remove("node")      # (the module runs `otalab node` itself)
        proc = _own(cmd, cwd=tmp_path)
        procs.append(proc)
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        info = json.loads(line)
        assert info["node"] == "dev3" and info["driver"] == kind.split("-")[0]
        with NodeClient(info["endpoint"], timeout_s=5) as c:
            assert c.sample_rate == FS
            t = c.time_now()
            # a Pluto's TX stream may slip while the node starts on a busy host: reported, and sent again
            for k in range(5):
                r = c.tx(numbered_burst(k), c.time_now() + int(0.1 * FS))
                if r.state == "on_time":
                    break
                assert r.state in ("underflow", "late", "unknown", "rejected"), r   # reported, on any host
            x, gaps = c.rx(t, 1000)
            assert x.shape == (1000,)     # (a gap is flagged in place: the samples' times stay true)
        proc.terminate()
        proc.wait(timeout=10)
        status = json.loads((tmp_path / "node.json").read_text())["status"]
        assert status["tx_on_time"] == (r.state == "on_time") and status["driver"] == kind.split("-")[0]
        if kind == "loopback":              # (an ideal air: nothing lost)
            assert status["gaps"] == 0
        if kind == "pluto-zmq":             # the node's Pluto was an endpoint named after the node on that air
            air.terminate()
            assert "registered pluto0-dev3" in air.communicate(timeout=10)[1]
    finally:
        for p in procs[::-1]:
            _end(p)
    with timing_judged(load_before):      # (a loaded host may lose the first samples: flagged, judged here)
        assert r.state == "on_time" and gaps == [], (r, gaps)


def test_bench_node_record_has_a_min_lead_per_radio(tmp_path):
    """`otalab bench node` (short: 20 bursts at one lead of 60 ms, loopback) writes the record the issue asks for."""
    from lab.bench.node import main
    rec = main(["--radios", "loopback", "--bursts", "20", "--probe", "5", "--leads-ms", "60", "--json",
                str(tmp_path / "n.json")])
    (r,) = json.loads((tmp_path / "n.json").read_text())["results"]
    assert r == rec["results"][0] and r["radio"] == "loopback" and r["bursts"] == 20
    assert set(r) >= {"min_lead_ms", "late_bursts", "cpu_per_msps", "map_error_us_max", "tried"}
    with timing_judged(os.getloadavg()[0]):
        assert r["min_lead_ms"] == 60 and r["late_bursts"] == 0 and r["cpu_per_msps"] > 0
    with pytest.raises(SystemExit):
        main(["--radios", "usrp2"])


# ------------------------------------------------------------------------------------------------- broker rules
def test_realtime_broker_checks_deadlines_against_the_wall_clock_not_its_blocks():
    """block_size 50 ms: between released blocks, time_now() keeps moving (wall-derived), and a tx 5 ms in the past
    of the wall clock but after the last released block is refused as late."""
    cfg = BrokerConfig(pacing="realtime", block_size=50_000)
    with ChannelBroker(Air(FS, 2.4e9), cfg, bind=LOCAL) as b, ZmqRadio(b.endpoint, "r") as r:
        time.sleep(0.12)
        t1 = r.time_now()
        time.sleep(0.01)
        t2 = r.time_now()
        assert 0.005 * FS < t2 - t1 < 0.05 * FS             # finer than a 50 ms block
        with pytest.raises(LateError):
            r.tx(BURST, at=r.time_now() - 5000)
        assert r.tx(BURST, at=r.time_now() + 20_000) > b.now


def test_curve_binds_each_name_to_the_key_that_registered_it(tmp_path):
    import zmq.auth
    server_pub, server_sec = zmq.auth.create_certificates(tmp_path, "server")
    (tmp_path / "c").mkdir()
    a_pub, a_sec = zmq.auth.create_certificates(tmp_path / "c", "alice")
    b_pub, b_sec = zmq.auth.create_certificates(tmp_path / "c", "bob")
    cfg = BrokerConfig(secret_key=str(server_sec), allowed_keys=[str(tmp_path / "c")])
    with ChannelBroker(Air(FS, 2.4e9), cfg, bind=LOCAL) as brk:
        keys = {"server_key": str(server_pub)}
        with ZmqRadio(brk.endpoint, "dev0", client_key=str(a_sec), **keys):
            with pytest.raises(RadioError, match="bound to another CURVE key"):
                ZmqRadio(brk.endpoint, "dev0", client_key=str(b_sec), timeout_s=5, **keys)
        with ZmqRadio(brk.endpoint, "dev0", client_key=str(a_sec), **keys):   # its owner may come back
            pass
        with ZmqRadio(brk.endpoint, "dev1", client_key=str(b_sec), **keys):
            pass
        ev = [(e.kind, e.name) for e in brk.events if e.kind in ("impersonation", "registered", "reconnected")]
        assert ev == [("registered", "dev0"), ("impersonation", "dev0"), ("reconnected", "dev0"),
                      ("registered", "dev1")]
    # a name <-> key table in the config binds before anyone registers
    cfg = BrokerConfig(secret_key=str(server_sec), allowed_keys=[str(tmp_path / "c")],
                       name_keys={"ps": str(a_pub)})
    with ChannelBroker(Air(FS, 2.4e9), cfg, bind=LOCAL) as brk:
        with pytest.raises(RadioError, match="bound to another CURVE key"):
            ZmqRadio(brk.endpoint, "ps", client_key=str(b_sec), server_key=str(server_pub), timeout_s=5)
        assert [e.kind for e in brk.events if e.name == "ps"] == ["impersonation"]


def test_binding_a_public_address_without_curve_warns(caplog):
    with caplog.at_level("WARNING", logger="radio.servers.zmq_broker"):
        b = ChannelBroker(Air(FS, 2.4e9), BrokerConfig(), bind="tcp://0.0.0.0:0")
        b.stop()
        local = ChannelBroker(Air(FS, 2.4e9), BrokerConfig(), bind=LOCAL)
        local.stop()
    assert [e.kind for e in b.events if e.kind == "insecure_bind"] == ["insecure_bind"]
    assert not [e for e in local.events if e.kind == "insecure_bind"]
    assert "without CURVE" in caplog.text
