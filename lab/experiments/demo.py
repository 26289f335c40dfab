"""`otalab demo`: the whole lab in a few minutes on the in-process air.

1. **Synchronization** — K devices with random one-way delays (up to 20 cyclic prefixes), clock offsets, ±10 ppm
   carrier and sampling-clock offsets and TDL-A multipath track the PS's beacons, do random access and take a timing
   advance (:func:`lab.experiments.feel_air.loopback_sum_channel`). Residual timing error of every data burst against the
   truth, PRACH timing RMSE next to its CRLB, residual CFO and the air time spent on synchronization.
2. **Over-the-air federated learning** on MNIST (single-layer softmax, Amiri & Gündüz TSP 2020) with FEEL's runner:
   A-DSGD over the waveform-level :class:`lab.experiments.feel_air.RadioSumChannel` (every round: beacon, pilots, CSI feedback,
   one OFDM burst in which all devices transmit at once), next to D-DSGD, error-free and A-DSGD on the symbol-level
   channel (:class:`learning.feel.channel.SymbolChannel`) with the radio's measured noise variance, so the two
   A-DSGD curves show what the real waveform path costs.
3. **DeepJSCC** — one photo encoded by the shipped checkpoint (``lab/assets/jscc_adjscc_r6.pt``), sent as phy analog
   frames by a "camera" endpoint on the same air to the PS's radio and decoded (:mod:`lab.experiments.jscc_air`), next to the
   symbol-level AWGN reference.

Writes ``demo.json`` (atomically, :func:`lab.results.write_json`) and PNGs into the output folder and returns the
result dict; :func:`print_summary` renders it as tables. ``quick`` shrinks every stage (4 devices, 3 rounds, a small
image crop) for tests.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lab.experiments.jscc_air import DEFAULT_CHECKPOINT  # noqa: F401  (the shipped DeepJSCC checkpoint; re-exported)
#: the part of the photo ``quick`` sends (rows, columns)
QUICK_CROP = (slice(0, 96), slice(96, 224))
#: display names of the FEEL runs, in the order they run: (key, scheme, channel)
FEEL_RUNS = (("error-free", "ideal", "symbol"), ("D-DSGD", "digital", "symbol"),
             ("A-DSGD (radio)", "analog", "radio"), ("A-DSGD (symbol-level)", "analog", "symbol"))


@dataclass
class DemoConfig:
    """Settings of one demo run; None fields take the full or the ``quick`` default (see :meth:`resolved`)."""

    out: Path = Path("runs/demo")
    quick: bool = False
    seed: int = 0
    devices: int | None = None            # K (full: 8, quick: 4)
    rounds: int | None = None             # FEEL rounds (full: 20, quick: 3)
    samples_per_device: int | None = None  # MNIST samples per device (full: 1000, quick: 200)
    snr_db: float = 10.0                  # per-subcarrier SNR at the PS for a unit-gain link
    profile: str = "TDL-A"
    power: float = 200.0                  # FEEL P_t (energy per device per round)
    data_dir: Path | None = None
    checkpoint: Path = DEFAULT_CHECKPOINT
    photo: str = "chelsea"
    symbol_level_analog: bool = True      # also run A-DSGD on the symbol-level channel (for comparison)

    def resolved(self) -> "DemoConfig":
        q = self.quick
        return dataclasses.replace(
            self, out=Path(self.out),
            devices=self.devices or (4 if q else 8), rounds=self.rounds or (3 if q else 20),
            samples_per_device=self.samples_per_device or (200 if q else 1000))


class _Stages:
    """Wall-clock seconds per stage and an optional rich progress bar (one task per stage)."""

    def __init__(self, progress):
        self.progress = progress
        self.seconds: dict[str, float] = {}

    def say(self, text: str) -> None:
        """A status line above the progress bar (nothing without a bar)."""
        if self.progress is not None:
            self.progress.console.print(text)

    def run(self, name: str, total: int):
        stages = self

        class _Stage:
            def __enter__(self):
                self.t0 = time.perf_counter()
                self.task = stages.progress.add_task(name, total=total) if stages.progress else None
                return self

            def advance(self, n: int = 1) -> None:
                if self.task is not None:
                    stages.progress.advance(self.task, n)

            def __exit__(self, *exc):
                stages.seconds[name] = time.perf_counter() - self.t0
                if self.task is not None:
                    stages.progress.update(self.task, completed=total, visible=False)
                return False

        return _Stage()


def _sync_stage(cfg: DemoConfig, channel_uses: int, stage) -> tuple[object, dict]:
    """Build, synchronize and calibrate the cell; the sync metrics measured so far."""
    from lab.experiments.feel_air import loopback_sum_channel

    channel = loopback_sum_channel(cfg.devices, cfg.snr_db, cfg.seed, cfg.profile, power=cfg.power,
                                   channel_uses=channel_uses)
    stage.advance()
    metrics = _sync_metrics(channel)
    # the same cell (same seed: same delays, offsets, channels) with devices that never apply timing advance
    no_ta = loopback_sum_channel(cfg.devices, cfg.snr_db, cfg.seed, cfg.profile, power=cfg.power,
                                 channel_uses=channel_uses, timing_advance=False)
    rep = no_ta.sync_report()
    metrics["without_timing_advance"] = {k: rep.get(k) for k in (
        "within_cp_fraction", "bursts", "residual_timing_rms_samples", "nmse_db", "nmse_genie_db", "connected")}
    plan = no_ta.session.plan
    metrics["without_timing_advance"]["in_sum"] = int(plan.active.sum()) if plan is not None else 0
    stage.advance()
    return channel, metrics


def _sync_metrics(channel) -> dict:
    """Sync report plus the per-round overhead (air time of a FEEL round beyond its data burst)."""
    rep = channel.sync_report()
    sess = channel.session
    access = getattr(channel, "access_air_time", {})
    after = {k: v - access.get(k, 0) for k, v in sess.air_time.items()}
    total = sum(after.values())
    rounds = max(channel.stats["bursts"], 1)
    rep["access_air_time_ms"] = sum(access.values()) / sess.fs * 1e3
    rep["round_air_time_ms"] = total / rounds / sess.fs * 1e3
    rep["round_overhead_fraction"] = 1 - after.get("data", 0) / total if total else float("nan")
    rep["data_burst_ms"] = sess.data_symbols * sess.ofdm.symbol_len / sess.fs * 1e3
    rep["window_backoff"] = sess.backoff
    rep["in_sum"] = int(sess.plan.active.sum()) if sess.plan is not None else 0
    rep["cp_len"] = sess.ofdm.cp_len
    scn = getattr(channel, "scenario", None)
    if scn is not None:
        rep["scenario"] = dataclasses.asdict(scn)
    return rep


def symbol_noise_var(channel) -> float:
    """The noise variance per real symbol the symbol-level runs get: the radio's measured total error (probe
    calibration), or the PS's thermal estimate if the calibration has no result."""
    eff = channel.effective_noise_var
    return eff if math.isfinite(eff) else channel.noise_var


