"""Benchmark of the radio node: the smallest TX lead with no late burst, and the node's CPU cost per MS/s.

``otalab bench node [--json PATH] [--rate 1e6] [--bursts 500] [--period-ms 20] [--leads-ms 1,2,5,10,20,50]
[--radios loopback,zmq,pluto]``: for each radio (loopback realtime air; the ZeroMQ air in realtime pacing with its
broker in a process of its own, as ``otalab air`` runs it; the emulated Pluto in wall-clock DMA mode in a process of
its own, as a Pluto is a device of its own, digital loopback) a transmitting node and a receiving node (the Pluto:
one node, both) stream at ``--rate``; bursts are sent every ``--period-ms`` at a lead of L ms; leads are tried in
increasing order: a short ``--probe`` run skips a lead with any late burst, and ``min_lead_ms`` is the first lead at
which a run of ``--bursts`` (default 500) bursts had none late (``tried`` lists every lead's outcome, with the late bursts by reason: the radio's state, "lost (gap)", "misplaced" or "epoch
constant not found"). A burst counts
as late when the node refused it, the radio said it was not on time, or it was not received exactly at its sample
time. The Pluto's sample time for a burst is ``at`` plus the TX->RX constant of the lock epoch it left in
(:class:`radio.node.locked_latency.LockedLatency`: a probe measures the first; after a reported slip the first burst of
the new epoch is found by its own samples, as timing advance would re-measure); ``slips`` counts the epochs started
during the counted run. ``cpu_per_msps`` = CPU seconds of the benchmark's process (the nodes and their threads, not
the broker's or emulator's process) per wall second per MS/s streamed.

Prints ``{"benchmark": "node", "results": [{"radio", "min_lead_ms", "late_bursts", "bursts", "cpu_per_msps",
"map_error_us_max", "slips", "tried", "load_after"}], "load": [1, 5, 15 min load averages]}``; the Pluto's record adds
``tx_rx_constant_samples`` (lock epoch -> its TX->RX constant: a Pluto's burst for ``at`` is on the air about that
much later, besides its lead).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from lab.bench import report


def _run(na, nb, truth, leads_ms, period_s, probe, bursts, fs, latency=None, atol=1e-6):
    """Lead search (module docstring). ``latency``: a LockedLatency for a radio whose TX is locked to RX (the
    Pluto), else bursts must arrive at ``at``."""
    from radio.node.locked_latency import numbered_burst

    numbered = iter(range(1 << 30))       # every burst of the run its own (LockedLatency finds bursts by samples)

    def trial(lead_ms, count):
        """``count`` bursts at ``lead_ms``: (late: refused, reported not on time, or not received exactly at
        ``at`` (+ its epoch's constant)), worst map error (s), lock epochs started, late bursts by reason."""
        late, worst, pending, why = 0, 0.0, [], {}
        epoch0 = na.radio.tx_lock["epoch"] if latency is not None else 0
        next_t = time.monotonic()
        for k in range(count + 1):
            if k < count:
                t = na.time_now()
                worst = max(worst, abs(na.to_mono(t) - truth(t)))
                at = t + int(lead_ms * 1e-3 * fs)
                burst = numbered_burst(next(numbered))
                pending.append((at, burst, na.submit(burst, at)))
            while pending and (pending[0][0] + 0.1 * fs < na.time_now() or k == count):
                at, burst, fut = pending.pop(0)
                res = fut.result(timeout=10.0)
                if res.state != "on_time":
                    late += 1
                    why[res.state] = why.get(res.state, 0) + 1
                    continue
                off = 0 if latency is None else latency.offset(res, burst)
                x, gaps = nb.rx(at + (off or 0), burst.size, timeout_s=3.0)
                if off is None or gaps or not np.allclose(x, burst, atol=atol):
                    late += 1
                    reason = "epoch constant not found" if off is None else "lost (gap)" if gaps else "misplaced"
                    why[reason] = why.get(reason, 0) + 1
            next_t += period_s
            time.sleep(max(0.0, next_t - time.monotonic()))
        slips = na.radio.tx_lock["epoch"] - epoch0 if latency is not None else 0
        return late, worst, slips, why

    if latency is not None:
        latency.probe(numbered_burst(-1))
    tried = []
    for lead in leads_ms:                 # a short probe skips leads that are clearly too small; a lead counts only
        late, _, slips, why = trial(lead, probe)    # once a run of ``bursts`` had no late burst at all
        if late:
            tried.append({"lead_ms": lead, "bursts": probe, "late": late, "probe": True, "why": why, "slips": slips})
            continue
        c0, w0 = time.process_time(), time.monotonic()
        late, worst, slips, why = trial(lead, bursts)
        cpu = (time.process_time() - c0) / (time.monotonic() - w0)
        tried.append({"lead_ms": lead, "bursts": bursts, "late": late, "why": why, "slips": slips})
        if late == 0:
            return {"min_lead_ms": lead, "late_bursts": late, "bursts": bursts, "cpu_per_msps": cpu / (fs / 1e6),
                    "map_error_us_max": worst * 1e6, "slips": slips, "tried": tried}
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
    from radio.servers.broker_process import BrokerProcess
    from radio.servers.zmq_broker import BrokerConfig
    broker = BrokerProcess(fs, 2.4e9, BrokerConfig(pacing="realtime", block_size=1000))
    a, b = ZmqRadio(broker.endpoint, "a"), ZmqRadio(broker.endpoint, "b")
    na, nb = RadioNode(a, name="a", lead_s=lead_floor).start(), RadioNode(b, name="b", lead_s=lead_floor).start()
    mono, s = broker.state()["wall_anchor"]

    def truth(t):
        return mono + (t - s) / fs
    return na, nb, truth, broker.close


#: the benchmark's Pluto client: 8 TX kernel buffers of 4096 samples queued ahead (tests/radio/test_node.py's)
PLUTO_ARGS = dict(loopback=1, rx_buffer_size=8192, tx_buffer_size=4096, kernel_buffers=16, tx_kernel_buffers=8)


def _pluto(fs, lead_floor):
    """One emulated Pluto (wall-clock DMA mode in its own process, digital loopback, 20 ppm, TX->RX latency 321):
    its node sends and receives."""
    from radio.drivers.pluto import PlutoArgs, PlutoRadio
    from radio.node import RadioNode
    from radio.node.locked_latency import LockedLatency
    from radio.servers.iiod_emulator import EmulatorSettings
    args = PlutoArgs(emulate=True, **PLUTO_ARGS,
                     emulator=EmulatorSettings(wallclock=True, seed=14, ppm=20.0, tx_latency_samples=321))
    radio = PlutoRadio.emulated(None, args, process=True, sample_rate=fs, tx_gain=0.0, rx_gain=0.0)
    node = RadioNode(radio, name="pluto", lead_s=lead_floor).start()
    clock, rx0 = radio.emulator_process.clock(), radio.emulator_process.state()["rx_opened_at"]

    def truth(t):
        return clock.mono_at(rx0 + t)
    return node, node, truth, radio.close, LockedLatency(node, 2.0 ** -14)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="otalab bench node", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None, help="write the record here too ('-': stdout only)")
    p.add_argument("--rate", type=float, default=1e6, help="sample rate (S/s)")
    p.add_argument("--bursts", type=int, default=500)
    p.add_argument("--probe", type=int, default=50, help="bursts of the quick run that skips a lead")
    p.add_argument("--period-ms", type=float, default=20.0)
    p.add_argument("--leads-ms", default="1,2,5,10,20,30,40,50,75,100")
    p.add_argument("--radios", default="loopback,zmq,pluto")
    a = p.parse_args(argv)
    openers = {"loopback": _loopback, "zmq": _zmq, "pluto": _pluto}
    try:
        leads = sorted(float(v) for v in a.leads_ms.split(","))
    except ValueError:
        p.error(f"--leads-ms {a.leads_ms!r}: expected comma-separated numbers of milliseconds")
    if not leads or leads[0] <= 0:
        p.error(f"--leads-ms {a.leads_ms!r}: expected leads > 0 ms")
    radios = a.radios.split(",")
    unknown = [r for r in radios if r not in openers]
    if unknown:
        p.error(f"--radios: unknown {unknown}; expected some of {sorted(openers)}")
    if a.bursts < 1 or a.probe < 1 or not a.period_ms > 0 or not a.rate > 0:
        p.error("--bursts, --probe, --period-ms and --rate must be > 0")
    results = []
    for radio in radios:
        opened = openers[radio](a.rate, leads[0] * 1e-3 / 2)
        na, nb, truth, stop = opened[:4]
        extra = {"latency": opened[4], "atol": 2.0 ** -14} if radio == "pluto" else {}
        try:
            rec = _run(na, nb, truth, leads, a.period_ms * 1e-3, a.probe, a.bursts, a.rate, **extra)
        finally:
            na.close(), nb.close()
            stop()
        if radio == "pluto":    # its TX->RX constant per lock epoch (samples; what timing advance absorbs)
            rec["tx_rx_constant_samples"] = {str(e): c for e, c in opened[4].constants.items()}
        results.append({"radio": "pluto-emulated" if radio == "pluto" else radio, **rec,
                        "load_after": list(os.getloadavg())})
    record = {"benchmark": "node", "rate": a.rate, "period_ms": a.period_ms, "results": results,
              "load": list(os.getloadavg()), "cpu_count": os.cpu_count()}
    return report(record, a.json)
