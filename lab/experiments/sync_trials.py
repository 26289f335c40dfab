"""`otalab sync`: what synchronization for over-the-air computation achieves and costs.

A trial places K devices in a cell on the in-process air: random distances (one-way delays up to the cell radius),
random clock offsets (unknown start times), CFO and sampling-clock offsets in ppm, a multipath profile per link, and a
noise floor that gives the PS the requested per-subcarrier SNR at unit channel gain. The PS is a base station: it
transmits ``ps_power_db`` more power than a device (10 dB by default), so the downlink (beacons, control frames) runs
at that much higher SNR than the uplink whose aggregation is measured. It runs the whole procedure
(:class:`sync.procedure.SyncSession`: beacons → random access → timing advance → pilots and feedback → over-the-air
sums of random vectors) and compares with the truth the simulation knows:

- timing: the PRACH delay estimate against the true arrival (RMSE next to its Cramér–Rao bound), and every data
  burst's true arrival error e = arrival − slot (of the link's first tap); a burst is inside the CP iff
  −b ≤ e + τ_first  and  e + τ_last ≤ cp − b, with b the PS's FFT-window back-off and τ_first..τ_last the realized
  taps within 20 dB of the strongest (the maximum excess delay at 20 dB: weaker taps smear less than the noise);
- CFO: the device's beacon estimate against the true offset (Hz and fraction of the subcarrier spacing);
- aggregation: NMSE of the PS's estimate of Σ x_k against the true sum, next to the same scheme with genie
  synchronization and CSI (y = α_g Σ x_k + n with α_g from the true channels, the same power budget and threshold);
- overhead: fractions of air time and of transmitted samples per phase kind.

Results are plain dicts (JSON-ready); :func:`sweep` varies one setting and records (overhead, NMSE) pairs for the
trade-off plot.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lab.factory import Cell, Scenario, build_cell, new_session, path_span, uplink_gain
from sync.config import SyncConfig
from sync.precomp import truncated_inversion


def run_trial(scn: Scenario, cfg: SyncConfig, seed: int, *, timing_advance: bool = True,
              n_pilot_symbols: int | None = None, cell: Cell | None = None) -> dict:
    """One trial (module docstring); returns per-device truths and estimates and per-round aggregation errors.

    ``cell``: the cell of (scn, cfg, seed) built by :func:`lab.factory.build_cell` and not used yet (e.g. with
    ``air="zmq"``: the same trial over ZeroMQ); default: a new in-process one."""
    if cell is None:
        cell = build_cell(scn, cfg, seed)
    air, rng, cfg = cell.air, cell.rng, cell.cfg
    delays, ppm, sco, offsets = cell.delays, cell.ppm, cell.sco, cell.offsets
    of = scn.ofdm()
    k = scn.devices
    fc = scn.center_freq
    n0 = 10 ** (-scn.snr_db / 10)
    names = [f"dev{i}" for i in range(k)]
    session = new_session(cell, scn, seed, timing_advance=timing_advance, n_pilot_symbols=n_pilot_symbols)
    session.access()

    def arrival(local: float, i: int) -> float:
        """PS (= global) time at which a burst the device starts at its clock's ``local`` arrives (first path)."""
        return (local - offsets[i] + delays[i]) / (1 - (-sco[i] * 1e-6))

    span = np.array([path_span(air.link(nm, "ps")) for nm in names])   # [K, 2]: first, last path (samples)
    gains = np.stack([uplink_gain(air, nm, of) for nm in names])
    rounds, timing = [], []
    n_vals = scn.data_symbols * of.n_data
    for r in range(scn.rounds):
        x = ((rng.standard_normal((k, n_vals)) + 1j * rng.standard_normal((k, n_vals))) / math.sqrt(2))
        res = session.data_round(x.astype(np.complex64))
        err = float(np.sum(np.abs(res.estimate - res.truth) ** 2))
        ref = float(np.sum(np.abs(res.truth) ** 2))
        # genie: exact synchronization and CSI for the same participants, same power budget and truncation
        # threshold, same noise level (exclusions are reported separately, not folded into this comparison)
        part = np.zeros(k, bool)
        part[res.active] = True
        plan = truncated_inversion(np.where(part[:, None], gains, np.nan).astype(np.complex64), cfg.power,
                                   cfg.gain_threshold)
        noise = (rng.standard_normal(n_vals) + 1j * rng.standard_normal(n_vals)) * math.sqrt(n0 / 2)
        g_truth = x[plan.active].sum(axis=0)
        g_est = g_truth + noise / plan.alpha if plan.alpha > 0 else np.zeros_like(g_truth)
        g_err = float(np.sum(np.abs(g_est - g_truth) ** 2))
        g_ref = float(np.sum(np.abs(g_truth) ** 2))
        for i, local in res.tx_local.items():
            e = arrival(local, i) - res.slot
            inside = (-session.backoff <= e + span[i, 0]) and (e + span[i, 1] <= of.cp_len - session.backoff)
            timing.append({"round": r, "device": i, "error_samples": float(e), "inside_cp": bool(inside)})
        rounds.append({"round": r, "err": err, "ref": ref, "genie_err": g_err, "genie_ref": g_ref,
                       "active": res.active, "excluded": {str(a): b for a, b in res.excluded.items()}})
    prach = []
    for i, dev in enumerate(session.devices):
        est = session.prach_estimates.get((dev.prach_slot, dev.preamble))
        if dev.prach_local is None or est is None or i in scn.same_preamble:
            continue
        truth = arrival(dev.prach_local, i) - dev.prach_slot
        prach.append({"device": i, "error_samples": float(est - truth), "crlb_samples": session.timing_crlb(i)})
    cfo_true = -ppm * 1e-6 * fc
    cfo = [{"device": i, "residual_hz": float(d.tracker.cfo_hz - cfo_true[i])}
           for i, d in enumerate(session.devices) if d.tracker.synced]
    excluded = {str(d.index): d.excluded for d in session.devices if d.excluded}
    return {"seed": seed, "rounds": rounds, "timing": timing, "prach": prach, "cfo": cfo,
            "excluded_devices": excluded, "overhead": session.overhead(), "events": session.events,
            "subcarrier_spacing_hz": of.subcarrier_spacing}


