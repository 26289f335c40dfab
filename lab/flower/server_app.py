"""The PS's ServerApp: drives the cell's rounds over Flower and owns (through its node) the PS radio only.

Run config (``lab/flower/app/pyproject.toml``, filled by ``otalab cell``): ``task``, ``rounds``, ``devices`` (how many
SuperNodes to wait for), ``ps-endpoint`` (the PS radio node's local API), ``out`` (result JSON, written atomically),
``join-timeout-s``, ``reply-timeout-s``, ``slot-lead-s``, ``seed``.

Each round the PS reads its radio's clock, sets the round's slot ``slot-lead-s`` ahead of it (PS samples), and sends
every active device the round, the slot, the round's A-DSGD projection seed and the power scale. A device that does
not answer within ``reply-timeout-s``, or answers with an error (its radio node is gone), is excluded from the
following rounds and listed in ``excluded_devices`` with the reason; the run finishes with the others.

Flower starts one ClientApp process per message and a SuperNode polls the SuperLink for work every few seconds, so a
round's control-plane time is seconds: the slot lead has to cover it (``slot_margin_s`` in each round says what was
left when the last device had its instruction). ``otalab bench cell`` measures it.
"""

from __future__ import annotations

import base64
import json
import os
import time
import traceback
from pathlib import Path

import numpy as np
from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp

from lab.flower import protocol

app = ServerApp()


def wait_for_nodes(grid: Grid, count: int, timeout_s: float) -> list[int]:
    """The ids of ``count`` SuperNodes once that many are connected; RuntimeError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(nodes)} of {count} SuperNodes connected within {timeout_s} s")
        time.sleep(0.2)


def probe_rounds(grid: Grid, cfg: dict, ps, record: dict) -> None:
    """The probe task: every round, every active device reads its node's clock and status (module docstring)."""
    nodes = wait_for_nodes(grid, int(cfg["devices"]), float(cfg["join-timeout-s"]))
    record["node_ids"] = nodes
    fs = ps.sample_rate
    names: dict[int, str] = {}
    active = list(nodes)
    excluded: dict[int, str] = {}
    rng = np.random.default_rng(int(cfg["seed"]))
    lead = int(float(cfg["slot-lead-s"]) * fs)
    for r in range(int(cfg["rounds"])):
        if not active:
            record["events"].append(f"round {r}: no active device left; stopping")
            break
        slot = ps.time_now() + lead
        body = {"round": r, "slot": int(slot), "seed": int(rng.integers(1 << 31)), "power_scale": 1.0,
                "sent_wall": time.time()}
        messages = [Message(protocol.pack(body), dst_node_id=n, message_type=protocol.PROBE) for n in active]
        t0 = time.monotonic()
        replies = list(grid.send_and_receive(messages, timeout=float(cfg["reply-timeout-s"])))
        cp = time.monotonic() - t0
        answered, margins, latencies = [], [], []
        for reply in replies:
            src, ans = _answer(reply)
            if isinstance(ans, str):
                excluded[src] = f"round {r}: {ans}"
                continue
            names[src] = ans.get("device", str(src))
            if ans.get("error"):
                excluded[src] = f"round {r}: {ans['error']}"
                continue
            answered.append(src)
            margins.append(ans["slot_margin_samples"] / fs)
            latencies.append(ans["received_wall"] - body["sent_wall"])
        for n in active:
            if n not in answered and n not in excluded:
                excluded[n] = f"round {r}: no answer within reply-timeout-s={cfg['reply-timeout-s']}"
        for n, why in excluded.items():
            if n in active:
                active.remove(n)
                record["events"].append(f"round {r}: {names.get(n, n)} excluded ({why})")
        record["rounds"].append({"round": r, "devices": len(answered), "control_plane_s": cp,
                                 "delivery_s_max": max(latencies) if latencies else None,
                                 "slot_margin_s_min": min(margins) if margins else None,
                                 "slot": int(slot)})
    record["device_names"] = {str(n): names.get(n, "?") for n in nodes}
    record["excluded_devices"] = [{"device": names.get(n, str(n)), "node_id": n, "reason": why}
                                  for n, why in excluded.items()]


