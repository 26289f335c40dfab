"""Benchmark of the OFDM PHY: transmit (frame building) and receive (detection + demodulation) throughput.

``otalab bench phy [--quick] [--json PATH] [--no-gnuradio]`` (or ``python bench/phy.py``) measures, in ONE process on
ONE core (OMP/OPENBLAS/MKL threads = 1, scipy.fft workers = 1):

* ``tx_msps``: frame samples produced per second by :class:`phy.FrameBuilder` (payload generation excluded);
* ``*_msps_cpu``: the same per CPU second of this process (``time.process_time``), less sensitive to other load;
* ``rx_msps``: stream samples consumed per second by :class:`phy.Receiver` on a realistic stream - back-to-back
  frames separated by noise gaps of 10 % of a frame, 20 dB SNR, 0.3 subcarrier CFO, fed in blocks of 65536 samples -
  including detection of every frame, acquisition, channel estimation, equalization and payload decoding;
  ``rx_frames_ok`` checks that every frame was received.

Cases: wifi64 QPSK (uncoded, 500-byte payload), wifi64 analog (8192 reals), wide256 QPSK and analog.
Where Debian's GNU Radio is importable by /usr/bin/python3, its ``digital.ofdm_tx``/``ofdm_rx`` hier blocks run in a
subprocess on the same QPSK payload (64-FFT, CP 16) and ``gnuradio_tx_msps``/``gnuradio_rx_msps`` and our ratios are
added to the wifi64 QPSK record. Prints ``{"benchmark": "phy", "results": [...]}``.
"""

from __future__ import annotations

from lab.bench import report
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

#: digital payload per frame (GNU Radio's ofdm_tx cannot buffer much larger packets by default)
DIGITAL_BYTES = 500

GNURADIO_SCRIPT = r'''
import sys, time, json
import numpy as np
from gnuradio import gr, blocks, digital
n_packets, plen, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
data = rng.integers(0, 256, n_packets * plen).astype(np.uint8).tolist()

def run_tx():
    tb = gr.top_block()
    src = blocks.vector_source_b(data, False)
    s2t = blocks.stream_to_tagged_stream(gr.sizeof_char, 1, plen, "packet_len")
    tx = digital.ofdm_tx(fft_len=64, cp_len=16, packet_length_tag_key="packet_len", bps_header=1, bps_payload=2,
                         rolloff=0, scramble_bits=False)
    sink = blocks.vector_sink_c()
    tb.connect(src, s2t, tx, sink)
    t = time.perf_counter(); tb.run(); dt = time.perf_counter() - t
    return np.array(sink.data(), np.complex64), dt

best_tx, x = None, None
for _ in range(reps):
    x, dt = run_tx()
    best_tx = dt if best_tx is None else min(best_tx, dt)
gap = np.zeros(len(x) // n_packets // 10, np.complex64)
per = len(x) // n_packets
stream = np.concatenate([np.concatenate([x[i * per:(i + 1) * per], gap]) for i in range(n_packets)])
stream = stream / np.sqrt(np.mean(np.abs(stream) ** 2))
noise = 0.1 * (rng.standard_normal(stream.size) + 1j * rng.standard_normal(stream.size)) / np.sqrt(2)
stream = (stream + noise).astype(np.complex64).tolist()
best_rx, got = None, 0
for _ in range(reps):
    tb = gr.top_block()
    src = blocks.vector_source_c(stream, False)
    rx = digital.ofdm_rx(fft_len=64, cp_len=16, frame_length_tag_key="frame_len", packet_length_tag_key="packet_len",
                         bps_header=1, bps_payload=2, scramble_bits=False)
    sink = blocks.vector_sink_b()
    tb.connect(src, rx, sink)
    t = time.perf_counter(); tb.run(); dt = time.perf_counter() - t
    best_rx = dt if best_rx is None else min(best_rx, dt)
    got = len(sink.data()) // plen
print(json.dumps({"tx_msps": len(x) / best_tx / 1e6, "rx_msps": len(stream) / best_rx / 1e6,
                  "rx_packets": got, "packets": n_packets}))
'''


def _gnuradio(n_packets: int, plen: int, reps: int) -> dict | None:
    """Run GNU Radio's OFDM tx/rx under /usr/bin/python3; None when unavailable."""
    exe = "/usr/bin/python3"
    if not Path(exe).exists():
        return None
    try:
        ok = subprocess.run([exe, "-c", "import gnuradio.digital"], capture_output=True, timeout=60)
        if ok.returncode != 0:
            return None
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        res = subprocess.run(["taskset", "-c", "0", exe, "-c", GNURADIO_SCRIPT, str(n_packets), str(plen), str(reps)],
                             capture_output=True, text=True, timeout=600, env=env)
        if res.returncode != 0:
            res = subprocess.run([exe, "-c", GNURADIO_SCRIPT, str(n_packets), str(plen), str(reps)],
                                 capture_output=True, text=True, timeout=600, env=env)
        if res.returncode != 0:
            return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "failed"}
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        return {"error": str(exc)}


