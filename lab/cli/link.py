"""`otalab link`: send N OFDM frames over the simulated air (or the radios of a bench config) and measure them.

Heavy imports (numpy, phy, radio) happen inside the command so that ``otalab --help`` stays fast. The experiment
logic is :func:`lab.experiments.link.run_link`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from lab.cli.common import ConfigOpt, JsonOpt, ProgressOpt, SeedOpt, SetOpt, emit_json, fail, given, load_lab_config

MODS = ("analog", "bpsk", "qpsk", "16qam", "64qam", "256qam")
RATES = {"none": None, "1/2": 1 / 2, "2/3": 2 / 3, "3/4": 3 / 4, "5/6": 5 / 6}


def register(app: typer.Typer) -> None:
    """Add ``otalab link``."""

    @app.command("link")
    def link_cmd(
        ctx: typer.Context,
        mod: str = typer.Option("qpsk", "--mod", help="analog | bpsk | qpsk | 16qam | 64qam | 256qam"),
        code_rate: str = typer.Option("none", "--code-rate", help="none | 1/2 | 2/3 | 3/4 | 5/6 (LDPC, digital)"),
        snr_db: Optional[float] = typer.Option(20.0, "--snr-db",
                                               help="per-subcarrier SNR on the simulated air (default: the config's "
                                                    "air.snr_db, else 20 dB)"),
        channel: str = typer.Option("awgn", "--channel", help="awgn | TDL-A .. TDL-E | exp (simulated air; default: "
                                                              "the config's air.channel)"),
        cfo_ppm: float = typer.Option(0.0, "--cfo-ppm", help="carrier frequency offset of the link, ppm of fc "
                                                             "(default: the config's air.cfo_ppm)"),
        frames: int = typer.Option(100, "--frames", min=1),
        payload_bytes: int = typer.Option(500, "--payload-bytes", min=1, help="digital payload per frame"),
        n_values: int = typer.Option(2048, "--n-values", min=1, help="analog values per frame"),
        seed: SeedOpt = 0,
        config: ConfigOpt = None,
        sets: SetOpt = [],  # noqa: B006  (typer reads the default)
        json_path: JsonOpt = None,
        progress: ProgressOpt = True,
        plot: bool = typer.Option(False, "--plot", help="draw the received spectrum and the equalized constellation"),
        out: Path = typer.Option(Path("runs/link"), "--out", help="folder for the --plot PNG"),
    ):
        """Send FRAMES frames tx -> rx and print BER/BLER (digital) or NMSE (analog), detection, SNR and CFO."""
        from lab.experiments.link import air_noise_power, format_table, run_link, tx_scale_for
        from lab.factory import make_air, open_radio
        from lab.results import metadata
        from radio.base import RadioError

        if mod not in MODS:
            fail(f"--mod {mod!r}: expected one of {', '.join(MODS)}")
        if code_rate not in RATES:
            fail(f"--code-rate {code_rate!r}: expected one of {', '.join(RATES)}")
        if mod == "analog" and RATES[code_rate] is not None:
            fail("--code-rate applies to digital modulations only; use --code-rate none with --mod analog")
        # precedence: flags the user gave > --set > YAML > defaults; the air's SNR is the per-subcarrier SNR of
        # this command's frames, so it becomes the noise power for their transmit scale
        base = load_lab_config(ctx, config, sets, {"channel": "air.channel", "cfo_ppm": "air.cfo_ppm",
                                                   "seed": "air.seed"})
        try:
            ofdm_cfg = base.ofdm.to_config(base.radio.sample_rate)
            scale = tx_scale_for(ofdm_cfg)
            # the simulated air: loopback radios, or emulated Plutos (the real pyadi-iio + libiio stack on the air)
            simulated = base.radio.driver == "loopback" or (base.radio.driver == "pluto"
                                                              and getattr(base.radio_args, "emulate", False))
            if simulated:
                air = base.air
                if given(ctx, "snr_db"):
                    pass
                elif air is not None and air.snr_db is not None:
                    snr_db = air.snr_db
                elif air is not None and air.noise_power is not None:
                    snr_db = None   # the config's noise power stands as given
                extra = ["air.snr_db=null", f"air.noise_power={air_noise_power(snr_db, scale)!r}"] \
                    if snr_db is not None else []
                lc = load_lab_config(ctx, config, list(sets) + extra, {"channel": "air.channel",
                                                                       "cfo_ppm": "air.cfo_ppm", "seed": "air.seed"})
                channel, cfo_ppm = (lc.air.channel, lc.air.cfo_ppm) if lc.air is not None else ("awgn", 0.0)
            else:
                lc, snr_db = base, None
        except ValueError as exc:
            fail(str(exc))
        closers = []
        try:
            air = make_air(lc) if simulated else None
            tx = open_radio(lc, "tx", air=air, transmit_only=True)
            closers.append(tx)
            rx = open_radio(lc, "rx", air=air)
            closers.append(rx)
        except (RadioError, ValueError, OSError) as exc:
            for c in closers:
                c.close()
            fail(str(exc))
        cfo_true = cfo_ppm * 1e-6 * lc.radio.center_freq if simulated else None
        bar = None
        try:
            if progress and sys.stderr.isatty():
                from rich.progress import Progress
                bar = Progress(transient=True)
                bar.start()
                task = bar.add_task("link", total=1.0)
                prog = lambda done, total: bar.update(task, completed=done / total)  # noqa: E731
            else:
                prog = None
            res = run_link(tx, rx, ofdm_cfg, mod=mod, code_rate=RATES[code_rate], frames=frames,
                           payload_bytes=payload_bytes, n_values=n_values, seed=seed, tx_scale=scale,
                           cfo_hz_true=cfo_true, snr_db_true=snr_db if simulated else None, progress=prog,
                           keep=plot)
        except (RadioError, ValueError) as exc:
            fail(str(exc))
        finally:
            if bar is not None:
                bar.stop()
            for c in closers:
                c.close()
        res["config"] = {"source": lc.source, "raw": lc.raw, "driver": lc.radio.driver, "channel": channel,
                         "cfo_ppm": cfo_ppm, "snr_db": snr_db}
        res.update(metadata(seed=seed))
        typer.echo(f"otalab link: {mod}" + (f" rate {code_rate}" if mod != "analog" else "")
                   + f", {lc.radio.driver}, {channel}, {ofdm_cfg.fft_size}-FFT", err=json_path == "-")
        typer.echo(format_table(res), err=json_path == "-")
        view = res.pop("_view", None)
        if plot and view is not None and view["samples"] is not None:
            from lab.plots import constellation_spectrum_figure, save_figure

            fig = constellation_spectrum_figure(view["samples"], lc.radio.sample_rate, view["symbols"],
                                                title=f"otalab link: {mod}, {lc.radio.driver}, {channel}")
            typer.echo(f"plot: {save_figure(fig, out / 'link.png')}", err=True)
        emit_json(json_path, res)