def _answer(reply) -> tuple[int, dict | str]:
    """(the replying node, its decoded body — or, for a Flower error or a malformed body, the reason as a string)."""
    src = reply.metadata.src_node_id
    if reply.has_error():
        return src, f"Flower error {reply.error.code}: {reply.error.reason}"
    try:
        return src, protocol.unpack(reply)
    except ValueError as exc:
        return src, str(exc)


class FlowerControl:
    """The control plane of :class:`lab.experiments.cell_run.CellRun` on a Flower Grid: one ``query.actor`` message
    per device and phase; a reply that is missing after ``timeout_s``, a Flower error or a device's error comes back
    as a string (the run excludes that device)."""

    def __init__(self, grid: Grid, timeout_s: float, extra=None):
        self.grid, self.timeout_s = grid, float(timeout_s)
        self.names: dict[int, str] = {}
        self.extra = extra            # body -> body (feel: adds the global model), per node id

    def push(self, bodies: dict):
        """Send one ``query.actor`` message per device; returns what :meth:`pull` needs."""
        messages = []
        for n, body in bodies.items():
            if self.extra is not None:
                body = self.extra(n, body)
            messages.append(Message(protocol.pack(body), dst_node_id=n, message_type=protocol.ACTOR))
        ids = [i for i in self.grid.push_messages(messages) if i]
        return ids, set(bodies), time.monotonic() + self.timeout_s

    def pull(self, handle) -> dict:
        """The replies to :meth:`push`'s messages, waiting until all are in or ``timeout_s`` after the push."""
        ids, expected, deadline = handle
        out: dict = {}
        left = set(ids)
        while left and time.monotonic() < deadline:
            for reply in self.grid.pull_messages(list(left)):
                left.discard(reply.metadata.reply_to_message_id)
                src, ans = _answer(reply)
                if isinstance(ans, str):
                    out[src] = ans
                    continue
                self.names[src] = ans.get("device", str(src))
                out[src] = f"{ans['error']}" if ans.get("error") else ans
            if left:
                time.sleep(0.2)
        return out

    def send(self, bodies: dict) -> dict:
        return self.pull(self.push(bodies))


def open_cell_run(grid: Grid, cfg: dict, ps, record: dict, extra=None):
    """The :class:`CellRun` of this run config (the bench config both sides read), its devices set up and the
    control-plane lead measured; and the loaded bench config."""
    from lab.config import load_config
    from lab.experiments.cell_run import CellRun

    conf = load_config(str(cfg["config"]) or None, json.loads(base64.b64decode(str(cfg.get("sets", ""))) or b"[]"))
    nodes = wait_for_nodes(grid, int(cfg["devices"]), float(cfg["join-timeout-s"]))
    record["node_ids"] = nodes
    control = FlowerControl(grid, float(cfg["reply-timeout-s"]), extra)
    run = CellRun(ps, conf.ofdm.to_config(ps.sample_rate), conf.sync, nodes, control,
                  min_lead_s=float(cfg["min-lead-s"]), max_lead_s=float(cfg["slot-lead-s"]),
                  data_symbols=int(cfg["data-symbols"]), seed=int(cfg["seed"]), diagnostics=bool(cfg["diagnostics"]),
                  cfo_precomp=bool(cfg.get("cfo-precomp", True)),
                  ps_turnaround_s=float(cfg.get("ps-turnaround-s", 1.5)),
                  ps_lead=int(float(cfg["ps-lead-s"]) * ps.sample_rate) if float(cfg.get("ps-lead-s", 0.0)) > 0
                  else None,
                  device_turnaround_s=float(cfg.get("device-turnaround-s", 1.0)))
    rtt = run.start()
    record["setup_round_trip_s"] = rtt
    record["lead_s"] = run.lead / run.fs
    return run, control, conf


#: record id -> (CellRun, control, config, its round list) of a task under way: a task that fails midway still has
#: what it measured folded into its record (:func:`main`)
_PENDING: dict = {}


def progress_path(out) -> Path:
    """Where the PS keeps its record as it goes (rewritten atomically after every round) beside the result ``out``:
    what the launcher folds in when a run stops before the result is written."""
    out = Path(out)
    return out.with_name(out.stem + ".progress.json")


