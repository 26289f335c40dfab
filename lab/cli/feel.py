"""`otalab feel`: federated edge learning over the air (A-DSGD vs D-DSGD vs error-free; see docs/feel.md).

``otalab feel`` runs every combination of the comma-separated --scheme, --partition and --power values (the error-free
benchmark once per partition, as it does not depend on the power), writes one JSON per run, an accuracy-vs-round PNG
comparing the schemes and prints a table. Runs resume from their checkpoints. ``--radio loopback`` (or a loopback
``hw_configs`` YAML) replaces the symbol-level channel by sync's over-the-air sum on the simulated air
(:mod:`lab.experiments.feel_air`); ``--radio zmq`` runs the same cell with every sample carried over ZeroMQ (a broker in a
background thread on 127.0.0.1 and one endpoint per node, :func:`lab.factory.build_cell`). ``otalab feel-plot`` redraws a PNG from JSON files. Heavy imports (torch, matplotlib) happen
inside the command functions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from lab.cli.common import ConfigOpt, JsonOpt, ProgressOpt, SeedOpt, emit_json, fail
from lab.plots import feel_accuracy_figure, feel_label, save_figure


def _split(text: str, cast, name: str) -> list:
    try:
        values = [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected comma-separated values", param_hint=name) from None
    if not values:
        raise typer.BadParameter(f"{text!r}: expected at least one value", param_hint=name)
    return values


def run_name(cfg) -> str:
    """File stem of a run: feel_<dataset>_<scheme>_<partition>[<alpha>][_P<power>]_M<devices>[_<fading>]."""
    power = "" if cfg.scheme == "ideal" else f"_P{cfg.power:g}"
    fading = "" if cfg.fading == "none" else f"_{cfg.fading}"
    part = f"{cfg.partition}{cfg.alpha:g}" if cfg.partition == "dirichlet" else cfg.partition
    return f"feel_{cfg.dataset}_{cfg.scheme}_{part}{power}_M{cfg.devices}{fading}"


def _worker(args: tuple) -> dict:
    """Run one configuration in a worker process (one torch thread each)."""
    cfg, out_json, ckpt, resume, every, data_dir, threads = args
    import torch

    from learning.feel.runner import run_feel
    torch.set_num_threads(threads)
    return run_feel(cfg, out_json, ckpt, resume=resume, checkpoint_every=every, data_dir=data_dir)


def results_table(results: list[dict]) -> str:
    """Markdown table: scheme, partition, power, final accuracy, rounds to 80 %, median NMSE, runtime."""
    import math
    lines = ["| scheme | partition | P̄ | final accuracy | rounds to 80 % | median NMSE (dB) | runtime (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        c = r["config"]
        nm = sorted(x["nmse_db"] for x in r["rounds"] if x.get("nmse_db") is not None)
        med = nm[len(nm) // 2] if nm else math.nan
        power = "—" if c["scheme"] == "ideal" else f"{c['power']:g}"
        reach = r["rounds_to_80"] if r["rounds_to_80"] is not None else "never"
        lines.append(f"| {feel_label(r).split(',')[0]} | {c['partition']} | {power} | {r['final_accuracy']:.4f} | {reach} "
                     f"| {med:.2f} | {r['runtime_s']:.0f} |")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add ``otalab feel`` and ``otalab feel-plot``."""

    @app.command("feel")
    def feel_cmd(
        scheme: str = typer.Option("analog", help="comma list of: analog (A-DSGD), digital (D-DSGD), ideal "
                                                  "(error-free), uncoded (plain analog, s >= d+1)"),
        devices: int = typer.Option(25, help="number of devices M"),
        partition: str = typer.Option("iid", help="comma list of: iid, noniid (2 classes per device), dirichlet"),
        alpha: float = typer.Option(0.5, help="Dirichlet concentration for --partition dirichlet"),
        power: str = typer.Option("200", help="comma list of average energies per round P-bar"),
        channel_uses: Optional[int] = typer.Option(None, help="real channel uses per round s (default d/2; "
                                                              "uncoded d+1)"),
        k: Optional[int] = typer.Option(None, help="A-DSGD sparsity k (default s/2)"),
        rounds: int = typer.Option(300, help="iterations T"),
        dataset: str = typer.Option("mnist", help="mnist, fashion-mnist or cifar10"),
        radio: str = typer.Option("none", help="none (symbol-level channel), loopback, zmq or a hw_configs YAML "
                                                "(the same as --config)"),
        config: ConfigOpt = None,
        fading: str = typer.Option("none", help="none (AWGN) or rayleigh (block fading, truncated inversion)"),
        threshold: float = typer.Option(0.1, help="truncated-inversion threshold on |h|^2 (fading)"),
        noise_var: float = typer.Option(1.0, help="noise variance per real channel use sigma^2"),
        samples_per_device: int = typer.Option(1000, help="local data set size B"),
        optimizer: str = typer.Option("adam", help="server optimizer: adam or sgd"),
        lr: float = typer.Option(1e-3, help="server learning rate"),
        local_steps: int = typer.Option(1, help="local SGD steps per round (1 = send the local gradient)"),
        local_lr: float = typer.Option(0.01, help="local SGD learning rate (local_steps > 1)"),
        batch_size: Optional[int] = typer.Option(None, help="local minibatch (default: whole local data set)"),
        amp_iterations: int = typer.Option(10, help="A-DSGD: AMP iterations at the server (it settles in ~10 at "
                                                    "s = d/2)"),
        amp_threshold: str = typer.Option("sure-scaled", help="A-DSGD AMP denoiser: sure-scaled (SURE-tuned "
                                                             "threshold and gain), sure (threshold only) or a lambda"),
        dropout_prob: float = typer.Option(0.0, help="probability that a device drops out mid-round"),
        fault: list[str] = typer.Option([], help="inject ROUND:DEVICE:KIND (nan, explode, drop); repeatable"),
        seed: SeedOpt = 0,
        out: Path = typer.Option(Path("runs/feel"), "--out", help="folder for per-run JSON, checkpoints and the PNG"),
        json_path: JsonOpt = None,
        resume: bool = typer.Option(True, help="resume runs from their checkpoints"),
        checkpoint_every: int = typer.Option(10, help="rounds between checkpoints"),
        eval_every: int = typer.Option(1, help="rounds between test-set evaluations"),
        data_dir: Optional[Path] = typer.Option(None, help="data directory (else OTALAB_DATA_DIR, ../shared/data, "
                                                           "torchvision cache)"),
        threads: int = typer.Option(1, help="torch CPU threads per run"),
        jobs: int = typer.Option(1, help="runs in parallel (processes)"),
        progress: ProgressOpt = True,
        radio_snr_db: float = typer.Option(20.0, "--snr-db", "--radio-snr-db",
                                           help="--radio loopback/zmq: per-subcarrier SNR of the simulated air"),
        clip: Optional[float] = typer.Option(None, help="differential privacy: clip each device's update to this L2 "
                                                        "norm (A-DSGD: the sparse update before projection)"),
        target_epsilon: Optional[float] = typer.Option(None, help="differential privacy: reach this epsilon after "
                                                                  "--rounds (A-DSGD devices add only the noise the "
                                                                  "channel lacks; D-DSGD adds all of it; needs --clip "
                                                                  "for digital/ideal)"),
        delta: float = typer.Option(1e-5, help="differential privacy: delta of the reported (epsilon, delta)"),
        power_norm: str = typer.Option("projected", help="A-DSGD power scaling: projected (paper: ||A g||) or "
                                                         "sparse (||g||: no per-device projection, for large M)"),
    ):
        """Federated learning over the air: run schemes x partitions x powers, write JSON + PNG, print a table."""
        factory = None
        if config is not None:
            if radio not in ("none", str(config)):
                fail(f"--config {config} and --radio {radio}: give the bench config once")
            radio = str(config)
        if radio != "none":
            factory = _radio_factory(radio, radio_snr_db, seed, scheme)
        from learning.feel.data import load_dataset
        from learning.feel.runner import FeelConfig
        from radio.base import RadioError

        schemes = _split(scheme, str, "--scheme")
        partitions = _split(partition, str, "--partition")
        powers = _split(power, float, "--power")
        try:
            load_dataset(dataset, data_dir)
            configs = []
            for part in partitions:
                for sch in schemes:
                    for p in (powers[:1] if sch == "ideal" else powers):
                        configs.append(FeelConfig(
                            scheme=sch, dataset=dataset, devices=devices, samples_per_device=samples_per_device,
                            partition=part, alpha=alpha, power=p, noise_var=noise_var, channel_uses=channel_uses, k=k,
                            rounds=rounds, optimizer=optimizer, lr=lr, local_steps=local_steps, local_lr=local_lr,
                            batch_size=batch_size, fading=fading, threshold=threshold, dropout_prob=dropout_prob,
                            faults=tuple(fault), eval_every=eval_every, amp_iterations=amp_iterations,
                            amp_threshold=amp_threshold, seed=seed, clip=clip, target_epsilon=target_epsilon,
                            dp_delta=delta, power_norm=power_norm))
        except (ValueError, FileNotFoundError) as exc:
            fail(str(exc))
        out.mkdir(parents=True, exist_ok=True)
        suffix = "" if radio == "none" else "_radio"
        jobs_args = [(c, out / f"{run_name(c)}{suffix}.json", out / "checkpoints" / f"{run_name(c)}{suffix}.pt",
                      resume, checkpoint_every, data_dir, threads) for c in configs]
        if factory is not None and jobs > 1:
            fail("--jobs > 1 is for the symbol-level channel; the radio path runs one configuration at a time")
        try:
            results = _run_all(jobs_args, jobs, progress, factory)
        except (ValueError, RadioError) as exc:
            fail(str(exc))
        finally:
            if hasattr(factory, "close"):
                factory.close()
        png = save_figure(feel_accuracy_figure(results, title=f"{dataset}, M={devices}, B={samples_per_device}, "
                                                               f"{fading} channel"), out / f"feel_{dataset}_accuracy.png", dpi=90)
        typer.echo(results_table(results), err=json_path == "-")
        for (_, js, *_rest) in jobs_args:
            typer.echo(f"wrote {js}", err=True)
        typer.echo(f"wrote {png}", err=True)
        from lab.results import metadata
        emit_json(json_path, {"experiment": "feel", "runs": [str(j) for (_, j, *_r) in jobs_args],
                              "results": results, **metadata(seed=seed, config=radio if radio != "none" else None)})

    @app.command("feel-plot")
    def feel_plot_cmd(files: list[Path] = typer.Argument(..., help="result JSON files of `otalab feel`"),
                      out: Path = typer.Option(Path("feel_accuracy.png"), help="PNG to write"),
                      title: str = typer.Option("", help="figure title")):
        """Draw accuracy vs round for FEEL result files and print their table."""
        try:
            results = [json.loads(f.read_text()) for f in files]
        except (OSError, json.JSONDecodeError) as exc:
            fail(f"cannot read results: {exc}")
        typer.echo(results_table(results))
        typer.echo(f"wrote {save_figure(feel_accuracy_figure(results, title), out, dpi=90)}")


