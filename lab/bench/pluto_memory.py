"""Benchmark: the emulated Pluto's memory under a TX-only client (issue #10: bounded buffers).

``otalab bench pluto_memory [--json PATH] [--megabytes N] [--block SAMPLES]`` starts an emulated Pluto (read-driven
mode, on a simulated air endpoint that nobody receives from) in a child process, then pushes N MB of TX buffers of
``--block`` samples through pyadi-iio without ever reading RX. Without a wall clock nothing consumes the TX stream,
so the emulator drops what lies more than ``max_tx_ahead_samples`` ahead (counted), as a DMA with no free buffer
would. Reports the child's resident memory (VmRSS) at start and at its peak, sampled every 50 ms, and the push rate.

Prints ``{"benchmark": "pluto_memory", "results": [{"megabytes", "rss_start_mb", "rss_peak_mb", "rss_growth_mb",
"tx_dropped_samples", "mb_per_s", "cpu_s"}]}``; the goal: ``rss_growth_mb`` < 50 for 1024 MB.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import threading
import time
from pathlib import Path


def _serve(conn) -> None:
    """Child: an emulated Pluto on an air endpoint; sends its URI, then the drop count when asked."""
    from radio.drivers.loopback import LoopbackRadio
    from radio.servers.iiod_emulator import EmulatorSettings, start_emulated_pluto
    from radio.sim.air import Air
    air = Air(1e6, 2.4e9)
    server, uri = start_emulated_pluto(LoopbackRadio(air, "p"), 0, settings=EmulatorSettings())
    conn.send(uri)
    conn.recv()
    conn.send(server.emulator.stats)
    server.close()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def run(megabytes: int, block: int) -> dict:
    import adi
    import numpy as np
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child,), daemon=True)
    proc.start()
    try:
        uri = parent.recv()
        sdr = adi.Pluto(uri)
        sdr.tx_cyclic_buffer = False
        data = (np.ones(block) * (1000 + 1000j)).astype(np.complex128)
        time.sleep(0.2)
        start = _rss_mb(proc.pid)
        peak = [start]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], _rss_mb(proc.pid))
                done.wait(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        pushes = max(1, megabytes * (1 << 20) // (4 * block))
        c0, t0 = time.process_time(), time.monotonic()
        for _ in range(pushes):
            sdr.tx(data)
        elapsed = time.monotonic() - t0
        cpu = time.process_time() - c0
        done.set()
        watcher.join()
        peak[0] = max(peak[0], _rss_mb(proc.pid))
        sdr.tx_destroy_buffer()
        sdr._ctx = None
        parent.send("stats")
        stats = parent.recv()
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
    return {"megabytes": pushes * 4 * block / (1 << 20), "block": block, "rss_start_mb": round(start, 1),
            "rss_peak_mb": round(peak[0], 1), "rss_growth_mb": round(peak[0] - start, 1),
            "tx_dropped_samples": stats["tx_dropped_samples"], "tx_samples": stats["tx_samples"],
            "mb_per_s": round(pushes * 4 * block / (1 << 20) / elapsed, 1), "client_cpu_s": round(cpu, 2)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="otalab bench pluto_memory", description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None, help="write the result here ('-' = stdout only)")
    p.add_argument("--megabytes", type=int, default=1024)
    p.add_argument("--block", type=int, default=1 << 18, help="samples per TX buffer")
    a = p.parse_args(argv)
    out = {"benchmark": "pluto_memory", "results": [run(a.megabytes, a.block)]}
    text = json.dumps(out, indent=2)
    print(text)
    if a.json and a.json != "-":
        from lab.results import write_json
        write_json(a.json, out)
    return out


if __name__ == "__main__":
    main()