def _feel_stage(cfg: DemoConfig, channel, stage, dataset: str = "mnist") -> list[dict]:
    """The FEEL runs of :data:`FEEL_RUNS` (radio A-DSGD over ``channel``) on ``dataset``; one summary dict per run."""
    from learning.feel.runner import FeelConfig, run_feel

    noise = symbol_noise_var(channel)
    out = []
    for key, scheme, kind in FEEL_RUNS:
        if kind == "symbol" and scheme == "analog" and not cfg.symbol_level_analog:
            continue
        fc = FeelConfig(scheme=scheme, dataset=dataset, devices=cfg.devices, samples_per_device=cfg.samples_per_device,
                        power=cfg.power, noise_var=noise, rounds=cfg.rounds, seed=cfg.seed, eval_every=1)
        t0 = time.perf_counter()
        res = run_feel(fc, data_dir=cfg.data_dir, channel=channel if kind == "radio" else None,
                       on_round=lambda rec: stage.advance())
        res.update(name=key, channel_kind=kind, wall_s=time.perf_counter() - t0)
        out.append(res)
    return out


def _jscc_stage(cfg: DemoConfig, channel, stage) -> dict:
    """One DeepJSCC image over the air (camera → PS) and over the symbol-level AWGN channel; PNG side by side."""
    from lab.experiments.jscc_air import RadioLink, SymbolLink, json_records, send_images
    from lab.plots import save_figure, side_by_side_figure
    from lab.factory import add_device_endpoint
    from learning.jscc.checkpoint import CheckpointError, load_checkpoint
    from learning.jscc.data import DataNotFoundError, load_sample_photo

    if not Path(cfg.checkpoint).is_file():
        return {"skipped": f"no DeepJSCC checkpoint at {cfg.checkpoint} (train one with `otalab jscc train`)"}
    try:
        model, meta = load_checkpoint(cfg.checkpoint)
        img = load_sample_photo(cfg.photo)
    except (CheckpointError, DataNotFoundError, ValueError) as exc:
        return {"skipped": str(exc)}
    if cfg.quick:
        img = np.ascontiguousarray(img[QUICK_CROP])
    cam, params = add_device_endpoint(channel.cell, channel.scenario, "camera", seed=cfg.seed)
    of = channel.scenario.ofdm()
    link = RadioLink(cam, channel.ps, of)
    recs = send_images(model, img[None], link, cfg.snr_db, snr_range_db=meta.get("snr_range_db"))
    stage.advance()
    ref = send_images(model, img[None], SymbolLink(cfg.snr_db, seed=cfg.seed), cfg.snr_db,
                      snr_range_db=meta.get("snr_range_db"))
    for r in ref:
        r["method"] = "symbol-level AWGN"
    for r in recs:
        r["method"] = "over the air"
    png = cfg.out / "demo_jscc.png"
    save_figure(side_by_side_figure(img[None], recs + ref), png, dpi=100)
    stage.advance()
    from learning.jscc.metrics import psnr_uint8, ssim_uint8

    flat = np.empty_like(img)
    flat[...] = np.round(img.reshape(-1, img.shape[-1]).mean(0)).astype(img.dtype)
    baseline = {"method": "mean colour (nothing sent)", "psnr_db": psnr_uint8(img, flat), "ssim": ssim_uint8(img, flat)}
    out = {"photo": cfg.photo, "shape": list(img.shape), "checkpoint": str(cfg.checkpoint),
           "checkpoint_meta": {k: v for k, v in meta.items() if isinstance(v, (int, float, str))},
           "camera_link": params, "link_stats": link.stats, "air": json_records(recs),
           "symbol_level": json_records(ref), "baseline": baseline, "png": str(png), "notes": []}
    r = recs[0]
    if r.get("snr_db") is not None and r.get("snr_est_db") is not None and abs(r["snr_db"] - r["snr_est_db"]) > 3:
        out["notes"].append(f"the PS receiver's SNR estimate ({r['snr_est_db']:.1f} dB, told to the decoder) and the "
                            f"SNR measured against what was sent ({r['snr_db']:.1f} dB) disagree by more than 3 dB: "
                            f"the receiver mis-tracked part of the frame")
    return out


