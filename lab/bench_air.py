"""Benchmark of the ZeroMQ air: free-running throughput per link and real-time pacing error.

``otalab bench air [--json PATH] [--quick] [--block N] [--seconds S]`` starts a :class:`radio.zmq_air.ChannelBroker`
(in a thread of this process) and endpoint processes (multiprocessing, spawn): T transmitters streaming blocks of
``--block`` samples back to back and one receiver reading the superposition, for T = 1 and 8 and wire formats fc32
and sc16. Throughput per link = samples the receiver got / wall time (every link carries that many samples).
Then the broker runs in real-time pacing at ``--rt-rate`` samples/s with one receiver, and reports how late each clock
step made its samples available relative to the ideal time t / sample_rate (``ChannelBroker.pacing_error``).

Prints ``{"benchmark": "air", "results": [{"transmitters", "wire", "msps_per_link", ...}], "pacing": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import time
from pathlib import Path

import numpy as np


def _transmitter(address: str, name: str, wire: str, block: int, stop_at: int, seed: int) -> None:
    """Stream unit-power noise blocks back to back from sample 0 until ``stop_at`` (runs in a child process)."""
    from radio.zmq_air import ZmqRadio
    rng = np.random.default_rng(seed)
    x = ((rng.standard_normal(block) + 1j * rng.standard_normal(block)) * 0.3).astype(np.complex64)
    with ZmqRadio(address, name, wire=wire, receive=False, timeout_s=30) as radio:
        for at in range(0, stop_at, block):
            radio.tx(x, at=at)


def _receiver(address: str, name: str, wire: str, block: int, stop_at: int, warmup: int, out) -> None:
    """Read blocks until ``stop_at``; report samples and seconds after ``warmup`` blocks (runs in a child process)."""
    from radio.zmq_air import ZmqRadio
    with ZmqRadio(address, name, wire=wire, timeout_s=30) as radio:
        t_start, n = None, 0
        for k, at in enumerate(range(0, stop_at, block)):
            if k == warmup:
                t_start, n = time.perf_counter(), 0
            samples, _ = radio.rx(block, at=at)
            n += samples.size
        out.put({"samples": n, "seconds": time.perf_counter() - t_start})


def _make_air(sample_rate: float, seed: int, noise_power: float = 0.01):
    from radio.air import Air
    return Air(sample_rate, 2.4e9, seed=seed, default_noise_power=noise_power)


def throughput(transmitters: int, wire: str, block: int, seconds_target: float, guess_msps: float) -> dict:
    """One free-running measurement; returns a result row."""
    from radio.zmq_air import BrokerConfig, ChannelBroker
    names = [f"tx{i}" for i in range(transmitters)] + ["rx"]
    blocks = max(8, int(seconds_target * guess_msps * 1e6 / block))
    warmup = 2
    stop_at = (blocks + warmup) * block
    ctx = mp.get_context("spawn")
    air = _make_air(20e6, 1)
    cfg = BrokerConfig(endpoints=names, max_advance=max(block, 2 ** 18), max_lead_samples=4 * block)
    with ChannelBroker(air, cfg, bind="tcp://127.0.0.1:0") as broker:
        out = ctx.Queue()
        procs = [ctx.Process(target=_transmitter, args=(broker.endpoint, f"tx{i}", wire, block, stop_at, i))
                 for i in range(transmitters)]
        procs.append(ctx.Process(target=_receiver, args=(broker.endpoint, "rx", wire, block, stop_at, warmup, out)))
        for p in procs:
            p.start()
        res = out.get(timeout=300)
        for p in procs:
            p.join(timeout=30)
    msps = res["samples"] / res["seconds"] / 1e6
    return {"transmitters": transmitters, "wire": wire, "block": block, "msps_per_link": round(msps, 2),
            "msps_aggregate": round(msps * transmitters, 2), "samples": res["samples"],
            "seconds": round(res["seconds"], 3)}


def pacing(sample_rate: float, block: int, seconds: float) -> dict:
    """Real-time pacing with one receiver reading continuously for ``seconds``."""
    from radio.zmq_air import BrokerConfig, ChannelBroker, ZmqRadio
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
    ap.add_argument("--seconds", type=float, default=None, help="target seconds per throughput run")
    ap.add_argument("--rt-rate", type=float, default=2e6, help="sample rate of the real-time pacing run")
    args = ap.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (0.5 if args.quick else 2.0)
    results = []
    guess = 20.0
    for transmitters in (1, 8):
        for wire in ("fc32", "sc16"):
            row = throughput(transmitters, wire, args.block, seconds, guess)
            guess = max(row["msps_per_link"], 1.0)
            results.append(row)
    record = {"benchmark": "air", "results": results,
              "pacing": pacing(args.rt_rate, 8192, 0.5 if args.quick else 2.0),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    text = json.dumps(record, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return record
