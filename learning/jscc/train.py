"""Train a DeepJSCC model with the channel in the loop, on CPU or GPU, resumable after a crash.

The run is a deterministic function of its :class:`TrainConfig`: the batch order of epoch ``e`` is a permutation drawn
from ``numpy.random.default_rng([seed, e])``, and the SNRs, flips and channel noise come from one torch generator
whose state is checkpointed together with the weights, the Adam state and the step. Resuming from ``last.pt`` therefore
continues exactly where the checkpoint was taken (same thread count assumed): a run interrupted and resumed ends with
the same weights as an uninterrupted one.

Files in ``out_dir``: ``last.pt`` (every ``ckpt_every`` steps and at the end, with training state), ``best.pt``
(weights with the best validation PSNR so far, no training state: the one to ship), ``log.jsonl`` (one JSON record
per validation), all written atomically.

Loss: MSE on [0, 1] images. Learning rate: cosine from ``lr`` to ``lr_min`` over ``steps``. SNR: uniform in
``[snr_min_db, snr_max_db]`` per image (set both equal for an SNR-specific reference model).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from learning.jscc.channels import build_channel
from learning.jscc.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from learning.jscc.data import load_cifar10, to_tensor
from learning.jscc.models import (
    build_model,
    channels_for_ratio,
    count_parameters,
    psnr_db,
    ratio_string,
)


@dataclasses.dataclass
class TrainConfig:
    """Everything that determines a training run (stored in the checkpoint metadata)."""

    out_dir: str
    model: str = "adjscc"
    ratio: str = "1/6"
    filters: tuple[int, ...] | None = None
    channel: str = "awgn"
    snr_min_db: float = 0.0
    snr_max_db: float = 20.0
    steps: int = 20000
    batch_size: int = 64
    lr: float = 1e-3
    lr_min: float = 1e-5
    seed: int = 0
    data_dir: str | None = None
    train_images: int | None = None  # use only the first N training images (tests, quick runs)
    val_images: int = 1000  # held out from the END of the training split
    val_snrs_db: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0)
    eval_every: int = 1000
    ckpt_every: int = 250
    threads: int = 1
    time_limit_s: float | None = None  # stop (with a checkpoint) after this much wall time in this process
    progress: bool = True
    resume: bool = True
    init_from: str | None = None  # a fresh run starts from this checkpoint's weights (see warm_start)
    command: str = ""

    def __post_init__(self):
        channels_for_ratio(self.ratio)
        if self.snr_max_db < self.snr_min_db:
            raise ValueError(f"snr range [{self.snr_min_db}, {self.snr_max_db}] dB: expected min <= max")
        for name in ("steps", "batch_size", "eval_every", "ckpt_every", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)}: expected >= 1")
        if self.val_images < 0:
            raise ValueError(f"val_images = {self.val_images}: expected >= 0")


def warm_start(model: torch.nn.Module, source: torch.nn.Module) -> dict[str, str]:
    """Copy ``source``'s weights into ``model`` where they fit; returns {parameter name: "copied" | "sliced"}.

    Meant for a model of another bandwidth ratio with the same architecture and filters: every tensor of the same
    shape is copied; a tensor that differs only in the latent-channel count ``c`` (the encoder's last convolution,
    the decoder's first) takes the source's first ``c`` channels along that dimension (a smaller ``c`` only).
    ValueError naming the tensor for anything else (another architecture, other filters, a larger ``c``).
    """
    src = source.state_dict()
    dst = model.state_dict()
    if set(src) != set(dst):
        missing = sorted(set(dst) ^ set(src))[:3]
        raise ValueError(f"init checkpoint: parameter names differ from the model's ({', '.join(missing)} ...): "
                         f"expected the same architecture")
    report, new = {}, {}
    for name, target in dst.items():
        t = src[name]
        if t.shape == target.shape:
            new[name], report[name] = t.clone(), "copied"
            continue
        diff = [d for d in range(t.dim()) if t.shape[d] != target.shape[d]] if t.dim() == target.dim() else None
        if not diff or len(diff) != 1 or t.shape[diff[0]] < target.shape[diff[0]]:
            raise ValueError(f"init checkpoint: tensor {name!r} has shape {tuple(t.shape)}, the model's is "
                             f"{tuple(target.shape)}: expected equal, or larger in one (latent-channel) dimension")
        new[name], report[name] = t.narrow(diff[0], 0, target.shape[diff[0]]).clone(), "sliced"
    model.load_state_dict(new)
    return report


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Cosine schedule from ``cfg.lr`` (step 0) to ``cfg.lr_min`` (step ``cfg.steps``)."""
    t = min(step / cfg.steps, 1.0)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1.0 + math.cos(math.pi * t))


