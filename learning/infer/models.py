"""Edge-inference models (the paper's Fig. 2 split): a device-side feature extractor and JSCC encoder, a server-side
JSCC decoder and task head, with a budget of ``CHANNEL_USES`` = 128 real channel uses (64 complex symbols) per query.

* :class:`Backbone` — small CNN, uint8 28x28 grayscale -> feature f float32 [B, FEATURE_DIM]; :class:`CifarBackbone`
  the same for 32x32 RGB (CIFAR-10); :func:`backbone_for` picks by data set;
* :class:`Head` — f -> 10 class logits (the server's classifier; the noiseless baseline is ``Head(Backbone(x))``);
* :class:`JsccEncoder` — (f, SNR) -> z float32 [B, 128] with unit mean power per real value (``||z||^2 = 128``);
* :class:`JsccDecoder` — (z + noise, SNR) -> logits [B, 10] (decoder and a server-side head in one MLP), or for
  retrieval an embedding [B, FEATURE_DIM] (the backbone's output is then itself the embedding; no head).

SNR conditioning: ``snr_db / 20`` is appended to the input of the encoder and decoder, so one model serves the whole
training range (an SNR-adaptive model).
"""

from __future__ import annotations

import torch
from torch import nn

CHANNEL_USES = 128
FEATURE_DIM = 64
N_CLASSES = 10


def images_to_tensor(x) -> torch.Tensor:
    """uint8 [B, H, W] (grayscale) or [B, H, W, 3] (RGB, HWC), numpy or tensor -> float32 [B, C, H, W] in [0, 1]."""
    if getattr(x, "flags", None) is not None and not x.flags.writeable:
        x = x.copy()   # the data loader caches read-only arrays; torch wants writable memory
    t = torch.as_tensor(x).to(torch.float32).div_(255.0)
    return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()


class Backbone(nn.Module):
    """conv3x3(32)-ReLU-pool, conv3x3(64)-ReLU-pool, fc(64)-ReLU, fc(FEATURE_DIM)."""

    def __init__(self, feature_dim: int = FEATURE_DIM):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, feature_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x float32 [B, 1, 28, 28] in [0, 1] -> f [B, feature_dim]."""
        return self.net(x)


class CifarBackbone(nn.Module):
    """32x32 RGB: three blocks conv3x3-BN-ReLU-pool (16, 32, 64 channels), fc(128)-ReLU, fc(FEATURE_DIM); small
    enough to train on a shared CPU in minutes (about 2.6 M multiply-adds per image)."""

    def __init__(self, feature_dim: int = FEATURE_DIM):
        super().__init__()
        blocks = []
        for c_in, c_out in ((3, 16), (16, 32), (32, 64)):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d(2)]
        self.net = nn.Sequential(*blocks, nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(),
                                 nn.Linear(128, feature_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x float32 [B, 3, 32, 32] in [0, 1] -> f [B, feature_dim]."""
        return self.net(x)


def backbone_for(dataset: str) -> nn.Module:
    """The device-side feature extractor for ``dataset``: :class:`CifarBackbone` for "cifar10", else
    :class:`Backbone` (28x28 grayscale)."""
    from learning.infer.data import image_shape

    return CifarBackbone() if len(image_shape(dataset)) == 3 else Backbone()


class Head(nn.Module):
    """f -> ReLU -> Linear -> logits [B, N_CLASSES]."""

    def __init__(self, feature_dim: int = FEATURE_DIM, n_classes: int = N_CLASSES):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Linear(feature_dim, n_classes))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


def _snr_column(snr_db: torch.Tensor, b: int) -> torch.Tensor:
    s = torch.as_tensor(snr_db, dtype=torch.float32).reshape(-1)
    if s.numel() == 1:
        s = s.expand(b)
    if s.numel() != b:
        raise ValueError(f"snr_db has {s.numel()} values for a batch of {b}; expected 1 or {b}")
    return (s / 20.0).unsqueeze(1)


class JsccEncoder(nn.Module):
    """(f [B, F], snr_db [B] or scalar) -> z [B, channel_uses], power-normalized to mean z^2 = 1 per row."""

    def __init__(self, feature_dim: int = FEATURE_DIM, channel_uses: int = CHANNEL_USES, hidden: int = 192):
        super().__init__()
        self.channel_uses = channel_uses
        self.net = nn.Sequential(nn.Linear(feature_dim + 1, hidden), nn.PReLU(), nn.Linear(hidden, hidden),
                                 nn.PReLU(), nn.Linear(hidden, channel_uses))

    def forward(self, f: torch.Tensor, snr_db) -> torch.Tensor:
        z = self.net(torch.cat([f, _snr_column(snr_db, len(f))], 1))
        return z * (self.channel_uses ** 0.5) / z.norm(dim=1, keepdim=True).clamp_min(1e-8)


class JsccDecoder(nn.Module):
    """(received z [B, channel_uses], snr_db) -> logits [B, n_out] (classification) or an embedding [B, n_out]
    (retrieval, normalized by the caller)."""

    def __init__(self, channel_uses: int = CHANNEL_USES, n_out: int = N_CLASSES, hidden: int = 192):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(channel_uses + 1, hidden), nn.PReLU(), nn.Linear(hidden, hidden),
                                 nn.PReLU(), nn.Linear(hidden, n_out))

    def forward(self, y: torch.Tensor, snr_db) -> torch.Tensor:
        return self.net(torch.cat([y, _snr_column(snr_db, len(y))], 1))


def awgn(z: torch.Tensor, snr_db, generator: torch.Generator | None = None) -> torch.Tensor:
    """z + N(0, 10^(-snr_db/10)) per real value (SNR per real channel use for unit-power z)."""
    s = torch.as_tensor(snr_db, dtype=torch.float32).reshape(-1, 1)
    std = torch.pow(10.0, -s / 20.0)
    return z + std * torch.randn(z.shape, generator=generator)
