"""`otalab sync`: beacon → random access → timing advance → pre-equalization → over-the-air sums, with what it costs.

See :mod:`lab.experiments.sync_trials` for the scenario and the metrics. ``--sweep`` varies one setting at a time and draws the
trade-off between aggregation NMSE and synchronization overhead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from lab.cli.common import ConfigOpt, JsonOpt, ProgressOpt, SeedOpt, SetOpt, emit_json, load_lab_config
from lab.experiments.sync_trials import SWEEPS

def register(app: typer.Typer) -> None:
    """Add ``otalab sync``."""

    @app.command("sync")
    def sync_cmd(
        ctx: typer.Context,
        devices: int = typer.Option(8, "--devices", "-k", min=1, help="number of devices K"),
        snr_db: float = typer.Option(10.0, "--snr-db", help="per-subcarrier SNR at the PS for a unit-gain link"),
        ps_power_db: float = typer.Option(10.0, "--ps-power-db", help="PS transmit power above a device's [dB]"),
        max_delay_cp: float = typer.Option(20.0, "--max-delay-cp", min=0, help="largest one-way delay [CP lengths]"),
        cfo_ppm: float = typer.Option(10.0, "--cfo-ppm", min=0, help="device carrier offsets in ±ppm"),
        sco_ppm: float = typer.Option(10.0, "--sco-ppm", min=0, help="device sampling-clock offsets in ±ppm"),
        channel: str = typer.Option("TDL-A", "--channel", help="multipath profile: none, TDL-A..TDL-E, exp"),
        delay_spread_ns: float = typer.Option(30.0, "--delay-spread-ns", min=0, help="RMS delay spread [ns]"),
        rounds: int = typer.Option(2, "--rounds", min=1, help="over-the-air sums per trial"),
        trials: int = typer.Option(5, "--trials", min=1, help="independent placements of the devices"),
        seed: SeedOpt = 0,
        no_timing_advance: bool = typer.Option(False, "--no-timing-advance",
                                               help="devices never apply TA (shows what TA is worth)"),
        sweep_names: list[str] = typer.Option([], "--sweep", help=f"trade-off sweep: {', '.join(SWEEPS)}"),
        config: ConfigOpt = None,
        overrides: SetOpt = [],  # noqa: B006
        json_path: JsonOpt = None,
        out: Path = typer.Option(Path("runs/sync"), "--out", help="folder for the PNG plots"),
        progress: ProgressOpt = True,
    ):
        """Synchronize K devices for over-the-air computation on the simulated air and report accuracy and cost."""
        from rich.console import Console
        from rich.progress import Progress
        from rich.table import Table

        from lab.results import metadata
        from lab.experiments.sync_trials import Scenario, run, sweep
        from lab.plots import plot_sync

        unknown = [s for s in sweep_names if s not in SWEEPS]
        if unknown:
            raise typer.BadParameter(f"unknown sweep {unknown[0]!r}; choose from {', '.join(SWEEPS)}",
                                     param_hint="--sweep")
        lab_cfg = load_lab_config(ctx, config, overrides)
        if lab_cfg.radio.driver not in ("loopback", "zmq"):
            raise typer.BadParameter(f"otalab sync runs on the simulated air (driver 'loopback', or 'zmq': the same "
                                     f"air served by an in-process ZeroMQ broker); {lab_cfg.source} selects driver "
                                     f"{lab_cfg.radio.driver!r}", param_hint="--config")
        zmq = lab_cfg.radio_args if lab_cfg.radio.driver == "zmq" else None
        cfg = lab_cfg.sync
        scn = Scenario(devices=devices, snr_db=snr_db, ps_power_db=ps_power_db, max_delay_cp=max_delay_cp, cfo_ppm=cfo_ppm, sco_ppm=sco_ppm,
                       profile=channel, delay_spread_s=delay_spread_ns * 1e-9, rounds=rounds,
                       sample_rate=lab_cfg.radio.sample_rate, center_freq=lab_cfg.radio.center_freq,
                       preset=lab_cfg.ofdm.preset)
        n_sweep = sum(len(SWEEPS[s][1]) if s in SWEEPS else 0 for s in sweep_names)
        console = Console(stderr=True)
        with Progress(console=console, transient=True, disable=not progress) as bar:
            task = bar.add_task("sync trials", total=trials * (1 + n_sweep))
            step = lambda: bar.advance(task)  # noqa: E731
            result = run(scn, cfg, trials, seed, timing_advance=not no_timing_advance, progress=step, zmq=zmq)
            result["sweeps"] = {name: sweep(name, scn, cfg, trials, seed, progress=step, zmq=zmq)
                                for name in sweep_names}
        of = scn.ofdm()
        result.update(scenario=dataclasses.asdict(scn), sync=dataclasses.asdict(cfg), timing_advance=not no_timing_advance,
                      driver=lab_cfg.radio.driver,
                      cp_len=of.cp_len, window_backoff=cfg.window_backoff or of.cp_len // 2,
                      **metadata(config=str(config) if config else None, seed=seed))
        table = Table(title=f"otalab sync: {devices} devices, {snr_db:g} dB, {channel}, {trials} trials")
        table.add_column("metric")
        table.add_column("value", justify="right")
        rows = [("PRACH timing RMSE / CRLB \\[samples]", f"{result['timing_rmse_samples']:.4f} / "
                                                        f"{result['timing_crlb_samples']:.4f}"),
                ("residual timing RMS \\[samples | ns]", f"{result['residual_timing_rms_samples']:.3f} | "
                                                       f"{result['residual_timing_rms_ns']:.1f}"),
                ("bursts inside the CP", f"{100 * result['within_cp_fraction']:.2f} % of {result['bursts']}"),
                ("residual CFO RMS \\[Hz | subcarriers]", f"{result['cfo_residual_rms_hz']:.1f} | "
                                                        f"{result['cfo_residual_rms_subcarriers']:.2e}"),
                ("over-the-air sum NMSE \\[dB]", f"{result['nmse_db']:.2f}"),
                ("genie sync + CSI NMSE \\[dB]", f"{result['nmse_genie_db']:.2f}"),
                ("overhead \\[% air time]", f"{100 * result['overhead_fraction']:.1f}"),
                ("excluded devices", ", ".join(f"{k}: {v}" for k, v in result["excluded_devices"].items()) or "none")]
        for kind, frac in result["air_time_fraction"].items():
            rows.append((f"  air time: {kind}", f"{100 * frac:.1f} %"))
        for name, value in rows:
            table.add_row(name, value)
        Console(stderr=json_path == "-").print(table)
        for p in plot_sync(result, out):
            console.print(f"plot: {p}")
        emit_json(json_path, result, echo=console.print)