def load_split(cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train uint8 [N, 32, 32, 3], validation uint8 [V, 32, 32, 3]): validation is the END of the train split."""
    x = load_cifar10("train", cfg.data_dir)
    n_val = min(cfg.val_images, len(x) // 2)
    train, val = (x[:-n_val], x[-n_val:]) if n_val else (x, x[:0])
    if cfg.train_images is not None:
        train = train[: cfg.train_images]
    if len(train) < cfg.batch_size:
        raise ValueError(f"{len(train)} training images: expected at least batch_size = {cfg.batch_size}")
    return train, val


@torch.no_grad()
def validate(model, channel, images: np.ndarray, snrs_db, seed: int = 12345, batch: int = 500) -> dict[float, float]:
    """Mean PSNR (dB) per SNR on ``images`` (uint8 [N, H, W, 3]) with a fixed noise seed."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for snr in snrs_db:
        vals = []
        for i in range(0, len(images), batch):
            x = to_tensor(images[i:i + batch])
            z = model.encode(x, torch.full((len(x),), float(snr)))
            z_hat, snr_eff = channel(z, torch.full((len(x),), float(snr)), generator=gen)
            vals.append(psnr_db(model.decode(z_hat, snr_eff), x))
        out[float(snr)] = float(torch.cat(vals).mean()) if vals else float("nan")
    model.train()
    return out


def _batch_indices(cfg: TrainConfig, n: int, step: int) -> np.ndarray:
    per_epoch = n // cfg.batch_size
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([cfg.seed, epoch]).permutation(n)
    return perm[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]


def _progress(cfg: TrainConfig, start: int):
    if not cfg.progress:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    prog = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[info]}"), transient=False)
    task = prog.add_task("train", total=cfg.steps, completed=start, info="")
    prog.start()
    return prog, task


