"""Training of the edge-inference models on CPU (minutes), and the fitted statistics the digital and image-first
schemes use; everything lands in one checkpoint in the project's hashed container (:mod:`learning.safeio`: JSON header with the
training configuration, SHA-256 verified before the payload is loaded with ``torch.load(weights_only=True)``).

Classification — stage 1: backbone + head, cross-entropy, noiseless (the noiseless baseline); stage 2: the backbone is
frozen, its features of the training set are cached, and the JSCC encoder/decoder (+ head) are trained with
cross-entropy through the AWGN channel at SNRs drawn uniformly from ``[snr_min_db, snr_max_db]`` per sample (one
SNR-adaptive model).

Retrieval — stage 1: the backbone's output is an embedding trained contrastively (InfoNCE, temperature
``TEMPERATURE``, two random views of each image, :func:`learning.infer.augment.augment`); stage 2: features of
``VIEWS`` random views per image and the embeddings of the originals are cached, and the JSCC maps a view's feature
through the channel to an embedding trained with InfoNCE against the originals' embeddings in the batch (the gallery
holds originals, the query is a view). Fitted as well: the PCA
of the features (transform coding of the digital scheme) and of the images (the image-first analog scheme).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

FORMAT = "otalab-infer-v1"
TEMPERATURE = 0.1
VIEWS = 2
#: the image-first scheme's PCA is fitted on the first training images up to this many pixel values (all 60 000
#: Fashion-MNIST images; the first 15 311 of CIFAR-10, whose 3072-d covariance from all 50 000 would need GBs)
IMAGE_PCA_VALUES = 60000 * 784


@dataclasses.dataclass
class TrainConfig:
    out: str
    task: str = "classification"
    dataset: str = "fashion-mnist"
    epochs: int = 3
    jscc_steps: int = 6000
    batch_size: int = 128
    lr: float = 2e-3
    snr_min_db: float = -5.0
    snr_max_db: float = 20.0
    seed: int = 0
    threads: int = 1
    data_dir: str | None = None
    train_images: int | None = None
    command: str = ""

    def __post_init__(self):
        if self.task not in ("classification", "retrieval"):
            raise ValueError(f"task = {self.task!r}: expected 'classification' or 'retrieval'")
        if self.epochs < 1 or self.jscc_steps < 1 or self.batch_size < 2:
            raise ValueError(f"epochs = {self.epochs}, jscc_steps = {self.jscc_steps}, batch_size = "
                             f"{self.batch_size}: expected >= 1, >= 1, >= 2")
        from learning.infer.data import image_shape

        image_shape(self.dataset)   # ValueError naming the known data sets
        if not self.snr_min_db <= self.snr_max_db:
            raise ValueError(f"SNR range [{self.snr_min_db}, {self.snr_max_db}] dB: expected min <= max")


def _pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean [D], basis [D, k] (orthonormal columns by decreasing variance), variances [k]) of rows of x."""
    mean = x.mean(0)
    cov = np.cov(x - mean, rowvar=False)
    w, v = np.linalg.eigh(cov)
    order = np.argsort(w)[::-1][:k]
    return mean.astype(np.float32), v[:, order].astype(np.float32), np.maximum(w[order], 0).astype(np.float32)


