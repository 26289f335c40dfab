"""The over-the-air sum channel: the protocol FEEL schemes talk to, and its symbol-level implementation.

A round on a *sum channel* (Gaussian multiple-access channel, Amiri & Gündüz TSP 2020, Sec. II system model):

    y = sum_m h_m x_m + z,   x_m in R^s (device m's radiated real symbols), z ~ N(0, sigma^2 I_s)

1. ``csi(round)`` -> :class:`RoundCsi`: each device's effective real channel gain h_m > 0 (after the device has
   pre-compensated the phase) and whether it may transmit. Fading uses *truncated channel inversion* (Amiri &
   Gündüz, TWC 2020, Sec. III): device m transmits only if |h_m|^2 >= threshold and then radiates x_m / h_m, so its
   symbols arrive with unit gain; devices below the threshold stay silent this round.
2. The devices build their radiated symbols (the schemes scale them so that sum_i x_{m,i}^2 <= P_t, counting the
   pre-equalisation 1/h_m) and call ``transmit(x, csi)`` -> :class:`Reception` with y and the noise variance.

``SymbolChannel`` is the fast symbol-level simulation: one matrix-vector product over all M devices, no Python loop
per device. The radio path (phy frames + sync timing advance and pre-equalisation over any radio) implements the same
protocol in ``lab`` and plugs in unchanged; "symbols" there are the real values carried by ``phy.analog``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import numpy as np
import torch

FADING = ("none", "rayleigh")


@dataclass(frozen=True)
class RoundCsi:
    """Channel state for one round. ``gain``: float32[M] effective real amplitude h_m >= 0 (1 on AWGN);
    ``active``: bool[M], False for devices silenced by truncated inversion (|h_m|^2 < threshold)."""

    round: int
    gain: torch.Tensor
    active: torch.Tensor


@dataclass(frozen=True)
class Reception:
    """What the parameter server hears: ``y`` float32[s] and the noise variance per real symbol ``noise_var``.
    ``energy``: float32[M] energy each device radiated this round (sum of squares of its row), for power accounting."""

    y: torch.Tensor
    noise_var: float
    energy: torch.Tensor


@dataclass(frozen=True)
class LinearSymbols:
    """Radiated symbols given in factored form: x_m = amplitude_m * operator(payload_m), one linear ``operator``
    shared by every device.

    ``amplitude`` float32[M] (power scaling and pre-equalisation, e.g. sqrt(alpha_m)/h_m), ``payload`` float32[M, n],
    ``operator``: a linear map float32[n] -> float32[s] applied along the last axis (float32[..., n] ->
    float32[..., s]); ``energy`` float32[M]: ||x_m||^2 as the encoder computed it (for power accounting).

    Because the air adds what the devices radiate and ``operator`` is linear,
    sum_m c_m x_m = operator(sum_m c_m amplitude_m payload_m): a channel that knows this form forms the superposed
    signal with ONE application of ``operator`` instead of M (:meth:`SymbolChannel.transmit_linear`); any other
    channel gets the rows from :meth:`rows`.
    """

    amplitude: torch.Tensor
    payload: torch.Tensor
    operator: Callable[[torch.Tensor], torch.Tensor]
    energy: torch.Tensor

    def rows(self) -> torch.Tensor:
        """The per-device symbols float32[M, s] (M applications of the operator; what a radio must radiate)."""
        return self.operator(self.payload) * self.amplitude[:, None]

    def select(self, mask: torch.Tensor) -> "LinearSymbols":
        """The devices in ``mask`` bool[M]."""
        return LinearSymbols(self.amplitude[mask], self.payload[mask], self.operator, self.energy[mask])


@runtime_checkable
class SumChannel(Protocol):
    """What a FEEL scheme needs from the air; symbol-level and radio implementations both provide it."""

    n_devices: int
    noise_var: float
    symbol_rate: float

    def csi(self, round: int) -> RoundCsi:
        """Channel state (gains and who may transmit) for ``round``."""
        ...

    def transmit(self, x: torch.Tensor, csi: RoundCsi) -> Reception:
        """Superpose the devices' radiated symbols x: float32[M, s] (rows of silent devices are ignored)."""
        ...


