"""Over-the-air federated learning (A-DSGD) in the cell across processes: the learning side of ``otalab cell --task
feel``, with the same learning code as the in-process runner (:mod:`learning.feel`).

- The PS (:class:`PsLearner`, in the ServerApp) holds the model and the optimizer (:class:`learning.feel.server.
  ParameterServer`) and the A-DSGD scheme (:func:`learning.feel.schemes.make_scheme`: the shared projection from the
  scheme's seed, AMP at the PS). Every round it sends the global model over the control plane with the data slot,
  receives the over-the-air sum through its radio (:class:`lab.experiments.cell_run.CellRun`), and decodes it
  exactly as :class:`learning.feel.runner.FeelExperiment` does (``ParameterServer.decode`` → AMP, ``apply``).
- A device (:class:`DeviceLearner`, in its ClientApp) loads its own partition of the data set (the same
  :func:`learning.feel.partition.make_partition` draw as the in-process run with the same seed), computes its local
  update on the global model and encodes it with the same scheme (error accumulation, top-k, projection, power
  scaling: :meth:`learning.feel.device.DeviceFleet.encode` with CSI gain 1 — the device actor pre-equalizes the
  channel itself). The s real symbols become ⌈s/2⌉ complex values u[i] = c·(x[2i] + j x[2i+1]) with
  c = sqrt(⌈s/2⌉ / P_t) (one unit-power value per data subcarrier on average, as
  :mod:`lab.experiments.feel_air` maps them), which go to the device's radio node over the host-local socket and
  then over the air: never over the control plane (except in diagnostics mode, for measurement). Its error
  accumulator persists between rounds in the ClientApp's Flower context (a ClientApp process lives for one message).
- The PS unpairs the estimate v̂ of Σ u_m: ŷ[2i] = Re v̂[i]/c, ŷ[2i+1] = Im v̂[i]/c, with noise variance per real
  symbol N_c/(2c²) (N_c: the PS's noise estimate per complex value, N0/α²).
"""

from __future__ import annotations

import base64
import dataclasses
import math

import numpy as np
import torch

from learning.feel.channel import Reception
from learning.feel.data import load_dataset
from learning.feel.device import DeviceFleet, LocalTraining
from learning.feel.messages import GlobalModel, Schedule
from learning.feel.models import FlatModel
from learning.feel.partition import make_partition
from learning.feel.runner import FeelConfig
from learning.feel.server import ParameterServer
from learning.feel.schemes import make_scheme


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.detach().to(torch.float32).contiguous().numpy().tobytes()).decode()


def _unb64(text: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), np.float32).copy())


def scale_for(s: int, power: float) -> float:
    """c = sqrt(⌈s/2⌉ / P_t): a row with ‖x‖² = P_t gives unit mean power per complex value."""
    return math.sqrt(math.ceil(s / 2) / power)


class _Model:
    """What both sides build from the FeelConfig: model, (s, k), scheme."""

    def __init__(self, cfg: FeelConfig, in_shape: tuple, n_classes: int):
        name = cfg.model or ("cnn" if cfg.dataset == "cifar10" else "softmax")
        self.model = FlatModel.create(name, in_shape, n_classes, cfg.seed)
        self.d = self.model.dim
        self.s, self.k = cfg.resolved(self.d)
        self.scheme = make_scheme(cfg.scheme, self.d, self.s, cfg.power, cfg.noise_var, k=self.k, seed=cfg.seed + 7,
                                  amp_iterations=cfg.amp_iterations, amp_threshold=cfg.amp_denoiser(),
                                  power_norm=cfg.power_norm, clip=cfg.clip)
        if not self.scheme.over_the_air:
            raise ValueError(f"scheme = {cfg.scheme!r}: the cell carries over-the-air schemes only (analog)")
        self.c = scale_for(self.s, cfg.power)


