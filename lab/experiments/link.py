"""Link experiment: send N OFDM frames from one radio to another and measure what arrives.

``run_link(tx_radio, rx_radio, cfg, ...)`` works with any pair of :class:`radio.base.Radio` objects that share a
sample clock (two endpoints of the in-process simulated air, of the ZeroMQ broker, or a full-duplex device used as
both): it schedules every frame with timed TX, receives the whole stretch with timed RX, runs the streaming
:class:`phy.Receiver` over it in blocks, and compares with what was sent.

Transmit level (backoff). Frames have unit power per used subcarrier, i.e. an RMS of sqrt(n_used/N) ~ 0.9 per
complex sample, with OFDM peaks ~10 dB above the RMS. Radios take full scale |x| <= 1, so frames are multiplied by
``tx_scale`` (default: RMS 12 dB below full scale -> 0.25, ``tx_scale = 0.25 / sqrt(n_used/N)``); samples beyond 1
are then rarer than ~1e-5 and clipped by the radio/driver. Because the project's SNR is defined for unit-power
subcarriers, a simulated air must use noise variance ``tx_scale^2 * 10^(-snr_db/10)`` per sample for the
per-subcarrier SNR to equal ``snr_db``: :func:`air_noise_power` computes it and ``otalab link`` sets it.

Metrics (returned dict): ``frames``, ``detected`` (frames whose header decoded, matched by sequence number),
``ber`` (payload bit errors / payload bits over detected digital frames), ``bler`` (lost frames and frames with a
wrong payload or CRC failure / frames sent), ``nmse_db`` (analog: sum of squared errors / sum of squares over
detected frames), ``snr_db_est`` (mean over detected frames of the receiver's per-subcarrier SNR estimate, in dB),
``cfo_hz_rmse`` (against ``cfo_hz_true`` when given), ``timing_error_max`` (samples), the receiver's counters, and
the settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from radio.base import Radio

#: default transmit RMS relative to full scale (12 dB backoff)
DEFAULT_TX_RMS = 0.25


def tx_scale_for(cfg, rms: float = DEFAULT_TX_RMS) -> float:
    """Amplitude factor that brings a unit-power-per-subcarrier frame to ``rms`` per complex sample."""
    return float(rms / np.sqrt(cfg.n_used / cfg.fft_size))


def air_noise_power(snr_db: float, tx_scale: float) -> float:
    """Noise variance per complex sample that gives per-subcarrier SNR ``snr_db`` for frames scaled by ``tx_scale``
    over a unit-gain link."""
    return float(tx_scale ** 2 * 10 ** (-snr_db / 10))


def run_link(tx_radio: Radio, rx_radio: Radio, cfg, *, mod: str = "qpsk", code_rate: float | None = None,
             frames: int = 100, payload_bytes: int = 500, n_values: int = 2048, seed: int = 0, gap: int = 200,
             tx_scale: float | None = None, cfo_hz_true: float | None = None, snr_db_true: float | None = None,
             block: int = 1 << 15, receiver_kwargs: dict | None = None,
             progress: Callable[[int, int], None] | None = None, keep: bool = False) -> dict:
    """Send ``frames`` frames tx -> rx and measure them (see the module docstring for the metrics).

    mod: "analog" or a modulation name ("bpsk", "qpsk", "16qam", "64qam", "256qam"); code_rate: None (uncoded) or
    1/2, 2/3, 3/4, 5/6 (digital). Analog frames carry ``n_values`` Gaussian reals, digital frames ``payload_bytes``
    random bytes. ``gap``: idle samples between frames. ``progress(done, total)`` is called per received block.
    ``keep``: also return, under ``"_view"``, the first received block and the frames' equalized symbols (for
    :func:`lab.plots.constellation_spectrum_figure`; not JSON).
    """
    from phy import FrameBuilder, Receiver

    if frames < 1:
        raise ValueError(f"frames = {frames!r}: expected at least 1")
    if tx_radio.sample_rate != rx_radio.sample_rate:
        raise ValueError(f"tx and rx sample rates differ: {tx_radio.sample_rate} vs {rx_radio.sample_rate} Hz")
    rng = np.random.default_rng(seed)
    fb = FrameBuilder(cfg)
    scale = tx_scale_for(cfg) if tx_scale is None else float(tx_scale)
    analog = mod == "analog"
    truth, bursts = [], []
    for i in range(frames):
        seq = i % 65536
        if analog:
            v = rng.standard_normal(n_values).astype(np.float32)
            truth.append(v)
            bursts.append(fb.build_analog(v, seq=seq))
        else:
            p = rng.integers(0, 256, payload_bytes, dtype=np.uint8).tobytes()
            truth.append(p)
            bursts.append(fb.build_digital(p, seq=seq, modem=mod, code_rate=code_rate))
    # schedule every frame, then read the whole stretch (timed RX). A radio whose timed TX is realised on the host
    # (Pluto) queues one continuous stream padded to whole TX buffers: it places each frame as early as it can after
    # the previous one, and its returned start time is the frame's true start.
    lead = 4 * cfg.symbol_len
    t_first = max(tx_radio.time_now(), rx_radio.time_now()) + lead
    timed = tx_radio.capabilities.timed_tx
    starts, t = [], t_first
    for b in bursts:
        x = (b * np.float32(scale)).astype(np.complex64)
        start = tx_radio.tx(x, at=t if timed or not starts else None)
        starts.append(start)
        t = start + b.size + gap
    t_end = t + lead
    rx = Receiver(cfg, **(receiver_kwargs or {}))
    got: dict[int, object] = {}
    t_rx = t_first - lead
    total = t_end - t_rx
    t_wall = time.perf_counter()
    at = t_rx
    first = None
    while at < t_end:
        n = min(block, t_end - at)
        samples, t0 = rx_radio.rx(n, at=at)
        if keep and first is None:
            first = samples.copy()
        for f in rx.process(samples, t0):
            got.setdefault(f.seq, f)
        at = t0 + samples.size
        if progress is not None:
            progress(at - t_rx, total)
    rx.flush()
    elapsed = time.perf_counter() - t_wall
    out = _metrics(cfg, mod, code_rate, truth, starts, got, rx.stats, cfo_hz_true, snr_db_true, scale, seed,
                   frames, payload_bytes, n_values, elapsed, total)
    if keep:
        symbols = [np.ravel(f.symbols) for f in got.values() if getattr(f, "symbols", None) is not None]
        out["_view"] = {"samples": first, "symbols": np.concatenate(symbols) if symbols else None}
    return out


def _metrics(cfg, mod, code_rate, truth, starts, got, stats, cfo_hz_true, snr_db_true, scale, seed, frames,
             payload_bytes, n_values, elapsed, total) -> dict:
    analog = mod == "analog"
    detected = [i for i in range(frames) if (i % 65536) in got]
    bit_err = bits = block_err = 0
    sq_err = sq_sum = 0.0
    snr_est, cfo_est, timing = [], [], []
    for i in range(frames):
        f = got.get(i % 65536)
        if f is None or f.kind != ("analog" if analog else "digital"):
            block_err += 1
            continue
        snr_est.append(f.snr_db)
        cfo_est.append(f.cfo_hz)
        timing.append(abs(f.t_start - starts[i]))
        if analog:
            sq_err += float(np.sum((f.values - truth[i]) ** 2))
            sq_sum += float(np.sum(truth[i].astype(np.float64) ** 2))
        else:
            d = np.unpackbits(np.frombuffer(truth[i], np.uint8) ^ np.frombuffer(f.payload, np.uint8))
            bit_err += int(d.sum())
            bits += d.size
            block_err += int(d.any() or not f.crc_ok)
    cfo = np.asarray(cfo_est)
    out = {
        "frames": frames, "detected": len(detected), "detection_rate": len(detected) / frames,
        "ber": (bit_err / bits) if (bits and not analog) else None,
        "bler": block_err / frames if not analog else None,
        "nmse_db": float(10 * np.log10(sq_err / sq_sum)) if (analog and sq_sum > 0 and sq_err > 0) else None,
        "snr_db_true": snr_db_true,
        "snr_db_est": float(np.mean(snr_est)) if snr_est else None,
        "cfo_hz_true": cfo_hz_true,
        "cfo_hz_est_mean": float(cfo.mean()) if cfo.size else None,
        "cfo_hz_rmse": float(np.sqrt(np.mean((cfo - cfo_hz_true) ** 2))) if (cfo.size and cfo_hz_true is not None)
        else None,
        "timing_error_max": int(max(timing)) if timing else None,
        "rx_stats": dict(stats),
        "settings": {"mod": mod, "code_rate": code_rate, "payload_bytes": None if analog else payload_bytes,
                     "n_values": n_values if analog else None, "tx_scale": scale, "seed": seed,
                     "ofdm": cfg.describe()},
        "rx_seconds": elapsed, "rx_msps": total / elapsed / 1e6 if elapsed > 0 else None,
    }
    return out


def format_table(res: dict) -> str:
    """A compact text table of the main metrics."""
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    rows = [("frames sent / detected", f"{res['frames']} / {res['detected']}  ({res['detection_rate']:.1%})")]
    if res["settings"]["mod"] == "analog":
        rows.append(("NMSE", f"{f(res['nmse_db'], '.2f')} dB"))
    else:
        rows += [("BER", f(res["ber"], ".3e")), ("BLER", f(res["bler"], ".3e"))]
    rows += [("SNR true / est", f"{f(res['snr_db_true'], '.2f')} / {f(res['snr_db_est'], '.2f')} dB"),
             ("CFO true / mean est", f"{f(res['cfo_hz_true'], '.1f')} / {f(res['cfo_hz_est_mean'], '.1f')} Hz"),
             ("CFO RMSE", f"{f(res['cfo_hz_rmse'], '.1f')} Hz"),
             ("max timing error", f"{f(res['timing_error_max'], 'd')} samples"),
             ("receiver drops", ", ".join(f"{k}={v}" for k, v in res["rx_stats"].items()
                                          if k in ("rejected", "header_crc_fail", "header_invalid", "truncated",
                                                   "payload_crc_fail") and v) or "none")]
    w = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)
