"""DeepJSCC models: image -> power-normalized channel symbols -> image, in a registry.

Two architectures share one interface (:class:`JsccModel`):

* ``"bourtsoulatze"`` — the reference of Bourtsoulatze, Kurka & Gündüz, "Deep joint source-channel coding for wireless
  image transmission", IEEE TCCN 2019: five 5×5 convolutions with PReLU (two of stride 2), the bandwidth ratio set by
  the channel count ``c`` of the last encoder layer, normalization to average power 1 per complex symbol, and the
  mirrored transposed-convolution decoder ending in a sigmoid. It is trained for one SNR.
* ``"adjscc"`` — the project's SNR-adaptive model (after Xu et al., "Wireless image transmission using deep
  source channel coding with attention modules", IEEE TCSVT 2021): the same trunk with GDN/IGDN normalization (Ballé
  et al. 2016) and an attention-feature (AF) module after every layer that rescales channels from the feature mean and
  the channel SNR, so ONE model serves every SNR.

Bandwidth ratio. An image of ``n = 3·H·W`` real values is mapped to ``c·(H/4)·(W/4)`` real latent values, paired into
``k = c·H·W/32`` complex channel uses, so ``k/n = c/96`` (``c = 16`` gives ``k/n = 1/6``). The models are fully
convolutional: any ``H, W`` divisible by 4 works (CIFAR-10 32×32 and full-resolution photos alike).

Symbol convention (shared with ``phy.analog.AnalogMapper``): the latent ``z`` of one image is flattened in C-order to
``L = 2k`` reals and read as complex pairs ``z[2i] + j·z[2i+1]``; :func:`power_normalize` scales every image so its mean
``|pair|²`` is exactly 1, i.e. ``sum(z**2) == k``.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from learning.jscc.channels import _snr_vector

#: registry name -> model class
MODELS: dict[str, type[JsccModel]] = {}


def register_model(name: str) -> Callable[[type], type]:
    """Class decorator that adds a model to :data:`MODELS` under ``name``."""

    def deco(cls: type) -> type:
        cls.registry_name = name
        MODELS[name] = cls
        return cls

    return deco


def channels_for_ratio(ratio: float | Fraction | str) -> int:
    """Latent channel count ``c`` giving bandwidth ratio ``k/n = c/96``; ``ratio`` like ``1/6``, ``"1/12"``, 0.1667.

    Raises ValueError if ``96·ratio`` is not (within 1 %) a positive integer.
    """
    r = float(Fraction(ratio)) if isinstance(ratio, str) else float(ratio)
    c = 96.0 * r
    if not (c >= 0.99 and abs(c - round(c)) <= 0.01 * c):
        raise ValueError(f"bandwidth ratio k/n = {ratio}: expected c/96 for a positive integer c "
                         f"(e.g. 1/6 -> c=16, 1/12 -> c=8), got 96*ratio = {c:.3f}")
    return int(round(c))


def ratio_string(c: int) -> str:
    """``16`` -> ``"1/6"``: the bandwidth ratio ``c/96`` as a reduced fraction."""
    f = Fraction(c, 96)
    return f"{f.numerator}/{f.denominator}"


def power_normalize(z: torch.Tensor) -> torch.Tensor:
    """Scale each image's latent to average power 1 per complex symbol.

    Args:
        z: float [B, C, h, w] (any trailing shape) with ``C·h·w`` even.
    Returns:
        float [B, C, h, w]: ``z · sqrt(k / sum(z²))`` per image, with ``k = C·h·w / 2`` complex symbols, so that
        ``mean |z[2i] + j z[2i+1]|² == 1``.
    """
    flat = z.flatten(1)
    k = flat.shape[1] / 2.0
    energy = flat.pow(2).sum(dim=1).clamp_min(1e-12)
    scale = torch.sqrt(k / energy)
    return z * scale.view(-1, *([1] * (z.dim() - 1)))


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé, Laparra & Simoncelli, ICLR 2016) and its inverse.

    ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j²)`` (``inverse=True``: multiply instead of divide). ``beta`` and
    ``gamma`` are kept positive by clamping in the forward pass. Input/output float [B, C, H, W].
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_min = beta_min
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(gamma_init * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta.clamp_min(self.beta_min)
        gamma = self.gamma.clamp_min(0.0)
        c = gamma.shape[0]
        norm = F.conv2d(x * x, gamma.view(c, c, 1, 1), beta)
        norm = torch.sqrt(norm)
        return x * norm if self.inverse else x / norm


class AttentionFeature(nn.Module):
    """ADJSCC attention-feature module: channel-wise scaling from the feature mean and the SNR.

    ``x · 2·sigmoid(FC(ReLU(FC([mean_hw(x), snr_db/20]))))``. Inputs: x float [B, C, H, W], snr_db float [B].
    The factor 2 (not in Xu et al.) makes the module start near the identity, so eight stacked modules do not shrink
    the signal by 2^8 at initialization; on CPU budgets this trained ~2 dB faster over the first 150 steps.
    """

    def __init__(self, channels: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or max(8, channels // 2)
        self.fc1 = nn.Linear(channels + 1, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        context = torch.cat([x.mean(dim=(2, 3)), (snr_db / 20.0).view(-1, 1).to(x.dtype)], dim=1)
        weights = 2.0 * torch.sigmoid(self.fc2(F.relu(self.fc1(context))))
        return x * weights[:, :, None, None]


class JsccModel(nn.Module):
    """Interface of every DeepJSCC model: ``encode``, ``decode`` and metadata.

    Attributes:
        c: latent channel count (bandwidth ratio ``c/96``).
        filters: hidden channel counts of the four inner layers.
        snr_adaptive: whether ``encode``/``decode`` use ``snr_db``.
    """

    registry_name = "?"
    snr_adaptive = False

    def __init__(self, c: int = 16, filters: tuple[int, ...] = (16, 32, 32, 32)):
        super().__init__()
        if c < 1:
            raise ValueError(f"latent channels c = {c}: expected a positive integer")
        if len(filters) != 4 or min(filters) < 1:
            raise ValueError(f"filters = {filters}: expected 4 positive channel counts")
        self.c = int(c)
        self.filters = tuple(int(f) for f in filters)

    @property
    def ratio(self) -> float:
        """Bandwidth ratio k/n (complex channel uses per real source value)."""
        return self.c / 96.0

    def config(self) -> dict:
        """Constructor arguments, stored in checkpoints."""
        return {"name": self.registry_name, "c": self.c, "filters": list(self.filters)}

    @staticmethod
    def check_images(x: torch.Tensor) -> None:
        """Raise ValueError unless x is float [B, 3, H, W] in [0, 1] with H, W divisible by 4 and finite."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"images shape {tuple(x.shape)}: expected [batch, 3, H, W] (RGB, channels first)")
        if x.shape[2] % 4 or x.shape[3] % 4 or x.shape[2] < 4 or x.shape[3] < 4:
            raise ValueError(f"images size {x.shape[2]}x{x.shape[3]}: expected H and W positive multiples of 4")
        if not torch.is_floating_point(x):
            raise ValueError(f"images dtype {x.dtype}: expected float in [0, 1]")
        if not torch.isfinite(x).all():
            raise ValueError("images contain NaN or Inf")

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(C, h, w) of the latent for an H×W image."""
        return (self.c, height // 4, width // 4)

    def n_channel_uses(self, height: int, width: int) -> int:
        """Complex channel uses k per H×W image."""
        return self.c * (height // 4) * (width // 4) // 2

    def encode(self, x: torch.Tensor, snr_db: torch.Tensor | None = None) -> torch.Tensor:
        """Images float [B, 3, H, W] in [0, 1] -> latent float [B, c, H/4, W/4], average power 1 per complex pair."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor, snr_db: torch.Tensor | None = None) -> torch.Tensor:
        """Received latent float [B, c, H/4, W/4] -> images float [B, 3, H, W] in [0, 1]."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, channel: Callable, snr_db: torch.Tensor) -> torch.Tensor:
        """Encode, pass through ``channel(z, snr_db) -> (z_hat, snr_eff_db)``, decode. snr_db: float [B]."""
        z = self.encode(x, snr_db)
        z_hat, snr_eff = channel(z, snr_db)
        return self.decode(z_hat, snr_eff)


def _snr_tensor(snr_db, batch: int, device) -> torch.Tensor:
    if snr_db is None:
        raise ValueError("snr_db is required by an SNR-adaptive model (float or float [B] in dB)")
    return _snr_vector(snr_db, batch, device)


@register_model("bourtsoulatze")
class BourtsoulatzeJSCC(JsccModel):
    """Reference DeepJSCC (Bourtsoulatze et al. 2019): 5×5 convs + PReLU, SNR-agnostic (trained at one SNR).

    The paper uses ``filters = (16, 32, 32, 32)``.
    """

    def __init__(self, c: int = 16, filters: tuple[int, ...] = (16, 32, 32, 32)):
        super().__init__(c, filters)
        f1, f2, f3, f4 = self.filters
        self.encoder = nn.Sequential(
            nn.Conv2d(3, f1, 5, 2, 2), nn.PReLU(f1),
            nn.Conv2d(f1, f2, 5, 2, 2), nn.PReLU(f2),
            nn.Conv2d(f2, f3, 5, 1, 2), nn.PReLU(f3),
            nn.Conv2d(f3, f4, 5, 1, 2), nn.PReLU(f4),
            nn.Conv2d(f4, self.c, 5, 1, 2), nn.PReLU(self.c),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(self.c, f4, 5, 1, 2), nn.PReLU(f4),
            nn.ConvTranspose2d(f4, f3, 5, 1, 2), nn.PReLU(f3),
            nn.ConvTranspose2d(f3, f2, 5, 1, 2), nn.PReLU(f2),
            nn.ConvTranspose2d(f2, f1, 5, 2, 2, output_padding=1), nn.PReLU(f1),
            nn.ConvTranspose2d(f1, 3, 5, 2, 2, output_padding=1), nn.Sigmoid(),
        )

    def encode(self, x, snr_db=None):
        self.check_images(x)
        return power_normalize(self.encoder(x))

    def decode(self, z, snr_db=None):
        return self.decoder(z)


@register_model("adjscc")
class AdaptiveJSCC(JsccModel):
    """SNR-adaptive DeepJSCC: conv → GDN → PReLU → AF blocks (decoder: tconv → IGDN → PReLU → AF).

    One model serves every SNR: ``encode(x, snr_db)`` and ``decode(z, snr_db)`` take the channel SNR in dB (float or
    float [B]); the decoder should get the receiver's estimate.
    """

    snr_adaptive = True

    def __init__(self, c: int = 16, filters: tuple[int, ...] = (32, 64, 64, 64)):
        super().__init__(c, filters)
        f1, f2, f3, f4 = self.filters
        enc_io = [(3, f1, 2), (f1, f2, 2), (f2, f3, 1), (f3, f4, 1)]
        self.enc_convs = nn.ModuleList(nn.Conv2d(i, o, 5, s, 2) for i, o, s in enc_io)
        self.enc_gdn = nn.ModuleList(GDN(o) for _, o, _ in enc_io)
        self.enc_act = nn.ModuleList(nn.PReLU(o) for _, o, _ in enc_io)
        self.enc_af = nn.ModuleList(AttentionFeature(o) for _, o, _ in enc_io)
        self.enc_out = nn.Conv2d(f4, self.c, 5, 1, 2)
        dec_io = [(self.c, f4, 1), (f4, f3, 1), (f3, f2, 1), (f2, f1, 2)]
        self.dec_convs = nn.ModuleList(
            nn.ConvTranspose2d(i, o, 5, s, 2, output_padding=s - 1) for i, o, s in dec_io)
        self.dec_gdn = nn.ModuleList(GDN(o, inverse=True) for _, o, _ in dec_io)
        self.dec_act = nn.ModuleList(nn.PReLU(o) for _, o, _ in dec_io)
        self.dec_af = nn.ModuleList(AttentionFeature(o) for _, o, _ in dec_io)
        self.dec_out = nn.ConvTranspose2d(f1, 3, 5, 2, 2, output_padding=1)

    def encode(self, x, snr_db=None):
        self.check_images(x)
        snr = _snr_tensor(snr_db, x.shape[0], x.device)
        h = x
        for conv, gdn, act, af in zip(self.enc_convs, self.enc_gdn, self.enc_act, self.enc_af):
            h = af(act(gdn(conv(h))), snr)
        return power_normalize(self.enc_out(h))

    def decode(self, z, snr_db=None):
        snr = _snr_tensor(snr_db, z.shape[0], z.device)
        h = z
        for conv, gdn, act, af in zip(self.dec_convs, self.dec_gdn, self.dec_act, self.dec_af):
            h = af(act(gdn(conv(h))), snr)
        return torch.sigmoid(self.dec_out(h))


def build_model(name: str, c: int = 16, filters: tuple[int, ...] | None = None) -> JsccModel:
    """Instantiate a registered model; ValueError naming the known models for an unknown name."""
    if name not in MODELS:
        raise ValueError(f"model {name!r}: expected one of {', '.join(sorted(MODELS))}")
    cls = MODELS[name]
    return cls(c) if filters is None else cls(c, tuple(filters))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def psnr_db(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [0, 1]: ``10 log10(1 / MSE)``. x, y float [B, ...] -> float [B]."""
    mse = (x - y).pow(2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return 10.0 * torch.log10(1.0 / mse)


__all__ = [
    "GDN",
    "MODELS",
    "AdaptiveJSCC",
    "AttentionFeature",
    "BourtsoulatzeJSCC",
    "JsccModel",
    "build_model",
    "channels_for_ratio",
    "count_parameters",
    "power_normalize",
    "psnr_db",
    "ratio_string",
    "register_model",
]
