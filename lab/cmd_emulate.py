"""``otalab emulate pluto``: serve an emulated PlutoSDR (libiio network protocol) on the simulated air.

Any libiio client can then use it like a Pluto on the network, e.g. ``adi.Pluto(uri="ip:127.0.0.1:30431")``,
``iio_info -u ip:127.0.0.1:30431`` or otalab itself with ``radio.args.uri``. The device hears its own transmission
through the air (``radio.args.emulator.hear_self``) with the ``air`` section's noise and impairments.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Optional

import typer


def serve_pluto(cfg, port: int | None = None, *, stop: threading.Event | None = None,
                ready: Callable[[str], None] | None = None, duration: float | None = None) -> dict:
    """Run an emulated Pluto for bench config ``cfg`` (a :class:`lab.config.LabConfig` with driver "pluto") until
    ``stop`` is set, ``duration`` seconds pass or Ctrl-C; ``ready(uri)`` is called once it accepts connections.
    Returns the emulator's counters."""
    from radio.air import Air
    from radio.iiod_emulator import start_emulated_pluto
    from radio.loopback import LoopbackRadio

    if cfg.radio.driver != "pluto":
        raise typer.BadParameter(f"{cfg.source}: radio.driver = {cfg.radio.driver!r}; `otalab emulate pluto` "
                                 f"needs driver 'pluto' (e.g. hw_configs/pluto-emulated.yaml)")
    args = cfg.radio_args
    settings = args.emulator
    air = Air.from_config(cfg.air, cfg.radio.sample_rate, cfg.radio.center_freq)
    rf = LoopbackRadio(air, settings.endpoint)
    if settings.hear_self:
        air.set_link(settings.endpoint, settings.endpoint, cfg.air.link_params(settings.endpoint, settings.endpoint))
    server, uri = start_emulated_pluto(rf, settings.port if port is None else port, host=settings.host,
                                       settings=settings)
    stop = stop or threading.Event()
    try:
        server.emulator.preset(sample_rate=cfg.radio.sample_rate, center_freq=cfg.radio.center_freq,
                               tx_gain=-args.tx_attenuation_db if args.tx_attenuation_db is not None
                               else cfg.radio.tx_gain,
                               rx_gain=cfg.radio.rx_gain, gain_control_mode=args.gain_control_mode,
                               rf_bandwidth=args.rf_bandwidth if args.rf_bandwidth is not None
                               else min(max(cfg.radio.sample_rate, 200e3), 40e6))
        if ready is not None:
            ready(uri)
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            stop.wait(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        rf.close()
    return dict(server.emulator.stats)


def register(app: typer.Typer) -> None:
    """Add ``otalab emulate ...`` to the otalab app."""
    emulate = typer.Typer(no_args_is_help=True, help="Serve emulated radios (libiio network protocol) on the "
                                                     "simulated air, for clients that expect real hardware.")
    app.add_typer(emulate, name="emulate")

    @emulate.command("pluto")
    def pluto(config: Optional[Path] = typer.Option(None, "--config", "-c",
                                                    help="bench config with radio.driver: pluto "
                                                         "(e.g. hw_configs/pluto-emulated.yaml)"),
              set_: list[str] = typer.Option([], "--set", help="override a config key, e.g. air.snr_db=20"),
              port: Optional[int] = typer.Option(None, "--port", help="TCP port (0: any free port; default: "
                                                                      "radio.args.emulator.port)"),
              duration: Optional[float] = typer.Option(None, "--duration",
                                                       help="stop after this many seconds (default: until Ctrl-C)")
              ) -> None:
        """Serve an emulated ADALM-PLUTO: pyadi-iio, iio_info and otalab connect to the printed URI."""
        from lab.config import load_config

        cfg = load_config(config, set_)

        def announce(uri: str) -> None:
            r = cfg.radio
            noise = cfg.air.receiver_noise_power
            typer.echo(f"emulated PlutoSDR serving at {uri}  (air: {r.sample_rate / 1e6:g} MS/s at "
                       f"{r.center_freq / 1e6:g} MHz, receiver noise {noise:g} per sample, endpoint "
                       f"{cfg.radio_args.emulator.endpoint!r})")
            typer.echo(f"  python: adi.Pluto(uri=\"{uri}\")    shell: iio_info -u {uri}")
            typer.echo("  stop with Ctrl-C" if duration is None else f"  stopping after {duration:g} s")

        stats = serve_pluto(cfg, port, ready=announce, duration=duration)
        typer.echo("served: " + ", ".join(f"{k}={v}" for k, v in stats.items()))
