"""Differentiable channels for training and simulating DeepJSCC (torch), one class per channel model.

Every channel is a callable ``channel(z, snr_db, generator=None) -> (z_hat, snr_eff_db)``:

* ``z``: float [B, ...] real latent, read per image in C-order as complex pairs ``z[2i] + j·z[2i+1]`` with average
  power 1 per complex symbol (see :func:`learning.jscc.models.power_normalize`).
* ``snr_db``: float [B] (or scalar) nominal SNR in dB.
* ``z_hat``: float [B, ...] the receiver's estimate of ``z`` (after equalization where the channel fades).
* ``snr_eff_db``: float [B] the SNR the decoder should be told (the nominal one for AWGN, the post-equalization one
  for fading with known channel).

SNR convention (project-wide, see phy/ofdm.py): SNR = Es/N0 with Es = 1 per complex symbol, so the complex noise
variance is ``N0 = 1/SNR``, i.e. ``1/(2·SNR)`` per real component. (A common reimplementation adds noise of variance
``1/SNR`` to each real component, which is 3 dB worse than nominal; ``test_jscc_channels`` guards against it.)
"""

from __future__ import annotations

import math

import torch

from phy.ofdm import OfdmConfig

#: data subcarrier indices of phy's ``wifi64`` preset (the numerology the radio path uses)
WIFI64_DATA_SUBCARRIERS: tuple[int, ...] = tuple(OfdmConfig.preset("wifi64").data_subcarriers)


def _snr_vector(snr_db, batch: int, device) -> torch.Tensor:
    """snr_db (a scalar or float[B], dB) as float32[B]; ValueError for other shapes."""
    t = torch.as_tensor(snr_db, dtype=torch.float32, device=device)
    if t.dim() == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"snr_db shape {tuple(t.shape)}: expected a scalar or [{batch}]")
    return t


def _as_complex(z: torch.Tensor) -> torch.Tensor:
    """float [B, ...] with an even number of values per image -> complex64 [B, k]."""
    flat = z.reshape(z.shape[0], -1)
    if flat.shape[1] % 2:
        raise ValueError(f"latent has {flat.shape[1]} values per image: expected an even number (complex pairs)")
    return torch.view_as_complex(flat.float().reshape(z.shape[0], -1, 2).contiguous())