class DeviceLearner:
    """Device ``index`` of the FEEL run ``spec`` (``{"cfg": FeelConfig fields, "theta": base64 float32[d],
    "round": t, "index": i}``); ``error``: its accumulator from earlier rounds (base64 float32[d]) or None."""

    def __init__(self, spec: dict, error: str | None = None, data_dir=None):
        self.cfg = FeelConfig(**{k: tuple(v) if k == "faults" else v for k, v in spec["cfg"].items()})
        self.index, self.round = int(spec["index"]), int(spec["round"])
        cfg = self.cfg
        data = load_dataset(cfg.dataset, data_dir)
        parts = make_partition(cfg.partition, data.y_train, cfg.devices, cfg.samples_per_device, cfg.seed, cfg.alpha)
        own = parts[self.index]
        sub = dataclasses.replace(data, x_train=data.x_train[own], y_train=data.y_train[own])
        x = torch.from_numpy(sub.features("train"))[None]
        y = torch.from_numpy(sub.y_train)[None]
        self.m = _Model(cfg, tuple(x.shape[2:]), data.n_classes)
        self.theta = _unb64(spec["theta"])
        if self.theta.numel() != self.m.d:
            raise ValueError(f"global model has {self.theta.numel()} parameters, expected d = {self.m.d}")
        self.fleet = DeviceFleet(torch.tensor([self.index]), x, y, self.m.d, seed=cfg.seed)
        if error:
            self.fleet.error = _unb64(error)[None]
        self.error_norm_in = float(self.fleet.error.norm())
        self.loss = float("nan")

    def values(self, step: dict | None = None) -> np.ndarray:
        """This round's analog update as complex64[⌈s/2⌉] (module docstring)."""
        cfg, m = self.cfg, self.m
        upd = self.fleet.local_update(m.model, GlobalModel(self.round, self.theta),
                                      LocalTraining(cfg.local_steps, cfg.local_lr, cfg.batch_size))
        self.loss = float(upd.loss[0])
        self._update = upd.vector
        ones = torch.ones(1, dtype=torch.bool)
        from learning.feel.channel import RoundCsi

        tx, _ = self.fleet.encode(m.scheme, upd, Schedule(self.round, upd.ids, ones, {}),
                                  RoundCsi(self.round, torch.ones(1), ones))
        rows = tx.symbols if tx.symbols is not None else tx.linear.rows()   # what this radio must radiate
        x = rows[0].detach().numpy().astype(np.float32)
        if x.size % 2:
            x = np.concatenate([x, np.zeros(1, np.float32)])
        return (m.c * (x[0::2] + 1j * x[1::2])).astype(np.complex64)

    def commit(self, reply: dict) -> str:
        """After the round: adopt the new accumulator if the burst went out; a device that stayed silent keeps its
        whole update in it (TWC 2020). Returns the accumulator (base64) to keep for the next round."""
        sent = any(s.get("op") == "data" and s.get("stats", {}).get("sent") for s in reply.get("steps", []))
        if sent:
            self.fleet.commit(torch.ones(1, dtype=torch.bool))
        elif getattr(self, "_update", None) is not None:
            self.fleet.error = self.fleet.error + self._update
        return _b64(self.fleet.error[0])


class PsLearner:
    """The PS's side of the FEEL run of ``cfg`` (a FeelConfig whose ``devices`` is the cell's K)."""

    def __init__(self, cfg: FeelConfig, data_dir=None):
        self.cfg = cfg
        data = load_dataset(cfg.dataset, data_dir)
        self.x_test = torch.from_numpy(data.features("test"))
        self.y_test = torch.from_numpy(data.y_test)
        self.m = _Model(cfg, tuple(self.x_test.shape[1:]), data.n_classes)
        self.server = ParameterServer(self.m.model.initial(), cfg.optimizer, cfg.lr, cfg.explode_factor)

    @property
    def n_values(self) -> int:
        return math.ceil(self.m.s / 2)

    def spec(self, index: int) -> dict:
        """What device ``index`` needs this round (sent with the data slot over the control plane)."""
        glob = self.server.broadcast()
        return {"cfg": dataclasses.asdict(self.cfg), "theta": _b64(glob.params), "round": glob.round,
                "index": int(index)}

    def receive(self, estimate: np.ndarray, noise_var_complex: float, n_received: int) -> dict:
        """Decode the over-the-air sum (AMP, as FeelExperiment), apply it, evaluate; returns the round's record."""
        m = self.m
        est = np.asarray(estimate, np.complex64)
        y = np.empty(2 * est.size, np.float32)
        y[0::2], y[1::2] = est.real / m.c, est.imag / m.c
        y = y[:m.s]
        ok = bool(np.all(np.isfinite(y))) and math.isfinite(noise_var_complex) and noise_var_complex > 0
        noise = noise_var_complex / (2 * m.c ** 2) if ok else float("inf")
        if not ok:
            y = np.zeros(m.s, np.float32)
        rec = Reception(y=torch.from_numpy(y), noise_var=noise, energy=torch.zeros(self.cfg.devices))
        agg = self.server.decode(m.scheme, rec, n_received)
        applied = self.server.apply(agg)
        acc, loss = m.model.evaluate(self.server.theta.detach(), self.x_test, self.y_test)
        return {"applied": applied, "accuracy": acc, "loss": loss, "noise_var_real": noise,
                **{k: v for k, v in agg.info.items() if isinstance(v, (int, float, str))}}
