"""DeepJSCC images from one device to the PS in the cell across processes: the image side of ``otalab cell --task
jscc``, with the same encode → link → decode pipeline as the in-process path (:func:`lab.experiments.jscc_air.
send_images`, the shipped checkpoint :data:`lab.experiments.jscc_air.DEFAULT_CHECKPOINT`).

- The device (its ClientApp, :func:`device_values`) loads CIFAR-10 test image ``image``, encodes it with the
  checkpoint's encoder (:func:`lab.experiments.jscc_air.encode_latents`, told ``encoder_snr_db``) and hands the latent
  to its radio node as complex values u[i] = z[2i] + j z[2i+1] (unit mean power: the encoder normalises to unit power
  per complex pair), which go over the air in the round's data burst: never over the control plane.
- The PS (the ServerApp) runs :func:`send_images` with a :class:`CellLink`: each latent is one data round of
  :class:`lab.experiments.cell_run.CellRun` (beacon, pilots, CSI/TA feedback, the device's pre-equalized burst at
  the planned slot); the PS's estimate v̂ of u becomes ẑ[2i] = Re v̂[i], ẑ[2i+1] = Im v̂[i], and the decoder is told
  the PS's own SNR estimate 10·log10(1/N̂) (N̂: its noise variance per complex value after the sum-channel
  normalisation, N0/α²; for unit-power values the SNR per complex pair).
- The latents the PS computes in ``send_images`` from the same images (it loads them to score PSNR and SSIM) are
  only the reference of the measured SNR ``10·log10(Σ z² / Σ (ẑ − z)²)``: the PS never sends them anywhere.
"""

from __future__ import annotations

import math

import numpy as np

from lab.experiments.jscc_air import DEFAULT_CHECKPOINT, Reception, encode_latents, measured_snr_db

_MODELS: dict[str, tuple] = {}


def load_model(checkpoint: str | None):
    """(model, metadata) of ``checkpoint`` (None: the shipped one), loaded once per process."""
    from learning.jscc.checkpoint import load_checkpoint

    key = str(checkpoint or DEFAULT_CHECKPOINT)
    if key not in _MODELS:
        _MODELS[key] = load_checkpoint(key)
    return _MODELS[key]


def latent_to_values(z: np.ndarray) -> np.ndarray:
    """float32[L] (L even) -> complex64[L/2]: u[i] = z[2i] + j z[2i+1]."""
    z = np.asarray(z, np.float32).reshape(-1)
    if z.size % 2:
        raise ValueError(f"latent of {z.size} real values: expected an even count (complex pairs)")
    return (z[0::2] + 1j * z[1::2]).astype(np.complex64)


def values_to_latent(u: np.ndarray) -> np.ndarray:
    """complex[L/2] -> float32[L]: the inverse of :func:`latent_to_values`."""
    u = np.asarray(u).reshape(-1)
    z = np.empty(2 * u.size, np.float32)
    z[0::2], z[1::2] = u.real, u.imag
    return z


def load_images(first: int, count: int, data_dir: str | None = None) -> np.ndarray:
    """CIFAR-10 test images ``first .. first+count-1`` (uint8 [count, 32, 32, 3])."""
    from learning.jscc.data import load_cifar10

    if first < 0 or count < 1:
        raise ValueError(f"images {first}..{first + count - 1}: expected first >= 0 and at least one image")
    return load_cifar10("test", data_dir, first, first + count)


def device_values(spec: dict) -> np.ndarray:
    """The device side of a jscc data step: ``spec`` = ``{"image": i, "encoder_snr_db": s, "checkpoint": path|None,
    "data_dir": path|None, "n": values}``; returns complex64[n], the latent of CIFAR-10 test image i."""
    model, meta = load_model(spec.get("checkpoint"))
    img = load_images(int(spec["image"]), 1, spec.get("data_dir"))
    z, _ = encode_latents(model, img, float(spec["encoder_snr_db"]), meta.get("snr_range_db"))
    u = latent_to_values(z[0])
    if "n" in spec and u.size != int(spec["n"]):
        raise ValueError(f"image {spec['image']}: latent of {u.size} complex values, the PS expects n={spec['n']} "
                         f"(different checkpoints on the PS and the device?)")
    return u


class CellLink:
    """A :func:`send_images` link over the cell across processes (module docstring): one data round of ``run``
    (a CellRun after access) per latent. ``spec``: what the device needs besides the image index (encoder_snr_db,
    checkpoint, data_dir); ``first``: the CIFAR-10 test index of the first latent. ``rounds``: the RoundRecords,
    ``images``: the image index of each."""

    def __init__(self, run, spec: dict, first: int = 0):
        self.run, self.spec, self.next_image = run, dict(spec), int(first)
        self.rounds: list = []
        self.images: list[int] = []          # the CIFAR-10 test index each round carried
        self.stats = {"sent": 0, "received": 0, "lost": 0, "non_finite": 0}

    def send(self, latents: np.ndarray) -> list[Reception]:
        out = []
        for z in np.asarray(latents, np.float32):
            image, self.next_image = self.next_image, self.next_image + 1
            self.stats["sent"] += 1
            if not self.run.live:
                self.stats["lost"] += 1
                out.append(Reception(None, float("nan"), float("nan"), "lost"))
                continue
            n = z.size // 2
            rr = self.run.data_round({"kind": "jscc", "n": n, "image": image, **self.spec}, seed=image)
            self.rounds.append(rr)
            self.images.append(image)
            sent = any(st.get("sent") for st in rr.stats.values())
            if not sent or not rr.active:
                self.stats["lost"] += 1
                out.append(Reception(None, float("nan"), float("nan"), "lost"))
                continue
            vals = values_to_latent(rr.estimate[:n])
            if not (np.all(np.isfinite(vals)) and math.isfinite(rr.noise_var) and rr.noise_var > 0):
                self.stats["non_finite"] += 1
                out.append(Reception(None, float("nan"), float("nan"), "non-finite"))
                continue
            self.stats["received"] += 1
            out.append(Reception(vals, -10.0 * math.log10(rr.noise_var), measured_snr_db(z, vals), "ok"))
        return out