def train(cfg: TrainConfig, log=print) -> dict:
    """Train both stages, save the checkpoint to ``cfg.out`` (atomically), return its metadata."""
    import torch
    import torch.nn.functional as F

    from learning.infer.augment import augment, shift_flip
    from learning.infer.data import load
    from learning.infer.models import (
        CHANNEL_USES,
        FEATURE_DIM,
        N_CLASSES,
        Head,
        JsccDecoder,
        JsccEncoder,
        awgn,
        backbone_for,
        images_to_tensor,
    )
    from learning.safeio import write_checkpoint

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    x, y = load(cfg.dataset, "train", cfg.data_dir)
    if cfg.train_images:
        x, y = x[:cfg.train_images], y[:cfg.train_images]
    x, y = np.array(x), np.array(y)          # writable copies (the loader caches read-only arrays)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    backbone, head = backbone_for(cfg.dataset), Head()
    opt = torch.optim.Adam([*backbone.parameters(), *head.parameters()], lr=cfg.lr)
    steps = cfg.epochs * math.ceil(len(x) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps)
    t0 = time.process_time()
    step = 0
    for ep in range(cfg.epochs):
        perm = torch.as_tensor(rng.permutation(len(x)))
        for i in range(0, len(x), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            if cfg.task == "classification":
                if x.ndim == 4:    # RGB (CIFAR-10): random shift by up to 4 px and flip per image
                    xb = images_to_tensor(shift_flip(x[idx.numpy()], rng, 4))
                else:
                    xb = images_to_tensor(xt[idx])
                    if rng.random() < 0.5:
                        xb = xb.flip(3)   # horizontal flip (Fashion-MNIST items are left-right symmetric)
                loss = F.cross_entropy(head(backbone(xb)), yt[idx])
            else:
                xi = x[idx.numpy()]
                e1 = F.normalize(backbone(images_to_tensor(augment(xi, rng))), dim=1)
                e2 = F.normalize(backbone(images_to_tensor(augment(xi, rng))), dim=1)
                logits = e1 @ e2.T / TEMPERATURE
                target = torch.arange(len(xi))
                loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        log(f"stage 1 epoch {ep + 1}/{cfg.epochs}: loss {loss.item():.3f}, {time.process_time() - t0:.0f} s CPU")
    backbone.eval()
    head.eval()
    def embed_all(imgs):
        with torch.no_grad():
            return torch.cat([backbone(images_to_tensor(imgs[i:i + 1000])) for i in range(0, len(imgs), 1000)])

    feats = embed_all(x)
    if cfg.task == "retrieval":
        targets = F.normalize(feats, dim=1)                      # gallery side: the originals' embeddings
        view_feats = torch.stack([embed_all(augment(x, rng)) for _ in range(VIEWS)])   # [VIEWS, N, F]
    # stage 2: JSCC with the channel in the loop on cached features
    enc = JsccEncoder()
    dec = JsccDecoder(n_out=N_CLASSES if cfg.task == "classification" else FEATURE_DIM)
    dec_opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=cfg.lr)
    sched2 = torch.optim.lr_scheduler.OneCycleLR(dec_opt, cfg.lr, total_steps=cfg.jscc_steps)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    for s in range(cfg.jscc_steps):
        idx = torch.randint(0, len(feats), (cfg.batch_size,), generator=gen)
        snr = cfg.snr_min_db + (cfg.snr_max_db - cfg.snr_min_db) * torch.rand(cfg.batch_size, generator=gen)
        if cfg.task == "classification":
            logits = dec(awgn(enc(feats[idx], snr), snr, gen), snr)
            loss = F.cross_entropy(logits, yt[idx])
        else:
            v = view_feats[torch.randint(0, VIEWS, (len(idx),), generator=gen), idx]
            e = F.normalize(dec(awgn(enc(v, snr), snr, gen), snr), dim=1)
            loss = F.cross_entropy(e @ targets[idx].T / TEMPERATURE, torch.arange(len(idx)))
        dec_opt.zero_grad()
        loss.backward()
        dec_opt.step()
        sched2.step()
        if (s + 1) % 2000 == 0:
            log(f"stage 2 step {s + 1}/{cfg.jscc_steps}: loss {loss.item():.3f}, "
                f"{time.process_time() - t0:.0f} s CPU")
    f_mean, f_basis, f_var = _pca(feats.numpy().astype(np.float64), feats.shape[1])
    xi = x[:IMAGE_PCA_VALUES // x[0].size].reshape(-1, x[0].size)
    i_mean, i_basis, i_var = _pca(xi.astype(np.float64) / 255.0, CHANNEL_USES)
    meta = {"format": FORMAT, "task": cfg.task, "dataset": cfg.dataset, "channel_uses": CHANNEL_USES,
            "snr_range_db": [cfg.snr_min_db, cfg.snr_max_db], "command": cfg.command,
            "train_config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "command"},
            "cpu_seconds": time.process_time() - t0}
    ckpt = {**meta, "backbone": backbone.state_dict(), "head": head.state_dict(), "jscc_encoder": enc.state_dict(),
            "jscc_decoder": dec.state_dict(), "feat_mean": torch.from_numpy(f_mean),
            "feat_basis": torch.from_numpy(f_basis), "feat_var": torch.from_numpy(f_var),
            "img_mean": torch.from_numpy(i_mean).half(), "img_basis": torch.from_numpy(i_basis).half(),
            "img_var": torch.from_numpy(i_var)}
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(out, FORMAT, ckpt, meta)   # the project's hashed container, written atomically
    log(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB), {meta['cpu_seconds']:.0f} s CPU")
    return meta
