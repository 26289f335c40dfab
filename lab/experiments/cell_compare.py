"""The in-process reference of a cell run (``otalab cell ... --compare-in-process``): what the same cell gives when
every actor shares one process, to judge the cell across processes against it.

- **Over-the-air sum**: the same bench config's air (its ``air:`` section: links, SNR, channel), rate, OFDM and
  sync settings, K device actors and one PS actor in :class:`sync.procedure.SyncSession` on the in-process air
  (:class:`radio.sim.air.Air`, not paced by the wall clock), the same CFO pre-compensation switch, summing what the
  cell's task sums: for ``sync`` (:func:`in_process_sums`) ``rounds`` sums of K unit-power random vectors of the
  cell's length (:func:`lab.experiments.cell_run.random_values`, the sync task's data); for ``feel``
  (:func:`in_process_air_feel`) the same FEEL run over that air, so the devices' own updates (correlated, so their
  sum is stronger than K independent vectors': comparing with those flattered the cell by ~3 dB at K = 4). NMSE =
  Σ|v̂ − Σ_k x_k|² / Σ|Σ_k x_k|² over all rounds, the cell's own definition
  (:func:`lab.experiments.cell_run.measure`).
- **Learning** (:func:`in_process_feel`): the symbol-level FEEL run (:class:`learning.feel.runner.FeelExperiment`)
  with the cell's FeelConfig — the same seed, partition, model, scheme (projection seed, s, k) and rounds — on a
  :class:`learning.feel.channel.SymbolChannel` whose noise variance per real channel use is the one the cell's PS
  decoded with (the mean of its rounds' ``noise_var_real``): the same SNR, without the radios.

:func:`compare` runs both for a finished cell record and says by how much the cell differs (``nmse_db_difference``:
cell − in-process, dB; ``accuracy_difference``: cell − in-process final accuracy, in points = percent).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def _in_process_radios(config, n_devices: int) -> list:
    """The PS's and ``n_devices`` devices' LoopbackRadios on the in-process air of ``config`` (its ``air:`` section),
    their endpoints named as the cell's (``<name>-ps``, ``<name>-dev0`` ...) so that the air's per-link settings
    apply alike; the PS's first."""
    from lab.factory import make_air
    from radio.drivers.loopback import LoopbackRadio

    if config.air is None:
        raise ValueError(f"{config.source}: no air: section, so no in-process air to compare with")
    base = config.radio_args.name if config.radio.driver == "zmq" else "cell"
    air = make_air(config)
    names = [f"{base}-{nm}" for nm in ["ps"] + [f"dev{i}" for i in range(n_devices)]]
    for nm in names:
        air.add_endpoint(nm)
    return [LoopbackRadio(air, nm) for nm in names]


def in_process_sums(config, n_devices: int, n_values: int, rounds: int, *, seed: int = 0, data_symbols: int = 8,
                    cfo_precomp: bool = False) -> dict:
    """NMSE (dB) of ``rounds`` over-the-air sums of ``n_devices`` unit-power random vectors of ``n_values`` complex
    values, on the in-process air of ``config`` (a loaded LabConfig; any driver: only its air, rate and settings are
    used); returns ``{"nmse_db", "per_round_nmse_db", "active", "noise_var"}``."""
    from lab.experiments.cell_run import random_values
    from sync.config import SyncConfig
    from sync.procedure import SyncSession

    of = config.ofdm.to_config(config.radio.sample_rate)
    ps, *devs = _in_process_radios(config, n_devices)
    sess = SyncSession(ps, devs, of, config.sync or SyncConfig(), data_symbols=data_symbols,
                       cfo_precomp=cfo_precomp, rng=np.random.default_rng([seed, 42]))
    sess.access()
    num = den = 0.0
    per_round, active, noise = [], [], []
    for r in range(rounds):
        s = int(seed) * 1000 + r
        x = np.stack([random_values(s, i, n_values) for i in range(n_devices)])
        res = sess.data_round(x, seed=s)
        e = float(np.sum(np.abs(res.estimate - res.truth) ** 2))
        t = float(np.sum(np.abs(res.truth) ** 2))
        num, den = num + e, den + t
        per_round.append(10 * math.log10(e / t) if e > 0 and t > 0 else None)
        active.append(len(res.active))
        noise.append(float(res.noise_var))
    for rad in [ps, *devs]:
        rad.close()
    return {"nmse_db": 10 * math.log10(num / den) if num > 0 and den > 0 else None, "per_round_nmse_db": per_round,
            "active": active, "noise_var": float(np.mean(noise)) if noise else None}


def _feel_config(feel_config: dict):
    from learning.feel.runner import FeelConfig

    fields = {f.name for f in dataclasses.fields(FeelConfig)}
    return FeelConfig(**{k: tuple(v) if k == "faults" else v for k, v in feel_config.items() if k in fields})


