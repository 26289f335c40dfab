"""One actor of the multi-Pluto timing test (tests/radio/test_pluto_cell_timing.py), run in a process of its own.

``python -m tests.radio.pluto_cell_actor ps URI BURSTS K OUT.json``: the receiver. Streams its emulated Pluto,
sends beacon i at its own RX count ``b_i`` (every PERIOD samples; a beacon it is too late for is skipped, and it
stops trying after three times the time BURSTS beacons take), and finds each device d's response in its RX;
writes ``{"beacons": [b_i], "arrivals": {d: [a_i or null]}, "lock": ...}``.

``python -m tests.radio.pluto_cell_actor dev URI D``: device d. Streams its emulated Pluto, finds each beacon in its
RX (at its own count ``r_i``) and sends its response at ``r_i + delta(d)`` — a time derived only from what it
received. Runs until its stdin closes; prints its lock state at the end.

Signals: unit-modulus pseudo-random QPSK sequences (beacon, and one per device) of SEQ samples at amplitude 0.5;
arrivals are the correlation peaks (an integer sample on the ideal air).
"""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np
from scipy.signal import oaconvolve

from radio.drivers.pluto import PlutoArgs, PlutoRadio

RATE = 521_000
SEQ = 255
PERIOD = int(0.04 * RATE)             # beacon period (samples); answers come DELTA later, several beacons on
#: samples per read (and per correlation): 16384 (31 ms) leaves an answer 150 ms - 31 ms for the TX lead; 4096 made
#: each detector cost 0.067 cores (scipy's oaconvolve per call), 16384 0.017 (2026-12-06, quiet host)
CHUNK = 16384


def sequence(name: str) -> np.ndarray:
    """The beacon ("beacon") or device d's response ("devD"): SEQ QPSK samples at amplitude 0.5."""
    seed = 12345 if name == "beacon" else 1000 + int(name[3:])
    rng = np.random.default_rng(seed)
    return (0.5 * np.exp(0.5j * np.pi * (rng.integers(0, 4, SEQ) + 0.5))).astype(np.complex64)


def delta(d: int) -> int:
    """Device d answers this many samples after it received a beacon: past its TX lead, one slot per device."""
    return int(0.15 * RATE) + d * 2 * SEQ


def open_radio(uri: str) -> PlutoRadio:
    args = PlutoArgs(uri=uri, rx_buffer_size=16384, tx_buffer_size=8192, kernel_buffers=8, tx_kernel_buffers=4,
                     streaming=True, gain_control_mode="manual")
    return PlutoRadio(args, sample_rate=RATE, tx_gain=0.0, rx_gain=0.0, uri=uri)


class Detector:
    """Finds ``seq`` in a continuous RX stream: the RX counts where it starts (correlation peaks above half the
    ideal). The last 2·SEQ samples are scanned again with the next chunk; peaks there are reported then."""

    def __init__(self, seq: np.ndarray):
        self.ref = np.conj(seq[::-1])
        self.ideal = float(np.sum(np.abs(seq) ** 2))
        self.tail = np.zeros(0, np.complex64)

    def feed(self, x: np.ndarray, t0: int) -> list[int]:
        buf = np.concatenate([self.tail, x])
        start = t0 - self.tail.size
        c = np.abs(oaconvolve(buf, self.ref, mode="valid"))    # c[k]: the sequence starting at buf[k]
        limit = buf.size - 2 * SEQ                             # beyond: scanned again next time
        found = []
        for k in np.nonzero(c[:max(limit, 0)] > 0.5 * self.ideal)[0]:
            if c[k] >= c[max(0, k - SEQ):k + SEQ].max():
                found.append(start + int(k))
        self.tail = buf[max(limit, 0):]
        return found


def run_device(uri: str, d: int) -> None:
    r = open_radio(uri)
    det = Detector(sequence("beacon"))
    resp = sequence(f"dev{d}")
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    sent, late, seen = 0, 0, set()
    x, t = r.rx(CHUNK)
    while not stop.is_set():
        for b in det.feed(x, t):
            if b in seen:
                continue
            seen.add(b)
            try:
                r.tx(resp, b + delta(d))
                sent += 1
            except Exception:   # late: count it
                late += 1
        x, t = r.rx(CHUNK)
    print(json.dumps({"device": d, "sent": sent, "late": late, "lock": r.tx_lock, "gaps": len(r.gaps),
                      "lag": r.time_now() - t, "lead": r.min_lead_samples(), "stats": r._stream.stats,
                      "cpu_s": time.process_time()}), flush=True)
    r.close()


def run_ps(uri: str, bursts: int, k: int, out: str) -> None:
    r = open_radio(uri)
    beacon = sequence("beacon")
    dets = [Detector(sequence(f"dev{d}")) for d in range(k)]
    arrivals: list[list[int]] = [[] for _ in range(k)]
    beacons: list[int] = []
    x, t = r.rx(CHUNK)
    next_b = t + int(0.25 * RATE)
    end = None
    give_up = time.monotonic() + 3 * bursts * PERIOD / RATE + 10   # a starved host refuses many beacons as late
    while True:
        if time.monotonic() > give_up:
            bursts = len(beacons)
        while len(beacons) < bursts and next_b - r.time_now() < int(0.2 * RATE):
            if next_b - r.time_now() > r.min_lead_samples():
                try:
                    r.tx(beacon, next_b)
                    beacons.append(next_b)
                except Exception:  # too late after all: skip this one
                    pass
            next_b += PERIOD
        for d, det in enumerate(dets):
            arrivals[d].extend(det.feed(x, t))
        if len(beacons) >= bursts and end is None:
            end = beacons[-1] + delta(k) + int(0.2 * RATE)
        if end is not None and t > end:
            break
        x, t = r.rx(CHUNK)
    with open(out, "w") as f:
        json.dump({"beacons": beacons, "arrivals": arrivals, "lock": r.tx_lock, "gaps": len(r.gaps),
                   "cpu_s": time.process_time()}, f)
    r.close()


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "dev":
        run_device(sys.argv[2], int(sys.argv[3]))
    else:
        run_ps(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