def _as_real(s: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(s).reshape(like.shape).to(like.dtype)


def complex_noise(shape: tuple[int, ...], noise_var: torch.Tensor, generator: torch.Generator | None = None,
                  device=None) -> torch.Tensor:
    """Circularly-symmetric complex Gaussian noise, complex64 ``shape``; ``noise_var`` (E|n|², broadcastable to
    ``shape``) is split equally between real and imaginary parts."""
    re_im = torch.randn(*shape, 2, generator=generator, device=device)
    return torch.view_as_complex(re_im) * torch.sqrt(noise_var / 2.0)


class AwgnChannel:
    """``y = s + n``, ``n ~ CN(0, 1/SNR)`` per complex symbol; ``snr_eff_db = snr_db``."""

    name = "awgn"

    def __call__(self, z: torch.Tensor, snr_db, generator: torch.Generator | None = None):
        snr = _snr_vector(snr_db, z.shape[0], z.device)
        noise_var = (10.0 ** (-snr / 10.0)).view(-1, *([1] * (z.dim() - 1)))
        noise = torch.randn(z.shape, generator=generator, device=z.device) * torch.sqrt(noise_var / 2.0)
        return z + noise, snr

    def __repr__(self) -> str:
        return "AwgnChannel()"


class RayleighBlockChannel:
    """Slow (block) Rayleigh fading: one ``h ~ CN(0, 1)`` per image, ``y = h·s + n``, ``n ~ CN(0, 1/SNR)``.

    ``csi="perfect"``: the receiver knows h and equalizes (``s_hat = y/h``); the decoder is told the instantaneous
    post-equalization SNR ``SNR·|h|²``. ``csi="none"``: ``y`` is delivered as is with the nominal SNR (the decoder must
    cope with the unknown gain and phase, as in Bourtsoulatze et al. 2019).
    """

    name = "rayleigh"

    def __init__(self, csi: str = "perfect", min_gain_db: float = -30.0):
        if csi not in ("perfect", "none"):
            raise ValueError(f"csi = {csi!r}: expected 'perfect' or 'none'")
        self.csi = csi
        self.min_gain_db = min_gain_db

    def __call__(self, z: torch.Tensor, snr_db, generator: torch.Generator | None = None):
        batch = z.shape[0]
        snr = _snr_vector(snr_db, batch, z.device)
        s = _as_complex(z)
        h = complex_noise((batch, 1), torch.ones(1, device=z.device), generator, z.device)
        floor = 10.0 ** (self.min_gain_db / 20.0)
        h = torch.where(h.abs() < floor, h / h.abs().clamp_min(1e-12) * floor, h)  # avoid division blow-up
        noise_var = (10.0 ** (-snr / 10.0)).view(-1, 1)
        y = h * s + complex_noise(s.shape, noise_var, generator, z.device)
        if self.csi == "none":
            return _as_real(y, z), snr
        gain_db = 10.0 * torch.log10(h.abs().pow(2).view(-1))
        return _as_real(y / h, z), snr + gain_db

    def __repr__(self) -> str:
        return f"RayleighBlockChannel(csi={self.csi!r})"


class OfdmChannel:
    """OFDM-equivalent channel: per-subcarrier frequency-selective fading and the receiver's channel-estimation error.

    Symbols fill the resource grid subcarrier-first (symbol ``i`` on data subcarrier ``i mod n_sc`` of OFDM symbol
    ``i div n_sc``). Each image sees one static multipath channel of ``n_taps`` Rayleigh taps with an exponential power
    delay profile ``P_l ∝ exp(-l / delay_spread)`` (unit total power), whose frequency response on the ``fft_size``-point
    grid gives ``H_f``. The receiver estimates ``H_f`` by least squares from ``n_training`` unit-power training
    symbols (phy's long training symbol), so ``H_est = H + e`` with ``e ~ CN(0, N0/n_training)``, and equalizes with zero
    forcing, ``s_hat = y / H_est``. The decoder is told the nominal SNR (the mean channel gain is 1).
    """

    name = "ofdm"

    def __init__(self, data_subcarriers: tuple[int, ...] = WIFI64_DATA_SUBCARRIERS, fft_size: int = 64,
                 n_taps: int = 8, delay_spread: float = 1.5, n_training: int = 2, min_gain_db: float = -30.0):
        if fft_size < 2 or not data_subcarriers:
            raise ValueError(f"fft_size = {fft_size}, {len(data_subcarriers)} data subcarriers: expected both > 0")
        if any(abs(k) >= fft_size // 2 + 1 for k in data_subcarriers):
            raise ValueError(f"data_subcarriers {data_subcarriers}: expected |k| <= fft_size/2 = {fft_size // 2}")
        if n_taps < 1 or delay_spread <= 0 or n_training < 1:
            raise ValueError(f"n_taps = {n_taps}, delay_spread = {delay_spread}, n_training = {n_training}: "
                             "expected positive values")
        self.data_subcarriers = tuple(int(k) for k in data_subcarriers)
        self.fft_size = fft_size
        self.n_taps = n_taps
        self.delay_spread = delay_spread
        self.n_training = n_training
        self.min_gain_db = min_gain_db
        pdp = torch.exp(-torch.arange(n_taps, dtype=torch.float32) / delay_spread)
        self._tap_power = pdp / pdp.sum()
        k = torch.tensor(self.data_subcarriers, dtype=torch.float32)
        lags = torch.arange(n_taps, dtype=torch.float32)
        self._dft = torch.exp(-2j * math.pi * torch.outer(lags, k) / fft_size).to(torch.complex64)  # [n_taps, n_sc]

    @property
    def n_subcarriers(self) -> int:
        return len(self.data_subcarriers)

    def frequency_response(self, batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """complex64 [batch, n_sc]: one channel realization per image, ``E|H_f|² = 1``."""
        taps = complex_noise((batch, self.n_taps), self._tap_power.to(device), generator, device)
        return taps @ self._dft.to(device)

    def __call__(self, z: torch.Tensor, snr_db, generator: torch.Generator | None = None):
        batch = z.shape[0]
        snr = _snr_vector(snr_db, batch, z.device)
        s = _as_complex(z)
        k = s.shape[1]
        n_sym = -(-k // self.n_subcarriers)
        h = self.frequency_response(batch, generator, z.device)  # [B, n_sc]
        h_sym = h.repeat(1, n_sym)[:, :k]  # subcarrier i mod n_sc
        noise_var = (10.0 ** (-snr / 10.0)).view(-1, 1)
        y = h_sym * s + complex_noise(s.shape, noise_var, generator, z.device)
        h_est = h + complex_noise(h.shape, noise_var / self.n_training, generator, z.device)
        floor = 10.0 ** (self.min_gain_db / 20.0)
        h_est = torch.where(h_est.abs() < floor, h_est / h_est.abs().clamp_min(1e-12) * floor, h_est)
        s_hat = y / h_est.repeat(1, n_sym)[:, :k]
        return _as_real(s_hat, z), snr

    def __repr__(self) -> str:
        return (f"OfdmChannel(n_sc={self.n_subcarriers}, fft_size={self.fft_size}, n_taps={self.n_taps}, "
                f"delay_spread={self.delay_spread}, n_training={self.n_training})")


#: registry name -> channel class
CHANNELS = {"awgn": AwgnChannel, "rayleigh": RayleighBlockChannel, "ofdm": OfdmChannel}


def build_channel(name: str, **kwargs):
    """Instantiate a channel by name (``awgn``, ``rayleigh``, ``ofdm``)."""
    if name not in CHANNELS:
        raise ValueError(f"channel {name!r}: expected one of {', '.join(CHANNELS)}")
    return CHANNELS[name](**kwargs)


def measured_snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    """``10 log10(mean|s|² / mean|y - s|²)`` over all complex pairs: the SNR a measurement sees."""
    sig = clean.float().pow(2).sum()
    noise = (noisy.float() - clean.float()).pow(2).sum()
    return float(10.0 * torch.log10(sig / noise))
