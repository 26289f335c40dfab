"""Benchmark of the OFDM PHY: transmit (frame building) and receive (detection + demodulation) throughput on three
kinds of traffic, against the numpy FFT floor of the same stream and GNU Radio 3.10's ``ofdm_tx``/``ofdm_rx``.

``otalab bench phy [--quick] [--json PATH] [--no-gnuradio] [--min-seconds S] [--repeats R] [--only STREAMS]
[--presets P] [--block B]`` (or
``python bench/phy.py``) measures, in ONE process on ONE core (OMP/OPENBLAS/MKL threads = 1, scipy.fft workers = 1),
CPU time of this process (``time.process_time``; wall-clock figures are kept as ``*_msps_wall``):

Streams (20 dB SNR, CFO 0.3 subcarrier spacings, fed to :class:`phy.Receiver` in blocks of ``--block`` samples,
default 262144):

* ``steady``: back-to-back frames of one shape separated by noise gaps of 10 % of a frame (digital: uncoded 500-byte
  payloads, the size GNU Radio's ``ofdm_tx`` buffers; analog: 8192 reals);
* ``mixed``: kinds and lengths drawn at random per frame - analog (100..8000 reals) or uncoded BPSK / QPSK / 16-QAM /
  64-QAM (20..1000 bytes) - with 30 % of the stream idle (gaps of random length), 30 dB SNR (so that uncoded 64-QAM
  frames pass their CRC);
* ``sparse``: one uncoded QPSK 500-byte frame at a random place in every 2^20 samples of noise.

Figures (each measured by repeating the work until it has taken at least ``--min-seconds`` of CPU, median of
``--repeats``):

* ``tx_msps``: frame samples produced per CPU second by :meth:`phy.FrameBuilder.build_batch` for the stream's
  frames (all of them in one call, from the payload bytes / analog values: validation, CRC, header, mapping, IFFT,
  CP and preamble; written into one reused output buffer, as a streaming transmitter would);
* ``rx_msps``: stream samples consumed per CPU second by :class:`phy.Receiver` (detection of every frame,
  acquisition, channel estimation, equalization and payload decoding); the stream is replayed with continuing sample
  times until the time is reached; ``rx_frames_ok`` counts the frames of one pass received with a good CRC (every
  pass must receive the same);
* ``fft_floor_msps``: issue #12's "numpy FFT floor for each stream (IFFT/FFT + CP only)": stream samples per CPU
  second of OFDM modulation and demodulation of every symbol of every frame - the IFFT of each symbol's grid row and
  its cyclic prefix at TX, the prefix dropped and the FFT at RX (``numpy.fft``, complex64, cache-sized chunks of
  symbols; gaps between frames need no transform) - and nothing else (no detection, synchronization, equalization,
  mapping or decoding); ``rx_fraction_of_floor = rx_msps / fft_floor_msps``. Until 6 Dec 2026 this field held the
  RX-only floor below, which issue #12's words do not describe;
* ``fft_floor_rx_only_msps``: only the FFTs no receiver of the stream can avoid: one N-sample window per LTS look
  (2), header symbol and payload symbol of every frame (the Schmidl-Cox symbol needs none), gathered from the stream
  at known positions and transformed in ONE ``scipy.fft.fft`` call; ``rx_fraction_of_rx_only_floor``.

Where Debian's GNU Radio is importable by /usr/bin/python3, its ``digital.ofdm_tx``/``ofdm_rx`` hier blocks (64-FFT,
CP 16, QPSK payload, BPSK header) run in a subprocess pinned to one core (``taskset``) on streams of the same shape:
the same packet count, lengths and gaps (mixed: packet lengths drawn the same way, capped at 500 bytes), the same
SNR. Its figures are CPU time of the subprocess (all its threads) per sample, median of the same repeats; the
wifi64 records get ``gnuradio_tx_msps``, ``gnuradio_rx_msps``, ``gnuradio_rx_packets`` and our ratios
``tx_speedup_vs_gnuradio``, ``rx_speedup_vs_gnuradio``. Prints ``{"benchmark": "phy", "results": [...]}``.
"""

from __future__ import annotations

from lab.bench import report
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

