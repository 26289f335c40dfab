"""Radio checks: ``otalab radio probe``'s self-tests of a configured radio and ``otalab replay``'s receiver run over a
recording, returning JSON-ready reports (the commands in :mod:`lab.cli.radio` print them).

The self-tests:

- **timed capture**: ``rx(n, at=now + delay)`` must return ``t0 == at`` (radios with hardware timestamps), finite
  samples; the received power is shown in dBFS.
- **sample clock** (physical radios): the radio's clock must advance ``sample_rate`` samples per host second (±2 %).
- **frames TX→RX**: ``--frames N`` uncoded QPSK frames with CRC-32 built by :class:`phy.frame.FrameBuilder` go from a
  transmitting to a receiving radio and through :class:`phy.receiver.Receiver`: every frame must arrive with the
  right payload; the table shows per-frame timing (detected start minus scheduled start), SNR and CFO. Simulated
  radios (loopback, zmq, emulated Pluto) use two endpoints ("ROLE-tx" and the configured one) on one air; a Pluto with
  ``radio.args.loopback: 1`` uses its internal digital loopback; a USRP or a Pluto without loopback only with
  ``--over-the-air`` (TX and RX of the same radio through antennas or a cable with an attenuator).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: samples of silence before, between and after the probe frames
GUARD = 400


# ------------------------------------------------------------------------------------------------ reports
def frame_report(frames: list, stats: dict, sample_rate: float) -> dict:
    """The numbers a link reports for received frames (``phy.receiver.RxFrame`` list) and the receiver's counters:
    frame counts, CRC failures, SNR and CFO statistics, and one row per frame."""
    import numpy as np  # noqa: PLC0415

    digital = [f for f in frames if f.kind == "digital"]
    snr = np.array([f.snr_db for f in frames], float)
    cfo = np.array([f.cfo_hz for f in frames], float)
    return {
        "frames": len(frames),
        "digital_frames": len(digital),
        "analog_frames": len(frames) - len(digital),
        "crc_ok": sum(1 for f in digital if f.crc_ok),
        "crc_fail": sum(1 for f in digital if not f.crc_ok),
        "snr_db_mean": float(snr.mean()) if snr.size else None,
        "snr_db_min": float(snr.min()) if snr.size else None,
        "snr_db_max": float(snr.max()) if snr.size else None,
        "cfo_hz_mean": float(cfo.mean()) if cfo.size else None,
        "receiver": dict(stats),
        "frame_list": [{"t_start": int(f.t_start), "t_start_s": f.t_start / sample_rate, "seq": int(f.seq),
                        "kind": f.kind, "crc_ok": bool(f.crc_ok), "snr_db": float(f.snr_db),
                        "cfo_hz": float(f.cfo_hz),
                        "length": len(f.payload) if f.payload is not None else
                        (int(f.values.size) if f.values is not None else 0)} for f in frames],
    }


# ------------------------------------------------------------------------------------------------ self-tests
def timed_capture_check(radio, n: int = 4096) -> dict:
    """rx(n, at=now + delay): t0 == at (timed radios), finite samples, received power in dBFS."""
    import numpy as np  # noqa: PLC0415

    at = radio.time_now() + max(1000, int(0.01 * radio.sample_rate))
    x, t0 = radio.rx(n, at=at)
    finite = bool(np.all(np.isfinite(x.view(np.float32))))
    power = float(np.mean(np.abs(x) ** 2)) if x.size else 0.0
    exact = t0 == at
    ok = finite and x.size == n and (exact or not radio.capabilities.timed_rx)
    return {"check": "timed capture", "ok": ok,
            "detail": f"asked sample {at}, got t0={t0} ({'exact' if exact else f'{t0 - at:+d}'}), {x.size} samples, "
                      f"{10 * np.log10(max(power, 1e-20)):.1f} dBFS"}


def clock_check(radio, seconds: float = 0.3) -> dict:
    """The radio's clock advances sample_rate samples per host second (±2 %)."""
    import time  # noqa: PLC0415

    t_a, h_a = radio.time_now(), time.monotonic()
    time.sleep(seconds)
    t_b, h_b = radio.time_now(), time.monotonic()
    rate = (t_b - t_a) / (h_b - h_a)
    ok = abs(rate / radio.sample_rate - 1) <= 0.02
    return {"check": "sample clock", "ok": ok,
            "detail": f"{rate / 1e6:.4f} MS/s measured against the host clock vs {radio.sample_rate / 1e6:.4f} set"}


