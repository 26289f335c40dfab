"""The FEEL experiment loop: data, partition, devices, server, scheme and channel wired for R rounds, with per-round
records, atomic checkpoints and bit-identical resume.

Everything random in round t is drawn from generators seeded by (seed, t, stream) (channel noise and fading, drop-outs,
minibatches), so a run resumed from its checkpoint after round t repeats exactly what the uninterrupted run would
have done: the checkpoint holds only theta, the optimizer state, the devices' error accumulators and the records.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from learning.feel.amp import nmse_db
from learning.feel.channel import Reception, RoundCsi, SumChannel, SymbolChannel
from learning.feel.data import load_dataset
from learning.feel.device import DeviceFleet, LocalTraining, report
from learning.feel.messages import LocalUpdate
from learning.feel.models import FlatModel
from learning.feel.partition import make_partition
from learning.feel.schemes import POWER_NORMS, SCHEMES, make_scheme
from learning.feel.server import ParameterServer
from learning.safeio import CheckpointError, atomic_write_bytes, read_checkpoint_file, write_checkpoint
from learning.privacy.feel import FeelPrivacy

FAULT_KINDS = ("nan", "explode", "drop")
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class FeelConfig:
    """One FEEL experiment. Defaults follow Amiri & Gündüz TSP 2020 Fig. 5 (MNIST, single layer, M = 25, B = 1000,
    s = d/2, k = s/2, noise variance 1, ADAM).

    faults: "ROUND:DEVICE:KIND" strings (KIND in nan, explode, drop) injecting a broken or vanishing device; ROUND is
    the 0-based round index t (its record is round t + 1), DEVICE in 0..devices-1: a target that does not exist is a
    ValueError naming it.
    clip, target_epsilon, dp_delta: differential privacy (learning.privacy): clip each device's update to norm C
    (A-DSGD: the sparse update before projection), add the noise a target epsilon after ``rounds`` rounds needs
    (A-DSGD: only what the receiver noise lacks), and report (epsilon, dp_delta) per round and for the run.
    power_norm: A-DSGD power normalisation, "projected" (paper) or "sparse" (no per-device projection).
    channel_uses None: d // 2 (uncoded: d + 1); k None: s // 2.
    """

    scheme: str = "analog"
    dataset: str = "mnist"
    model: str | None = None
    devices: int = 25
    samples_per_device: int = 1000
    partition: str = "iid"
    alpha: float = 0.5
    power: float = 200.0
    noise_var: float = 1.0
    channel_uses: int | None = None
    k: int | None = None
    rounds: int = 300
    optimizer: str = "adam"
    lr: float = 1e-3
    local_steps: int = 1
    local_lr: float = 0.01
    batch_size: int | None = None
    fading: str = "none"
    threshold: float = 0.1
    dropout_prob: float = 0.0
    faults: tuple[str, ...] = ()
    explode_factor: float = 10.0
    amp_iterations: int = 10
    amp_threshold: str = "sure-scaled"
    power_norm: str = "projected"
    clip: float | None = None
    target_epsilon: float | None = None
    dp_delta: float = 1e-5
    symbol_rate: float = 1e6
    eval_every: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme {self.scheme!r}: unknown; expected one of {', '.join(SCHEMES)}")
        if self.rounds < 1:
            raise ValueError(f"rounds = {self.rounds}: expected >= 1")
        if not 0 <= self.dropout_prob < 1:
            raise ValueError(f"dropout_prob = {self.dropout_prob}: expected 0 <= p < 1")
        if self.eval_every < 1:
            raise ValueError(f"eval_every = {self.eval_every}: expected >= 1")
        if self.devices < 1:
            raise ValueError(f"devices = {self.devices}: expected >= 1")
        for f in self.faults:
            rnd, dev, _ = parse_fault(f)
            if rnd >= self.rounds:
                raise ValueError(f"fault {f!r}: round {rnd} does not exist; expected ROUND in 0..{self.rounds - 1} "
                                 f"(0-based, rounds = {self.rounds})")
            if dev >= self.devices:
                raise ValueError(f"fault {f!r}: device {dev} does not exist; expected DEVICE in "
                                 f"0..{self.devices - 1} (devices = {self.devices})")
        if self.power_norm not in POWER_NORMS:
            raise ValueError(f"power_norm = {self.power_norm!r}: expected one of {', '.join(POWER_NORMS)}")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip = {self.clip}: expected > 0 (or None: no clipping)")
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise ValueError(f"target_epsilon = {self.target_epsilon}: expected > 0 (or None)")
        if not 0 < self.dp_delta < 1:
            raise ValueError(f"dp_delta = {self.dp_delta}: expected 0 < delta < 1")
        if self.clip is not None and self.scheme == "uncoded":
            raise ValueError("clip with scheme 'uncoded': uncoded analog does not clip; its per-device power scaling "
                             "already bounds the sensitivity (2 sqrt(P)), so run it without clip")
        if self.target_epsilon is not None and self.clip is None and self.scheme in ("digital", "ideal"):
            raise ValueError(f"target_epsilon with scheme {self.scheme!r} needs clip: a device's update has "
                             f"unbounded sensitivity otherwise")
        self.amp_denoiser()

    def amp_denoiser(self) -> str | float:
        """``amp_threshold`` as amp_recover takes it: "sure", "sure-scaled" or a float lambda."""
        if self.amp_threshold in ("sure", "sure-scaled"):
            return self.amp_threshold
        try:
            lam = float(self.amp_threshold)
        except ValueError:
            lam = -1.0
        if not lam >= 0:
            raise ValueError(f"amp_threshold = {self.amp_threshold!r}: expected 'sure-scaled', 'sure' or a lambda >= 0")
        return lam

    def resolved(self, d: int) -> tuple[int, int]:
        """(s, k) for a model of size d."""
        s = self.channel_uses if self.channel_uses is not None else (d + 1 if self.scheme == "uncoded" else d // 2)
        return int(s), int(self.k if self.k is not None else s // 2)


def parse_fault(text: str) -> tuple[int, int, str]:
    """"ROUND:DEVICE:KIND" -> (round, device, kind); ValueError naming the text otherwise."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or parts[2] not in FAULT_KINDS:
        raise ValueError(f"fault {text!r}: expected ROUND:DEVICE:KIND with KIND one of {', '.join(FAULT_KINDS)}")
    return int(parts[0]), int(parts[1]), parts[2]


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class FeelExperiment:
    """Holds every part of a run; :meth:`step` runs one round and returns its record.

    channel: any :class:`SumChannel`, or a factory ``(n_devices, channel_uses, power) -> SumChannel`` (default:
    :class:`SymbolChannel` from the config).
    """

    def __init__(self, cfg: FeelConfig, data_dir: str | Path | None = None, channel: SumChannel | None = None):
        self.cfg = cfg
        data = load_dataset(cfg.dataset, data_dir)
        parts = make_partition(cfg.partition, data.y_train, cfg.devices, cfg.samples_per_device, cfg.seed, cfg.alpha)
        flat_idx = parts.reshape(-1)
        sub = dataclasses.replace(data, x_train=data.x_train[flat_idx], y_train=data.y_train[flat_idx])
        x = torch.from_numpy(sub.features("train"))
        x = x.reshape(cfg.devices, cfg.samples_per_device, *x.shape[1:])
        y = torch.from_numpy(sub.y_train).reshape(cfg.devices, cfg.samples_per_device)
        self.x_test = torch.from_numpy(data.features("test"))
        self.y_test = torch.from_numpy(data.y_test)
        model_name = cfg.model or ("cnn" if cfg.dataset == "cifar10" else "softmax")
        self.model = FlatModel.create(model_name, tuple(x.shape[2:]), data.n_classes, cfg.seed)
        d = self.model.dim
        self.s, self.k = cfg.resolved(d)
        self.scheme = make_scheme(cfg.scheme, d, self.s, cfg.power, cfg.noise_var, k=self.k, seed=cfg.seed + 7,
                                  amp_iterations=cfg.amp_iterations, amp_threshold=cfg.amp_denoiser(),
                                  power_norm=cfg.power_norm, clip=cfg.clip)
        s_max = (self.scheme.spectral_norm if cfg.scheme == "analog" and (cfg.clip is not None
                                                                         or cfg.power_norm == "sparse") else 1.0)
        self.privacy = FeelPrivacy(cfg.scheme, cfg.noise_var, cfg.power, cfg.clip, cfg.dp_delta, cfg.rounds,
                                   cfg.target_epsilon, s_max=s_max, channel_uses=self.s, power_norm=cfg.power_norm,
                                   seed=cfg.seed)
        self.fleet = DeviceFleet(torch.arange(cfg.devices), x, y, d, seed=cfg.seed, reuse_buffers=True)
        self.server = ParameterServer(self.model.initial(), cfg.optimizer, cfg.lr, cfg.explode_factor)
        if channel is not None and not isinstance(channel, SumChannel) and callable(channel):
            channel = channel(cfg.devices, self.s, cfg.power)  # a factory: (n_devices, s, P_t) -> SumChannel
        self.channel = channel or SymbolChannel(cfg.devices, cfg.noise_var, cfg.fading, cfg.threshold, cfg.seed,
                                                cfg.symbol_rate)
        if self.channel.n_devices != cfg.devices:
            raise ValueError(f"channel serves {self.channel.n_devices} devices; the config has {cfg.devices}")
        self.training = LocalTraining(cfg.local_steps, cfg.local_lr, cfg.batch_size)
        self.faults = [parse_fault(f) for f in cfg.faults]
        self.records: list[dict] = []
        self.air_time = 0.0
        self.last_timing: dict[str, float] = {}
        self.runtime_s = 0.0  # wall-clock seconds of earlier invocations (restored from the checkpoint)
        self._grad_buf: torch.Tensor | None = None

    @property
    def round(self) -> int:
        return self.server.round

    def _inject(self, t: int, upd: LocalUpdate) -> tuple[LocalUpdate, torch.Tensor]:
        """Apply configured faults and random drop-outs for round t; returns (update, dropped bool[M])."""
        vec = upd.vector
        dropped = torch.from_numpy(np.random.default_rng([self.cfg.seed, t, 31]).random(self.cfg.devices)
                                   < self.cfg.dropout_prob)
        for rnd, dev, kind in self.faults:
            if rnd != t:
                continue
            if kind == "drop":
                dropped[dev] = True
            else:
                vec = vec.clone() if vec is upd.vector else vec
                vec[dev] = math.nan if kind == "nan" else vec[dev] * 1e6
        return LocalUpdate(upd.ids, vec, upd.loss), dropped

    def step(self) -> dict:
        """Run one round (broadcast, local updates, screening, transmission, decoding, update) -> record."""
        t = self.round
        clock = [time.perf_counter()]
        glob = self.server.broadcast()
        if self._grad_buf is None and self.training.local_steps == 1:
            self._grad_buf = torch.empty(self.cfg.devices, self.model.dim)  # reused: no [M, d] allocation per round
        upd, dropped = self._inject(t, self.fleet.local_update(self.model, glob, self.training, out=self._grad_buf))
        upd = LocalUpdate(upd.ids, self.privacy.privatize(t, upd.vector), upd.loss)  # privacy hook: D-DSGD noise
        clock.append(time.perf_counter())
        schedule = self.server.screen(report(upd))
        csi = self.channel.csi(t)
        tx, sending = self.fleet.encode(self.scheme, upd, schedule, csi)
        clock.append(time.perf_counter())
        went = sending & ~dropped                      # a device that drops out mid-round never reaches the air
        sent = tx.select(went[sending])
        n = int(went.sum())
        if self.scheme.over_the_air:
            round_csi = RoundCsi(t, csi.gain, csi.active & went)
            if sent.linear is not None and hasattr(self.channel, "transmit_linear"):
                # one projection of the superposed payload instead of one per device (LinearSymbols)
                rec = self.channel.transmit_linear(sent.linear, round_csi, torch.nonzero(went).flatten())
            else:
                x = torch.zeros(self.cfg.devices, self.s)
                if n:
                    x[went] = sent.radiated()
                rec = self.channel.transmit(x, round_csi)
            gain_max = float(csi.gain[went].max()) if n else 1.0
            extra = self.privacy.artificial_noise(t, n, gain_max, rec.y.shape[0])  # privacy hook: devices' noise
            if extra is not None:
                rec = Reception(rec.y + extra, rec.noise_var + n * self.privacy.artificial_var, rec.energy)
            clock.append(time.perf_counter())
            agg = self.server.decode(self.scheme, rec, n)
            energy = float(rec.energy[went].max()) if n else 0.0
        else:
            clock.append(time.perf_counter())
            agg = self.server.decode(self.scheme, sent, n)
            energy = 0.0
        clock.append(time.perf_counter())
        self.fleet.commit(went | (schedule.transmit & ~csi.active))
        record: dict = {"round": t + 1, "devices": n}
        if n:
            truth = (sent.weight @ sent.represented) / sent.weight.sum()
            record["recon_nmse_db"] = round(nmse_db(agg.vector, truth), 4) if agg.ok else None
            mean = upd.vector.mean(0) if bool(went.all()) else upd.vector[went].mean(0)
            record["nmse_db"] = round(nmse_db(agg.vector, mean), 4) if agg.ok else None
        else:
            record["recon_nmse_db"] = record["nmse_db"] = None
        record.update(self.privacy.account(n, float(csi.gain[went].max()) if n else 1.0))  # privacy hook
        applied = self.server.apply(agg)
        air = self.scheme.air_time(self.channel.symbol_rate)
        self.air_time += air
        record.update({
            "air_time_s": air, "cum_air_time_s": self.air_time, "applied": applied,
            "train_loss": float(upd.loss[torch.isfinite(upd.loss)].mean()) if bool(torch.isfinite(upd.loss).any())
            else None,
            "excluded": [{"device": k, "reason": v} for k, v in schedule.excluded.items()],
            "dropped": torch.nonzero(dropped & sending).flatten().tolist(),
            "silenced": int((schedule.transmit & ~csi.active).sum()),
            "max_energy": energy,
            **{k: v for k, v in agg.info.items() if isinstance(v, (int, float, str))},
        })
        if (t + 1) % self.cfg.eval_every == 0 or t + 1 == self.cfg.rounds:
            acc, loss = self.model.evaluate(self.server.theta.detach(), self.x_test, self.y_test)
            record["accuracy"], record["loss"] = acc, loss
        else:
            record["accuracy"] = record["loss"] = None
        clock.append(time.perf_counter())
        #: wall-clock seconds of this round's stages (kept out of the records so resumed runs stay identical)
        self.last_timing = dict(zip(("local_update", "encode", "channel", "decode", "apply_eval"), np.diff(clock)))
        self.records.append(record)
        return record

    def state_dict(self) -> dict:
        return {"version": CHECKPOINT_VERSION, "config": dataclasses.asdict(self.cfg),
                "server": self.server.state_dict(),
                "error": self.fleet.error.clone(), "records": list(self.records), "air_time": self.air_time,
                "runtime_s": self.runtime_s}

    def load_state_dict(self, state: dict) -> None:
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {state.get('version')!r}: expected {CHECKPOINT_VERSION}")
        mine = {k: v for k, v in dataclasses.asdict(self.cfg).items() if k != "rounds"}
        theirs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in state["config"].items() if k != "rounds"}
        theirs = {k: theirs.get(k, mine[k]) for k in mine}  # fields added since the checkpoint: their defaults
        if mine != theirs:
            diff = sorted(k for k in mine if mine[k] != theirs.get(k))
            raise ValueError(f"checkpoint was written for a different configuration (differs in {', '.join(diff)}); "
                             f"use another --out or remove the checkpoint")
        theta, error = state["server"]["theta"], state["error"]
        for name, got, want in (("server.theta", theta, self.server.theta), ("error", error, self.fleet.error)):
            if not isinstance(got, torch.Tensor) or got.shape != want.shape or got.dtype != want.dtype:
                desc = f"{got.dtype} {tuple(got.shape)}" if isinstance(got, torch.Tensor) else type(got).__name__
                raise ValueError(f"{name} is {desc}, expected {want.dtype} {tuple(want.shape)}")
        self.server.load_state_dict(state["server"])
        self.fleet.error = error.clone()
        self.records = list(state["records"])
        self.air_time = float(state["air_time"])
        self.runtime_s = float(state.get("runtime_s", 0.0))
        self.privacy.replay(self.records)


