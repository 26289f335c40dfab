"""`otalab jscc train|eval|send`: DeepJSCC image transmission (see docs/deepjscc.md).

Heavy imports (torch, the models, phy, radio) happen inside the command functions so that ``otalab --help`` stays
fast.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

#: the checkpoint shipped with the package (SNR-adaptive model, k/n = 1/6, AWGN 0..20 dB)
from lab.cli.common import ConfigOpt, JsonOpt, ProgressOpt, SeedOpt, SetOpt, emit_json, load_lab_config, split_floats
from lab.experiments.jscc_air import DEFAULT_CHECKPOINT, digital_chain_records
from lab.plots import jscc_eval_figure, jscc_method_labels, save_figure, side_by_side_figure


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise SystemExit(2)  # (typer.Exit would be swallowed by click in lab.cli.main's standalone_mode=False)


def register(app: typer.Typer) -> None:
    """Add ``otalab jscc`` with its subcommands."""
    jscc = typer.Typer(name="jscc", no_args_is_help=True, help="DeepJSCC image transmission: train, evaluate, send.")
    app.add_typer(jscc, name="jscc")

    @jscc.command("train")
    def train_cmd(
        out_dir: Path = typer.Option(..., "--out", help="folder for last.pt, best.pt and log.jsonl"),
        model: str = typer.Option("adjscc", help="model: adjscc (SNR-adaptive) or bourtsoulatze (reference)"),
        ratio: str = typer.Option("1/6", help="bandwidth ratio k/n (c/96)"),
        filters: str | None = typer.Option(None, help="4 hidden channel counts, e.g. 32,64,64,64"),
        channel: str = typer.Option("awgn", help="training channel: awgn, rayleigh, ofdm"),
        snr_db: float | None = typer.Option(None, help="train at this one SNR (reference models)"),
        snr_min_db: float = typer.Option(0.0, help="SNR range for SNR-adaptive training"),
        snr_max_db: float = typer.Option(20.0),
        steps: int = typer.Option(20000, help="optimizer steps (cosine learning-rate schedule over them)"),
        batch_size: int = typer.Option(64),
        lr: float = typer.Option(1e-3),
        seed: SeedOpt = 0,
        data_dir: Path | None = typer.Option(None, help="directory with cifar10.npz or cifar-10-batches-py/"),
        train_images: int | None = typer.Option(None, help="use only the first N training images"),
        val_images: int = typer.Option(1000, help="validation images held out from the end of the train split"),
        eval_every: int = typer.Option(1000),
        ckpt_every: int = typer.Option(250),
        threads: int = typer.Option(1, help="torch CPU threads"),
        time_limit_min: float | None = typer.Option(None, help="stop with a checkpoint after this many minutes"),
        resume: bool = typer.Option(True, help="resume from OUT/last.pt if present"),
        init_from: Path | None = typer.Option(None, help="start a fresh run from this checkpoint's weights (same "
                                              "model and filters; another ratio keeps its first c latent channels)"),
        progress: ProgressOpt = True,
    ):
        """Train a DeepJSCC model with the channel in the loop (CPU is fine; resumes after a crash)."""
        from learning.jscc.checkpoint import CheckpointError
        from learning.jscc.data import DataNotFoundError
        from learning.jscc.train import TrainConfig, train

        try:
            fl = tuple(int(v) for v in filters.split(",")) if filters else None
            lo, hi = (snr_db, snr_db) if snr_db is not None else (snr_min_db, snr_max_db)
            cfg = TrainConfig(out_dir=str(out_dir), model=model, ratio=ratio, filters=fl, channel=channel,
                              snr_min_db=lo, snr_max_db=hi, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                              data_dir=str(data_dir) if data_dir else None, train_images=train_images,
                              val_images=val_images, eval_every=eval_every, ckpt_every=ckpt_every, threads=threads,
                              time_limit_s=None if time_limit_min is None else 60.0 * time_limit_min,
                              progress=progress, resume=resume, init_from=str(init_from) if init_from else None,
                              command="otalab jscc train " + shlex.join(sys.argv[3:] if _from_shell() else []))
            train(cfg)
        except (ValueError, DataNotFoundError, CheckpointError) as exc:
            _fail(str(exc))

    @jscc.command("eval")
    def eval_cmd(
        checkpoint: list[Path] = typer.Option(None, "--checkpoint",
                                              help="checkpoint(s) to evaluate (default: the shipped one)"),
        snrs: str = typer.Option("0,2.5,5,7.5,10,12.5,15,17.5,20", "--snr-db", help="SNRs in dB, a comma list"),
        n_images: int = typer.Option(200, help="first N CIFAR-10 test images"),
        channel: str = typer.Option("awgn", help="simulated channel: awgn, rayleigh, ofdm"),
        baselines: str = typer.Option("separation", help="comma-separated: separation, none (with --photos: "
                                                         "'none' skips the bound and the digital chain)"),
        codecs: str | None = typer.Option(None, help="codecs for the separation bound (default: all available)"),
        baseline_images: int | None = typer.Option(None, help="separation bound on the first N images only "
                                                                 "(default: all; it costs ~1 s per image)"),
        digital_images: int = typer.Option(0, help="also run the real digital chain (codec+LDPC+QAM+OFDM through "
                                                   "phy's receiver on the in-process AWGN air) on the first N images"),
        ratio: str | None = typer.Option(None, help="expected bandwidth ratio of every checkpoint, e.g. 1/6"),
        data_dir: Path | None = typer.Option(None),
        include: list[Path] = typer.Option([], "--include", help="merge the results of an earlier eval JSON "
                                                                   "(e.g. baselines computed once)"),
        photos: str | None = typer.Option(None, "--photos", help="full-resolution scikit-image photos instead of "
                                          "CIFAR-10: a comma list or 'all' (astronaut, chelsea, coffee, rocket); "
                                          "with the digital chain and the crossover SNR per --ratios"),
        ratios: str = typer.Option("1/6,1/12,1/24", "--ratios", help="with --photos: bandwidth ratios k/n"),
        json_path: JsonOpt = "runs/jscc/eval.json",
        out: Path = typer.Option(Path("runs/jscc"), "--out", help="folder for the PNG plot"),
        seed: SeedOpt = 0,
        threads: int = typer.Option(1),
    ):
        """PSNR and SSIM versus SNR for DeepJSCC checkpoints and the separation bound -> JSON + PNG."""
        import json as _json

        import torch

        if photos is not None:
            torch.set_num_threads(threads)
            _eval_photos(checkpoint, photos, ratios, split_floats(snrs, "--snr-db"), json_path, out, seed, include,
                         baselines)
            return

        from learning.jscc.checkpoint import CheckpointError, load_checkpoint
        from learning.jscc.data import DataNotFoundError, load_cifar10
        from learning.jscc.evaluate import evaluate_model, evaluate_separation
        from lab.results import metadata

        torch.set_num_threads(threads)
        snr_list = split_floats(snrs, "--snr-db")
        try:
            images = load_cifar10("test", data_dir, 0, n_images)
            results, models = [], []
            ratios = set()
            for ck in checkpoint or [DEFAULT_CHECKPOINT]:
                model, meta = load_checkpoint(ck, expect_ratio=ratio)
                ratios.add(model.ratio)
                models.append({"checkpoint": str(ck), **{k: meta.get(k) for k in (
                    "model_name", "ratio", "steps", "images_seen", "epochs", "wall_s", "command", "val_psnr_db")}})
                typer.echo(f"evaluating {ck} ...", err=True)
                results += evaluate_model(model, meta, images, snr_list, channel, seed)
            if "separation" in baselines.split(","):
                for r in sorted(ratios):
                    typer.echo(f"separation bound at k/n = {r:.4f} on {len(images)} images ...", err=True)
                    results += evaluate_separation(images[:baseline_images], snr_list, r,
                                                   codecs.split(",") if codecs else None)
            if digital_images > 0:
                typer.echo(f"digital chain on {digital_images} images ...", err=True)
                results += digital_chain_records(images[:digital_images], snr_list, min(ratios) if ratios else 1 / 6,
                                                  seed)
            for inc in include:
                earlier = _json.loads(Path(inc).read_text(encoding="utf-8"))
                results += earlier["results"]
                models += earlier.get("models", [])
        except (ValueError, DataNotFoundError, CheckpointError, OSError, KeyError) as exc:
            _fail(str(exc))
        record = {"title": f"DeepJSCC on CIFAR-10 test[:{len(images)}], {channel}", "models": models,
                  "n_images": len(images), "channel": channel, "results": results, **metadata(seed=seed)}
        emit_json(json_path, record)
        fig = jscc_eval_figure(record)
        out.mkdir(parents=True, exist_ok=True)
        png = save_figure(fig, out / "jscc_eval.png")
        _print_table(results, err=json_path == "-")
        typer.echo(f"plot: {png}", err=True)

    @jscc.command("send")
    def send_cmd(
        ctx: typer.Context,
        config: ConfigOpt = None,
        set_: SetOpt = [],  # noqa: B006
        images: list[Path] = typer.Option([], "--images", help="image files (cropped to multiples of 4)"),
        cifar: int = typer.Option(4, help="when no --images/--photo: the first N CIFAR-10 test images"),
        photo: list[str] = typer.Option([], "--photo", help="scikit-image sample photo(s): astronaut, chelsea, ..."),
        max_image_pixels: int | None = typer.Option(None, "--max-image-pixels", min=1,
                                                    help="largest image accepted, in pixels (default 4096×4096 or "
                                                         "$OTALAB_MAX_IMAGE_PIXELS)"),
        checkpoint: Path = typer.Option(DEFAULT_CHECKPOINT, "--checkpoint", help="DeepJSCC checkpoint"),
        snr_db: float | None = typer.Option(None, "--snr-db", help="per-subcarrier SNR: of the simulated air "
                                            "(when the config gives none) and the one the encoder and the digital "
                                            "MCS are set for; default: the config's air.snr_db, else 10"),
        digital: bool = typer.Option(True, help="also send the image with the digital chain (codec+LDPC+QAM)"),
        symbol_level: bool = typer.Option(False, help="skip the radio: symbol-level AWGN at --snr-db"),
        data_dir: Path | None = typer.Option(None),
        out_dir: Path = typer.Option(Path("runs/jscc_send"), "--out", help="folder for the side-by-side PNG"),
        json_path: JsonOpt = None,
        threads: int = typer.Option(1),
    ):
        """Send images as DeepJSCC analog symbols (phy analog frames) through a radio; PSNR/SSIM, PNG and JSON."""

        import numpy as np
        import torch

        from lab.factory import open_link_pair
        from lab.results import metadata
        from lab.experiments.jscc_air import (
            DigitalRadioLink,
            RadioLink,
            SymbolLink,
            json_records,
            send_images,
        )
        from learning.jscc.checkpoint import CheckpointError, load_checkpoint
        from learning.jscc.data import (
            DataNotFoundError,
            load_cifar10,
            load_image_file,
            load_sample_photo,
        )

        torch.set_num_threads(threads)
        cfg = load_lab_config(ctx, config, set_)
        if snr_db is not None and cfg.radio.driver == "loopback" and (cfg.air is None or (
                cfg.air.snr_db is None and cfg.air.noise_power is None)):
            # no config gives the simulated air a noise floor: --snr-db sets it (else the air would be noiseless
            # and the decoder told an SNR the channel never had)
            cfg = load_lab_config(ctx, config, list(set_) + [f"air.snr_db={snr_db}"])
        try:
            model, meta = load_checkpoint(checkpoint)
            imgs = [load_image_file(p, max_pixels=max_image_pixels) for p in images] + [load_sample_photo(p)
                                                                                         for p in photo]
            if not imgs:
                imgs = list(load_cifar10("test", data_dir, 0, cifar))
        except (CheckpointError, DataNotFoundError, ValueError, FileNotFoundError) as exc:
            _fail(str(exc))
        air_snr = cfg.air.snr_db if cfg.air is not None else None
        snr = snr_db if snr_db is not None else (air_snr if air_snr is not None else 10.0)
        batch = np.empty(len(imgs), dtype=object)
        batch[:] = imgs
        closers = []
        try:
            if symbol_level:
                link, dig = SymbolLink(snr), None
            else:
                from phy.ofdm import OfdmConfig  # noqa: F401  (the config's ofdm section builds it)

                tx, rx, closers = open_link_pair(cfg)
                ofdm = cfg.ofdm.to_config(cfg.radio.sample_rate)
                link = RadioLink(tx, rx, ofdm)
                dig = DigitalRadioLink(tx, rx, ofdm, snr) if digital else None
            stacked = np.stack(imgs) if len({i.shape for i in imgs}) == 1 else batch
            records = send_images(model, stacked, link, snr, dig, snr_range_db=meta.get("snr_range_db"))
        except ValueError as exc:
            _fail(str(exc))
        finally:
            for c in closers:
                c.close()
        out_dir.mkdir(parents=True, exist_ok=True)
        png = out_dir / "side_by_side.png"
        save_figure(side_by_side_figure(imgs, records), png, dpi=100)
        doc = {"checkpoint": str(checkpoint), "encoder_snr_db": snr,
               "driver": "symbol-level" if symbol_level else cfg.radio.driver,
               "link_stats": getattr(link, "stats", None), "digital_stats": getattr(dig, "stats", None) if not
               symbol_level else None, "results": json_records(records),
               **metadata(config={"source": cfg.source, "raw": cfg.raw}, seed=None)}
        json_out = json_path == "-"
        for r in records:
            ps = "lost" if r["psnr_db"] is None else f"{r['psnr_db']:.2f} dB SSIM {r['ssim']:.3f}"
            extra = (f"measured SNR {r['snr_db']:.2f} dB, receiver estimate {r['snr_est_db']:.2f} dB"
                     if r["method"].startswith("deepjscc") else f"{r.get('codec')} {r.get('status')}")
            typer.echo(f"image {r['image']} {r['method']:<22} {ps:<24} {extra}", err=json_out)
        typer.echo(f"plot: {png}", err=True)
        emit_json(json_path, doc)


def _eval_photos(checkpoints, photos: str, ratios: str, snrs: list[float], json_path, out: Path, seed: int,
                 include=(), baselines: str = "separation") -> None:
    """``otalab jscc eval --photos``: see :mod:`lab.experiments.jscc_photos`; ``include``: earlier ``--photos`` JSONs
    whose records join these (e.g. photos evaluated in parallel runs; a record evaluated now replaces an included one
    of the same photo, ratio, method and SNR); ``baselines`` "none": DeepJSCC only, without the separation bound and
    the digital chain (merge those from an earlier run with ``include``)."""
    import json as _json

    from lab.experiments.jscc_photos import crossovers, evaluate_photos, merge_records, parse_ratio, plot
    from lab.results import metadata
    from learning.jscc.checkpoint import CheckpointError, load_checkpoint
    from learning.jscc.data import SAMPLE_PHOTOS, DataNotFoundError

    names = list(SAMPLE_PHOTOS) if photos.strip() == "all" else [p.strip() for p in photos.split(",") if p.strip()]
    bad = [p for p in names if p not in SAMPLE_PHOTOS]
    if bad or not (names or include):
        _fail(f"--photos {photos!r}: expected 'all' or a comma list of {', '.join(SAMPLE_PHOTOS)} (or '' with "
              "--include: merge earlier --photos runs)")
    kinds = {b.strip() for b in baselines.split(",") if b.strip()}
    if not kinds or not kinds <= {"separation", "none"} or len(kinds) > 1:
        _fail(f"--baselines {baselines!r}: expected 'separation' (the bound and the digital chain) or 'none'")
    with_baselines = kinds == {"separation"}
    try:
        rs = [parse_ratio(r) for r in ratios.split(",") if r.strip()]
        paths = list(checkpoints or [DEFAULT_CHECKPOINT])
        models = [load_checkpoint(ck) for ck in paths]
        model_info = [{"checkpoint": str(ck), "ratio": meta.get("ratio"), "command": meta.get("command")}
                      for ck, (_, meta) in zip(paths, models)]
        res = evaluate_photos(models, names, rs, snrs, seed, log=lambda m: typer.echo(m, err=True),
                              digital=with_baselines, separation=with_baselines) if names else {"results": []}
        for inc in include:
            earlier = _json.loads(Path(inc).read_text(encoding="utf-8"))
            res["results"] = merge_records(res["results"], earlier["results"])
            names += [p for p in earlier["photos"] if p not in names]
            rs += [parse_ratio(q) for q in earlier["ratios"] if parse_ratio(q) not in rs]
            model_info += [m for m in earlier.get("models", []) if m not in model_info]
        rs = sorted(set(rs), reverse=True)                     # 1/6, 1/12, 1/24 in every table and plot
        res["crossovers"] = crossovers(res["results"])
    except (ValueError, DataNotFoundError, CheckpointError, OSError, KeyError) as exc:
        _fail(str(exc))
    record = {"title": "DeepJSCC on full-resolution photos, AWGN", "photos": names,
              "ratios": [f"{r.numerator}/{r.denominator}" for r in rs],
              "models": model_info, **res, **metadata(seed=seed)}
    emit_json(json_path, record)
    out.mkdir(parents=True, exist_ok=True)
    png = out / "jscc_photos.png"
    plot(record, png)
    err = json_path == "-"
    for ratio in record["ratios"]:
        typer.echo(f"k/n = {ratio}, PSNR dB (mean over {len(names)} photos):", err=err)
        _print_table([r for r in _photo_means(res["results"]) if r["ratio"] == ratio], err=err)
    for c in res["crossovers"]:
        if c["photo"] == "mean":
            typer.echo(f"crossover k/n = {c['ratio']} {c['method']} vs {c['against']}: {c['crossover_snr_db']}",
                       err=err)
    typer.echo(f"plot: {png}", err=True)


def _photo_means(records: list[dict]) -> list[dict]:
    """Mean PSNR/SSIM over photos per (ratio, method, SNR)."""
    import numpy as np

    cells: dict[tuple, list[dict]] = {}
    for r in records:
        cells.setdefault((r["ratio"], r["method"], r["snr_db"]), []).append(r)
    return [{"ratio": q, "method": m, "snr_db": s, "psnr_db": float(np.mean([r["psnr_db"] for r in rs])),
             "ssim": float(np.mean([r["ssim"] for r in rs]))} for (q, m, s), rs in cells.items()]


def _print_table(results: list[dict], err: bool = False) -> None:
    """PSNR (SSIM) per method (and ratio, when there are several) and SNR as a plain-text table on stdout."""
    labels = jscc_method_labels(results)
    snrs = sorted({r["snr_db"] for r in results})
    methods = list(dict.fromkeys(labels))
    cell = {(m, r["snr_db"]): r for m, r in zip(labels, results)}
    typer.echo("method".ljust(32) + "".join(f"{s:>15g}" for s in snrs))
    for m in methods:
        row = "".join(f"{cell[(m, s)]['psnr_db']:>7.2f} ({cell[(m, s)]['ssim']:.3f})" if (m, s) in cell else " " * 15
                      for s in snrs)
        typer.echo(m.ljust(32) + row)


def _from_shell() -> bool:
    """True when invoked as ``otalab jscc ...`` from a shell (so sys.argv holds the real command line)."""
    return len(sys.argv) > 2 and sys.argv[1:3] == ["jscc", "train"]
