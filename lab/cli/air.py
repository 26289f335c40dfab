"""`otalab air`: run the ZeroMQ air (a :class:`radio.servers.zmq_broker.ChannelBroker`) in the foreground.

``otalab air --config hw_configs/zmq.yaml [--set key=value ...] [--port N] [--seconds S]`` builds the air from the
config's ``air:`` section (seed, noise, link impairments) at ``radio.sample_rate`` / ``radio.center_freq`` and serves
it with the settings in ``radio.args.broker`` (bind address, pacing, expected endpoints, CURVE keys). Endpoints are
``ZmqRadio`` objects in other processes or hosts using the same config (``radio.driver: zmq``) with their own
``radio.args.name``. Events (registrations, losses, protocol errors) are logged as they happen; Ctrl-C stops.
"""

from __future__ import annotations

import time

import typer


def bind_address(bind: str, port: int | None) -> str:
    """``bind`` with its port replaced by ``port`` (when given); ValueError names a bind address without a port."""
    if port is None:
        return bind
    if not 0 <= port <= 65535:
        raise ValueError(f"--port = {port}: expected 0..65535 (0: any free port)")
    head, sep, _ = bind.rpartition(":")
    if not sep or "://" not in head:
        raise ValueError(f"radio.args.broker.bind = {bind!r}: expected transport://host:port to apply --port")
    return f"{head}:{port}"


def build_broker(config: str | None, overrides: list[str], port: int | None):
    """Load the config and build (not start) the broker; raises ConfigError/ValueError with the reason."""
    from lab.config import ConfigError, load_config
    from radio.servers.zmq_broker import ChannelBroker
    cfg = load_config(config, overrides)
    if cfg.radio.driver != "zmq":
        raise ConfigError(f"{cfg.source}: radio.driver = {cfg.radio.driver!r}: `otalab air` serves the ZeroMQ air, "
                          f"expected 'zmq' (e.g. --config hw_configs/zmq.yaml)")
    return ChannelBroker.from_config(cfg, bind=bind_address(cfg.radio_args.broker.bind, port)), cfg


def register(app: typer.Typer) -> None:
    """Add ``otalab air``."""

    @app.command()
    def air(config: str = typer.Option(None, "--config", "-c", help="bench config YAML (radio.driver: zmq)"),
            set_: list[str] = typer.Option([], "--set", help="override a config key, e.g. --set air.snr_db=10"),
            port: int = typer.Option(None, "--port", help="TCP port to bind instead of radio.args.broker.bind's"),
            seconds: float = typer.Option(None, "--seconds", help="stop after this many seconds (default: Ctrl-C)"),
            quiet: bool = typer.Option(False, "--quiet", help="do not log events as they happen")):
        """Serve the simulated air to ZeroMQ endpoints (driver "zmq") in the foreground."""
        import logging

        from lab.config import ConfigError
        from radio.base import RadioError
        if not quiet:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
            logging.getLogger("radio.servers.zmq_broker").setLevel(logging.INFO)
        try:
            broker, cfg = build_broker(config, list(set_), port)
        except (ConfigError, ValueError, RadioError) as exc:
            typer.echo(f"otalab air: {exc}", err=True)
            raise SystemExit(2) from None  # (typer.Exit is swallowed by click in lab.cli.main)
        b = broker.config
        air_cfg = cfg.air
        noise = getattr(air_cfg, "receiver_noise_power", None)
        typer.echo(f"ZeroMQ air on {broker.endpoint}: pacing {b.pacing}, {cfg.radio.sample_rate / 1e6:g} MS/s at "
                   f"{cfg.radio.center_freq / 1e9:g} GHz, air seed {getattr(air_cfg, 'seed', 0)}, channel "
                   f"{getattr(air_cfg, 'channel', 'awgn')}, noise power {noise:g}"
                   + (f", CURVE with {len(b.allowed_keys)} allowed key file(s)" if b.secret_key else "")
                   + (f", expecting {', '.join(b.endpoints)}" if b.endpoints else ""))
        start = time.monotonic()
        if seconds is None:
            broker.serve_forever()
        else:
            broker.start()
            try:
                time.sleep(max(0.0, seconds))
            except KeyboardInterrupt:
                pass
            broker.stop()
        wall = time.monotonic() - start
        kinds = {}
        for ev in broker.events:
            kinds[ev.kind] = kinds.get(ev.kind, 0) + 1
        typer.echo(f"stopped after {wall:.1f} s at sample {broker.now} "
                   f"({broker.now / max(wall, 1e-9) / 1e6:.2f} MS/s of air time); events: "
                   + ", ".join(f"{k} {v}" for k, v in kinds.items()))
