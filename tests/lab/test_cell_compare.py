"""The in-process reference of ``otalab cell --compare-in-process`` (lab.experiments.cell_compare)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lab.config import load_config
from lab.experiments.cell_compare import compare, in_process_air_feel, in_process_feel, in_process_sums

CONFIG = str(Path(__file__).resolve().parents[2] / "hw_configs" / "cell-zmq.yaml")
LOW_RATE = ["radio.sample_rate=1e5", "radio.args.broker.block_size=500"]


def test_in_process_sums_reach_the_noise_floor_of_the_configured_air():
    """K unit-power vectors summed over the config's 20 dB AWGN air: NMSE ≈ N/(α²·K) per value (E|Σ x_k|² = K), the
    pre-equalization error adding at most a few dB (feel_air's docstring: 1.1–1.8× the thermal noise)."""
    cfg = load_config(CONFIG, LOW_RATE)
    k = 2
    out = in_process_sums(cfg, k, 200, 2, seed=3)
    assert out["active"] == [k, k]
    predicted = 10 * math.log10(out["noise_var"] / k)
    assert predicted - 1.0 < out["nmse_db"] < predicted + 4.0
    assert out["nmse_db"] < -15.0        # 20 dB air, two devices


def test_compare_refuses_a_probe_record_and_reports_differences_for_sync():
    cfg = load_config(CONFIG, LOW_RATE)
    with pytest.raises(ValueError, match="no in-process reference"):
        compare({"task": "probe", "rounds": [{}]}, cfg)
    with pytest.raises(ValueError, match="no data round"):
        compare({"task": "sync", "rounds": []}, cfg)
    rec = {"task": "sync", "devices": 1, "seed": 0, "rounds": [{"round": 1}], "nmse_db": -20.0}
    out = compare(rec, cfg, data_symbols=2)
    assert math.isclose(out["nmse_db_difference"], -20.0 - out["sums"]["nmse_db"])


def test_in_process_feel_learns_less_through_more_noise():
    base = dict(devices=2, samples_per_device=100, rounds=3, channel_uses=384, seed=5)
    try:
        quiet = in_process_feel(base, 1e-3)
    except FileNotFoundError as exc:
        pytest.skip(f"no MNIST here: {exc}")
    loud = in_process_feel(base, 1e4)
    assert len(quiet["accuracy"]) == 3
    assert quiet["final_accuracy"] > loud["final_accuracy"] + 0.05
    with pytest.raises(ValueError, match="noise_var_real"):
        in_process_feel(base, float("nan"))


def test_in_process_air_feel_sums_the_devices_updates_over_the_configured_air():
    """The feel reference: the same FEEL run over the config's in-process air; its sums' NMSE sits near the thermal
    floor N_c/E|Σ u_m|² (the devices' correlated updates: at most the K independent vectors' floor N_c/K, and above
    the genie's by what pre-equalization adds), and it learns as the symbol-level run at its noise level does."""
    from learning.feel.data import load_first_available

    try:
        name = load_first_available()[0].name
    except FileNotFoundError as exc:
        pytest.skip(f"no FEEL data set here: {exc}")
    cfg = load_config(CONFIG, LOW_RATE)
    feel = dict(dataset=name, devices=2, samples_per_device=100, rounds=3, channel_uses=384, seed=5)
    out = in_process_air_feel(feel, cfg)
    assert len(out["accuracy"]) == 3
    sym = in_process_feel(feel, out["noise_var_real"])      # the same run on symbols at the same noise level
    assert abs(out["final_accuracy"] - sym["final_accuracy"]) < 0.1
    n_c = 2 * out["noise_var_real"] * (math.ceil(384 / 2) / 200.0)      # N_c = 2 c² σ²_real, c² = ⌈s/2⌉ / P_t
    floor = 10 * math.log10(n_c / 2)        # K = 2 independent unit-power values: the weakest sum
    assert out["nmse_db"] is not None and out["nmse_db"] < floor + 4.0
    assert out["nmse_db"] < -15.0           # 20 dB air