def run_demo(cfg: DemoConfig, progress=None) -> dict:
    """Run the three stages (module docstring); returns the result dict also written to ``<out>/demo.json``.

    ``progress``: a started ``rich.progress.Progress`` (None: no bar)."""
    import torch

    from lab.plots import demo_feel_figure, plot_sync, save_figure
    from lab.results import metadata, write_json
    from learning.feel.data import DISPLAY_NAMES, load_first_available
    from learning.feel.models import FlatModel

    cfg = cfg.resolved()
    cfg.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    stages = _Stages(progress)
    result: dict = {"demo": dataclasses.asdict(cfg), "notes": []}

    dataset = "MNIST"
    try:   # MNIST (the paper's) when found, else Fashion-MNIST (setup.sh installs Debian's dataset-fashion-mnist)
        data, passed_over = load_first_available(data_dir=cfg.data_dir)
        dataset = DISPLAY_NAMES[data.name]
        result["dataset"] = {"name": data.name, "source": data.source}
        if passed_over:
            result["notes"].append(f"FEEL on {dataset} ({data.source}): {passed_over[0].split(';')[0]}")
        d = FlatModel.create("softmax", tuple(data.features("test")[:1].shape[1:]), data.n_classes, cfg.seed).dim
    except FileNotFoundError as exc:
        data, d = None, 7850
        result["notes"].append(f"FEEL skipped: neither MNIST nor Fashion-MNIST found. {exc}")
    channel_uses = d // 2

    with stages.run("sync: beacons, random access, timing advance (and without TA)", 2) as st:
        channel, sync = _sync_stage(cfg, channel_uses, st)
    result["sync"] = sync
    result["radio_channel"] = repr(channel)
    stages.say(f"sync: {len(sync['connected'])}/{cfg.devices} devices connected, residual timing "
               f"{_fmt(sync.get('residual_timing_rms_samples'), '.3f')} samples RMS on the probe rounds, residual CFO "
               f"{_fmt(sync.get('cfo_residual_rms_hz'), '.0f')} Hz RMS, sync overhead "
               f"{_pct(sync.get('round_overhead_fraction'))} % of a round's air time "
               f"({stages.seconds[next(reversed(stages.seconds))]:.1f} s)")

    runs: list[dict] = []
    if data is not None:
        n_runs = len(FEEL_RUNS) - (0 if cfg.symbol_level_analog else 1)
        with stages.run(f"FEEL on {dataset}: {n_runs} runs × {cfg.rounds} rounds", n_runs * cfg.rounds) as st:
            runs = _feel_stage(cfg, channel, st, data.name)
        stages.say("FEEL: " + ", ".join(f"{r['name']} {_fmt(r['final_accuracy'], '.3f')}" for r in runs)
                   + f" test accuracy after {cfg.rounds} rounds")
        # now over every data burst of the radio run
        result["sync"] = {**_sync_metrics(channel), "without_timing_advance": sync["without_timing_advance"]}
        radio_hist = channel.history
        result["radio_rounds"] = radio_hist
    result["feel"] = runs
    result["symbol_noise_var"] = symbol_noise_var(channel)
    with stages.run("DeepJSCC image over the air", 2) as st:
        result["jscc"] = _jscc_stage(cfg, channel, st)
    if "skipped" in result["jscc"]:
        result["notes"].append(f"DeepJSCC skipped: {result['jscc']['skipped']}")
    else:
        stages.say(f"DeepJSCC: {_fmt(result['jscc']['air'][0].get('psnr_db'), '.2f')} dB PSNR over the air")

    files = []
    if runs:
        fig = demo_feel_figure(runs, f"{dataset}, {cfg.devices} devices, {cfg.snr_db:g} dB {cfg.profile}, "
                                     f"σ² = {symbol_noise_var(channel):.3g} per real", dataset=dataset)
        files.append(save_figure(fig, cfg.out / "demo_feel_accuracy.png"))
    sync_plot = {**result["sync"], "scenario": {"devices": cfg.devices, "snr_db": cfg.snr_db}}
    files += plot_sync(sync_plot, cfg.out)
    if result["jscc"].get("png"):
        files.append(Path(result["jscc"]["png"]))
    result["stage_seconds"] = stages.seconds
    result["runtime_s"] = time.perf_counter() - t_start
    result["torch_threads"] = torch.get_num_threads()
    result.update(metadata())
    json_path = cfg.out / "demo.json"
    result["files"] = [str(p) for p in files] + [str(json_path)]
    write_json(json_path, result)
    return result


