"""``otalab radio probe`` (show a configured radio's settings and self-test it) and ``otalab replay`` (run the OFDM
receiver on a recording and report what a live link would). The checks are :mod:`lab.experiments.radio_checks`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from lab.cli.common import ConfigOpt, JsonOpt, SetOpt, emit_json, fail, load_lab_config


# ------------------------------------------------------------------------------------------------ printing
def _print_probe(result: dict) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    console = Console()
    table = Table(title=f"radio settings ({result['config']})")
    table.add_column("setting")
    table.add_column("value")
    for key, value in result["settings"].items():
        table.add_row(key, _fmt(value))
    console.print(table)
    checks = Table(title="self-test")
    for col in ("check", "result", "detail"):
        checks.add_column(col)
    for c in result["checks"]:
        checks.add_row(c["check"], "[green]PASS[/]" if c["ok"] else "[red]FAIL[/]", c["detail"])
    console.print(checks)
    if result.get("frames"):
        _frame_table(console, result["frames"], "frames received")
    if result.get("recording"):
        console.print(f"recorded to {result['recording']}-rx.sigmf-meta / -tx.sigmf-meta")
    console.print("[green]probe passed[/]" if result["ok"] else "[red]probe FAILED[/]")


def _frame_table(console, report: dict, title: str) -> None:
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=title)
    for col in ("seq", "kind", "t_start", "CRC", "SNR dB", "CFO Hz", "length"):
        table.add_column(col, justify="right")
    for f in report["frame_list"]:
        table.add_row(str(f["seq"]), f["kind"], str(f["t_start"]), "ok" if f["crc_ok"] else "FAIL",
                      f"{f['snr_db']:.1f}", f"{f['cfo_hz']:.1f}", str(f["length"]))
    console.print(table)
    stats = ", ".join(f"{k}={v}" for k, v in report["receiver"].items() if v)
    console.print(f"{report['frames']} frames ({report['crc_ok']} CRC ok, {report['crc_fail']} CRC failed); "
                  f"receiver: {stats}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"
    return str(value)


def register(app: typer.Typer) -> None:
    """Add ``otalab radio probe`` and ``otalab replay``."""
    radio_app = typer.Typer(help="Inspect and self-test the configured radio.", no_args_is_help=True)
    app.add_typer(radio_app, name="radio")

    @radio_app.command("probe")
    def probe(ctx: typer.Context, config: ConfigOpt = None, set_: SetOpt = [],  # noqa: B006
              frames: int = typer.Option(4, "--frames", min=1, help="frames for the TX→RX test"),
              over_the_air: bool = typer.Option(False, "--over-the-air",
                                                help="USRP/Pluto: send the frames TX→RX through antennas or a "
                                                     "cable with an attenuator"),
              record: Path = typer.Option(None, "--record", help="write SigMF recordings to this path prefix"),
              json_path: JsonOpt = None):
        """Print the radio's settings and run its self-tests (exit code 1 if one fails)."""
        from lab.experiments.radio_checks import run_probe  # noqa: PLC0415
        from lab.results import metadata  # noqa: PLC0415
        from radio.base import RadioError  # noqa: PLC0415

        cfg = load_lab_config(ctx, config, set_)
        try:
            result = run_probe(cfg, frames, over_the_air, record)
        except RadioError as exc:
            typer.echo(f"radio error: {exc}", err=True)
            raise typer.Exit(1) from None
        if json_path != "-":
            _print_probe(result)
        emit_json(json_path, {**result, **metadata(config={"source": cfg.source, "raw": cfg.raw}, seed=None)})
        if not result["ok"]:
            raise typer.Exit(1)

    @app.command("replay")
    def replay(ctx: typer.Context,
               recording: Path = typer.Argument(..., help="SigMF recording (X.sigmf-meta, X.sigmf-data, X or the "
                                                          "archive X.sigmf), or a raw complex64 file with --rate"),
               config: ConfigOpt = None, set_: SetOpt = [],  # noqa: B006
               rate: str = typer.Option(None, "--rate", help="raw complex64 file: its sample rate (Hz; 20M, 1.92e6)"),
               freq: str = typer.Option("0", "--freq", help="raw complex64 file: its centre frequency (Hz; 2.4G)"),
               json_path: JsonOpt = None,
               plot: bool = typer.Option(False, "--plot", help="draw the spectrum and the equalized constellation"),
               out: Path = typer.Option(Path("runs/replay"), "--out", help="folder for the --plot PNG")):
        """Run the OFDM receiver on a recording and report what a live link reports."""
        from lab.config import ConfigError, parse_si  # noqa: PLC0415
        from lab.experiments.radio_checks import looks_sigmf, run_replay  # noqa: PLC0415
        from lab.results import metadata  # noqa: PLC0415

        cfg = load_lab_config(ctx, config, set_) if (config or set_) else None
        try:
            sample_rate = parse_si(rate, "--rate") if rate is not None else None
            center_freq = parse_si(freq, "--freq")
            if sample_rate is None and not looks_sigmf(recording):
                raise ValueError(f"{recording}: no SigMF metadata file (X.sigmf-meta) or archive (X.sigmf); for a "
                                 f"raw complex64 file give its sample rate, e.g. --rate 1.92M")
            report = run_replay(recording, cfg, sample_rate=sample_rate, center_freq=center_freq, keep=plot)
        except (ValueError, ConfigError) as exc:
            fail(f"replay: {exc}")
        view = report.pop("_view", None)
        rec = report["recording"]
        note = (f"recording cut short: replayed {rec['samples']} of {rec['expected_samples']} samples "
                f"(up to its end)") if rec["truncated"] else ""
        if json_path != "-":
            from rich.console import Console  # noqa: PLC0415

            console = Console()
            console.print(f"{rec['path']}: {rec['samples']} samples at {rec['sample_rate'] / 1e6:g} MS/s, "
                          f"{rec['captures']} capture(s), {rec['annotations']} annotation(s)")
            _frame_table(console, report, "frames in the recording")
        if note:
            typer.echo(note, err=True)
        if plot and view is not None:
            from lab.plots import constellation_spectrum_figure, save_figure  # noqa: PLC0415

            fig = constellation_spectrum_figure(view["samples"], rec["sample_rate"], view["symbols"],
                                                title=str(recording))
            typer.echo(f"plot: {save_figure(fig, out / 'replay.png')}", err=True)
        emit_json(json_path, {**report, **metadata(seed=None)})
