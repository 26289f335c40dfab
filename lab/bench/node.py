"""Benchmark of the radio node: the smallest TX lead with no late burst, and the node's CPU cost per MS/s.

``otalab bench node [--json PATH] [--rate 1e6] [--bursts 500] [--period-ms 20] [--leads-ms 1,2,5,10,20,50]``: for
each radio (loopback realtime air, the ZeroMQ air in realtime pacing, and the emulated Pluto once its wall-clock mode
exists) a transmitting node and a receiving node stream at ``--rate``; bursts are sent every ``--period-ms`` at a
lead of L ms (each lead tried in increasing order with ``--probe`` bursts; the first with none late or refused is
then run with ``--bursts`` bursts). A burst counts as late when the node refused it, the radio said late, or it was
not received at its sample time. ``cpu_per_msps`` = process CPU seconds per wall second per MS/s streamed, for the
whole process (both nodes, their threads and, for zmq, the broker in this process).

Prints ``{"benchmark": "node", "results": [{"radio", "min_lead_ms", "late_bursts", "bursts", "cpu_per_msps",
"map_error_us_max"}], "load": [1, 5, 15 min load averages]}``.
"""

from __future__ import annotations

from lab.bench import report
import argparse
import os
import time

import numpy as np


def _run(na, nb, truth, leads_ms, period_s, probe, bursts, fs):
    burst = (np.exp(2j * np.pi * np.random.default_rng(7).random(64)) * 0.5).astype(np.complex64)

    def trial(lead_ms, count):
        late, worst, pending = 0, 0.0, []
        next_t = time.monotonic()
        for k in range(count + 1):
            if k < count:
                t = na.time_now()
                worst = max(worst, abs(na.to_mono(t) - truth(t)))
                r = na.tx(burst, t + int(lead_ms * 1e-3 * fs))
                if r.state != "on_time":
                    late += 1
                else:
                    pending.append(r.at)
            while pending and (pending[0] + 0.1 * fs < na.time_now() or k == count):
                at = pending.pop(0)
                x, gaps = nb.rx(at, burst.size, timeout_s=3.0)
                if gaps or not np.allclose(x, burst, atol=1e-6):
                    late += 1
            next_t += period_s
            time.sleep(max(0.0, next_t - time.monotonic()))
        return late, worst

    chosen = None
    for lead in leads_ms:
        if trial(lead, probe)[0] == 0:
            chosen = lead
            break
    if chosen is None:
        return {"min_lead_ms": None, "late_bursts": None}
    c0, w0 = time.process_time(), time.monotonic()
    late, worst = trial(chosen, bursts)
    cpu = (time.process_time() - c0) / (time.monotonic() - w0)
    return {"min_lead_ms": chosen, "late_bursts": late, "bursts": bursts, "cpu_per_msps": cpu / (fs / 1e6),
            "map_error_us_max": worst * 1e6}


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


def _pluto_available() -> str | None:
    import dataclasses

    from radio.drivers import pluto
    args = getattr(pluto, "PlutoEmulatorArgs", None) or getattr(pluto, "EmulatorArgs", None)
    if args is None or "wall_clock" not in {f.name for f in dataclasses.fields(args)}:
        return "the Pluto emulator's wall-clock mode has not landed yet"
    return "the Pluto emulator's wall-clock mode exists but is not wired into this benchmark yet"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="otalab bench node", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None, help="write the record here too ('-': stdout only)")
    p.add_argument("--rate", type=float, default=1e6, help="sample rate (S/s)")
    p.add_argument("--bursts", type=int, default=500)
    p.add_argument("--probe", type=int, default=50, help="bursts per lead while searching the smallest")
    p.add_argument("--period-ms", type=float, default=20.0)
    p.add_argument("--leads-ms", default="1,2,5,10,20,50")
    p.add_argument("--radios", default="loopback,zmq,pluto")
    a = p.parse_args(argv)
    leads = [float(v) for v in a.leads_ms.split(",")]
    results = []
    for radio in a.radios.split(","):
        if radio == "pluto":
            results.append({"radio": "pluto-emulated", "skipped": _pluto_available()})
            continue
        na, nb, truth, stop = {"loopback": _loopback, "zmq": _zmq}[radio](a.rate, min(leads) * 1e-3 / 2)
        try:
            rec = _run(na, nb, truth, leads, a.period_ms * 1e-3, a.probe, a.bursts, a.rate)
        finally:
            na.close(), nb.close()
            stop()
        results.append({"radio": radio, **rec})
    record = {"benchmark": "node", "rate": a.rate, "period_ms": a.period_ms, "results": results,
              "load": list(os.getloadavg()), "cpu_count": os.cpu_count()}
    return report(record, a.json)