def frame_selftest(tx_radio, rx_radio, ofdm_cfg, n_frames: int = 4, seed: int = 0, annotate=None) -> dict:
    """Send ``n_frames`` uncoded QPSK frames (64-byte random payloads, seq 0..n-1) from ``tx_radio`` to ``rx_radio``
    and decode them; returns the frame report plus ``sent``, ``payload_ok`` and per-frame ``timing_error``
    (detected minus scheduled start, samples; radios without timed TX send later than scheduled, by up to their
    buffering). ``annotate(t, n, label, comment)`` marks detected frames (recording).
    """
    import numpy as np  # noqa: PLC0415

    from phy.frame import FrameBuilder  # noqa: PLC0415
    from phy.receiver import Receiver  # noqa: PLC0415
    from radio.base import LateError  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    builder = FrameBuilder(ofdm_cfg)
    payloads = [rng.integers(0, 256, 64, dtype=np.uint8).tobytes() for _ in range(n_frames)]
    bursts = [builder.build_digital(p, seq=i, modem="qpsk", code_rate=None) for i, p in enumerate(payloads)]
    offsets = np.cumsum([0] + [b.size + GUARD for b in bursts[:-1]])
    burst = np.zeros(int(offsets[-1]) + bursts[-1].size, np.complex64)
    for off, b in zip(offsets, bursts):
        burst[off:off + b.size] = b
    burst *= np.float32(0.5)                          # headroom: OFDM peaks stay inside full scale
    lead = max(2000, int(0.05 * tx_radio.sample_rate)) if not tx_radio.capabilities.simulated else 1000
    t_tx = tx_radio.tx(burst, at=tx_radio.time_now() + lead)
    n_rx = burst.size + 2 * GUARD + 4 * ofdm_cfg.symbol_len
    caps = tx_radio.capabilities
    if not caps.timed_tx:  # host-timed TX leaves later than asked: listen long enough to catch it
        n_rx += int(max(caps.timing_accuracy_samples, 0.05 * tx_radio.sample_rate, 1 << 16))
    try:
        x, t0 = rx_radio.rx(n_rx, at=t_tx - GUARD)
    except LateError:                                 # host-timed radios: take what comes next
        x, t0 = rx_radio.rx(n_rx + lead)
    receiver = Receiver(ofdm_cfg)
    frames = receiver.process(x, t0) + receiver.flush()
    report = frame_report(frames, receiver.stats, rx_radio.sample_rate)
    by_seq = {f.seq: f for f in frames if f.kind == "digital"}
    timing, ok = [], 0
    for i, p in enumerate(payloads):
        f = by_seq.get(i)
        if f is not None and f.crc_ok and f.payload == p:
            ok += 1
        timing.append(None if f is None else int(f.t_start - (t_tx + int(offsets[i]))))
        if f is not None and annotate is not None:
            try:
                annotate(int(f.t_start), int(f.n_samples), "frame", f"seq {f.seq} crc_ok={f.crc_ok} "
                         f"snr={f.snr_db:.1f} dB")
            except ValueError:
                pass                                  # the frame is not in the recorded stretch
    report.update({"sent": n_frames, "payload_ok": ok, "timing_error": timing, "t_tx": int(t_tx)})
    return report