def in_process_air_feel(feel_config: dict, config, *, cfo_precomp: bool = False) -> dict:
    """The FEEL run of ``feel_config`` over the in-process air of ``config`` (its ``air:`` section, rate, OFDM and
    sync settings; endpoints named as the cell's): one PS and K device actors in one process
    (:class:`lab.experiments.feel_air.RadioSumChannel` on :class:`sync.procedure.SyncSession`), the devices' own
    A-DSGD updates summed over the air as in the cell. Returns ``{"nmse_db"`` (Σ|v̂ − Σ u_m|² / Σ|Σ u_m|² over the
    rounds, the cell's definition), ``"final_accuracy", "accuracy"`` (per round), ``"noise_var_real"}``."""
    from lab.experiments.feel_air import radio_sum_channel
    from learning.feel.runner import FeelExperiment
    from sync.config import SyncConfig

    cfg = _feel_config(feel_config)
    radios = _in_process_radios(config, cfg.devices)
    try:
        channel = radio_sum_channel(radios[0], radios[1:], config.ofdm.to_config(config.radio.sample_rate),
                                    config.sync or SyncConfig(), power=cfg.power, channel_uses=cfg.channel_uses,
                                    cfo_precomp=cfo_precomp, rng=np.random.default_rng([cfg.seed, 42]))
        exp = FeelExperiment(cfg, channel=channel)
        acc = [float(exp.step()["accuracy"]) for _ in range(cfg.rounds)]
        report = channel.sync_report()
    finally:
        for rad in radios:
            rad.close()
    return {"nmse_db": report.get("nmse_db"), "final_accuracy": acc[-1] if acc else None, "accuracy": acc,
            "noise_var_real": float(channel.noise_var) if channel.noise_var is not None else None}


def in_process_feel(feel_config: dict, noise_var_real: float) -> dict:
    """The symbol-level FEEL run of ``feel_config`` (FeelConfig fields, as the cell's record lists them) on an AWGN
    :class:`SymbolChannel` of ``noise_var_real`` per real channel use; returns ``{"final_accuracy", "accuracy"
    (per round), "noise_var_real"}``."""
    from learning.feel.channel import SymbolChannel
    from learning.feel.runner import FeelExperiment

    cfg = _feel_config(feel_config)
    if not (math.isfinite(noise_var_real) and noise_var_real >= 0):
        raise ValueError(f"noise_var_real = {noise_var_real}: expected a finite variance >= 0")
    channel = SymbolChannel(cfg.devices, noise_var_real, "none", cfg.threshold, cfg.seed, cfg.symbol_rate)
    exp = FeelExperiment(cfg, channel=channel)
    acc = [float(exp.step()["accuracy"]) for _ in range(cfg.rounds)]
    return {"final_accuracy": acc[-1] if acc else None, "accuracy": acc, "noise_var_real": float(noise_var_real)}


def compare(record: dict, config, *, data_symbols: int = 8, cfo_precomp: bool = False) -> dict:
    """The in-process reference of the finished cell ``record`` (``otalab cell``'s result; task sync or feel) and
    the differences; ``config``: the LabConfig the cell ran (with its --set overrides)."""
    task = record.get("task")
    if task not in ("sync", "feel"):
        raise ValueError(f"--compare-in-process: task {task!r} has no in-process reference (sync, feel)")
    rounds = [r for r in record.get("rounds", [])]
    if not rounds:
        raise ValueError("--compare-in-process: the cell ran no data round to compare")
    k = int(record["devices"])
    out: dict = {}
    if task == "sync":
        n_values = int(data_symbols) * config.ofdm.to_config(config.radio.sample_rate).n_data
        out["sums"] = in_process_sums(config, k, n_values, len(rounds), seed=int(record.get("seed", 0)),
                                      data_symbols=data_symbols, cfo_precomp=cfo_precomp)
    else:        # the same FEEL run over the in-process air: the devices' own (correlated) updates summed
        out["sums"] = in_process_air_feel(record["feel"]["config"], config, cfo_precomp=cfo_precomp)
    cell_nmse, ref_nmse = record.get("nmse_db"), out["sums"]["nmse_db"]
    out["nmse_db_difference"] = cell_nmse - ref_nmse if cell_nmse is not None and ref_nmse is not None else None
    if task == "feel":
        noise = [float(r["noise_var_real"]) for r in rounds if r.get("noise_var_real") is not None
                 and math.isfinite(float(r["noise_var_real"]))]
        if not noise:
            raise ValueError("--compare-in-process: no feel round of the cell was decoded (no noise level to match)")
        out["feel"] = in_process_feel(record["feel"]["config"], float(np.mean(noise)) if noise else math.nan)
        ref_acc, acc = out["feel"]["final_accuracy"], record.get("final_accuracy")
        out["accuracy_difference"] = 100.0 * (acc - ref_acc) if acc is not None and ref_acc is not None else None
    return out