def _fmt(v, spec: str = ".3f", none: str = "—") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return none
    return format(v, spec)


def _pct(v) -> str:
    return _fmt(None if v is None else 100 * v, ".1f")


def print_summary(result: dict, console) -> None:
    """The demo's summary tables (sync, FEEL, DeepJSCC, runtimes) on a rich console."""
    from rich.table import Table

    c = result["demo"]
    s = result["sync"]
    scn = s.get("scenario", {})
    cal = s.get("calibration") or {}
    t = Table(title=f"1 · synchronization: {c['devices']} devices, {c['snr_db']:g} dB, {c['profile']}, one-way delays "
                    f"≤ {scn.get('max_delay_cp', '?')} CP, ±{scn.get('cfo_ppm', '?')} ppm CFO, "
                    f"±{scn.get('sco_ppm', '?')} ppm SCO")
    t.add_column("metric")
    t.add_column("value", justify="right")
    excluded = ", ".join(f"dev{k}: {v}" for k, v in s.get("excluded_devices", {}).items()) or "none"
    rows = [("devices connected", f"{len(s['connected'])} / {s['devices']}  (excluded: {excluded})"),
            ("devices in the sum (last round)", f"{s.get('in_sum', '?')} / {s['devices']}"),
            ("PRACH timing RMSE / CRLB \\[samples]", f"{_fmt(s.get('timing_rmse_samples'), '.3f')} / "
                                                    f"{_fmt(s.get('timing_crlb_samples'), '.3f')}"),
            ("residual timing RMS \\[samples | ns]", f"{_fmt(s.get('residual_timing_rms_samples'), '.3f')} | "
                                                   f"{_fmt(s.get('residual_timing_rms_ns'), '.1f')}"),
            ("data bursts inside the CP", f"{_pct(s.get('within_cp_fraction'))} % of {s.get('bursts', 0)}"),
            ("residual CFO RMS \\[Hz | subcarriers]", f"{_fmt(s.get('cfo_residual_rms_hz'), '.1f')} | "
                                                    f"{_fmt(s.get('cfo_residual_rms_subcarriers'), '.1e')}"),
            ("over-the-air sum NMSE / genie \\[dB]", f"{_fmt(s.get('nmse_db'), '.2f')} / "
                                                    f"{_fmt(s.get('nmse_genie_db'), '.2f')}"),
            ("σ² per real on probes: PS's estimate | measured", f"{_fmt(cal.get('noise_var'), '.4f')} | "
                                                               f"{_fmt(s.get('effective_noise_var'), '.4f')}"),
            ("power scale c = sqrt(⌈s/2⌉ / P_t)", f"{s['scale']:.4f}"),
            ("access air time \\[ms]", _fmt(s.get("access_air_time_ms"), ".2f")),
            ("FEEL round air time \\[ms] (data burst)", f"{_fmt(s.get('round_air_time_ms'), '.2f')} "
                                                        f"({_fmt(s.get('data_burst_ms'), '.2f')})"),
            ("sync overhead per round \\[% air time]", _pct(s.get("round_overhead_fraction"))),
            ("device-rounds silent though expected (missed feedback)", str(s["stats"]["mismatch"]))]
    w = s.get("without_timing_advance")
    if w:
        rows += [("same cell, devices never apply timing advance:", ""),
                 ("  devices in the sum (uplink pilots found)", f"{w.get('in_sum')} / {s['devices']}"),
                 ("  their data bursts inside the CP", f"{_pct(w.get('within_cp_fraction'))} % of "
                                                       f"{w.get('bursts') or 0}"),
                 ("  their residual timing RMS \\[samples]", _fmt(w.get("residual_timing_rms_samples"), ".1f")),
                 ("  over-the-air sum NMSE / genie \\[dB]", f"{_fmt(w.get('nmse_db'), '.2f')} / "
                                                           f"{_fmt(w.get('nmse_genie_db'), '.2f')}")]
    for name, value in rows:
        t.add_row(name, value)
    console.print(t)
    if result.get("feel"):
        name = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}.get(result.get("dataset", {}).get("name"), "MNIST")
        f = Table(title=f"2 · FEEL on {name}: {c['devices']} devices × {c['samples_per_device']} samples, "
                        f"{c['rounds']} rounds, P_t = {c['power']:g}, s = d/2, symbol-level σ² = "
                        f"{result.get('symbol_noise_var') or 0:.3g}")
        for col, just in (("run", "left"), ("channel", "left"), ("final acc.", "right"), ("best acc.", "right"),
                          ("median NMSE \\[dB]", "right"), ("devices/rnd", "right"), ("wall \\[s]", "right")):
            f.add_column(col, justify=just)
        for r in result["feel"]:
            accs = [x["accuracy"] for x in r["rounds"] if x.get("accuracy") is not None]
            nm = sorted(x["nmse_db"] for x in r["rounds"] if x.get("nmse_db") is not None)
            dev = [x["devices"] for x in r["rounds"]]
            chan = ("waveform (sync+OFDM)" if r["channel_kind"] == "radio" else
                    "exact" if r["config"]["scheme"] == "ideal" else "symbol-level AWGN")
            nm = [v for v in nm if v > -200]      # the error-free run's -300 dB means "exact"
            f.add_row(r["name"], chan, _fmt(accs[-1] if accs else None, ".4f"),
                      _fmt(max(accs) if accs else None, ".4f"),
                      _fmt(nm[len(nm) // 2] if nm else None, ".2f"), f"{np.mean(dev):.1f}" if dev else "—",
                      f"{r['wall_s']:.1f}")
        console.print(f)
    j = result.get("jscc", {})
    if j.get("air"):
        g = Table(title=f"3 · DeepJSCC ({j['checkpoint_meta'].get('ratio', '?')}) photo '{j['photo']}' "
                        f"{j['shape'][0]}×{j['shape'][1]}, encoder set for {c['snr_db']:g} dB")
        for col in ("path", "PSNR \\[dB]", "SSIM", "measured SNR \\[dB]", "SNR told to decoder \\[dB]", "status"):
            g.add_column(col, justify="left" if col in ("path", "status") else "right")
        for r in j["air"] + j["symbol_level"] + ([j["baseline"]] if j.get("baseline") else []):
            g.add_row(r["method"], _fmt(r.get("psnr_db"), ".2f"), _fmt(r.get("ssim"), ".3f"),
                      _fmt(r.get("snr_db"), ".2f"), _fmt(r.get("snr_est_db"), ".2f"), r.get("status", ""))
        console.print(g)
        for note in j.get("notes", []):
            console.print(f"[yellow]note:[/yellow] DeepJSCC: {note}")
    for note in result.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {note}")
    times = ", ".join(f"{k.split(':')[0]} {v:.1f} s" for k, v in result["stage_seconds"].items())
    console.print(f"runtime {result['runtime_s']:.1f} s ({times}); files: " + ", ".join(result["files"]))