def run_probe(config, n_frames: int = 4, over_the_air: bool = False, record: str | Path | None = None,
              uhd_module=None) -> dict:
    """Open the radio of ``config`` (a LabConfig), collect its settings and run the self-tests; returns a dict with
    ``settings``, ``checks`` (list of {check, ok, detail}), ``frames`` (the frame test, or None) and ``ok``."""
    import dataclasses  # noqa: PLC0415

    from lab.factory import make_air, open_radio  # noqa: PLC0415

    section, args = config.radio, config.radio_args
    ofdm_cfg = _ofdm(config, section.sample_rate)
    simulated = section.driver in ("loopback", "zmq") or (section.driver == "pluto" and args is not None
                                                         and args.emulate)
    opened = []
    try:
        if simulated:
            air = make_air(config) if section.driver in ("loopback", "pluto") else None
            tx_config = config
            if section.driver == "zmq":  # the probe's transmitter must not hold the broker's clock
                tx_config = dataclasses.replace(config, radio_args=dataclasses.replace(
                    args, receive=False, hold_clock=False))
            rx_radio = open_radio(config, "rx", air=air, record=record, uhd_module=uhd_module)
            opened.append(rx_radio)
            tx_radio = open_radio(tx_config, "tx", air=air)
            opened.append(tx_radio)
        else:
            rx_radio = tx_radio = open_radio(config, "rx", record=record, uhd_module=uhd_module)
            opened.append(rx_radio)
        result = {"config": config.source, "settings": rx_radio.settings(), "checks": [], "frames": None}
        result["checks"].append(timed_capture_check(rx_radio))
        if not rx_radio.capabilities.simulated:
            result["checks"].append(clock_check(rx_radio))
        internal_loopback = section.driver == "pluto" and not simulated and args.loopback != 0
        if simulated or internal_loopback or over_the_air:
            annotate = getattr(rx_radio, "annotate", None)
            frames = frame_selftest(tx_radio, rx_radio, ofdm_cfg, n_frames, annotate=annotate)
            result["frames"] = frames
            result["checks"].append({"check": f"frames TX→RX ({_path_name(section.driver, simulated, internal_loopback)})",
                                     "ok": frames["payload_ok"] == frames["sent"],
                                     "detail": f"{frames['payload_ok']}/{frames['sent']} payloads correct, "
                                               f"timing error {frames['timing_error']} samples"})
        stats = getattr(rx_radio, "stats", None)
        if stats:
            result["stats"] = dict(stats)
        result["settings"] = rx_radio.settings()
    finally:
        for radio in reversed(opened):
            radio.close()
    result["ok"] = all(c["ok"] for c in result["checks"])
    if record is not None:
        result["recording"] = str(record)
    return result


def _path_name(driver: str, simulated: bool, internal_loopback: bool) -> str:
    if simulated:
        return f"{driver}: two endpoints on one air"
    return "internal loopback" if internal_loopback else "over the air"


def _ofdm(config, sample_rate: float):
    from phy.ofdm import OfdmSection  # noqa: PLC0415

    section = config.ofdm if config.ofdm is not None else OfdmSection()
    return section.to_config(sample_rate)


def run_replay(path: str | Path, config=None, block: int = 1 << 16, sample_rate: float | None = None,
               center_freq: float = 0.0, keep: bool = False) -> dict:
    """Run the OFDM receiver over a recording (each contiguous capture at its recorded sample times) and return the
    frame report plus ``recording`` facts (samples, truncated, captures). A SigMF recording (meta/data pair or
    ``.sigmf`` archive, any complex datatype) by default; with ``sample_rate`` (Hz) a headerless complex64 file at
    that rate and ``center_freq`` (Hz). ``keep``: also return, under ``"_view"``, the first 65 536 samples and the
    equalized data symbols of the received frames (for a constellation/spectrum plot; not JSON)."""
    from phy.receiver import Receiver  # noqa: PLC0415
    from radio.recording import read_raw_recording, read_recording  # noqa: PLC0415

    rec = (read_raw_recording(path, sample_rate, center_freq) if sample_rate is not None
           else read_recording(path))
    ofdm_cfg = _ofdm(config, rec.sample_rate) if config is not None else _ofdm_default(rec.sample_rate)
    receiver = Receiver(ofdm_cfg)
    frames = []
    for samples, t0 in rec.segments():
        for i in range(0, samples.size, block):                  # the same blocks a live receiver sees
            frames += receiver.process(samples[i:i + block], t0 + i)
    frames += receiver.flush()
    report = frame_report(frames, receiver.stats, rec.sample_rate)
    report["recording"] = {"path": str(rec.path), "sample_rate": rec.sample_rate, "center_freq": rec.center_freq,
                           "samples": int(rec.samples.size), "expected_samples": rec.expected,
                           "captures": len(rec.captures), "truncated": rec.truncated,
                           "annotations": len(rec.annotations)}
    if keep:
        symbols = [f.symbols for f in frames if getattr(f, "symbols", None) is not None]
        report["_view"] = {"samples": rec.samples[:65536],
                           "symbols": np.concatenate([np.ravel(s) for s in symbols]) if symbols else None}
    return report


def looks_sigmf(path: Path) -> bool:
    from radio.recording import recording_meta_path  # noqa: PLC0415

    meta = recording_meta_path(path)
    return (path.name.endswith(".sigmf") or meta.is_file()
            or meta.with_name(meta.name[: -len(".sigmf-meta")] + ".sigmf").is_file())


def _ofdm_default(sample_rate: float):
    from phy.ofdm import OfdmSection  # noqa: PLC0415

    return OfdmSection().to_config(sample_rate)