def summarize(trials: list[dict], sample_rate: float) -> dict:
    """Aggregate trials into the report's metrics (see module docstring)."""
    timing = [t for tr in trials for t in tr["timing"]]
    prach = [p for tr in trials for p in tr["prach"]]
    cfo = [c for tr in trials for c in tr["cfo"]]
    rounds = [r for tr in trials for r in tr["rounds"]]
    spacing = trials[0]["subcarrier_spacing_hz"] if trials else float("nan")
    errs = np.array([t["error_samples"] for t in timing]) if timing else np.zeros(0)
    air = {}
    for tr in trials:
        for kind, v in tr["overhead"]["air_time_samples"].items():
            air[kind] = air.get(kind, 0) + v
    total = sum(air.values())
    tx = {}
    for tr in trials:
        for kind, v in tr["overhead"]["tx_samples_count"].items():
            tx[kind] = tx.get(kind, 0) + v
    tx_total = sum(tx.values())

    def db(num, den):
        return float(10 * np.log10(num / den)) if den > 0 and num > 0 else float("nan")

    prach_err = np.array([p["error_samples"] for p in prach])
    crlb = np.array([p["crlb_samples"] for p in prach if np.isfinite(p["crlb_samples"])])
    cfo_res = np.array([c["residual_hz"] for c in cfo])
    excluded = {}
    for tr in trials:
        for dev, why in tr["excluded_devices"].items():
            excluded.setdefault(dev, why)
    q = np.sort(errs)
    return {
        "trials": len(trials),
        "bursts": int(errs.size),
        "timing_rmse_samples": float(np.sqrt(np.mean(prach_err ** 2))) if prach_err.size else float("nan"),
        "timing_crlb_samples": float(np.sqrt(np.mean(crlb ** 2))) if crlb.size else float("nan"),
        "residual_timing_rms_samples": float(np.sqrt(np.mean(errs ** 2))) if errs.size else float("nan"),
        "residual_timing_rms_ns": float(np.sqrt(np.mean(errs ** 2)) / sample_rate * 1e9) if errs.size else float("nan"),
        "residual_timing_cdf": {"samples": q[:: max(1, q.size // 50)].tolist(),
                                "p": (np.arange(q.size)[:: max(1, q.size // 50)] / max(q.size, 1)).tolist()},
        "within_cp_fraction": float(np.mean([t["inside_cp"] for t in timing])) if timing else float("nan"),
        "cfo_residual_rms_hz": float(np.sqrt(np.mean(cfo_res ** 2))) if cfo_res.size else float("nan"),
        "cfo_residual_rms_subcarriers": float(np.sqrt(np.mean(cfo_res ** 2)) / spacing) if cfo_res.size else float("nan"),
        "nmse_db": db(sum(r["err"] for r in rounds), sum(r["ref"] for r in rounds)),
        "nmse_genie_db": db(sum(r["genie_err"] for r in rounds), sum(r["genie_ref"] for r in rounds)),
        "overhead_fraction": 1 - air.get("data", 0) / total if total else float("nan"),
        "air_time_fraction": {k: v / total for k, v in sorted(air.items())} if total else {},
        "tx_sample_fraction": {k: v / tx_total for k, v in sorted(tx.items())} if tx_total else {},
        "excluded_devices": excluded,
    }


#: sweep name -> (what varies, values); each value changes the Scenario, the SyncConfig or the session
SWEEPS = {
    "ta-period": ("sync.ta_update_period", [1, 2, 4, 8]),
    "prach": ("sync.prach_oversampling", [16, 32, 64]),
    "pilots": ("sync.pilot_symbols_per_device", [1, 2, 4, 8]),
    "pilot-period": ("sync.pilot_period", [1, 2, 4]),
    "devices": ("scenario.devices", [2, 4, 8, 16]),
    "snr": ("scenario.snr_db", [0.0, 10.0, 20.0]),
}


def run(scn, cfg, trials: int, seed: int, timing_advance: bool = True, progress=None, zmq=None) -> dict:
    """Run ``trials`` trials and summarize them (see lab.experiments.sync_trials.summarize). ``zmq``: a
    :class:`radio.drivers.zmq.ZmqArgs` to carry every trial over ZeroMQ (an in-process broker on 127.0.0.1 with that wire
    format, :func:`lab.factory.build_cell` with ``air="zmq"``) instead of the in-process air; the results are the same."""
    out = []
    for t in range(trials):
        if zmq is None:
            out.append(run_trial(scn, cfg, seed + t, timing_advance=timing_advance))
        else:
            with build_cell(scn, cfg, seed + t, air="zmq", wire=zmq.wire, timeout_s=zmq.timeout_s) as cell:
                out.append(run_trial(scn, cfg, seed + t, timing_advance=timing_advance, cell=cell))
        if progress:
            progress()
    summary = summarize(out, scn.sample_rate)
    summary["events"] = sorted({e for tr in out for e in tr["events"]})[:50]
    return summary


def sweep(name: str, scn, cfg, trials: int, seed: int, progress=None, zmq=None) -> list[dict]:
    """One point per value of sweep ``name``: its value, overhead fraction and NMSE (and the genie's)."""
    if name not in SWEEPS:
        raise ValueError(f"sweep = {name!r}: expected one of {', '.join(SWEEPS)}")
    what, values = SWEEPS[name]
    points = []
    for v in values:
        s, c = scn, cfg
        if what.startswith("sync."):
            c = dataclasses.replace(cfg, **{what[5:]: v})
        else:
            s = dataclasses.replace(scn, **{what[9:]: v})
        r = run(s, c, trials, seed, progress=progress, zmq=zmq)
        points.append({"sweep": name, "value": v, "overhead_fraction": r["overhead_fraction"],
                       "nmse_db": r["nmse_db"], "nmse_genie_db": r["nmse_genie_db"],
                       "within_cp_fraction": r["within_cp_fraction"]})
    return points