class SymbolChannel:
    """Symbol-level Gaussian MAC, vectorized over devices; AWGN or Rayleigh block fading with truncated inversion.

    n_devices: M; noise_var: sigma^2 per real channel use; fading: "none" or "rayleigh" (h_m = |g_m|, g_m ~ CN(0, 1),
    independent per device and round, constant over the s channel uses of a round); threshold: truncation threshold
    on |h_m|^2 (TWC 2020); symbol_rate: real channel uses per second, only for reporting air time.
    Randomness for round t comes from ``np.random.default_rng([seed, t, stream])``, so a resumed run sees the same
    noise and fading as an uninterrupted one.
    """

    def __init__(self, n_devices: int, noise_var: float = 1.0, fading: str = "none", threshold: float = 0.1,
                 seed: int = 0, symbol_rate: float = 1e6):
        if n_devices < 1:
            raise ValueError(f"n_devices = {n_devices}: expected >= 1")
        if not noise_var >= 0:
            raise ValueError(f"noise_var = {noise_var}: expected >= 0")
        if fading not in FADING:
            raise ValueError(f"fading = {fading!r}: expected one of {', '.join(FADING)}")
        if not threshold >= 0:
            raise ValueError(f"threshold = {threshold}: expected >= 0 (a power gain)")
        if not symbol_rate > 0:
            raise ValueError(f"symbol_rate = {symbol_rate}: expected > 0 channel uses per second")
        self.n_devices = int(n_devices)
        self.noise_var = float(noise_var)
        self.fading = fading
        self.threshold = float(threshold)
        self.seed = int(seed)
        self.symbol_rate = float(symbol_rate)

    def __repr__(self) -> str:
        return (f"SymbolChannel(n_devices={self.n_devices}, noise_var={self.noise_var}, fading={self.fading!r}, "
                f"threshold={self.threshold}, seed={self.seed})")

    def csi(self, round: int) -> RoundCsi:
        if self.fading == "none":
            gain = np.ones(self.n_devices, np.float32)
        else:
            g = np.random.default_rng([self.seed, round, 11]).standard_normal((2, self.n_devices)) / np.sqrt(2.0)
            gain = np.hypot(g[0], g[1]).astype(np.float32)
        active = gain.astype(np.float64) ** 2 >= (self.threshold if self.fading != "none" else 0.0)
        return RoundCsi(round, torch.from_numpy(gain), torch.from_numpy(active))

    def transmit(self, x: torch.Tensor, csi: RoundCsi) -> Reception:
        if x.dim() != 2 or x.shape[0] != self.n_devices:
            raise ValueError(f"x has shape {tuple(x.shape)}; expected [n_devices={self.n_devices}, s]")
        x = x.to(torch.float32)
        weights = csi.gain * csi.active.to(torch.float32)  # silent devices contribute nothing
        noise = np.random.default_rng([self.seed, csi.round, 12]).standard_normal(x.shape[1])
        y = weights @ x + torch.from_numpy((np.sqrt(self.noise_var) * noise).astype(np.float32))
        energy = (x * x).sum(1) * csi.active.to(torch.float32)
        return Reception(y=y, noise_var=self.noise_var, energy=energy)

    def transmit_linear(self, x: LinearSymbols, csi: RoundCsi, devices: torch.Tensor | None = None) -> Reception:
        """Superpose symbols in factored form: y = operator(sum_m h_m a_m payload_m) + z, the same y as
        ``transmit(x.rows(), csi)`` (same noise draw) to float32 rounding, at the cost of one operator application
        plus an [M] x [M, n] product instead of M applications.

        devices: int64[M'] the device index (0..n_devices-1) of each row of x (default: row m is device m); devices
        without a row radiate nothing. ``energy`` of the reception is float32[n_devices], the encoder's ||x_m||^2.
        """
        idx = torch.arange(self.n_devices) if devices is None else devices.to(torch.int64)
        if x.payload.dim() != 2 or x.payload.shape[0] != idx.shape[0] or x.amplitude.shape != idx.shape:
            raise ValueError(f"payload {tuple(x.payload.shape)}, amplitude {tuple(x.amplitude.shape)}: expected "
                             f"[{idx.shape[0]}, n] and [{idx.shape[0]}] (one row per transmitting device)")
        if idx.numel() and not (0 <= int(idx.min()) and int(idx.max()) < self.n_devices):
            raise ValueError(f"devices: indices in [{int(idx.min())}, {int(idx.max())}]; expected in "
                             f"[0, {self.n_devices - 1}]")
        live = csi.active[idx]
        weights = csi.gain[idx] * x.amplitude.to(torch.float32) * live.to(torch.float32)  # silent: nothing
        payload = x.payload.to(torch.float32)
        if not bool(live.all()):  # skip the silent rows (a copy of the live ones only)
            weights, payload = weights[live], payload[live]
        clean = x.operator(weights @ payload)
        noise = np.random.default_rng([self.seed, csi.round, 12]).standard_normal(clean.shape[-1])
        y = clean + torch.from_numpy((np.sqrt(self.noise_var) * noise).astype(np.float32))
        energy = torch.zeros(self.n_devices)
        energy[idx[live]] = x.energy.to(torch.float32)[live]
        return Reception(y=y, noise_var=self.noise_var, energy=energy)
