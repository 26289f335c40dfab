"""The whole synchronization procedure on the in-process air, against the truth the simulation knows.

Scenario (issue "Done when"): K = 8 devices, clock offsets anywhere in a frame, one-way delays up to 20 CP lengths,
CFO up to ±10 ppm at 2.4 GHz, sampling-clock offsets ±10 ppm, TDL-A multipath with 30 ns RMS delay spread (largest tap
5.8 samples at 20 MS/s, below half the 16-sample CP), 10 dB per-subcarrier SNR at the PS.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from lab.experiments.sync_trials import Scenario, run_trial, summarize
from sync.config import SyncConfig

CFG = SyncConfig()
SCN = Scenario(devices=8, snr_db=10.0, rounds=1, data_symbols=2)


def _trials(scn, n, seed, **kw):
    return [run_trial(scn, kw.pop("cfg", CFG), seed + i, **kw) for i in range(n)]


def test_residual_cfo_below_one_percent_of_the_subcarrier_spacing():
    """Beacon tracking: RMS of (estimated − true) CFO ≤ 1 % of the subcarrier spacing at 10 dB."""
    s = summarize(_trials(SCN, 3, 100), SCN.sample_rate)
    assert s["cfo_residual_rms_subcarriers"] <= 0.01, s["cfo_residual_rms_subcarriers"]


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_over_the_air_sum_within_1db_of_genie(snr_db):
    """Aggregation NMSE ≤ genie-sync, genie-CSI NMSE + 1 dB (same participants, power budget and threshold).

    The remaining gap is mostly the CSI estimation error: code-multiplexed pilots (4K symbols) and the
    significant-tap fit leave a relative error of about K·|S|/(n_used·n_pilot) of the noise term."""
    scn = dataclasses.replace(SCN, snr_db=snr_db, rounds=2, data_symbols=4)
    s = summarize(_trials(scn, 4, 200 + int(snr_db)), scn.sample_rate)
    assert s["bursts"] >= 40
    assert s["nmse_db"] <= s["nmse_genie_db"] + 1.0, (s["nmse_db"], s["nmse_genie_db"])


def test_without_timing_advance_the_sum_degrades():
    """--no-timing-advance: devices arrive up to 2 × 20 CP lengths late, outside the CP: the sum is ruined."""
    scn = dataclasses.replace(SCN, rounds=1, data_symbols=4)
    with_ta = summarize(_trials(scn, 2, 300), scn.sample_rate)
    without = summarize(_trials(scn, 2, 300, timing_advance=False), scn.sample_rate)
    assert with_ta["within_cp_fraction"] == 1.0
    assert without["within_cp_fraction"] < 0.5
    assert without["nmse_db"] > with_ta["nmse_db"] + 6.0, (without["nmse_db"], with_ta["nmse_db"])


def test_failures_are_handled_and_reported():
    """Two devices on one preamble (collision → backoff → msg3/msg4 resolution), a device that never answers, a
    device that drops out after the first round, and a lost access beacon: the rounds go on with the aligned devices and the
    result says who was excluded and why."""
    scn = dataclasses.replace(SCN, profile="none", rounds=3, data_symbols=1, never_answer=(3,), dropout={5: 2},
                              same_preamble=(1, 2), lost_beacons=(1,))
    cfg = dataclasses.replace(CFG, max_access_attempts=6)
    tr = run_trial(scn, cfg, seed=7)
    assert tr["excluded_devices"].get("3") == "never answered random access"
    assert any("collision" in e or "failed" in e for e in tr["events"])
    assert any("beacon 1 lost" in e for e in tr["events"])
    r0, r1, r2 = tr["rounds"]
    assert 5 in r0["active"] and 5 not in r1["active"] and "dropped out" in r1["excluded"]["5"]
    for r in (r0, r1, r2):   # the rounds go on, with every device that stayed aligned
        assert set(r["active"]) >= {0, 4, 6, 7}
        assert r["err"] / r["ref"] < 0.1
    # the colliding pair is resolved by backoff (both end up connected) or reported
    for dev in ("1", "2"):
        assert dev not in tr["excluded_devices"] or "random access" in tr["excluded_devices"][dev]


def test_prach_timing_rmse_is_reported_next_to_its_bound():
    """On AWGN the delay estimate from the PRACH in a full procedure stays close to its CRLB (the dedicated
    test_prach.py checks 1.5 × CRLB in isolation; here other devices' roots add interference)."""
    scn = dataclasses.replace(SCN, profile="none", rounds=1, data_symbols=1)
    s = summarize(_trials(scn, 2, 400), scn.sample_rate)
    assert np.isfinite(s["timing_rmse_samples"]) and np.isfinite(s["timing_crlb_samples"])
    assert s["timing_rmse_samples"] < 0.25   # well below the 0.25-sample TA quantization


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_every_device_inside_the_cp_in_1000_trials():
    """1,000 independent trials of the issue's scenario (K = 8, clock offsets anywhere, delays up to 20 CPs, ±10 ppm
    CFO and SCO, TDL-A, 10 dB): every device's data symbols arrive inside the CP at the PS (−b ≤ e + tau_first and
    e + tau_last ≤ cp − b, from the simulation's truth) in ≥ 99.9 % of them, as the issue asks (measured: 1000/1000
    for seeds 10000-10999 and for 20000-20999). Devices the procedure leaves out of a round (truncated inversion
    silences a deeply faded device; a lost downlink) do not transmit, so they cannot break the CP; at least 85 % of
    device-trials must take part (measured 89.9 %), so exclusions cannot hide misalignment. Two worker processes
    (CI has 2 cores)."""
    scn = dataclasses.replace(SCN, rounds=1, data_symbols=1)
    cfg = dataclasses.replace(CFG, beacons_before_access=3, pilot_symbols_per_device=2)
    n = 1000
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        trials = list(pool.map(run_trial, [scn] * n, [cfg] * n, range(10_000, 10_000 + n), chunksize=25))
    ok = [all(t["inside_cp"] for t in tr["timing"]) for tr in trials]
    sent = sum(len(tr["timing"]) for tr in trials)
    assert sum(ok) >= 0.999 * n, (n - sum(ok), [t for tr in trials for t in tr["timing"] if not t["inside_cp"]][:5])
    assert sent >= 0.85 * n * scn.devices, sent