def _case(preset: str, payload: str, n_frames: int, reps: int, seed: int = 0) -> dict:
    from phy import FrameBuilder, OfdmConfig, Receiver
    cfg = OfdmConfig.preset(preset)
    fb = FrameBuilder(cfg)
    rng = np.random.default_rng(seed)
    if payload == "analog":
        data = [rng.standard_normal(8192).astype(np.float32) for _ in range(n_frames)]
        build = lambda i: fb.build_analog(data[i], seq=i)  # noqa: E731
    else:
        data = [rng.integers(0, 256, DIGITAL_BYTES, dtype=np.uint8).tobytes() for _ in range(n_frames)]
        build = lambda i: fb.build_digital(data[i], seq=i, modem=payload, code_rate=None)  # noqa: E731
    build(0)  # warm caches
    best_tx, cpu_tx, frames = None, None, []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        frames = [build(i) for i in range(n_frames)]
        dt, dc = time.perf_counter() - t, time.process_time() - c
        best_tx = dt if best_tx is None else min(best_tx, dt)
        cpu_tx = dc if cpu_tx is None else min(cpu_tx, dc)
    n_tx = sum(f.size for f in frames)
    gap = frames[0].size // 10
    parts = []
    for f in frames:
        parts += [f, np.zeros(gap, np.complex64)]
    x = np.concatenate(parts)
    x = x * np.exp(2j * np.pi * 0.3 * np.arange(x.size) / cfg.fft_size)
    n0 = 10 ** (-20 / 10)
    x = (x + np.sqrt(n0 / 2) * (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size))).astype(np.complex64)
    rx = Receiver(cfg)
    block = 1 << 16
    best_rx, cpu_rx, ok = None, None, 0
    for _ in range(reps):
        rx.reset()
        t, c = time.perf_counter(), time.process_time()
        got = []
        for a in range(0, x.size, block):
            got += rx.process(x[a:a + block], a)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        best_rx = dt if best_rx is None else min(best_rx, dt)
        cpu_rx = dc if cpu_rx is None else min(cpu_rx, dc)
        ok = sum(1 for f in got if f.crc_ok)
    return {"preset": preset, "payload": payload, "frames": n_frames, "frame_len": int(frames[0].size),
            "tx_msps": n_tx / best_tx / 1e6, "rx_msps": x.size / best_rx / 1e6, "rx_frames_ok": ok,
            "tx_msps_cpu": n_tx / max(cpu_tx, 1e-9) / 1e6, "rx_msps_cpu": x.size / max(cpu_rx, 1e-9) / 1e6,
            "stream_samples": int(x.size)}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print and return the JSON record."""
    ap = argparse.ArgumentParser(prog="otalab bench phy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run (fewer frames and repeats)")
    ap.add_argument("--json", type=Path, default=None, help="also write the record to this file")
    ap.add_argument("--no-gnuradio", action="store_true", help="skip the GNU Radio comparison")
    args = ap.parse_args(argv)
    try:
        import scipy.fft
        scipy.fft.set_workers(1).__enter__()
    except (ImportError, AttributeError):
        pass
    n_frames, reps = (20, 2) if args.quick else (100, 3)
    results = []
    for preset in ("wifi64", "wide256"):
        for payload in ("qpsk", "analog"):
            results.append(_case(preset, payload, n_frames, reps))
    if not args.no_gnuradio:
        gr = _gnuradio(n_frames, DIGITAL_BYTES, reps)
        rec = results[0]
        if gr is None:
            rec["gnuradio"] = "unavailable"
        elif "error" in gr:
            rec["gnuradio"] = f"failed: {gr['error']}"
        else:
            rec.update(gnuradio_tx_msps=gr["tx_msps"], gnuradio_rx_msps=gr["rx_msps"],
                       gnuradio_rx_packets=gr["rx_packets"],
                       tx_speedup_vs_gnuradio=rec["tx_msps"] / gr["tx_msps"],
                       rx_speedup_vs_gnuradio=rec["rx_msps"] / gr["rx_msps"])
    record = {"benchmark": "phy", "host": platform.node(), "python": platform.python_version(),
              "numpy": np.__version__, "quick": args.quick, "results": results}
    return report(record, args.json)


if __name__ == "__main__":
    main()
