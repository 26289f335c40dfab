"""``otalab cell``: start a whole cell on one host as OS processes, run a task over Flower, tear everything down.

Processes (each its own, listed in the result's ``processes`` with role, pid and host):

- ``air``: the ZeroMQ broker in realtime pacing (``otalab air``), when the config's ``radio.driver`` is ``zmq``;
- ``ps-node``, ``dev0-node`` … : one radio node per radio (``otalab node``), each streaming its radio on the wall
  clock and serving its local API;
- ``superlink``: Flower's SuperLink (``flower-superlink --insecure``, bound to 127.0.0.1 only);
- ``dev0-supernode`` … : one Flower SuperNode per device, told by ``--node-config`` its device name and node endpoint;
- Flower's own helpers under them (``flower-superexec``, ``flwr-serverapp``, ``flwr-clientapp``), found by walking
  /proc (:mod:`lab.experiments.procs`) and stopped with them.

The run itself is submitted with ``flwr run lab/flower/app <connection>`` against a Flower home of the run's own
(``FLWR_HOME``), so nothing in the user's ``~/.flwr`` is read or changed. The ServerApp (the PS) writes its record
to a file; this module adds what only the launcher sees (processes, node counters read from every node at the end,
how the run ended) and checks that nothing it started is left running.

Failure handling: a device process that dies is the PS's business (it excludes the device and goes on, see
:mod:`lab.flower.server_app`); if the PS's radio node or the PS itself (the ServerApp process Flower started) dies,
the cell is stopped at once (``error`` says so) and ``device_exit_s`` records how long the device processes took to
be gone.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lab.experiments.flower_run import FlowerLauncher, ServerAppExited, python_env
from lab.experiments.procs import ProcessSet, alive

TASKS = ("probe", "sync", "feel", "jscc")
#: tasks the ServerApp runs
RUNNABLE = TASKS
#: tasks whose devices are actors hosted in their radio nodes (``otalab node --actor device``)
ACTOR_TASKS = ("sync", "feel", "jscc")
APP_DIR = Path(__file__).resolve().parent.parent / "flower" / "app"


@dataclass
class CellOptions:
    """What ``otalab cell`` was asked to run (see the command's help for each field)."""

    config: str | None
    sets: list[str] = field(default_factory=list)
    devices: int = 2
    task: str = "probe"
    rounds: int = 3
    seed: int = 0
    lead_ms: float = 50.0            # a node refuses TX bursts less than this far ahead
    ring_s: float = 4.0              # RX history each node holds
    slot_lead_s: float = 30.0        # probe: each round's slot this far ahead; sync/feel: the most a phase's lead may be
    min_lead_s: float = 2.0          # sync/feel: the least lead (2 × the measured setup round trip is used when more)
    data_symbols: int = 8            # sync/feel: OFDM symbols per data burst
    cfo_precomp: bool = True         # sync/feel: devices pre-rotate their uplink by their beacon CFO estimate
    ps_lead_s: float = 0.0           # sync/feel/jscc: lead of the PS-only phases (0: its node's lead + 1 s)
    ps_turnaround_s: float = 1.5     # sync/feel/jscc: the PS's pilots -> feedback budget (more than the PS's lead)
    device_turnaround_s: float = 1.0  # sync/feel/jscc: a device's feedback -> data budget
    feel: dict = field(default_factory=dict)   # feel: learning.feel.runner.FeelConfig fields (samples_per_device, ...)
    jscc: dict = field(default_factory=dict)   # jscc: first (CIFAR-10 test index), encoder_snr_db, checkpoint, data_dir
    reply_timeout_s: float = 90.0    # a device silent this long in a round is excluded
    poll_s: float = 0.2              # SuperNodes' idle poll of the SuperLink (Flower's own: 3 s; lab.flower.supernode)
    startup_timeout_s: float = 120.0
    run_timeout_s: float | None = None   # None: 10 min plus each round's worst case (slot lead + reply timeout)
    diagnostics: bool = False
    radios: dict[str, str] = field(default_factory=dict)   # role ("ps", "dev0", ...) -> its own bench config
    run_dir: str | None = None       # logs and Flower home (default: a temporary folder, removed unless it failed)


def _set_args(sets: list[str]) -> list[str]:
    return [arg for s in sets for arg in ("--set", s)]


def _plutos_on_zmq(cfg) -> bool:
    """Whether the config's radios are emulated Plutos on the ZeroMQ air (``radio.args.emulate`` and
    ``radio.args.emulator.air: zmq``): each node then starts its emulator as an endpoint on the cell's broker."""
    if cfg.radio.driver != "pluto" or not getattr(cfg.radio_args, "emulate", False):
        return False
    return getattr(getattr(cfg.radio_args, "emulator", None), "air", "sim") == "zmq"


def _broker_config(cfg, path: Path) -> Path:
    """The ZeroMQ air that emulated Plutos of ``cfg`` stand on: a zmq bench config at the Plutos' rate and carrier
    with ``cfg``'s ``air:`` section (noise, channel, links), realtime pacing, 10 ms clock steps (a realtime broker's
    cost is per step: docs/zmq-air.md) and 4 s of unread samples per receiver; written to ``path``."""
    import dataclasses

    import yaml

    rate = float(cfg.radio.sample_rate)
    air = {k: v for k, v in dataclasses.asdict(cfg.air).items() if v is not None} if cfg.air is not None else {}
    doc = {"radio": {"driver": "zmq", "sample_rate": rate, "center_freq": float(cfg.radio.center_freq),
                     "args": {"address": "tcp://127.0.0.1:0", "name": "cell",
                              "broker": {"bind": "tcp://127.0.0.1:0", "pacing": "realtime",
                                         "block_size": max(1, int(round(rate * 0.01))),
                                         "buffer_samples": int(4 * rate)}}},
           "air": air}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _node_statuses(endpoints: dict[str, str]) -> dict[str, dict]:
    """Each live node's final status (counters), read over its local API; nodes that do not answer are skipped."""
    from radio.base import RadioError
    from radio.node.server import NodeClient

    out = {}
    for role, ep in endpoints.items():
        try:
            with NodeClient(ep, timeout_s=3.0) as c:
                out[role] = c.status()
        except (RadioError, OSError, KeyError) as exc:
            out[role] = {"error": str(exc)}
    return out


def run_cell(opts: CellOptions, *, monitor: Callable[[ProcessSet, float], None] | None = None,
             progress: Callable[[str], None] | None = None) -> dict:
    """Start the cell of ``opts``, run its task, stop everything; returns the result record (module docstring).

    ``monitor(processes, seconds_since_the_run_started)`` is called every 0.2 s while the task runs (tests use it to
    kill a process mid-run); ``progress(text)`` is told each start-up step."""
    from lab.config import load_config

    say = progress or (lambda text: None)
    if opts.task not in TASKS:
        raise ValueError(f"--task {opts.task!r}: expected one of {', '.join(TASKS)}")
    if opts.task not in RUNNABLE:
        raise ValueError(f"--task {opts.task!r} is not available yet: the cell runs {', '.join(RUNNABLE)} over "
                         f"Flower; see docs/cell.md")
    if not 1 <= opts.devices <= 64:
        raise ValueError(f"--devices {opts.devices}: expected 1..64 device processes")
    if opts.task == "jscc" and opts.devices != 1:
        raise ValueError(f"--devices {opts.devices}: --task jscc has one device send images to the PS (--devices 1)")
    if opts.rounds < 1:
        raise ValueError(f"--rounds {opts.rounds}: expected at least 1 (jscc: one image per round)")
    sets = list(opts.sets)
    cfg = load_config(opts.config, sets)
    driver = cfg.radio.driver
    if driver == "zmq" and cfg.radio_args.broker.pacing != "realtime":
        sets.append("radio.args.broker.pacing=realtime")     # radio nodes need the air on the wall clock
    own_dir = opts.run_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="otalab-cell-")) if own_dir else Path(opts.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = python_env(run_dir)
    procs = ProcessSet(run_dir / "logs", env)
    flower = FlowerLauncher(procs, run_dir, connection="cell", poll_s=opts.poll_s)
    lab_cli = [sys.executable, "-m", "lab.cli"]
    cfg_args = (["-c", str(opts.config)] if opts.config else [])
    host = socket.gethostname()
    record: dict = {"task": opts.task, "devices": opts.devices, "config": str(opts.config), "driver": driver,
                    "sets": sets, "seed": opts.seed, "wall_clock": True, "run_dir": str(run_dir)}
    started = time.monotonic()
    endpoints: dict[str, str] = {}
    ps_died = None
    try:
        with procs.handle_signals():
            node_sets = list(sets)
            emulated_plutos = _plutos_on_zmq(cfg)
            if driver == "zmq" or emulated_plutos:
                say("ZeroMQ air (realtime)")
                air_args = [*cfg_args, *_set_args(sets)] if driver == "zmq" else \
                    ["-c", str(_broker_config(cfg, run_dir / "air.yaml"))]
                air = procs.start("air", [*lab_cli, "air", *air_args, "--port", "0", "--quiet"])
                line = procs.first_line(air, opts.startup_timeout_s, "ZeroMQ air on ")
                m = re.search(r"ZeroMQ air on (\S+?):? ", line + " ")
                broker_ep = m.group(1).rstrip(":")
                record["air_endpoint"] = broker_ep
                node_sets.append(f"radio.args.address={broker_ep}" if driver == "zmq" else
                                 f"radio.args.emulator.address={broker_ep}")
            names = ["ps"] + [f"dev{i}" for i in range(opts.devices)]
            # each emulated Pluto its own unknown TX->RX latency (what a real one's pipeline adds), drawn here from the
            # run's seed and told to no one but its emulator; its power-on count is its own too (emulator's draw)
            latency = {nm: int(v) for nm, v in zip(names, np.random.default_rng([opts.seed, 7]).integers(
                0, 2000, len(names)))} if emulated_plutos else {}
            if latency:
                record["emulated_tx_latency_samples"] = latency
            say(f"{len(names)} radio nodes")
            unknown = sorted(set(opts.radios) - set(names))
            if unknown:
                raise ValueError(f"--radio {unknown[0]}=...: no such role in this cell (roles: {', '.join(names)})")
            nodes = {}
            actors = opts.task in ACTOR_TASKS
            # the PS reads each phase after the control round that scheduled it: its ring holds the longest lead
            # plus the longest wait for a reply; device actors read their stream continuously
            ps_ring = max(opts.ring_s, opts.slot_lead_s + opts.reply_timeout_s + 10.0) if actors else opts.ring_s
            record["ring_s"] = {"ps": ps_ring, "devices": max(opts.ring_s, 10.0) if actors else opts.ring_s}
            for nm in names:    # a role with a config of its own (a real radio) uses it as it is
                own = opts.radios.get(nm)
                args = ["-c", own] if own else [*cfg_args, *_set_args(node_sets)]
                if nm in latency and not own:
                    args += ["--set", f"radio.args.emulator.tx_latency_samples={latency[nm]}"]
                extra = ["--actor", "device"] if actors and nm != "ps" else []
                ring = record["ring_s"]["ps" if nm == "ps" else "devices"]
                nodes[nm] = procs.start(f"{nm}-node", [*lab_cli, "node", *args, "--name", nm, *extra,
                                                       "--lead-ms", str(opts.lead_ms), "--ring-s", str(ring)])
            for nm, item in nodes.items():
                info = json.loads(procs.first_line(item, opts.startup_timeout_s, '"endpoint"'))
                endpoints[nm] = info["endpoint"]
            say("Flower SuperLink")
            flower.start_superlink(opts.startup_timeout_s)
            say(f"{opts.devices} Flower SuperNodes")
            for nm in names[1:]:
                flower.start_supernode(f"{nm}-supernode", {"device": nm, "node-endpoint": endpoints[nm]})
            out = run_dir / "ps_result.json"
            run_config = {"task": opts.task, "rounds": int(opts.rounds), "devices": int(opts.devices),
                          "ps-endpoint": endpoints["ps"], "out": str(out), "join-timeout-s": opts.startup_timeout_s,
                          "reply-timeout-s": float(opts.reply_timeout_s), "slot-lead-s": float(opts.slot_lead_s),
                          "seed": int(opts.seed), "diagnostics": bool(opts.diagnostics),
                          "config": str(Path(opts.config).resolve()) if opts.config else "",
                          # base64: Flower's --run-config parser takes no quotes inside a string value
                          "sets": base64.b64encode(json.dumps(sets).encode()).decode(), "min-lead-s": float(opts.min_lead_s),
                          "data-symbols": int(opts.data_symbols), "cfo-precomp": bool(opts.cfo_precomp),
                          "ps-turnaround-s": float(opts.ps_turnaround_s), "ps-lead-s": float(opts.ps_lead_s),
                          "device-turnaround-s": float(opts.device_turnaround_s),
                          "feel": base64.b64encode(json.dumps(opts.feel).encode()).decode(),
                          "jscc": base64.b64encode(json.dumps(opts.jscc).encode()).decode()}
            say("flwr run")
            flower.submit(APP_DIR, run_config)

            def ps_node_alive():
                nonlocal ps_died
                ps_item = nodes["ps"]
                if ps_item.proc.poll() is not None:
                    ps_died = time.monotonic()
                    raise RuntimeError(f"the PS radio node (pid {ps_item.pid}) exited with code "
                                       f"{ps_item.proc.returncode} mid-run: stopping the cell")
            try:
                run_timeout_s = opts.run_timeout_s if opts.run_timeout_s is not None else \
                    600.0 + (opts.rounds + 3) * (opts.slot_lead_s + opts.reply_timeout_s)   # + setup, PRACH, RAR
                record["run_timeout_s"] = run_timeout_s
                ps = flower.wait_result(out, run_timeout_s, check=ps_node_alive, monitor=monitor,
                                        server="the PS", what="the cell")
            except ServerAppExited as exc:
                ps_died = exc.at
                raise
            record["node_status"] = _node_statuses({f"{nm}-node": endpoints[nm] for nm in names
                                                    if nodes[nm].proc.poll() is None})
            _summarise(record, ps, opts)
    except KeyboardInterrupt as exc:
        record["error"] = f"interrupted ({exc or 'Ctrl-C'}): the cell was stopped"
        _fold_progress(record, run_dir / "ps_result.json", opts)
    except (RuntimeError, ValueError, OSError) as exc:
        record["error"] = str(exc)
        _fold_progress(record, run_dir / "ps_result.json", opts)
    finally:
        record["processes"] = [{"role": s.role, "pid": s.pid, "host": host} for s in procs.started]
        procs.note_descendants()
        record["processes"] += [{"role": role, "pid": pid, "host": host} for pid, role in procs.seen.items()
                                if role.endswith("/child")]
        stop_t = time.monotonic()
        device_pids = [s.pid for s in procs.started if s.role.startswith("dev")]
        procs.stop()
        if ps_died is not None:
            record["device_exit_s"] = max(0.0, time.monotonic() - ps_died) if not any(
                alive(p) for p in device_pids) else None
        record["teardown_s"] = time.monotonic() - stop_t
        record["leftover_pids"] = procs.leftovers()
        record["wall_s"] = time.monotonic() - started
    if own_dir and "error" not in record and not record["leftover_pids"]:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
        record["run_dir"] = None
    return record


def _fold_progress(record: dict, out: Path, opts: CellOptions) -> None:
    """A run that stopped before the PS wrote its result (timeout, Ctrl-C, the PS gone): fold in the rounds the PS
    had finished, from the progress file it rewrites after every round (:func:`lab.flower.server_app.progress_path`);
    ``partial`` says so. Measurements the PS makes at the end (within_cp_fraction, timing) stay null."""
    from lab.flower.server_app import progress_path

    path = progress_path(out)
    if out.exists() or not path.exists():
        return
    try:
        ps = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    error = record["error"]
    _summarise(record, ps, opts)
    record["error"], record["partial"] = error, True


def _summarise(record: dict, ps: dict, opts: CellOptions) -> None:
    """Fold the PS's record and the nodes' counters into the result's fields."""
    if "error" in ps:      # what the PS had done before it failed is summarised below all the same
        record["error"] = f"the PS (ServerApp) failed: {ps['error']}"
        record["ps_traceback"] = ps.get("traceback")
    st = [s for s in record.get("node_status", {}).values() if "error" not in s]
    rounds = ps.get("rounds", [])
    cp = np.array([r["control_plane_s"] for r in rounds], dtype=float)
    record.update(
        rounds=rounds, events=ps.get("events", []), excluded_devices=ps.get("excluded_devices", []),
        device_names=ps.get("device_names", {}), ps_wall_s=ps.get("wall_s"),
        late_bursts=int(sum(s.get("tx_late", 0) + s.get("tx_rejected", 0) for s in st)),
        underflows=int(sum(s.get("tx_underflow", 0) for s in st)),
        overflows=int(sum(s.get("gaps", 0) for s in st)),
        # the probe task moves no samples over the air: what it cannot measure is null, never a made-up number;
        # sync/feel: what the PS measured (null where the truth it needs is unknown, see cell_run.measure)
        within_cp_fraction=ps.get("within_cp_fraction"), timing_rmse_samples=ps.get("timing_rmse_samples"),
        cfo_residual_rms_hz=ps.get("cfo_residual_rms_hz"), nmse_db=ps.get("nmse_db"),
        overhead_fraction={
            "air": ps.get("overhead_air_fraction"),
            "control_plane_s_per_round": float(cp.mean()) if cp.size else None,
            "control_plane_s_per_round_max": float(cp.max()) if cp.size else None,
            "control_plane_share_of_wall": float(cp.sum() / ps["wall_s"]) if cp.size and ps.get("wall_s") else None,
        })
    for key in ("timing", "residual_timing_rms_samples", "pilot_delay_samples", "air_time_samples", "truth",
                "device_state", "device_events", "device_index", "control_rounds", "ps_tx", "ps_tx_errors",
                "setup_round_trip_s", "lead_s", "layout", "final_accuracy", "feel", "images", "jscc",
                "lost_rounds", "ps_late"):
        if key in ps:
            record[key] = ps[key]
    if opts.task in ACTOR_TASKS:
        # late bursts as the actors saw them too: refused by the lead check before reaching the node
        record["late_bursts"] += int(sum(st.get("late", 0) for st in ps.get("device_state", {}).values()))
        record["late_bursts"] += int(ps.get("ps_late", 0))     # and by the PS actor (not sent, see sync.ps)
    margins = [r["slot_margin_s_min"] for r in rounds if r.get("slot_margin_s_min") is not None]
    record["slot_margin_s_min"] = min(margins) if margins else None
