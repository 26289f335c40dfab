"""Typed messages of one FEEL round, so device-side and server-side steps can run in one process or on other hosts.

Every message is batched over a leading device axis (``ids``: int64[M]); a single remote device sends M = 1.

Round t::

    server  --GlobalModel-->      devices         (broadcast theta_t)
    devices --UpdateReport-->     server          (side information: update norm, finite flag; a few bytes each)
    server  --Schedule-->         devices         (who transmits; NaN / exploding updates excluded, with reasons)
    devices --Transmission-->     channel/server  (analog symbols superposed by the air, or digital bits)
    server: decode -> Aggregate -> optimizer step
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from learning.feel.channel import LinearSymbols


@dataclass(frozen=True)
class GlobalModel:
    """Server -> devices: ``params`` float32[d] at ``round``."""

    round: int
    params: torch.Tensor


@dataclass(frozen=True)
class LocalUpdate:
    """A group of devices' local results: ``vector`` float32[M, d] (gradient, or pseudo-gradient for several local
    steps), ``loss`` float32[M] local training loss at the broadcast model."""

    ids: torch.Tensor
    vector: torch.Tensor
    loss: torch.Tensor


@dataclass(frozen=True)
class UpdateReport:
    """Devices -> server side information: ``norm`` float32[M] of the update, ``finite`` bool[M]."""

    ids: torch.Tensor
    norm: torch.Tensor
    finite: torch.Tensor


@dataclass(frozen=True)
class Schedule:
    """Server -> devices: ``transmit`` bool[M] (aligned with the report's ids) and ``excluded``: device id -> reason."""

    round: int
    ids: torch.Tensor
    transmit: torch.Tensor
    excluded: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Transmission:
    """Devices -> air/server, one of three payload kinds.

    * ``symbols`` float32[M, s]: analog radiated real symbols (A-DSGD, uncoded), superposed by the channel;
    * ``positions`` int64[M, q] and ``values`` float32[M]: D-DSGD's quantized message (q positions sharing one value),
      carried as ``bits`` bits per device at the MAC's capacity;
    * ``vectors`` float32[M, d]: exact updates (error-free benchmark);
    * ``linear``: analog symbols in factored form x_m = a_m op(payload_m) (A-DSGD), which a symbol-level channel
      superposes with one application of op; :meth:`radiated` gives the rows for any other channel.

    ``weight`` float32[M] and ``represented`` float32[M, d] are simulation-only truth (never sent): the vector each
    device's payload stands for and its weight in the server's target, sum_m w_m r_m / sum_m w_m, used to report the
    reconstruction NMSE.
    """

    ids: torch.Tensor
    weight: torch.Tensor
    represented: torch.Tensor
    symbols: torch.Tensor | None = None
    positions: torch.Tensor | None = None
    values: torch.Tensor | None = None
    vectors: torch.Tensor | None = None
    bits: float = 0.0
    linear: LinearSymbols | None = None

    def radiated(self) -> torch.Tensor | None:
        """The analog symbols float32[M, s] row by row (materialised from ``linear`` when given in factored form)."""
        return self.linear.rows() if self.linear is not None else self.symbols

    def select(self, mask: torch.Tensor) -> "Transmission":
        """The rows of devices in ``mask`` (bool[M]): what actually went out (drop-outs removed)."""
        pick = (lambda t: None if t is None else t[mask])
        if bool(mask.all()):
            return self
        return Transmission(self.ids[mask], self.weight[mask], self.represented[mask], pick(self.symbols),
                            pick(self.positions), pick(self.values), pick(self.vectors), self.bits,
                            None if self.linear is None else self.linear.select(mask))


@dataclass(frozen=True)
class Aggregate:
    """Server's estimate of the average update, ``vector`` float32[d]; ``ok`` False if unusable (e.g. no device);
    ``info``: scheme diagnostics (AMP iterations, bits, q, ...)."""

    vector: torch.Tensor
    ok: bool = True
    info: dict = field(default_factory=dict)