CHECKPOINT_KIND = "otalab-feel/1"


def save_checkpoint(exp: FeelExperiment, path: Path) -> None:
    """Write atomically as a hashed otalab checkpoint (:mod:`learning.safeio`) whose header holds the config."""
    write_checkpoint(path, CHECKPOINT_KIND, exp.state_dict(), dataclasses.asdict(exp.cfg))


def load_checkpoint(exp: FeelExperiment, path: Path) -> None:
    """Verify ``path`` (SHA-256, ``weights_only=True``: no code runs) and restore ``exp`` from it.

    Raises :class:`~learning.safeio.CheckpointError` naming the file for a corrupt, tampered, foreign or mismatching
    checkpoint."""
    _, state = read_checkpoint_file(path, CHECKPOINT_KIND)
    try:
        exp.load_state_dict(state)
    except CheckpointError:
        raise
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    except (KeyError, TypeError, RuntimeError, AttributeError, IndexError) as exc:
        raise CheckpointError(f"checkpoint {path}: its state does not fit this experiment "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); expected "
                              f"the state a run of this configuration writes") from None


def rounds_to(records: list[dict], target: float) -> int | None:
    """First round whose test accuracy reaches ``target`` (None if never)."""
    return next((r["round"] for r in records if r.get("accuracy") is not None and r["accuracy"] >= target), None)