def save_progress(cfg: dict, record: dict) -> None:
    """Rewrite the progress file of this run (nothing without an ``out``)."""
    if cfg.get("out"):
        from lab.results import write_json

        write_json(str(progress_path(cfg["out"])), record)


def finish_cell_run(run, control, conf, rounds: list, record: dict) -> None:
    """Fold a finished CellRun into the PS's record (measurements, exclusions, control-plane rounds)."""
    _PENDING.pop(id(record), None)
    from lab.experiments.cell_run import link_truth, measure

    tx = run.close()
    names = {n: control.names.get(n, str(n)) for n in run.devices}
    truths = {n: link_truth(conf, names[n]) for n in run.devices}
    truths = {n: t for n, t in truths.items() if t}
    m = measure(run, rounds, truths)
    record.update({k: v for k, v in m.items()})
    record["device_names"] = {str(n): names[n] for n in run.devices}
    record["device_index"] = {names[n]: run.index[n] for n in run.devices}
    record["excluded_devices"] = [{"device": names[n], "node_id": n, "reason": why} for n, why in run.excluded.items()]
    record["device_state"] = {names[n]: {k: v for k, v in st.items() if k != "events"} for n, st in run.state.items()}
    record["device_events"] = {names[n]: st.get("events", []) for n, st in run.state.items()}
    record["control_rounds"] = run.control_rounds
    record["ps_tx"] = tx
    record["ps_late"] = run.ps.late if run.ps is not None else 0
    record["ps_tx_errors"] = run.port.tx_errors[:20]
    record["events"] += run.events
    record["layout"] = {"cp_len": run.ofdm.cp_len, "backoff": run.layout.backoff, "data_symbols":
                        run.layout.data_symbols, "sample_rate": run.fs}


def round_entry(rr, run, *, diagnostics: bool) -> dict:
    """One data round as the result lists it."""
    entry = {"round": rr.round, "devices": len(rr.active), "active": rr.active, "slot": int(rr.slot),
             "alpha": rr.alpha, "noise_var": rr.noise_var, "control_plane_s": rr.control_s, "wall_s": rr.wall_s,
             "air_time_s": run.layout.data_symbols * run.ofdm.symbol_len / run.fs, "nmse_db": None,
             "silent": {str(run.index[d]): st.get("silent_reason") for d, st in rr.stats.items()
                        if not st.get("sent")}}
    from lab.experiments.cell_run import sum_error

    e = sum_error(rr, run) if diagnostics else None
    if e is not None and e[0] > 0 and e[1] > 0:
        entry["nmse_db"] = float(10 * np.log10(e[0] / e[1]))
    return entry


def sync_task(grid: Grid, cfg: dict, ps, record: dict) -> None:
    """The sync task: setup, beacons and random access, then ``rounds`` over-the-air sums of random vectors, each
    with its beacon, uplink pilots, feedback and data burst (lab.experiments.cell_run)."""
    run, control, conf = open_cell_run(grid, cfg, ps, record)
    rounds: list = []
    _PENDING[id(record)] = (run, control, conf, rounds)
    run.access()
    record["lead_s"] = run.lead / run.fs
    n = run.layout.data_symbols * run.ofdm.n_data
    for r in range(int(cfg["rounds"])):
        if not run.live:
            record["events"].append(f"round {r}: no device left; stopping")
            break
        seed = int(cfg["seed"]) * 1000 + r
        rr = run.data_round({"kind": "random", "seed": seed, "n": n}, seed=seed)
        rounds.append(rr)
        record["rounds"].append(round_entry(rr, run, diagnostics=bool(cfg["diagnostics"])))
        save_progress(cfg, record)
    finish_cell_run(run, control, conf, rounds, record)