#: digital payload per frame of the steady and sparse streams (GNU Radio's ofdm_tx cannot buffer much larger packets)
DIGITAL_BYTES = 500
#: RX block size (samples per Receiver.process call; 2^18 = 13 ms at 20 MS/s: numpy call overhead amortized over ~60
#: wifi64 frames, working arrays still inside the CPU caches)
BLOCK = 1 << 18
#: sparse stream: one frame per this many samples
SPARSE_PERIOD = 1 << 20
#: symbols per IFFT/FFT call of the FFT floor (= phy.frame.TX_CHUNK_SAMPLES / 64: cache-sized; the whole stream in
#: one call measured ~2x slower)
FLOOR_CHUNK_ROWS = 1024
#: mixed stream: share of idle samples
MIXED_IDLE = 0.3
MIXED_KINDS = ("analog", "bpsk", "qpsk", "16qam", "64qam")

GNURADIO_SCRIPT = r'''
import json, resource, statistics, sys, time
import numpy as np
import pmt
from gnuradio import gr, blocks, digital
spec = json.loads(sys.argv[1])
plens, gaps_rel, snr_db, min_s, reps = spec["plens"], spec["gaps"], spec["snr_db"], spec["min_s"], spec["reps"]
rng = np.random.default_rng(0)
data = rng.integers(0, 256, sum(plens)).astype(np.uint8).tolist()
tags = []
off = 0
for p in plens:
    tags.append(gr.tag_utils.python_to_tag((off, pmt.intern("packet_len"), pmt.from_long(p), pmt.PMT_NIL)))
    off += p

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

def run_tx():
    tb = gr.top_block()
    src = blocks.vector_source_b(data, False, 1, tags)
    tx = digital.ofdm_tx(fft_len=64, cp_len=16, packet_length_tag_key="packet_len", bps_header=1, bps_payload=2,
                         rolloff=0, scramble_bits=False)
    sink = blocks.vector_sink_c(1, 1 << 20)
    tb.connect(src, tx, sink)
    c = cpu(); tb.run(); dc = cpu() - c
    return np.array(sink.data(), np.complex64), sink.tags(), dc

def measure(fn):
    out = []
    for _ in range(reps):
        n, dc = 0, 0.0
        while dc < min_s:
            m, d = fn()
            n += m; dc += d
        out.append(n / dc / 1e6)
    return statistics.median(out)

x, ttags, _ = run_tx()
tx_msps = measure(lambda: (lambda r: (r[0].size, r[2]))(run_tx()))
# packet boundaries from the packet_len tags on the TX output: rebuild the stream with our gap pattern
starts = sorted(t.offset for t in ttags if pmt.symbol_to_string(t.key) == "packet_len")
starts.append(x.size)
parts = []
for i in range(len(starts) - 1):
    burst = x[starts[i]:starts[i + 1]]
    parts += [np.zeros(int(round(gaps_rel[i][0] * burst.size)) if gaps_rel[i][0] >= 0 else gaps_rel[i][1],
                       np.complex64), burst]
stream = np.concatenate(parts + [np.zeros(20000, np.complex64)])   # lets the last packet leave the flowgraph
pw = np.mean(np.abs(x) ** 2)
stream = stream / np.sqrt(pw)
noise = np.sqrt(10 ** (-snr_db / 10) / 2) * (rng.standard_normal(stream.size) + 1j * rng.standard_normal(stream.size))
stream = (stream + noise).astype(np.complex64).tolist()
got = [0]

def run_rx():
    tb = gr.top_block()
    src = blocks.vector_source_c(stream, False)
    rx = digital.ofdm_rx(fft_len=64, cp_len=16, frame_length_tag_key="frame_len", packet_length_tag_key="packet_len",
                         bps_header=1, bps_payload=2, scramble_bits=False)
    sink = blocks.vector_sink_b()
    tb.connect(src, rx, sink)
    c = cpu(); tb.run(); dc = cpu() - c
    got[0] = len([t for t in sink.tags() if pmt.symbol_to_string(t.key) == "packet_len"])
    return len(stream), dc

rx_msps = measure(run_rx)
print(json.dumps({"tx_msps": tx_msps, "rx_msps": rx_msps, "rx_packets": got[0], "packets": len(plens),
                  "stream_samples": len(stream)}))
'''


