"""Benchmark of the ZeroMQ air: free-running throughput per link and real-time pacing error.

``otalab bench air [--json PATH] [--quick] [--block N] [--seconds S]`` starts a :class:`radio.servers.zmq_broker.ChannelBroker`
(in a thread of this process) and endpoint processes (multiprocessing, spawn): T transmitters streaming blocks of
``--block`` samples back to back and one receiver reading the superposition, for T = 1 and 8 and wire formats fc32
and sc16. Throughput per link = samples the receiver got / wall time (every link carries that many samples).
One more 1-transmitter run adds receiver noise (``--noise-power``), whose generation costs time in the air.
Then the broker runs in real-time pacing at ``--rt-rate`` samples/s with one receiver, and reports how late each clock
step made its samples available relative to the ideal time t / sample_rate (``ChannelBroker.pacing_error``).

Each configuration runs ``--repeat`` times (other jobs on the machine disturb single runs): ``msps_per_link`` is the
median, ``msps_per_link_best`` the best, ``msps_per_link_runs`` all of them.

Prints ``{"benchmark": "air", "results": [{"transmitters", "wire", "msps_per_link", ...}], "pacing": {...}}``.
"""

from __future__ import annotations

from lab.bench import report
import argparse
import multiprocessing as mp
import os
import platform
import time
from pathlib import Path

import numpy as np


def _transmitter(address: str, name: str, wire: str, block: int, seed: int) -> None:
    """Stream unit-power noise blocks back to back from sample 0 until terminated (runs in a child process)."""
    from radio.drivers.zmq import ZmqRadio
    rng = np.random.default_rng(seed)
    x = ((rng.standard_normal(block) + 1j * rng.standard_normal(block)) * 0.3).astype(np.complex64)
    with ZmqRadio(address, name, wire=wire, receive=False, timeout_s=30) as radio:
        at = 0
        while True:
            radio.tx(x, at=at)
            at += block


def _receiver(address: str, name: str, wire: str, block: int, seconds: float, warmup: int, out) -> None:
    """Read blocks for ``seconds`` after ``warmup`` blocks; report samples and seconds (runs in a child process)."""
    from radio.drivers.zmq import ZmqRadio
    with ZmqRadio(address, name, wire=wire, timeout_s=30) as radio:
        for k in range(warmup):
            radio.rx(block, at=k * block)
        at, n, t_start = warmup * block, 0, time.perf_counter()
        while time.perf_counter() - t_start < seconds:
            samples, _ = radio.rx(block, at=at)
            at += block
            n += samples.size
        out.put({"samples": n, "seconds": time.perf_counter() - t_start})


def _make_air(sample_rate: float, seed: int, noise_power: float = 0.0):
    from radio.sim.air import Air
    return Air(sample_rate, 2.4e9, seed=seed, default_noise_power=noise_power)


def throughput(transmitters: int, wire: str, block: int, seconds: float, noise_power: float = 0.0) -> dict:
    """One free-running measurement of ``seconds`` (receiver noise variance ``noise_power``); returns a result row."""
    from radio.servers.zmq_broker import BrokerConfig, ChannelBroker
    names = [f"tx{i}" for i in range(transmitters)] + ["rx"]
    ctx = mp.get_context("spawn")
    air = _make_air(20e6, 1, noise_power)
    cfg = BrokerConfig(endpoints=names, max_advance=max(block, 2 ** 18), max_lead_samples=4 * block)
    with ChannelBroker(air, cfg, bind="tcp://127.0.0.1:0") as broker:
        out = ctx.Queue()
        senders = [ctx.Process(target=_transmitter, args=(broker.endpoint, f"tx{i}", wire, block, i), daemon=True)
                   for i in range(transmitters)]
        receiver = ctx.Process(target=_receiver, args=(broker.endpoint, "rx", wire, block, seconds, 2, out))
        for p in (*senders, receiver):
            p.start()
        try:
            res = out.get(timeout=300)
        finally:
            receiver.join(timeout=30)
            for p in senders:
                p.terminate()
                p.join(timeout=30)
    msps = res["samples"] / res["seconds"] / 1e6
    return {"transmitters": transmitters, "wire": wire, "block": block, "noise_power": noise_power,
            "msps_per_link": round(msps, 2), "msps_aggregate": round(msps * transmitters, 2),
            "samples": res["samples"], "seconds": round(res["seconds"], 3)}


def pacing(sample_rate: float, block: int, seconds: float) -> dict:
    """Real-time pacing with one receiver reading continuously for ``seconds``."""
    from radio.servers.zmq_broker import BrokerConfig, ChannelBroker
    from radio.drivers.zmq import ZmqRadio
    air = _make_air(sample_rate, 2)
    cfg = BrokerConfig(pacing="realtime", block_size=block, endpoints=["rx"], buffer_samples=int(sample_rate))
    with ChannelBroker(air, cfg, bind="tcp://127.0.0.1:0") as broker:
        with ZmqRadio(broker.endpoint, "rx") as radio:
            end = int(seconds * sample_rate)
            at = 0
            while at < end:
                radio.rx(block, at=at)
                at += block
        stats = broker.pacing_error()
    return {"sample_rate": sample_rate, "block": block, "seconds": seconds,
            **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.items()}}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print its JSON record and return it."""
    ap = argparse.ArgumentParser(prog="otalab bench air", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="also write the JSON record here")
    ap.add_argument("--quick", action="store_true", help="shorter runs (CI smoke test)")
    ap.add_argument("--block", type=int, default=2 ** 17, help="samples per tx/rx block (default 2**17)")
    ap.add_argument("--seconds", type=float, default=None, help="seconds per throughput run (default 1, quick 0.5)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="runs per configuration; the row reports the median and the best (default 3, quick 1)")
    ap.add_argument("--noise-power", type=float, default=0.01,
                    help="receiver noise variance of the extra 1-transmitter run (noise generation costs time)")
    ap.add_argument("--rt-rate", type=float, default=2e6, help="sample rate of the real-time pacing run")
    args = ap.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (0.5 if args.quick else 1.0)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if repeat < 1:
        ap.error(f"--repeat = {repeat}: expected at least 1")
    results = []
    runs = [(t, w, 0.0) for t in (1, 8) for w in ("fc32", "sc16")] + [(1, "fc32", args.noise_power)]
    for transmitters, wire, noise in runs:
        rows = [throughput(transmitters, wire, args.block, seconds, noise) for _ in range(repeat)]
        per_link = sorted(r["msps_per_link"] for r in rows)
        median = round(float(np.median(per_link)), 2)
        row = max(rows, key=lambda r: r["msps_per_link"])
        row.update({"msps_per_link": median, "msps_per_link_best": per_link[-1], "msps_per_link_runs": per_link,
                    "msps_aggregate": round(median * transmitters, 2)})
        results.append(row)
    record = {"benchmark": "air", "results": results,
              "pacing": pacing(args.rt_rate, 8192, 0.5 if args.quick else 2.0),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_1min": round(os.getloadavg()[0], 2)}}
    return report(record, args.json)