def _radio_factory(radio: str, snr_db: float, seed: int, schemes: str):
    """The channel factory of --radio (:class:`lab.experiments.feel_air.ChannelFactory`): loopback, zmq (the same
    cell over an in-process ZeroMQ broker) or a loopback/zmq bench config YAML."""
    from lab.experiments.feel_air import ChannelFactory

    bad = sorted({s.strip() for s in schemes.split(",")} - {"analog", "uncoded"})
    if bad:
        fail(f"--scheme {','.join(bad)} with --radio {radio}: the radio path carries superposed analog schemes "
             f"(analog, uncoded); digital/ideal need no superposition, run them with --radio none")
    if radio in ("loopback", "zmq"):
        return ChannelFactory(radio, snr_db, seed)
    if radio.endswith((".yaml", ".yml")):
        from lab.config import ConfigError, load_config
        try:
            cfg = load_config(radio)
        except ConfigError as exc:
            fail(str(exc))
        if cfg.radio.driver not in ("loopback", "zmq"):
            fail(f"{radio}: radio.driver = {cfg.radio.driver!r}; FEEL in one process runs over 'loopback' or 'zmq' "
                 f"(simulated air); radios of their own run as a cell of nodes (`otalab cell`)")
        return ChannelFactory(cfg, snr_db, seed)
    fail(f"--radio {radio!r}: expected none, loopback, zmq or a hw_configs YAML file")


def _run_all(jobs_args: list[tuple], jobs: int, progress: bool, factory=None) -> list[dict]:
    """Run the configurations (sequentially with a per-round bar, or in ``jobs`` processes)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from learning.feel.runner import run_feel
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    results: list[dict] = []
    with Progress(*columns, disable=not progress) as bar:
        if jobs <= 1:
            import torch
            for cfg, js, ckpt, resume, every, data_dir, threads in jobs_args:
                torch.set_num_threads(threads)
                task = bar.add_task(js.stem, total=cfg.rounds, status="")

                def tick(rec, task=task):
                    acc = rec.get("accuracy")
                    bar.update(task, completed=rec["round"],
                               status=f"acc {acc:.3f}" if acc is not None else "")
                results.append(run_feel(cfg, js, ckpt, resume=resume, checkpoint_every=every, data_dir=data_dir,
                                        on_round=tick, channel=factory))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            task = bar.add_task("runs", total=len(jobs_args), status="")
            os.environ.setdefault("OMP_NUM_THREADS", "1")
            with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
                for res in pool.map(_worker, jobs_args):
                    results.append(res)
                    bar.update(task, advance=1, status=f"{feel_label(res)}: {res['final_accuracy']:.3f}")
    return results