def feel_task(grid: Grid, cfg: dict, ps, record: dict) -> None:
    """The feel task: setup and access as in the sync task, then ``rounds`` A-DSGD rounds; each round's data phase
    carries the global model to the devices over Flower, the devices' analog updates go over the air, and the PS
    decodes their sum with AMP (lab.experiments.cell_feel)."""
    from lab.experiments.cell_feel import PsLearner
    from learning.feel.runner import FeelConfig

    from lab.config import load_config

    overrides = json.loads(base64.b64decode(str(cfg.get("feel", ""))) or b"{}")
    if "channel_uses" not in overrides:      # default: one full data burst (2 real symbols per data subcarrier)
        conf = load_config(str(cfg["config"]) or None, json.loads(base64.b64decode(str(cfg.get("sets", ""))) or b"[]"))
        overrides["channel_uses"] = 2 * int(cfg["data-symbols"]) * conf.ofdm.to_config(ps.sample_rate).n_data
    if "dataset" not in overrides:   # as otalab feel and the demo: MNIST, else Debian's Fashion-MNIST; the devices
        from learning.feel.data import load_first_available   # get the name found with their round's spec

        overrides["dataset"] = load_first_available()[0].name
    fcfg = FeelConfig(**{"rounds": int(cfg["rounds"]), "devices": int(cfg["devices"]), "seed": int(cfg["seed"]),
                         **overrides})
    learner = PsLearner(fcfg)

    def extra(node, body):
        if any(step.get("op") == "data" for step in body["do"]):
            body = {**body, "feel": learner.spec(run.index[node])}
        return body

    run, control, conf = open_cell_run(grid, cfg, ps, record, extra)
    rounds: list = []
    _PENDING[id(record)] = (run, control, conf, rounds)
    n_data = run.layout.data_symbols * run.ofdm.n_data
    if learner.n_values > n_data:
        raise ValueError(f"A-DSGD sends s = {learner.m.s} real symbols = {learner.n_values} complex values a round, "
                         f"more than one burst holds ({run.layout.data_symbols} OFDM symbols × {run.ofdm.n_data} "
                         f"= {n_data}): raise --data-symbols or lower channel_uses")
    record["feel"] = {"config": {k: v for k, v in vars(fcfg).items()}, "d": learner.m.d, "s": learner.m.s,
                      "k": learner.m.k, "scale": learner.m.c}
    run.access()
    record["lead_s"] = run.lead / run.fs
    record["final_accuracy"] = None
    for r in range(fcfg.rounds):
        if not run.live:
            record["events"].append(f"round {r}: no device left; stopping")
            break
        rr = run.data_round({"kind": "feel", "n": learner.n_values}, seed=learner.m.scheme.seed)
        rounds.append(rr)
        sent = [d for d, st in rr.stats.items() if st.get("sent")]
        entry = round_entry(rr, run, diagnostics=bool(cfg["diagnostics"]))
        entry.update(learner.receive(rr.estimate, rr.noise_var, len(sent)))
        entry["sent"] = len(sent)
        # each device's local loss and the norm of the error accumulator it started the round with (carried between
        # its short-lived ClientApps in Flower's context state: 0 in round 1, > 0 after)
        entry["learners"] = {str(run.index[d]): x.get("learner") for d, x in rr.extra.items()}
        record["rounds"].append(entry)
        record["final_accuracy"] = entry["accuracy"]
        save_progress(cfg, record)
    finish_cell_run(run, control, conf, rounds, record)


