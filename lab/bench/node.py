"""Benchmark of the radio node: the smallest TX lead with no late burst, and the node's CPU cost per MS/s.

``otalab bench node [--json PATH] [--rate 1e6] [--bursts 500] [--period-ms 20] [--leads-ms 1,2,5,10,20,50]``: for
each radio (loopback realtime air, the ZeroMQ air in realtime pacing, and the emulated Pluto once its wall-clock mode
exists) a transmitting node and a receiving node stream at ``--rate``; bursts are sent every ``--period-ms`` at a
lead of L ms; leads are tried in increasing order: a short ``--probe`` run skips a lead with any late burst, and
``min_lead_ms`` is the first lead at which a run of ``--bursts`` (default 500) bursts had none late (``tried`` lists
every lead's outcome). A burst counts as late when the node refused it, the radio said it was not on time, or it was
not received exactly at its sample time (the Pluto: at ``at`` plus its TX->RX constant, measured once; after a
reported slip every burst counts as late). ``cpu_per_msps`` = process CPU seconds per wall second per MS/s streamed, for the
whole process (both nodes, their threads and, for zmq, the broker in this process).

Prints ``{"benchmark": "node", "results": [{"radio", "min_lead_ms", "late_bursts", "bursts", "cpu_per_msps",
"map_error_us_max", "tried", "load_after"}], "load": [1, 5, 15 min load averages]}``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from lab.bench import report


def _run(na, nb, truth, leads_ms, period_s, probe, bursts, fs, offset=lambda: 0, atol=1e-6):
    burst = (np.exp(2j * np.pi * np.random.default_rng(7).random(64)) * 0.5).astype(np.complex64)

    def trial(lead_ms, count):
        """``count`` bursts at ``lead_ms``: (late: refused, reported not on time, or not received exactly at
        ``at + offset()``), worst map error (s)."""
        late, worst, pending = 0, 0.0, []
        next_t = time.monotonic()
        for k in range(count + 1):
            if k < count:
                t = na.time_now()
                worst = max(worst, abs(na.to_mono(t) - truth(t)))
                at = t + int(lead_ms * 1e-3 * fs)
                pending.append((at, na.submit(burst, at)))
            while pending and (pending[0][0] + 0.1 * fs < na.time_now() or k == count):
                at, fut = pending.pop(0)
                if fut.result(timeout=10.0).state != "on_time":
                    late += 1
                    continue
                off = offset()
                x, gaps = nb.rx(at + (off or 0), burst.size, timeout_s=3.0)
                if off is None or gaps or not np.allclose(x, burst, atol=atol):
                    late += 1
            next_t += period_s
            time.sleep(max(0.0, next_t - time.monotonic()))
        return late, worst

    tried = []
    for lead in leads_ms:                 # a short probe skips leads that are clearly too small; a lead counts only
        if trial(lead, probe)[0]:         # once a run of ``bursts`` had no late burst at all
            tried.append({"lead_ms": lead, "bursts": probe, "late": "probe failed"})
            continue
        c0, w0 = time.process_time(), time.monotonic()
        late, worst = trial(lead, bursts)
        cpu = (time.process_time() - c0) / (time.monotonic() - w0)
        tried.append({"lead_ms": lead, "bursts": bursts, "late": late})
        if late == 0:
            return {"min_lead_ms": lead, "late_bursts": late, "bursts": bursts, "cpu_per_msps": cpu / (fs / 1e6),
                    "map_error_us_max": worst * 1e6, "tried": tried}
    return {"min_lead_ms": None, "late_bursts": None, "bursts": bursts, "cpu_per_msps": None, "tried": tried}


def _loopback(fs, lead_floor):
    from radio.drivers.loopback import LoopbackRadio, _hub
    from radio.node import RadioNode
    from radio.sim.air import Air
    air = Air(fs, 2.4e9, seed=0)
    a = LoopbackRadio(air, "a", noise_power=0.0, realtime=True)
    b = LoopbackRadio(air, "b", noise_power=0.0, realtime=True)
    na, nb = RadioNode(a, name="a", lead_s=lead_floor).start(), RadioNode(b, name="b", lead_s=lead_floor).start()
    return na, nb, _hub(air).wall_of, lambda: None


def _zmq(fs, lead_floor):
    from radio.drivers.zmq import ZmqRadio
    from radio.node import RadioNode
    from radio.servers.zmq_broker import BrokerConfig, ChannelBroker
    from radio.sim.air import Air
    broker = ChannelBroker(Air(fs, 2.4e9, seed=0), BrokerConfig(pacing="realtime", block_size=1000),
                           bind="tcp://127.0.0.1:0").start()
    a, b = ZmqRadio(broker.endpoint, "a"), ZmqRadio(broker.endpoint, "b")
    na, nb = RadioNode(a, name="a", lead_s=lead_floor).start(), RadioNode(b, name="b", lead_s=lead_floor).start()

    def truth(t):
        mono, s = broker.wall_anchor()
        return mono + (t - s) / fs
    return na, nb, truth, broker.stop


def _pluto(fs, lead_floor):
    """One emulated Pluto (wall-clock DMA mode, digital loopback, 20 ppm, TX->RX latency 321): its node sends and
    receives; the offset is the lock's TX->RX constant, measured once (None after a slip)."""
    from radio.drivers.pluto import PlutoArgs, PlutoRadio
    from radio.node import RadioNode
    from radio.servers.iiod_emulator import EmulatorSettings
    args = PlutoArgs(emulate=True, loopback=1, rx_buffer_size=8192, tx_buffer_size=4096, kernel_buffers=16,
                     tx_kernel_buffers=4, emulator=EmulatorSettings(wallclock=True, seed=14, ppm=20.0,
                                                                    tx_latency_samples=321))
    radio = PlutoRadio.emulated(None, args, sample_rate=fs, tx_gain=0.0, rx_gain=0.0)
    node = RadioNode(radio, name="pluto", lead_s=lead_floor).start()
    emu = radio.emulator
    probe = (np.arange(64) % 7 + 1).astype(np.complex64) * 0.05
    r = node.tx(probe, node.time_now() + int(0.1 * fs))
    x, _ = node.rx(r.at, int(0.3 * fs), timeout_s=3.0)
    lat, epoch0 = int(np.flatnonzero(np.abs(x) > 0)[0]), radio.tx_lock["epoch"]

    def truth(t):
        return emu._clock.mono_at(emu.rx_opened_at + t)

    def offset():
        return lat if radio.tx_lock["epoch"] == epoch0 else None
    return node, node, truth, radio.close, offset


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="otalab bench node", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None, help="write the record here too ('-': stdout only)")
    p.add_argument("--rate", type=float, default=1e6, help="sample rate (S/s)")
    p.add_argument("--bursts", type=int, default=500)
    p.add_argument("--probe", type=int, default=50, help="bursts of the quick run that skips a lead")
    p.add_argument("--period-ms", type=float, default=20.0)
    p.add_argument("--leads-ms", default="1,2,5,10,20,50")
    p.add_argument("--radios", default="loopback,zmq,pluto")
    a = p.parse_args(argv)
    leads = [float(v) for v in a.leads_ms.split(",")]
    results = []
    for radio in a.radios.split(","):
        opened = {"loopback": _loopback, "zmq": _zmq, "pluto": _pluto}[radio](a.rate, min(leads) * 1e-3 / 2)
        na, nb, truth, stop = opened[:4]
        extra = {"offset": opened[4], "atol": 2.0 ** -14} if radio == "pluto" else {}
        try:
            rec = _run(na, nb, truth, leads, a.period_ms * 1e-3, a.probe, a.bursts, a.rate, **extra)
        finally:
            na.close(), nb.close()
            stop()
        results.append({"radio": "pluto-emulated" if radio == "pluto" else radio, **rec,
                        "load_after": list(os.getloadavg())})
    record = {"benchmark": "node", "rate": a.rate, "period_ms": a.period_ms, "results": results,
              "load": list(os.getloadavg()), "cpu_count": os.cpu_count()}
    return report(record, a.json)
