"""Device side of a FEEL round, batched over a group of devices (all M in one process, or one on a remote host).

A :class:`DeviceFleet` holds its devices' local data and error accumulators Delta_m and offers the device-side steps:

1. :meth:`DeviceFleet.local_update` (GlobalModel -> LocalUpdate): the local gradient g_m(theta_t) on the local data
   set, or ``local_steps`` SGD steps whose pseudo-gradient (theta_t - theta_m) / (local_steps * local_lr) is sent;
   all devices in one ``torch.func.vmap`` computation.
2. :func:`report` (LocalUpdate -> UpdateReport): norm and finiteness, the side information the server screens.
3. :meth:`DeviceFleet.encode` (LocalUpdate, Schedule, RoundCsi -> Transmission): error compensation
   g_m^ec = g_m + Delta_m, the scheme's encoder, truncated-inversion silence; the new Delta_m are kept pending.
4. :meth:`DeviceFleet.commit` (which devices really transmitted): a device that dropped out mid-round, was excluded
   or was silenced keeps its old Delta_m (TWC 2020: a silent device accumulates its whole update).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from learning.feel.channel import RoundCsi
from learning.feel.messages import GlobalModel, LocalUpdate, Schedule, Transmission, UpdateReport
from learning.feel.models import FlatModel
from learning.feel.schemes import Scheme


@dataclass(frozen=True)
class LocalTraining:
    """How devices compute their update: ``local_steps`` (1 = one gradient on the local set, as in TSP 2020),
    ``local_lr`` for local_steps > 1, ``batch_size`` (None = the whole local data set)."""

    local_steps: int = 1
    local_lr: float = 0.01
    batch_size: int | None = None

    def __post_init__(self):
        if self.local_steps < 1:
            raise ValueError(f"local_steps = {self.local_steps}: expected >= 1")
        if not self.local_lr > 0:
            raise ValueError(f"local_lr = {self.local_lr}: expected > 0")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size = {self.batch_size}: expected >= 1 or None")


def report(update: LocalUpdate) -> UpdateReport:
    """Side information for screening: norm float32[M] (inf when not finite) and finite bool[M]."""
    norm = torch.linalg.vector_norm(update.vector, dim=1)
    # a NaN or inf entry makes the norm non-finite, so only those rows need the entry-wise check (a finite row whose
    # norm overflows float32 is finite with norm inf): one pass over [M, d] instead of two
    finite = torch.isfinite(norm)
    suspect = torch.nonzero(~finite).flatten()
    if suspect.numel():
        finite[suspect] = torch.isfinite(update.vector[suspect]).all(1)
    norm = torch.where(finite, norm, torch.full_like(norm, np.inf))
    return UpdateReport(update.ids, norm, finite)


class DeviceFleet:
    """Devices ``ids`` int64[M] with local data x float32[M, B, C, H, W], labels int64[M, B], and their error
    accumulators ``error`` float32[M, d]."""

    def __init__(self, ids: torch.Tensor, x: torch.Tensor, y: torch.Tensor, d: int, seed: int = 0,
                 reuse_buffers: bool = False):
        if x.shape[0] != ids.shape[0] or y.shape[:2] != x.shape[:2]:
            raise ValueError(f"x {tuple(x.shape)}, y {tuple(y.shape)}, ids {tuple(ids.shape)}: expected x [M, B, ...], "
                             f"y [M, B] and M ids")
        self.ids, self.x, self.y, self.seed = ids, x, y, int(seed)
        self.error = torch.zeros(ids.shape[0], d)
        self._pending: torch.Tensor | None = None
        #: reuse_buffers: the last round's error accumulators and payload buffers are written over in the next
        #: round's encode (no [M, d] allocation per round at large M); only for callers that keep neither a
        #: Transmission nor an old ``error`` tensor past its round (FeelExperiment)
        self.reuse_buffers = bool(reuse_buffers)
        self._spare: torch.Tensor | None = None
        self._payload: torch.Tensor | None = None

    @property
    def n_devices(self) -> int:
        return int(self.ids.shape[0])

    def _batch(self, round: int, step: int, cfg: LocalTraining) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.x.shape[1]
        if cfg.batch_size is None or cfg.batch_size >= b:
            return self.x, self.y
        rng = np.random.default_rng([self.seed, round, step, 21])
        idx = torch.from_numpy(np.argsort(rng.random((self.n_devices, b)), axis=1)[:, :cfg.batch_size])
        gather = idx.reshape(*idx.shape, *([1] * (self.x.dim() - 2))).expand(-1, -1, *self.x.shape[2:])
        return self.x.gather(1, gather), self.y.gather(1, idx)

    def local_update(self, model: FlatModel, glob: GlobalModel, cfg: LocalTraining = LocalTraining(),
                     out: torch.Tensor | None = None) -> LocalUpdate:
        """All devices' local updates in one batched computation: gradient (local_steps = 1) or local-SGD
        pseudo-gradient. out: optional float32[M, d] buffer for the gradients (local_steps = 1), reused across rounds
        by a caller that keeps no earlier update."""
        x, y = self._batch(glob.round, 0, cfg)
        grads, loss = model.grads(glob.params, x, y, out=out if cfg.local_steps == 1 else None)
        if cfg.local_steps == 1:
            return LocalUpdate(self.ids, grads, loss.detach())
        theta = glob.params.expand(self.n_devices, -1) - cfg.local_lr * grads
        for step in range(1, cfg.local_steps):  # loop over local steps, never over devices
            x, y = self._batch(glob.round, step, cfg)
            g, _ = model.grads(theta, x, y)
            theta = theta - cfg.local_lr * g
        pseudo = (glob.params[None] - theta) / (cfg.local_steps * cfg.local_lr)
        return LocalUpdate(self.ids, pseudo.detach(), loss.detach())

    def encode(self, scheme: Scheme, update: LocalUpdate, schedule: Schedule, csi: RoundCsi) -> tuple[Transmission,
                                                                                                      torch.Tensor]:
        """Encode the updates of the devices scheduled and active (truncated inversion).

        csi: the round's channel state for *these* devices (gain/active float32/bool[M]).
        Returns (transmission of the sending devices, sending mask bool[M]). The new error accumulators stay pending
        until :meth:`commit`.
        """
        sending = schedule.transmit & csi.active
        everyone = bool(sending.all())  # no row selection: saves two [M, d] copies at large M
        vec, err = (update.vector, self.error) if everyone else (update.vector[sending], self.error[sending])
        n_sending = int(sending.sum())
        if n_sending:
            # the new accumulators go to a spare buffer (the last round's, when nobody else holds it): no [M, d]
            # allocation per round at large M
            spare = self._spare if everyone and self._spare is not None and self._spare is not self.error else None
            self._spare = None
            if everyone and self.reuse_buffers and scheme.over_the_air and (
                    self._payload is None or self._payload.shape != (vec.shape[0], vec.shape[1] + 1)):
                self._payload = torch.empty(vec.shape[0], vec.shape[1] + 1)
            payload = self._payload if everyone and self.reuse_buffers else None
            tx, new_error = scheme.encode_feedback(vec, err, csi.gain[sending], n_sending, out_error=spare,
                                                   out_payload=payload)
        else:
            ec = vec + err if scheme.uses_error_feedback else vec
            tx = Transmission(torch.zeros(0, dtype=torch.int64), torch.zeros(0), ec,
                              symbols=torch.zeros(0, scheme.s), positions=torch.zeros(0, 0, dtype=torch.int64),
                              values=torch.zeros(0), vectors=ec)
            new_error = ec
        if everyone:
            pending = new_error if scheme.uses_error_feedback else torch.zeros_like(self.error)
        else:
            pending = self.error.clone()
            pending[sending] = new_error if scheme.uses_error_feedback else 0.0
        # devices the truncated inversion silenced accumulate their whole update (TWC 2020)
        silenced = schedule.transmit & ~csi.active
        if scheme.uses_error_feedback and bool(silenced.any()):
            pending[silenced] = self.error[silenced] + update.vector[silenced]
        self._pending = pending
        tx = Transmission(update.ids[sending], tx.weight, tx.represented, tx.symbols, tx.positions, tx.values,
                          tx.vectors, tx.bits, tx.linear)
        return tx, sending

    def commit(self, completed: torch.Tensor) -> None:
        """Adopt the pending error accumulators for devices in ``completed`` bool[M] (finished the round, incl.
        silenced ones); the others (dropped out mid-round, excluded) keep theirs."""
        if self._pending is None:
            raise RuntimeError("commit() called without encode() in this round")
        if bool(completed.all()):
            if self.reuse_buffers and self._pending is not self.error and self._pending.shape == self.error.shape:
                self._spare = self.error  # reused as the next round's output buffer (see encode)
            self.error = self._pending
        else:
            self.error = torch.where(completed[:, None], self._pending, self.error)
        self._pending = None
