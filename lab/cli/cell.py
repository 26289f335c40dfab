"""`otalab cell`: the PS and K devices as OS processes on their own radio nodes, orchestrated by Flower.

``otalab cell --config hw_configs/cell-zmq.yaml --devices K --task probe|sync|feel|jscc [--rounds R] [--json PATH]`` starts on this
host the ZeroMQ air (zmq configs), one radio node per radio, a Flower SuperLink and one SuperNode per device, runs the
task with ``flwr run``, stops every process (also on Ctrl-C) and prints a table; see :mod:`lab.experiments.cell` and
docs/cell.md.
"""

from __future__ import annotations

from pathlib import Path

import typer

from lab.cli.common import ConfigOpt, JsonOpt, SeedOpt, SetOpt, emit_json, fail


def register(app: typer.Typer) -> None:
    """Add ``otalab cell``."""

    @app.command()
    def cell(config: ConfigOpt = None, sets: SetOpt = [],  # noqa: B006 (typer reads the default; never mutated)
             devices: int = typer.Option(2, "--devices", "-k", help="device processes (each with its own radio "
                                                                    "node and SuperNode)"),
             task: str = typer.Option("probe", "--task", help="probe (control plane + node clocks); sync (access "
                                                              "+ over-the-air sums of random vectors); feel "
                                                              "(A-DSGD rounds); jscc (one device sends DeepJSCC "
                                                              "images, one per round, --devices 1)"),
             rounds: int = typer.Option(3, "--rounds", help="rounds (jscc: images, CIFAR-10 test 0..R-1)"),
             checkpoint: str = typer.Option(None, "--checkpoint", help="jscc: DeepJSCC checkpoint (default: the "
                                                                       "shipped one)"),
             seed: SeedOpt = 0,
             lead_ms: float = typer.Option(50.0, "--lead-ms", help="a node refuses TX bursts less than this far "
                                                                   "ahead (ms)"),
             slot_lead_s: float = typer.Option(30.0, "--slot-lead-s", help="each round's slot is this far ahead "
                                                                           "of the PS clock when it is sent (s)"),
             reply_timeout_s: float = typer.Option(90.0, "--reply-timeout-s", help="a device silent this long in "
                                                                                   "a round is excluded (s)"),
             run_timeout_s: float = typer.Option(None, "--run-timeout-s", help="stop the run after this long (s; "
                                                 "default 10 min + rounds × (slot lead + reply timeout)); the rounds "
                                                 "done are kept (partial)"),
             poll_s: float = typer.Option(0.2, "--poll-s", help="how often an idle SuperNode asks the SuperLink "
                                                                "for work (s; Flower's own SuperNode: 3)"),
             diagnostics: bool = typer.Option(False, "--diagnostics/--no-diagnostics", help="sync/feel: devices "
                                                  "also report the values they sent over the control plane, for the "
                                                  "over-the-air sum's NMSE (measurement only)"),
             data_symbols: int = typer.Option(8, "--data-symbols", help="sync/feel: OFDM symbols per data burst"),
             min_lead_s: float = typer.Option(2.0, "--min-lead-s", help="sync/feel: least lead of a phase announced "
                                                                        "over Flower (2 × the measured round trip "
                                                                        "when more) (s)"),
             cfo_precomp: bool = typer.Option(True, "--cfo-precomp/--no-cfo-precomp", help="sync/feel: devices "
                                              "pre-rotate their uplink by their beacon CFO estimate (off: radios "
                                              "sharing a frequency reference, or one simulated air's clock)"),
             feel: list[str] = typer.Option([], "--feel", help="feel: KEY=VALUE of learning.feel's FeelConfig "  # noqa: B008
                                                               "(e.g. samples_per_device=200, channel_uses=768; "
                                                               "repeatable)"),
             ps_lead_s: float = typer.Option(0.0, "--ps-lead-s", help="sync/feel/jscc: how far ahead the PS "
                                             "schedules the phases only it acts in (beacons, RAR, feedback; s; 0: "
                                             "its node's lead + 1 s; more on a loaded host, less than "
                                             "--ps-turnaround-s)"),
             ps_turnaround_s: float = typer.Option(1.5, "--ps-turnaround-s", help="sync/feel/jscc: the PS's "
                                                   "budget from the uplink pilots to its feedback (s)"),
             device_turnaround_s: float = typer.Option(1.0, "--device-turnaround-s", help="sync/feel/jscc: a "
                                                       "device's budget from the feedback to its data burst (s; "
                                                       "longer on a loaded host; with CFO pre-compensation a "
                                                       "residual CFO turns the phase over it, see docs/cell.md)"),
             compare_in_process: bool = typer.Option(False, "--compare-in-process", help="sync/feel: afterwards run "
                                                     "the same seed, partition, air and SNR in one process (the "
                                                     "in-process cell's over-the-air sums; feel: the symbol-level "
                                                     "run) and report both (result key in_process)"),
             run_dir: str = typer.Option(None, "--run-dir", help="keep logs and the Flower home here (default: a "
                                                                 "temporary folder, kept only on failure)"),
             radio: list[str] = typer.Option([], "--radio", help="ROLE=CONFIG: the radio of ROLE (ps, dev0, ...) "  # noqa: B008
                                                                 "from its own bench config (real radios; "
                                                                 "repeatable)"),
             json_path: JsonOpt = None):
        """Run a cell: PS + K devices as separate processes on their own radio nodes, Flower as control plane."""
        from rich.console import Console
        from rich.table import Table

        from lab.config import ConfigError
        from lab.experiments.cell import CellOptions, run_cell
        from lab.results import metadata

        console = Console(stderr=True)
        radios = {}
        for item in radio:
            role, sep, path = item.partition("=")
            if not sep or not role or not path:
                fail(f"--radio {item!r}: expected ROLE=CONFIG, e.g. --radio dev0=hw_configs/usrp-b210.yaml")
            radios[role] = path
        import json

        feel_cfg = {"samples_per_device": 200}
        for item in feel:
            key, sep, value = item.partition("=")
            if not sep or not key:
                fail(f"--feel {item!r}: expected KEY=VALUE, e.g. --feel samples_per_device=200")
            try:
                feel_cfg[key] = json.loads(value)
            except ValueError:
                feel_cfg[key] = value
        opts = CellOptions(config=str(config) if config else None, sets=list(sets), devices=devices, task=task,
                           rounds=rounds, seed=seed, lead_ms=lead_ms, slot_lead_s=slot_lead_s,
                           reply_timeout_s=reply_timeout_s, poll_s=poll_s, run_timeout_s=run_timeout_s, run_dir=run_dir, diagnostics=diagnostics,
                           data_symbols=data_symbols, min_lead_s=min_lead_s, feel=feel_cfg,
                           cfo_precomp=cfo_precomp, ps_turnaround_s=ps_turnaround_s, ps_lead_s=ps_lead_s,
                           device_turnaround_s=device_turnaround_s,
                           jscc={"checkpoint": str(Path(checkpoint).resolve())} if checkpoint else {},
                           radios=radios)
        try:
            record = run_cell(opts, progress=lambda text: console.print(f"[dim]starting {text}[/dim]"))
        except (ConfigError, ValueError) as exc:
            fail(str(exc))
        if compare_in_process and not record.get("error"):
            from lab.config import load_config
            from lab.experiments.cell_compare import compare

            console.print("[dim]in-process reference (same seed, partition, air and SNR)[/dim]")
            try:
                record["in_process"] = compare(record, load_config(opts.config, record.get("sets", list(sets))),
                                               data_symbols=data_symbols, cfo_precomp=cfo_precomp)
            except (ConfigError, ValueError) as exc:
                record["in_process"] = {"error": str(exc)}
        record = {**metadata(config=opts.config, seed=seed), "command_name": "cell", **record}
        table = Table(title=f"otalab cell: {task}, {devices} devices, {record.get('driver')}")
        def fmt(v, spec=".2f"):
            return "-" if v is None else format(v, spec)

        last = ("PSNR dB", "psnr_db", ".2f") if task == "jscc" else ("accuracy", "accuracy", ".3f")
        for col in ("round", "devices", "control plane s", "wall s", "slot margin s (min)", "NMSE dB", last[0]):
            table.add_column(col, justify="right")
        for r in record.get("rounds", []):
            table.add_row(str(r["round"]), str(r["devices"]), fmt(r.get("control_plane_s")), fmt(r.get("wall_s")),
                          fmt(r.get("slot_margin_s_min")), fmt(r.get("nmse_db"), ".1f"), fmt(r.get(last[1]), last[2]))
        console.print(table)
        for im in record.get("images", []):
            console.print(f"image {im['image']}: " + ("lost" if im["psnr_db"] is None else
                          f"PSNR {im['psnr_db']:.2f} dB, SSIM {im['ssim']:.3f}, measured SNR {im['snr_db']:.2f} dB, "
                          f"PS estimate {im['snr_est_db']:.2f} dB"))
        if task in ("sync", "feel", "jscc"):
            console.print(f"within CP {fmt(record.get('within_cp_fraction'), '.3f')}, PRACH timing RMSE "
                          f"{fmt(record.get('timing_rmse_samples'))} samples, CFO residual RMS "
                          f"{fmt(record.get('cfo_residual_rms_hz'))} Hz, NMSE {fmt(record.get('nmse_db'), '.1f')} dB, "
                          f"lead {fmt(record.get('lead_s'))} s; final accuracy "
                          f"{fmt(record.get('final_accuracy'), '.3f')}")
        ref = record.get("in_process") or {}
        if ref.get("error"):
            console.print(f"[red]in-process reference failed: {ref['error']}[/red]")
        elif ref:
            line = (f"in process: NMSE {fmt(ref['sums']['nmse_db'], '.1f')} dB (cell − in-process "
                    f"{fmt(ref.get('nmse_db_difference'), '+.1f')} dB)")
            if "feel" in ref:
                line += (f"; symbol-level final accuracy {fmt(ref['feel']['final_accuracy'], '.3f')} (cell − "
                         f"in-process {fmt(ref.get('accuracy_difference'), '+.1f')} points)")
            console.print(line)
        console.print(f"processes: {len(record['processes'])} "
                      f"({', '.join(sorted({p['role'].split('/')[0] for p in record['processes']}))}); "
                      f"excluded: {[e['device'] for e in record.get('excluded_devices', [])] or 'none'}; "
                      f"late bursts {record.get('late_bursts')}, overflows {record.get('overflows')}, "
                      f"underflows {record.get('underflows')}; left running: {record['leftover_pids'] or 'none'}")
        emit_json(json_path, record)
        if record.get("error"):
            console.print(f"[red]error: {record['error']}[/red]")
            raise SystemExit(1)