def summary(exp: FeelExperiment, runtime_s: float) -> dict:
    """The run's JSON result (config, seed, git revision, per-round records, final metrics); ``runtime_s`` adds the
    wall-clock time of the invocations before a resume."""
    accs = [r["accuracy"] for r in exp.records if r.get("accuracy") is not None]
    return {
        "experiment": "feel", "config": dataclasses.asdict(exp.cfg), "seed": exp.cfg.seed,
        "git_revision": git_revision(),
        "d": exp.model.dim, "channel_uses": exp.s, "k": exp.k if exp.cfg.scheme == "analog" else None,
        "channel": repr(exp.channel), "rounds": exp.records, "final_accuracy": accs[-1] if accs else None,
        "rounds_to_80": rounds_to(exp.records, 0.8), "total_air_time_s": exp.air_time,
        "runtime_s": exp.runtime_s + runtime_s,
        "torch_threads": torch.get_num_threads(),
        **exp.privacy.summary(),
    }


def run_feel(cfg: FeelConfig, out_json: str | Path | None = None, checkpoint: str | Path | None = None,
             resume: bool = True, checkpoint_every: int = 10, data_dir: str | Path | None = None,
             channel: SumChannel | None = None, stop_after: int | None = None,
             on_round: Callable[[dict], None] | None = None) -> dict:
    """Run (or resume) an experiment; write the JSON to ``out_json`` and checkpoints to ``checkpoint``.

    stop_after: stop once this many rounds are done (simulates an interruption; the checkpoint is written).
    on_round: called with every new record (progress bars). On KeyboardInterrupt the last checkpoint stands.
    Returns the result dict (also written to ``out_json``).
    """
    exp = FeelExperiment(cfg, data_dir, channel)
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt and resume and ckpt.is_file():
        load_checkpoint(exp, ckpt)
    start = time.perf_counter()
    last = cfg.rounds if stop_after is None else min(cfg.rounds, stop_after)
    saved_round = exp.round
    try:
        while exp.round < last:
            rec = exp.step()
            if on_round:
                on_round(rec)
            if ckpt and (exp.round % checkpoint_every == 0 or exp.round == last):
                elapsed, exp.runtime_s = exp.runtime_s, exp.runtime_s + time.perf_counter() - start
                save_checkpoint(exp, ckpt)
                exp.runtime_s = elapsed
                saved_round = exp.round
    except KeyboardInterrupt:
        # the round in flight may have left half-updated state, so only the last checkpoint is trusted
        if ckpt:
            print(f"interrupted: resume continues from the checkpoint after round {saved_round} ({ckpt})")
        raise
    result = summary(exp, time.perf_counter() - start)
    if out_json:
        atomic_write_bytes(out_json, (json.dumps(result, indent=1, default=float) + "\n").encode())
    return result
