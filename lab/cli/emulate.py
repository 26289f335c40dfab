"""``otalab emulate pluto``: serve an emulated PlutoSDR (libiio network protocol) on the simulated air.

Any libiio client can then use it like a Pluto on the network, e.g. ``adi.Pluto(uri="ip:127.0.0.1:30431")``,
``iio_info -u ip:127.0.0.1:30431`` or otalab itself with ``radio.args.uri``.

Where the air is follows ``radio.args.emulator.air``, as for ``otalab node``: ``sim`` (default) builds an in-process
simulated air from the config's ``air`` section, on which the devices hear each other and, with
``emulator.hear_self``, themselves; ``zmq`` makes each device an endpoint (named ``pluto0``, ``pluto1``, ...) on the
ZeroMQ broker at ``emulator.address`` (``otalab air``), whose links, noise and pacing are the broker's (its
``air:`` section); a wall-clock emulator (``emulator.wallclock``) needs the broker in realtime pacing, and the
broker's sample rate must be the config's ``radio.sample_rate``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

import typer


def device_names(endpoint: str, count: int) -> list[str]:
    """Endpoint names of ``count`` devices: "pluto0" -> pluto0, pluto1, ...; "tx" -> tx, tx1, tx2, ..."""
    stem = endpoint.rstrip("0123456789")
    if stem != endpoint:
        first = int(endpoint[len(stem):])
        return [f"{stem}{first + i}" for i in range(count)]
    return [endpoint] + [f"{endpoint}{i}" for i in range(1, count)]


def serve_pluto(cfg, port: int | None = None, *, count: int = 1, stop: threading.Event | None = None,
                ready: Callable[[list[str]], None] | None = None, duration: float | None = None) -> list[dict]:
    """Run ``count`` emulated Plutos on one simulated air for bench config ``cfg`` (a :class:`lab.config.LabConfig`
    with driver "pluto") until ``stop`` is set, ``duration`` seconds pass or Ctrl-C.

    Device i is air endpoint ``device_names(endpoint, count)[i]``, served on ``port + i`` (port 0: free ports);
    every pair of devices is linked by the air's default link, and each hears itself when ``emulator.hear_self``.
    ``ready(uris)`` is called once all accept connections. Returns each emulator's counters."""
    from radio.servers.iiod_emulator import start_emulated_pluto

    if cfg.radio.driver != "pluto":
        raise typer.BadParameter(f"{cfg.source}: radio.driver = {cfg.radio.driver!r}; `otalab emulate pluto` "
                                 f"needs driver 'pluto' (e.g. hw_configs/pluto-emulated.yaml)")
    if count < 1:
        raise typer.BadParameter(f"--count {count}: expected at least 1 device")
    args = cfg.radio_args
    settings = args.emulator
    base_port = settings.port if port is None else port
    names = device_names(settings.endpoint, count)
    radios, lock = _rf_sides(cfg, names)
    servers = []
    stop = stop or threading.Event()
    try:
        for i, (name, rf) in enumerate(zip(names, radios)):
            server, _ = start_emulated_pluto(rf, base_port + i if base_port else 0, host=settings.host,
                                             settings=replace(settings, endpoint=name), lock=lock)
            servers.append(server)
            server.emulator.preset(sample_rate=cfg.radio.sample_rate, center_freq=cfg.radio.center_freq,
                                   tx_gain=-args.tx_attenuation_db if args.tx_attenuation_db is not None
                                   else cfg.radio.tx_gain,
                                   rx_gain=cfg.radio.rx_gain, gain_control_mode=args.gain_control_mode,
                                   rf_bandwidth=args.rf_bandwidth if args.rf_bandwidth is not None
                                   else min(max(cfg.radio.sample_rate, 200e3), 40e6))
        if ready is not None:
            ready([s.uri for s in servers])
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            stop.wait(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers:
            server.close()
        for rf in radios:
            rf.close()
    return [dict(s.emulator.stats) for s in servers]


def _rf_sides(cfg, names: list[str]) -> tuple[list, object]:
    """(each device's RF side, the lock they share or None): endpoints ``names`` on an in-process simulated air
    (``emulator.air`` "sim"), or on the ZeroMQ broker at ``emulator.address`` ("zmq": each its own, no shared
    lock, as :mod:`radio.servers.pluto_process` serves them for ``otalab node``)."""
    settings = cfg.radio_args.emulator
    if settings.air == "zmq":
        from radio.base import RadioError
        from radio.servers.pluto_process import zmq_endpoint

        radios = []
        try:
            for name in names:
                rf = zmq_endpoint(replace(settings, endpoint=name))
                radios.append(rf)
                if abs(rf.sample_rate - cfg.radio.sample_rate) > 1e-6 * rf.sample_rate:
                    raise ValueError(f"radio.sample_rate = {cfg.radio.sample_rate:g} S/s but the ZeroMQ air at "
                                     f"{settings.address} runs at {rf.sample_rate:g} S/s: set the same rate for both")
        except (RadioError, ValueError) as exc:
            for rf in radios:
                rf.close()
            raise typer.BadParameter(f"{cfg.source}: emulated Pluto on the ZeroMQ air: {exc}") from None
        return radios, None
    from radio.drivers.loopback import LoopbackRadio
    from radio.drivers.pluto import air_lock
    from radio.sim.air import Air

    air = Air.from_config(cfg.air, cfg.radio.sample_rate, cfg.radio.center_freq)
    radios = [LoopbackRadio(air, name) for name in names]
    if settings.hear_self:
        for name in names:
            air.set_link(name, name, cfg.air.link_params(name, name))
    return radios, air_lock(air)


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
                                                       help="stop after this many seconds (default: until Ctrl-C)"),
              count: int = typer.Option(1, "--count", help="number of Plutos on the one air (ports PORT, PORT+1, "
                                                           "...; endpoints pluto0, pluto1, ...)")
              ) -> None:
        """Serve an emulated ADALM-PLUTO: pyadi-iio, iio_info and otalab connect to the printed URI."""
        from lab.config import load_config

        cfg = load_config(config, set_)

        def announce(uris: list[str]) -> None:
            r, em = cfg.radio, cfg.radio_args.emulator
            names = ", ".join(device_names(em.endpoint, count))
            where = (f"endpoints {names} on the ZeroMQ air at {em.address}" if em.air == "zmq" else
                     f"receiver noise {cfg.air.receiver_noise_power:g} per sample, endpoints {names}")
            typer.echo(f"emulated PlutoSDR serving at {', '.join(uris)}  (air: {r.sample_rate / 1e6:g} MS/s at "
                       f"{r.center_freq / 1e6:g} MHz, {where})")
            typer.echo(f"  python: adi.Pluto(uri=\"{uris[0]}\")    shell: iio_info -u {uris[0]}")
            typer.echo("  stop with Ctrl-C" if duration is None else f"  stopping after {duration:g} s")

        for i, stats in enumerate(serve_pluto(cfg, port, count=count, ready=announce, duration=duration)):
            typer.echo(f"device {i} served: " + ", ".join(f"{k}={v}" for k, v in stats.items()))