def jscc_task(grid: Grid, cfg: dict, ps, record: dict) -> None:
    """The jscc task: one device sends ``rounds`` CIFAR-10 test images (from ``jscc.first``) as DeepJSCC latents to
    the PS, one image per data round, after setup and access as in the sync task; the PS decodes each with the
    checkpoint's decoder and scores it (lab.experiments.cell_jscc, lab.experiments.jscc_air.send_images)."""
    from lab.config import load_config
    from lab.experiments.cell_jscc import CellLink, load_images, load_model
    from lab.experiments.jscc_air import json_records, send_images

    if int(cfg["devices"]) != 1:
        raise ValueError(f"task 'jscc': one device sends images to the PS; got devices = {cfg['devices']}")
    spec = json.loads(base64.b64decode(str(cfg.get("jscc", ""))) or b"{}")
    first = int(spec.pop("first", 0))
    model, meta = load_model(spec.get("checkpoint"))
    images = load_images(first, int(cfg["rounds"]), spec.get("data_dir"))
    conf = load_config(str(cfg["config"]) or None, json.loads(base64.b64decode(str(cfg.get("sets", ""))) or b"[]"))
    if spec.get("encoder_snr_db") is None:     # the encoder is set for the air's SNR (as `otalab jscc send`)
        air_snr = conf.air.snr_db if conf.air is not None else None
        spec["encoder_snr_db"] = float(air_snr) if air_snr is not None else 10.0
    # one latent per data burst: enough OFDM symbols for L/2 complex values
    n_values = _latent_values(model, images)
    n_data = conf.ofdm.to_config(ps.sample_rate).n_data
    cfg = {**cfg, "data-symbols": max(int(cfg["data-symbols"]), -(-n_values // n_data))}
    run, control, conf = open_cell_run(grid, cfg, ps, record)
    link = CellLink(run, spec, first)
    _PENDING[id(record)] = (run, control, conf, link.rounds)
    run.access()
    record["lead_s"] = run.lead / run.fs
    recs = send_images(model, images, link, spec["encoder_snr_db"], snr_range_db=meta.get("snr_range_db"))
    record["images"] = json_records(recs)
    record["jscc"] = {"checkpoint": str(spec.get("checkpoint") or "shipped"), "first": first,
                      "encoder_snr_db": spec["encoder_snr_db"], "latent_values": n_values,
                      "link_stats": link.stats}
    for rr, image, rec in zip(link.rounds, link.images, record["images"]):
        entry = round_entry(rr, run, diagnostics=bool(cfg["diagnostics"]))
        entry.update(image=image, psnr_db=rec["psnr_db"], ssim=rec["ssim"], snr_db=rec["snr_db"],
                     snr_est_db=rec["snr_est_db"])
        record["rounds"].append(entry)
    finish_cell_run(run, control, conf, link.rounds, record)


def _latent_values(model, images) -> int:
    """Complex values one image's latent takes (the encoder's output size / 2)."""
    from lab.experiments.jscc_air import encode_latents

    z, _ = encode_latents(model, images[:1], 10.0)
    return z.shape[1] // 2


def run_ps(grid: Grid, cfg: dict, record: dict | None = None) -> dict:
    """Run the task named in ``cfg`` (the run config as a dict); returns the PS's result record (``record``, filled
    as the run goes: what a failed run had done so far stays in it)."""
    from radio.node.server import NodeClient

    record = record if record is not None else {}
    record.update({"task": cfg["task"], "rounds": [], "events": [], "excluded_devices": [], "pid": os.getpid()})
    ps = NodeClient(str(cfg["ps-endpoint"]), timeout_s=10.0)
    try:
        start = time.monotonic()
        if cfg["task"] == "probe":
            probe_rounds(grid, cfg, ps, record)
        elif cfg["task"] == "sync":
            sync_task(grid, cfg, ps, record)
        elif cfg["task"] == "feel":
            feel_task(grid, cfg, ps, record)
        elif cfg["task"] == "jscc":
            jscc_task(grid, cfg, ps, record)
        else:
            raise ValueError(f"task = {cfg['task']!r}: this ServerApp runs 'probe', 'sync', 'feel' and 'jscc' (see "
                             f"docs/cell.md)")
        record["wall_s"] = time.monotonic() - start
        record["ps_status"] = ps.status()
    finally:
        ps.close()
    return record


@app.main()
def main(grid: Grid, context: Context) -> None:
    from lab.results import write_json

    cfg = dict(context.run_config)
    record: dict = {"task": cfg.get("task")}
    try:
        run_ps(grid, cfg, record)
    except Exception as exc:  # noqa: BLE001 (the launcher reads the reason from the result file instead of a log)
        # the rounds done so far stay in the record beside the error, with what they measured where that works
        record.update(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=4))
        pending = _PENDING.pop(id(record), None)
        if pending is not None:
            try:
                finish_cell_run(*pending, record)
            except Exception as again:  # noqa: BLE001 (e.g. the PS node is gone: the error above stays the reason)
                record["events"] = record.get("events", []) + [f"measuring after the failure: {again}"]
    if cfg.get("out"):
        write_json(str(cfg["out"]), record)
