"""Where the OFDM receiver's time goes: ns per stream sample of each receiver stage, and of the primitives a floor is
made of, on the streams of ``otalab bench phy``.

``otalab bench phy_profile [--quick] [--json PATH] [--streams steady,sparse,mixed] [--preset wifi64] [--passes P]``
measures, in ONE process on ONE core (OMP/OPENBLAS/MKL threads = 1, scipy.fft workers = 1), CPU time
(``time.process_time``):

* ``stages``: :class:`phy.Receiver` on the stream (blocks of 2^18 samples, ``--passes`` passes after a warm-up pass)
  with each stage's method wrapped by a CPU-time accumulator (time inside a nested wrapped method is its own stage's,
  not its caller's): detection (the screen kernel, the exact metric, the scan's bookkeeping: cache, crossings, peaks,
  look-ahead), acquisition (LTS timing/CFO/verification), the FFTs (LTS + header windows; payload rows), channel
  estimation, header decoding, pilot tracking, equalization, demapping + CRC, the RxFrame objects; ``python`` is the
  rest (the receiver's loop, stream buffer, batching and glue). The wrappers cost a few %; ``total_ns`` is the run
  with them, ``total_ns_unwrapped`` a run without.
* ``primitives``: ns per sample of the work a floor is made of, on the same stream: ``fft_floor`` (``otalab bench
  phy``'s ``fft_floor_msps``: IFFT + CP of every symbol at TX, CP removal + FFT at RX), ``rx_fft`` (its RX half:
  every symbol's N samples gathered and transformed in one ``scipy.fft`` call), ``screen`` (the detector's fused
  numba pass over every sample: the cheapest detector here), ``exact_metric`` (the float32 Schmidl-Cox metric over
  every sample), ``complex_multiply`` (one numpy complex64 product over every sample: the cheapest elementwise pass)
  and ``copy`` (one numpy copy).

Prints ``{"benchmark": "phy_profile", "results": [...]}``, one record per stream.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from lab.bench import report  # noqa: E402

BLOCK = 1 << 18
STREAMS = ("steady", "sparse", "mixed")


def _stage_methods():
    """(owner, attribute, stage) of every wrapped method."""
    import phy.detector as det
    import phy.receiver as rcv
    import phy.rx.acquisition as acq
    import phy.rx.channel_estimation as chest
    import phy.rx.demapping as dem
    import phy.rx.detection as scan
    import phy.rx.ofdm_demodulation as ofdm
    import phy.rx.phase_tracking as trk
    out = [(det.SchmidlCoxDetector, "screen", "detection: screen kernel"),
           (det.SchmidlCoxDetector, "metric", "detection: exact metric"),
           (det.SchmidlCoxDetector, "metric_screened", "detection: scan bookkeeping"),
           (det.SchmidlCoxDetector, "first_candidate", "detection: scan bookkeeping")]
    out += [(scan.DetectionScan, n, "detection: scan bookkeeping")
            for n in ("search", "speculate", "speculate_all", "windows", "metric_from", "cached_positions")]
    out += [(acq.LtsAcquisition, "acquire", "acquisition"),
            (ofdm.OfdmDemodulator, "preamble", "fft: LTS + header windows"),
            (ofdm.OfdmDemodulator, "symbol_rows", "fft: payload rows"),
            (ofdm.OfdmDemodulator, "residual_phase", "tracking"),
            (chest.LtsChannelEstimator, "estimate", "channel estimation"),
            (rcv, "decode_header_symbols", "header"),
            (rcv, "equalize", "equalization"), (rcv, "effective_noise", "equalization"),
            (dem.PayloadDecoder, "decode", "demapping + CRC"),
            (rcv, "frames_out", "RxFrame objects")]
    out += [(trk.PilotTracker, n, "tracking")
            for n in ("track_frames", "derotate", "refine", "phase_var", "header_phase")]
    return out


class _StageClock:
    """Wraps the stage methods with CPU-time accumulators (exclusive of nested wrapped calls); restores them."""

    def __init__(self):
        self.acc: dict[str, float] = {}
        self._stack: list[list] = []
        self._saved = []

    def __enter__(self):
        for owner, name, stage in _stage_methods():
            f = owner.__dict__[name]
            self._saved.append((owner, name, f))
            setattr(owner, name, self._wrap(f, stage))
        return self

    def __exit__(self, *exc):
        for owner, name, f in reversed(self._saved):
            setattr(owner, name, f)
        self._saved = []

    def _wrap(self, f, stage):
        if isinstance(f, staticmethod):
            return staticmethod(self._wrap(f.__func__, stage))
        stack, acc = self._stack, self.acc

        @functools.wraps(f)
        def timed(*a, **k):
            stack.append([stage, 0.0])
            c = time.process_time()
            try:
                return f(*a, **k)
            finally:
                d = time.process_time() - c
                child = stack.pop()[1]
                acc[stage] = acc.get(stage, 0.0) + d - child
                if stack:
                    stack[-1][1] += d
        return timed


def _rx_passes(cfg, x: np.ndarray, passes: int, clock: _StageClock | None = None) -> tuple[float, int]:
    """CPU seconds of ``passes`` passes of a receiver over ``x`` (after one warm-up pass, which ``clock``'s
    accumulators forget), frames with a good CRC per pass."""
    from phy import Receiver
    rx = Receiver(cfg)
    ok = 0
    for p in range(passes + 1):
        if p == 1:
            if clock is not None:
                clock.acc.clear()
            c = time.process_time()
        for a in range(0, x.size, BLOCK):
            got = rx.process(x[a:a + BLOCK], p * x.size + a)
            if p == 0:
                ok += sum(1 for f in got if f.crc_ok)
    return time.process_time() - c, ok


def _per_sample(fn, n: int, min_s: float) -> float:
    """ns per sample of ``fn()`` over ``n`` samples, repeated for at least ``min_s`` CPU seconds (one warm-up)."""
    fn()
    k, c = 0, time.process_time()
    while True:
        fn()
        k += 1
        dt = time.process_time() - c
        if dt >= min_s:
            return dt / k / n * 1e9


def _case(preset: str, stream: str, n_frames: int, passes: int, min_s: float) -> dict:
    import scipy.fft

    from lab.bench.phy import _modem_floor, _stream
    from phy.detector import SchmidlCoxDetector, kernel_available
    s = _stream(preset, "qpsk", stream, n_frames)
    cfg, x = s["cfg"], s["x"]
    n, cp, sl = cfg.fft_size, cfg.cp_len, cfg.symbol_len
    dt_plain, ok = _rx_passes(cfg, x, passes)
    with _StageClock() as clock:
        dt, _ = _rx_passes(cfg, x, passes, clock)
    scale = 1e9 / (passes * x.size)
    stages = {k: round(v * scale, 3) for k, v in sorted(clock.acc.items(), key=lambda kv: -kv[1])}
    stages["python (loop, buffer, batching, glue)"] = round(dt * scale - sum(clock.acc.values()) * scale, 3)
    # primitives on this stream
    n_sym = int(s["sizes"].sum()) // sl
    modem = _modem_floor(cfg, n_sym, np.random.default_rng(1))
    wins = np.concatenate([a + cp + sl * np.arange(sz // sl) for a, sz in zip(s["starts"].tolist(),
                                                                              s["sizes"].tolist())])
    view = np.lib.stride_tricks.as_strided(x, shape=(x.size - n + 1, n), strides=(x.strides[0], x.strides[0]),
                                           writeable=False)
    det = SchmidlCoxDetector(cfg)
    y = np.empty_like(x)
    prims = {"fft_floor": _per_sample(modem, x.size, min_s),
             "rx_fft": _per_sample(lambda: scipy.fft.fft(view[wins], axis=1, norm="ortho", overwrite_x=True),
                                   x.size, min_s),
             "exact_metric": _per_sample(lambda: det.metric(x), x.size, min_s),
             "complex_multiply": _per_sample(lambda: np.multiply(x, x, out=y), x.size, min_s),
             "copy": _per_sample(lambda: np.copyto(y, x), x.size, min_s)}
    if kernel_available():
        prims["screen"] = _per_sample(lambda: det.screen(x), x.size, min_s)
    return {"preset": preset, "stream": stream, "frames": n_frames, "stream_samples": int(x.size),
            "rx_frames_ok": ok, "passes": passes, "total_ns_unwrapped": round(dt_plain * scale, 3),
            "total_ns": round(dt * scale, 3), "rx_msps_unwrapped": round(1e3 / (dt_plain * scale), 2),
            "stages_ns": stages, "primitives_ns": {k: round(v, 3) for k, v in prims.items()}}


def main(argv: list[str] | None = None) -> dict:
    """Run the profile, print and return the JSON record."""
    ap = argparse.ArgumentParser(prog="otalab bench phy_profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run (fewer frames, one pass, 0.1 s per primitive)")
    ap.add_argument("--json", type=Path, default=None, help="also write the record to this file")
    ap.add_argument("--streams", default=",".join(STREAMS), help="comma-separated streams (steady,sparse,mixed)")
    ap.add_argument("--preset", default="wifi64", help="OFDM preset (wifi64 or wide256)")
    ap.add_argument("--passes", type=int, default=None, help="timed passes over each stream (default 3)")
    args = ap.parse_args(argv)
    streams = args.streams.split(",")
    bad = [s for s in streams if s not in STREAMS]
    if bad:
        ap.error(f"--streams {args.streams}: unknown stream {bad[0]!r}; expected steady, sparse and/or mixed")
    if args.preset not in ("wifi64", "wide256"):
        ap.error(f"--preset {args.preset}: expected wifi64 or wide256")
    passes = args.passes if args.passes is not None else (1 if args.quick else 3)
    if passes < 1:
        ap.error(f"--passes = {passes}: expected at least 1")
    try:
        import scipy.fft
        scipy.fft.set_workers(1).__enter__()
    except (ImportError, AttributeError):
        pass
    n_frames = {"steady": 20 if args.quick else 200, "mixed": 20 if args.quick else 200,
                "sparse": 2 if args.quick else 8}
    load = os.getloadavg()
    results = []
    for stream in streams:
        rec = _case(args.preset, stream, n_frames[stream], passes, 0.1 if args.quick else 1.0)
        results.append(rec)
        print(json.dumps(rec), file=sys.stderr, flush=True)
    record = {"benchmark": "phy_profile", "host": platform.node(), "python": platform.python_version(),
              "numpy": np.__version__, "quick": args.quick, "cpu_time": True, "block": BLOCK,
              "loadavg_start": load, "loadavg_end": os.getloadavg(), "results": results}
    return report(record, args.json)


if __name__ == "__main__":
    main()