def train(cfg: TrainConfig, on_step: Callable[[int], None] | None = None,
          log: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) training; returns a summary dict (steps, wall_s, best validation PSNR, paths).

    ``on_step(step)`` is called after every optimizer step (tests use it to simulate a crash).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path, log_path = out / "last.pt", out / "best.pt", out / "log.jsonl"

    c = channels_for_ratio(cfg.ratio)
    torch.manual_seed(cfg.seed)  # weight initialization
    model = build_model(cfg.model, c, cfg.filters)
    channel = build_channel(cfg.channel)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, wall_prev, best = 0, 0.0, -math.inf

    if cfg.resume and last_path.exists():
        try:
            raw = read_checkpoint(last_path)
            model, _ = load_checkpoint(last_path)
            ts = raw["train_state"]
        except (CheckpointError, KeyError) as exc:
            raise CheckpointError(f"cannot resume from {last_path}: {exc}; delete it or pass --no-resume") from None
        if raw["model"] != model.config() or raw["model"]["name"] != cfg.model or model.c != c:
            raise CheckpointError(f"cannot resume from {last_path}: it holds {raw['model']}, the config asks for "
                                  f"model {cfg.model!r} at k/n = {cfg.ratio}")
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        opt.load_state_dict(ts["optimizer"])
        gen.set_state(ts["generator"])
        step, wall_prev, best = int(ts["step"]), float(ts["wall_s"]), float(ts["best_val_psnr_db"])
        log(f"resumed from {last_path} at step {step}")
    elif cfg.init_from:
        try:
            source, _ = load_checkpoint(cfg.init_from, expect_model=cfg.model)
        except CheckpointError as exc:
            raise CheckpointError(f"--init-from: {exc}") from None
        if tuple(source.filters) != tuple(model.filters):
            raise ValueError(f"--init-from {cfg.init_from}: filters {tuple(source.filters)}, the run asks for "
                             f"{tuple(model.filters)}: pass --filters {','.join(map(str, source.filters))}")
        sliced = [k for k, v in warm_start(model, source).items() if v == "sliced"]
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        log(f"initialised from {cfg.init_from} (k/n = {ratio_string(source.c)}); sliced to c = {c}: "
            f"{', '.join(sliced) or 'nothing'}")
    model.train()

    train_x, val_x = load_split(cfg)
    n_params = count_parameters(model)
    base_meta = {"ratio": ratio_string(c), "model_name": cfg.model, "channel": cfg.channel,
                 "snr_range_db": [cfg.snr_min_db, cfg.snr_max_db], "batch_size": cfg.batch_size,
                 "train_images": len(train_x), "val_images": len(val_x), "seed": cfg.seed, "threads": cfg.threads,
                 "parameters": n_params, "command": cfg.command, "config": _plain(dataclasses.asdict(cfg))}

    def meta_now(val: float | None = None) -> dict:
        return {**base_meta, "steps": step, "images_seen": step * cfg.batch_size,
                "epochs": round(step * cfg.batch_size / len(train_x), 3),
                "wall_s": round(wall_prev + time.monotonic() - t0, 1), "val_psnr_db": val,
                "device": "cpu", "torch": str(torch.__version__)}

    def save_last() -> None:
        ts = {"optimizer": opt.state_dict(), "generator": gen.get_state(), "step": step,
              "wall_s": wall_prev + time.monotonic() - t0, "best_val_psnr_db": best}
        save_checkpoint(last_path, model, meta_now(), ts)

    t0 = time.monotonic()
    prog = _progress(cfg, step)
    log(f"training {cfg.model} (k/n = {ratio_string(c)}, {n_params} parameters) on {len(train_x)} images, "
        f"{cfg.channel} channel, SNR {cfg.snr_min_db}..{cfg.snr_max_db} dB, steps {step}->{cfg.steps}")
    stopped = "finished"
    try:
        while step < cfg.steps:
            idx = _batch_indices(cfg, len(train_x), step)
            x = to_tensor(train_x[idx])
            flip = torch.rand(len(x), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            snr = cfg.snr_min_db + (cfg.snr_max_db - cfg.snr_min_db) * torch.rand(len(x), generator=gen)
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
            x_hat = model(x, lambda z, s: channel(z, s, generator=gen), snr)
            loss = torch.nn.functional.mse_loss(x_hat, x)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss is {float(loss)} at step {step}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if prog:
                prog[0].update(prog[1], completed=step, info=f"mse {float(loss.detach()):.5f}")
            if on_step:
                on_step(step)
            if len(val_x) and (step % cfg.eval_every == 0 or step == cfg.steps):
                per_snr = validate(model, channel, val_x, _val_snrs(cfg))
                val = float(np.mean(list(per_snr.values())))
                record = {"step": step, "wall_s": round(wall_prev + time.monotonic() - t0, 1),
                          "lr": learning_rate(cfg, step), "train_mse": float(loss.detach()), "val_psnr_db": val,
                          "val_psnr_per_snr": {str(k): round(v, 3) for k, v in per_snr.items()}}
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")
                log(json.dumps(record))
                if val > best:
                    best = val
                    save_checkpoint(best_path, model, {**meta_now(val), "val_psnr_per_snr": record["val_psnr_per_snr"]})
            if step % cfg.ckpt_every == 0:
                save_last()
            if cfg.time_limit_s is not None and time.monotonic() - t0 > cfg.time_limit_s:
                stopped = "time limit"
                break
    finally:
        if prog:
            prog[0].stop()
    save_last()
    if not len(val_x) or not best_path.exists():
        save_checkpoint(best_path, model, meta_now())
    summary = {"stopped": stopped, "steps": step, "wall_s": round(wall_prev + time.monotonic() - t0, 1),
               "best_val_psnr_db": best if best > -math.inf else None, "last": str(last_path), "best": str(best_path)}
    log(json.dumps(summary))
    return summary


def _val_snrs(cfg: TrainConfig) -> list[float]:
    if cfg.snr_min_db == cfg.snr_max_db:
        return [cfg.snr_min_db]
    inside = [s for s in cfg.val_snrs_db if cfg.snr_min_db <= s <= cfg.snr_max_db]
    return inside or [0.5 * (cfg.snr_min_db + cfg.snr_max_db)]


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