def _gnuradio(spec: dict) -> dict | None:
    """Run GNU Radio's OFDM tx/rx under /usr/bin/python3 on one core; None when unavailable."""
    exe = "/usr/bin/python3"
    if not Path(exe).exists():
        return None
    try:
        ok = subprocess.run([exe, "-c", "import gnuradio.digital"], capture_output=True, timeout=60)
        if ok.returncode != 0:
            return None
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        args = [exe, "-c", GNURADIO_SCRIPT, json.dumps(spec)]
        res = subprocess.run(["taskset", "-c", "0", *args], capture_output=True, text=True, timeout=1800, env=env)
        if res.returncode != 0:
            res = subprocess.run(args, capture_output=True, text=True, timeout=1800, env=env)
        if res.returncode != 0:
            return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "failed"}
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        return {"error": str(exc)}


def _stream(preset: str, payload: str, stream: str, n_frames: int, seed: int = 0) -> dict:
    """Frames (builder callables), the noisy stream, the frame starts and the GNU Radio spec of one case."""
    from phy import OfdmConfig
    from phy.frame import FrameBuilder, FrameRequest
    cfg = OfdmConfig.preset(preset)
    fb = FrameBuilder(cfg)
    rng = np.random.default_rng(seed)
    snr_db = 30.0 if stream == "mixed" else 20.0
    kinds = rng.choice(MIXED_KINDS, n_frames).tolist() if stream == "mixed" else [payload] * n_frames
    reqs, plens = [], []
    for i, kind in enumerate(kinds):
        if kind == "analog":
            n = int(rng.integers(100, 8001)) if stream == "mixed" else 8192
            v = rng.standard_normal(n).astype(np.float32)
            reqs.append(FrameRequest.analog(v, seq=i))
            plens.append(min(DIGITAL_BYTES, 2 * n))            # a GNU Radio packet of similar size
        else:
            n = int(rng.integers(20, 1001)) if stream == "mixed" else DIGITAL_BYTES
            b = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            reqs.append(FrameRequest.digital(b, seq=i, modem=kind, code_rate=None))
            plens.append(min(DIGITAL_BYTES, n))
    samples, bounds = fb.build_batch(reqs)
    frames = [samples[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    sizes = np.diff(bounds)
    if stream == "steady":
        gaps = np.full(n_frames, sizes[0] // 10)
        gr_gaps = [[0.1, 0]] * n_frames
    elif stream == "mixed":
        idle = int(sizes.sum() * MIXED_IDLE / (1 - MIXED_IDLE))
        cuts = np.sort(rng.integers(0, idle + 1, n_frames - 1))
        gaps = np.diff(np.concatenate([[0], cuts, [idle]]))      # random idle gaps summing to 30 % of the stream
        gr_gaps = [[float(g / s), 0] for g, s in zip(gaps, sizes)]
    else:
        gaps = SPARSE_PERIOD - sizes
        gr_gaps = [[-1, int(SPARSE_PERIOD - 3200)]] * n_frames
    lead = rng.integers(0, gaps + 1) if stream == "sparse" else np.zeros(n_frames, np.int64)
    parts, starts, t = [], [], 0
    for f, g, a in zip(frames, gaps, lead):
        parts += [np.zeros(int(a), np.complex64), f, np.zeros(int(g - a), np.complex64)]
        starts.append(t + int(a))
        t += int(a) + f.size + int(g - a)
    x = np.concatenate(parts)
    x = x * np.exp(2j * np.pi * 0.3 * np.arange(x.size) / cfg.fft_size)
    n0 = 10 ** (-snr_db / 10)
    x = (x + np.sqrt(n0 / 2) * (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size))).astype(np.complex64)
    return {"cfg": cfg, "fb": fb, "requests": reqs, "frames": frames, "x": x, "starts": np.array(starts), "sizes": sizes,
            "gr": {"plens": plens, "gaps": gr_gaps, "snr_db": snr_db}}


def _modem_floor(cfg, n_symbols: int, rng: np.random.Generator):
    """The issue's FFT floor for a stream whose frames hold ``n_symbols`` OFDM symbols of ``cfg`` in all: a callable
    that modulates and demodulates them - IFFT of each symbol's grid row [N] into a row of ``N + cp`` samples after its
    cyclic prefix, the prefix copied in, then the prefix dropped and the FFT of the N samples (``numpy.fft``,
    orthonormal, complex64) - in chunks of :data:`FLOOR_CHUNK_ROWS` symbols (one IFFT, one CP copy, one FFT per
    chunk, into preallocated arrays: the fastest measured). Gaps between frames need no transform."""
    n, cp = cfg.fft_size, cfg.cp_len
    rows = min(FLOOR_CHUNK_ROWS, n_symbols)
    grid = (rng.standard_normal((rows, n)) + 1j * rng.standard_normal((rows, n))).astype(np.complex64)
    time_rows = np.empty((rows, n + cp), np.complex64)
    spectrum = np.empty((rows, n), np.complex64)

    def run():
        done = 0
        while done < n_symbols:
            k = min(rows, n_symbols - done)
            t = time_rows[:k]
            np.fft.ifft(grid[:k], axis=1, norm="ortho", out=t[:, cp:])      # TX: IFFT after the CP
            t[:, :cp] = t[:, n:]                                             # TX: CP
            np.fft.fft(t[:, cp:], axis=1, norm="ortho", out=spectrum[:k])     # RX: CP dropped, FFT
            done += k

    return run


def _median_rate(fn, min_s: float, reps: int) -> float:
    """Median over ``reps`` of (units per CPU second) where ``fn()`` -> (units, cpu seconds) is repeated until the
    CPU time reaches ``min_s``."""
    rates = []
    for _ in range(reps):
        n, dc = 0, 0.0
        while dc < min_s:
            m, d = fn()
            n += m
            dc += d
        rates.append(n / dc / 1e6)
    return statistics.median(rates)


def _case(preset: str, payload: str, stream: str, n_frames: int, min_s: float, reps: int, block: int = BLOCK
          ) -> dict:
    from phy import Receiver
    s = _stream(preset, payload, stream, n_frames)
    cfg, x, fb, reqs = s["cfg"], s["x"], s["fb"], s["requests"]
    n_tx = int(s["sizes"].sum())
    tx_buf = np.empty(n_tx, np.complex64)     # the transmitter's output buffer, reused as a streaming TX would

    def tx():
        c = time.process_time()
        fb.build_batch(reqs, out=tx_buf)
        return n_tx, time.process_time() - c

    rx = Receiver(cfg)
    passes = [0]
    oks: list[int] = []

    def rx_pass():
        c = time.process_time()
        t_base = passes[0] * x.size
        got = []
        for a in range(0, x.size, block):
            got += rx.process(x[a:a + block], t_base + a)
        dc = time.process_time() - c
        passes[0] += 1
        oks.append(sum(1 for f in got if f.crc_ok))
        return x.size, dc

    # floors (see the module docstring): the issue's - OFDM modulation and demodulation of every symbol of every
    # frame (IFFT + CP insertion at TX, CP removal + FFT at RX, numpy.fft, chunks of FLOOR_CHUNK_ROWS symbols) - and
    # the RX-only one - the FFTs no receiver of the stream can avoid, gathered at known positions, one scipy.fft call
    import scipy.fft
    from phy.frame import frame_format
    fmt = frame_format(cfg)
    n, cp, sl = cfg.fft_size, cfg.cp_len, cfg.symbol_len
    floor_modem = _modem_floor(cfg, int(s["sizes"].sum()) // sl, rng=np.random.default_rng(1))
    lts = np.array([sl + 2 * cp, sl + 2 * cp + n])
    wins = np.concatenate([np.concatenate([a + lts, a + fmt.preamble_len + cp + sl * np.arange((sz - fmt.preamble_len)
                                                                                             // sl)])
                           for a, sz in zip(s["starts"].tolist(), s["sizes"].tolist())])
    view = np.lib.stride_tricks.as_strided(x, shape=(x.size - n + 1, n), strides=(x.strides[0], x.strides[0]),
                                           writeable=False)

    def floor():
        c = time.process_time()
        floor_modem()
        return x.size, time.process_time() - c

    def floor_rx_only():
        c = time.process_time()
        scipy.fft.fft(view[wins], axis=1, norm="ortho", overwrite_x=True)
        return x.size, time.process_time() - c

    tx()
    t_wall = time.perf_counter()
    tx_msps = _median_rate(tx, min_s, reps)
    tx_wall = time.perf_counter() - t_wall
    t_wall = time.perf_counter()
    rx_msps = _median_rate(rx_pass, min_s, reps)
    rx_wall = time.perf_counter() - t_wall
    floor_msps = _median_rate(floor, min_s, reps)
    floor_rx_msps = _median_rate(floor_rx_only, min_s, reps)
    ok = min(oks)
    return {"preset": preset, "payload": payload, "stream": stream, "frames": n_frames,
            "frame_len_mean": float(s["sizes"].mean()), "stream_samples": int(x.size),
            "tx_msps": tx_msps, "rx_msps": rx_msps, "rx_frames_ok": ok, "rx_frames_ok_all_passes": ok == max(oks),
            "rx_passes": passes[0], "fft_floor_msps": floor_msps, "rx_fraction_of_floor": rx_msps / floor_msps,
            "fft_floor_rx_only_msps": floor_rx_msps, "rx_fraction_of_rx_only_floor": rx_msps / floor_rx_msps,
            "tx_seconds": tx_wall, "rx_seconds": rx_wall, "rx_stats": dict(rx.stats), "_gr": s["gr"]}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print and return the JSON record."""
    ap = argparse.ArgumentParser(prog="otalab bench phy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run (fewer frames, 0.2 s per figure, 1 repeat)")
    ap.add_argument("--json", type=Path, default=None, help="also write the record to this file")
    ap.add_argument("--no-gnuradio", action="store_true", help="skip the GNU Radio comparison")
    ap.add_argument("--min-seconds", type=float, default=None, help="CPU seconds per figure (default 2)")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per figure, median reported (default 3)")
    ap.add_argument("--only", default=None, help="comma-separated streams to run (steady,mixed,sparse)")
    ap.add_argument("--presets", default="wifi64,wide256", help="comma-separated OFDM presets to run (default both)")
    ap.add_argument("--block", type=int, default=BLOCK, help=f"samples per Receiver.process call (default {BLOCK})")
    args = ap.parse_args(argv)
    if args.block < 1:
        ap.error(f"--block = {args.block}: expected a positive number of samples")
    try:
        import scipy.fft
        scipy.fft.set_workers(1).__enter__()
    except (ImportError, AttributeError):
        pass
    min_s = args.min_seconds if args.min_seconds is not None else (0.2 if args.quick else 2.0)
    reps = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    n_frames = {"steady": 20 if args.quick else 200, "mixed": 20 if args.quick else 200,
                "sparse": 2 if args.quick else 8}
    streams = args.only.split(",") if args.only else ["steady", "mixed", "sparse"]
    bad = [s for s in streams if s not in ("steady", "mixed", "sparse")]
    if bad:
        ap.error(f"--only {args.only}: unknown stream {bad[0]!r}; expected steady, mixed and/or sparse")
    presets = args.presets.split(",")
    bad = [p for p in presets if p not in ("wifi64", "wide256")]
    if bad:
        ap.error(f"--presets {args.presets}: unknown preset {bad[0]!r}; expected wifi64 and/or wide256")
    cases = [(p, k, "steady") for p in presets for k in ("qpsk", "analog")] \
        + [(p, "mixed", "mixed") for p in presets] + [(p, "qpsk", "sparse") for p in presets]
    results = []
    load = os.getloadavg()
    for preset, payload, stream in cases:
        if stream not in streams:
            continue
        rec = _case(preset, payload, stream, n_frames[stream], min_s, reps, args.block)
        gr_spec = rec.pop("_gr")
        if not args.no_gnuradio and preset == "wifi64" and payload != "analog":
            gr = _gnuradio(dict(gr_spec, min_s=min_s, reps=reps))
            if gr is None:
                rec["gnuradio"] = "unavailable"
            elif "error" in gr:
                rec["gnuradio"] = f"failed: {gr['error']}"
            else:
                rec.update(gnuradio_tx_msps=gr["tx_msps"], gnuradio_rx_msps=gr["rx_msps"],
                           gnuradio_rx_packets=gr["rx_packets"], gnuradio_packets=gr["packets"],
                           tx_speedup_vs_gnuradio=rec["tx_msps"] / gr["tx_msps"],
                           rx_speedup_vs_gnuradio=rec["rx_msps"] / gr["rx_msps"])
        results.append(rec)
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rec.items() if k != "rx_stats"}),
              file=sys.stderr, flush=True)    # progress; stdout holds only the record
    record = {"benchmark": "phy", "host": platform.node(), "python": platform.python_version(),
              "numpy": np.__version__, "quick": args.quick, "min_seconds": min_s, "repeats": reps,
              "cpu_time": True, "block": args.block, "loadavg_start": load, "loadavg_end": os.getloadavg(),
              "results": results}
    return report(record, args.json)


if __name__ == "__main__":
    main()
