"""`otalab node`: run one radio's node (:class:`radio.node.RadioNode`) and serve it to local clients over ZeroMQ.

``otalab node --config hw_configs/<radio>.yaml --name dev3 [--bind tcp://127.0.0.1:0] [--lead-ms 20] [--ring-s 4]
[--seconds S] [--actor device] [--json PATH]`` opens the radio (role/endpoint ``--name`` on simulated airs), starts streaming and prints
one JSON line on stdout once it serves: ``{"node", "endpoint", "driver", "sample_rate", "pid"}`` (clients connect
a :class:`radio.node.server.NodeClient` to ``endpoint``). Loopback configs run their air on the wall clock
(``radio.args.realtime`` forced true); a zmq config needs a broker in realtime pacing. Ctrl-C (or ``--seconds``)
stops; ``--json`` writes the node's final status. ``--actor device`` also hosts a long-lived device actor on the
node (:mod:`lab.experiments.actor_host`), served as the ``actor`` op on the same endpoint: the cell's ClientApps
forward the PS's orchestration messages to it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import typer

from lab.cli.common import ConfigOpt, JsonOpt, SetOpt, emit_json, fail, load_lab_config


def register(app: typer.Typer) -> None:
    """Add ``otalab node``."""

    @app.command()
    def node(ctx: typer.Context, config: ConfigOpt = None, sets: SetOpt = [],
             name: str = typer.Option("node", "--name", help="node name (the radio's role/endpoint on a simulated "
                                                              "air)"),
             bind: str = typer.Option("tcp://127.0.0.1:0", "--bind", help="where local clients connect "
                                                                          "(tcp://127.0.0.1:0 or ipc://PATH)"),
             lead_ms: float = typer.Option(20.0, "--lead-ms", help="smallest lead a TX burst must have (ms)"),
             ring_s: float = typer.Option(4.0, "--ring-s", help="seconds of RX history held"),
             seconds: float = typer.Option(None, "--seconds", help="stop after this many seconds (default: Ctrl-C)"),
             actor: str = typer.Option(None, "--actor", help="host a cell actor on this node: 'device' (the "
                                                             "cell's ClientApps drive it; see docs/cell.md)"),
             json_path: JsonOpt = None):
        """Run a radio's node: continuous RX into a sample-time ring, TX scheduled ahead, a local ZeroMQ API."""
        from lab.factory import open_radio
        from radio.base import RadioError
        from radio.node import RadioNode
        from radio.node.server import NodeServer

        cfg = load_lab_config(ctx, config, sets)
        if cfg.radio.driver == "loopback" and not cfg.radio_args.realtime:
            cfg = load_lab_config(ctx, config, [*sets, "radio.args.realtime=true"])
        elif cfg.radio.driver == "pluto" and cfg.radio_args.emulate and not cfg.radio_args.emulator.wallclock:
            cfg = load_lab_config(ctx, config, [*sets, "radio.args.emulator.wallclock=true"])
        if not bind.startswith("ipc://") and not bind.startswith("tcp://127.") and not bind.startswith(
                "tcp://localhost"):
            typer.secho(f"warning: --bind {bind} is not a local address: the node has no authentication",
                        fg=typer.colors.YELLOW, err=True)
        if actor is not None and actor != "device":
            fail(f"--actor {actor!r}: expected 'device' (the PS actor runs in the ServerApp)")
        if actor == "device":     # the actor's imports and compiled kernels before the radio streams (warm_up)
            from lab.experiments.actor_host import warm_up

            warm_up(cfg.ofdm.to_config(float(cfg.radio.sample_rate)), cfg.sync)
        try:
            radio = open_radio(cfg, name)
        except (RadioError, ValueError) as exc:
            fail(f"cannot open the radio of {cfg.source}: {exc}")
        try:
            rnode = RadioNode(radio, name=name, lead_s=lead_ms / 1e3, ring_s=ring_s).start()
        except (RadioError, ValueError) as exc:
            radio.close()
            fail(str(exc))
        host = None
        if actor is not None:
            from lab.experiments.actor_host import DeviceHost

            host = DeviceHost(rnode, cfg.ofdm.to_config(rnode.sample_rate), cfg.sync)
        server = NodeServer(rnode, bind, ops={"actor": host.handle} if host else None).start()
        print(json.dumps({"node": name, "endpoint": server.endpoint, "driver": radio.driver,
                          "sample_rate": rnode.sample_rate, "pid": os.getpid()}), flush=True)
        stop = {"flag": False}
        signal.signal(signal.SIGTERM, lambda *a: stop.update(flag=True))
        start = time.monotonic()
        try:
            while not stop["flag"] and (seconds is None or time.monotonic() - start < seconds):
                time.sleep(0.05)
        except KeyboardInterrupt:
            pass
        finally:
            status = rnode.status()
            server.stop()
            if host is not None:
                host.close()
            rnode.close()
        emit_json(json_path, {"command": "node", "status": status})
        sys.stdout.flush()
