"""The beacon tracker's CFO estimate against its variance model, on a steady beacon train and on a cell's schedule.

Theory (sync/beacon.py's docstring): one beacon of L samples and energy E at SNR gives a correlation phase of variance
1/(2 E SNR) and a two-half estimate of variance 2 fs²/(4π² (L/2)² E SNR); a coherent run of beacons gives the
weighted least-squares slope. The estimate's error must match the standard deviation the tracker states (``cfo_std_hz``),
computed here independently from the schedule, and a gap the phase cannot be unwrapped across (the seconds between a
cell's rounds) must not cost a cycle slip: that used to bias a device by about ±1 Hz on an air with no CFO at all.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from phy.ofdm import OfdmConfig
from phy.receiver import Receiver
from sync.beacon import BeaconSource, BeaconTracker
from sync.config import SyncConfig

PAD = 2000     # noise samples before and after each beacon


def track(cfg: OfdmConfig, times: list[int], cfo_hz: float, snr_db: float, rng: np.random.Generator, *,
          air_linewidth_hz: float = 0.0, air_cfo_walk: float = 0.0, **tracker_args) -> tuple[BeaconTracker, float]:
    """A device's tracker after the beacons sent at ``times`` (PS time = local time: no clock offset) reached it over an
    AWGN link with carrier offset ``cfo_hz`` and a random carrier phase, and the CFO at the last beacon. Between beacons
    the carrier may wander: its phase diffuses (``air_linewidth_hz``: Wiener, variance 2π·linewidth·Δt) and its
    frequency walks (``air_cfo_walk``: variance ``air_cfo_walk``·Δt Hz²); within a beacon it is a steady tone."""
    fs = cfg.sample_rate
    tracker = BeaconTracker(cfg, period=2000, **tracker_args)
    rx = Receiver(cfg)
    phase, f = rng.uniform(0, 2 * math.pi), cfo_hz           # carrier phase at times[k] and CFO until times[k + 1]
    n0 = 10 ** (-snr_db / 10)
    for k, t in enumerate(times):
        if k:
            dt = (t - times[k - 1]) / fs
            phase += 2 * math.pi * f * dt + math.sqrt(2 * math.pi * air_linewidth_hz * dt) * rng.standard_normal()
            f += math.sqrt(air_cfo_walk * dt) * rng.standard_normal()
        w = tracker.source.waveform(t, k)
        seg = np.zeros(w.size + 2 * PAD, np.complex128)
        seg[PAD:PAD + w.size] = w
        t0 = t - PAD
        seg *= np.exp(1j * (2 * math.pi * f / fs * (np.arange(seg.size) - PAD) + phase))
        seg += math.sqrt(n0 / 2) * (rng.standard_normal(seg.size) + 1j * rng.standard_normal(seg.size))
        seg = seg.astype(np.complex64)
        frames = [fr for fr in rx.process(seg, t0) if fr.crc_ok]
        assert len(frames) == 1 and tracker.observe(frames[0], seg, t0), (k, t)
    return tracker, f


def trials(n: int, *args, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """``n`` runs of :func:`track` (same arguments): the errors against the final CFO, and the deviations stated."""
    runs = [track(*args, **kwargs) for _ in range(n)]
    return np.array([tr.cfo_hz - truth for tr, truth in runs]), np.array([tr.cfo_std_hz for tr, _ in runs])


def predicted_std(cfg: OfdmConfig, times: list[int], snr_db: float, coherent: list[list[int]]) -> float:
    """The CFO standard deviation the variance model gives for beacons at ``times`` whose ``coherent`` index groups
    are unwrapped together (written out here, not taken from the tracker)."""
    fs, source = cfg.sample_rate, BeaconSource(cfg)
    energy = float(np.sum(np.abs(source.waveform(0, 0)) ** 2))         # unit power per used subcarrier
    half = source.length // 2
    snr = 10 ** (snr_db / 10)
    info = len(times) * 4 * math.pi ** 2 * half ** 2 * energy * snr / (2 * fs ** 2)   # the two-half estimates
    for group in coherent:
        t = np.array([times[i] for i in group]) / fs
        info += 4 * math.pi ** 2 * 2 * energy * snr * float(np.sum((t - t.mean()) ** 2))
    return 1 / math.sqrt(info)


@pytest.mark.parametrize("cfo_hz", [0.0, 2500.3])
def test_a_cells_schedule_costs_no_cycle_slip(cfo_hz):
    """Four beacons 2000 samples apart before access, then one per round 1.6-9.6 s apart (the emulated-Pluto cell's
    schedule, 521 kS/s, 20 dB, measured 6 Dec). The first four fix the CFO to ~0.04 Hz: too coarse to unwrap across
    the 9.6 s gap (the phase is re-acquired there), fine enough across the next 1.6 s, and from then on the later
    beacons form one coherent run: the error is the weighted least-squares bound of the two runs."""
    cfg = OfdmConfig.preset("wifi64", 521_000.0)
    fs = cfg.sample_rate
    times = [10_000 + 2000 * k for k in range(4)] + [int(fs * s) for s in (9.601, 11.185, 20.625, 30.053)]
    rng = np.random.default_rng(7)
    errors, stated = trials(40, cfg, times, cfo_hz, 20.0, rng)
    theory = predicted_std(cfg, times, 20.0, [[0, 1, 2, 3], [4, 5, 6, 7]])
    rms = float(np.sqrt(np.mean(errors ** 2)))
    assert rms < 0.01, rms            # the slipping unwrap: 0.30-0.37 Hz RMS, up to 0.77 Hz, on this schedule
    assert np.allclose(stated, theory, rtol=0.25), (np.min(stated), np.max(stated), theory)
    assert 0.6 * theory < rms < 1.5 * theory, (rms, theory)
    assert np.max(np.abs(errors)) < 4.5 * theory, errors


def test_a_steady_beacon_train_reaches_the_phase_slope_bound():
    """16 beacons 2000 samples apart at 20 MS/s and 10 dB (the in-process cell's train): one coherent segment, the error
    at the weighted least-squares bound of the phase slope, and the stated deviation equal to it."""
    cfg = OfdmConfig.preset("wifi64", 20e6)
    times = [5000 + 2000 * k for k in range(16)]
    rng = np.random.default_rng(11)
    errors, stated = trials(60, cfg, times, 1234.5, 10.0, rng)
    theory = predicted_std(cfg, times, 10.0, [list(range(16))])
    rms = float(np.sqrt(np.mean(np.square(errors))))
    assert np.allclose(stated, theory, rtol=0.25), (np.min(stated), np.max(stated), theory)
    assert 0.7 * theory < rms < 1.4 * theory, (rms, theory)


@pytest.mark.parametrize("air, told", [({"air_linewidth_hz": 0.01}, {"linewidth_hz": 0.01}),
                                       ({"air_cfo_walk": 0.01}, {"cfo_walk": 0.01})])
def test_an_oscillator_that_wanders_needs_its_process_noise_told(air, told):
    """The cell's schedule with a carrier that wanders between beacons: its phase diffuses (0.01 Hz linewidth: 0.78 rad
    over 9.6 s) or its frequency walks (0.01 Hz²/s: 0.31 Hz over 9.6 s). Told how much, the tracker's stated deviation
    covers its error; assuming a steady carrier, it unwraps across the long gaps as if nothing had moved and states
    less than its error (measured: 2x with the phase noise, whose scatter its second pass partly sees; 7-10x with the
    walk)."""
    cfg = OfdmConfig.preset("wifi64", 521_000.0)
    fs = cfg.sample_rate
    times = [10_000 + 2000 * k for k in range(4)] + [int(fs * s) for s in (9.601, 11.185, 20.625, 30.053)]
    for tracker_args, judge in ((told, lambda rms, std: 0.6 * std < rms < 1.6 * std),
                                ({}, lambda rms, std: rms > 1.5 * std)):
        rng = np.random.default_rng(3)
        errors, stated = trials(40, cfg, times, 0.0, 20.0, rng, **air, **tracker_args)
        rms = float(np.sqrt(np.mean(np.square(errors))))
        assert judge(rms, float(np.mean(stated))), (tracker_args, rms, np.mean(stated))


def test_process_noise_must_not_be_negative():
    cfg = OfdmConfig.preset("wifi64", 521_000.0)
    with pytest.raises(ValueError, match="linewidth_hz"):
        BeaconTracker(cfg, 2000, linewidth_hz=-1.0)
    with pytest.raises(ValueError, match="cfo_random_walk"):
        SyncConfig(cfo_random_walk=-0.1)
    with pytest.raises(ValueError, match="phase_noise_linewidth_hz"):
        SyncConfig(phase_noise_linewidth_hz=float("nan"))


@pytest.mark.parametrize("ladder", [True, False])
def test_the_access_ladder_lets_the_estimate_bridge_a_whole_run_of_rounds(ladder):
    """A 20-round cell (521 kS/s, 20 dB): four access beacons 2000 samples apart, with or without the ladder's rungs
    (10 and 100 periods after the one before: 38 ms and 0.38 s; 1000 would exceed sync.ps.LADDER_MAX_GAP_S), then a
    beacon every 8 s (the rounds; more beacons than the time map's history of 16). With the ladder the estimate climbs
    to ~1e-3 Hz and on over the rounds, and its error matches what it states; without, no gap after the first four
    can be unwrapped and it stays near their ~0.05 Hz."""
    cfg = OfdmConfig.preset("wifi64", 521_000.0)
    fs = cfg.sample_rate
    times = [10_000 + 2000 * k for k in range(4)]
    for k in range(1, 3 if ladder else 1):
        times.append(times[-1] + 2000 * 10 ** k)
    times += [times[-1] + int(8 * fs) * r for r in range(1, 21)]
    rng = np.random.default_rng(5)
    errors, stated = trials(20, cfg, times, 1500.0, 20.0, rng)
    rms = float(np.sqrt(np.mean(np.square(errors))))
    if ladder:
        assert max(stated) < 1e-5 and rms < 2 * max(stated), (rms, max(stated))
    else:
        assert min(stated) > 0.02 and 0.5 * np.mean(stated) < rms < 2 * np.mean(stated), (rms, np.mean(stated))
