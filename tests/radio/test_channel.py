"""LinkChannel against theory: delays, CFO, SCO, phase noise, TDL/exp multipath, block-cut invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radio.sim.channel import (FD_HALF_LENGTH, LinkChannel, LinkParams, fractional_delay_filter,
                           power_delay_profile)
from radio.sim.tdl import TDL_PROFILES

FS = 20e6
FC = 2.4e9


def cgauss(rng, n, power=1.0):
    return (np.sqrt(power / 2) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))).astype(np.complex64)


def tones(n, freqs, phases, delay=0.0):
    """Sum of complex tones exp(j(2π f (t − delay) + θ)) at integer t (cycles/sample); the analytic shifted signal."""
    t = np.arange(n, dtype=np.float64)[:, None] - delay
    return np.exp(1j * (2 * np.pi * np.asarray(freqs)[None, :] * t + np.asarray(phases)[None, :])).sum(1)


# ---------------------------------------------------------------- delay, gain


def test_integer_delay_and_gain_are_exact(rng):
    """y[n] = g·10^(−PL/20)·x[n − D] for integer D: exact (no interpolation)."""
    x = cgauss(rng, 1000)
    p = LinkParams(delay_samples=7, gain=0.5 - 0.25j, path_loss_db=6.0)
    y = LinkChannel(p, FS, FC).process(x)
    g = np.complex64((0.5 - 0.25j) * 10 ** (-6.0 / 20))
    np.testing.assert_array_equal(y[:7], 0)
    np.testing.assert_allclose(y[7:], g * x[:-7], rtol=1e-6, atol=1e-7)
    y0 = LinkChannel(LinkParams(delay_samples=7), FS, FC).process(x)
    np.testing.assert_array_equal(y0[7:], x[:-7])


@pytest.mark.parametrize("delay, fmax, bound_db", [
    (20.37, 0.40, -80.0),   # full 32-tap Kaiser kernel: documented ≤ −85 dB for |f| ≤ 0.4 fs
    (40.5, 0.40, -80.0),
    (2.5, 0.10, -65.0),     # 6-tap Lagrange: documented ≤ −71 dB for |f| ≤ 0.1 fs
    (0.5, 0.10, -24.0),     # linear interpolation: documented ≤ −26 dB for |f| ≤ 0.1 fs
])
def test_fractional_delay_matches_analytic_shift(rng, delay, fmax, bound_db):
    """Band-limited sum of tones through delay D equals x(t − D) = Σ exp(j2πf(t − D)) within the documented accuracy
    (error power relative to the signal, after the filter's start-up)."""
    freqs = np.linspace(-fmax, fmax, 9)
    phases = rng.uniform(0, 2 * np.pi, freqs.size)
    n = 4000
    x = tones(n, freqs, phases).astype(np.complex64)
    y = LinkChannel(LinkParams(delay_samples=delay), FS, FC).process(x)
    ref = tones(n, freqs, phases, delay=delay)
    start = math.ceil(delay) + 2 * FD_HALF_LENGTH
    err = np.abs(y[start:] - ref[start:])
    # a sum of K unit tones: worst-case per-tone error |H(f) − e^{−j2πfD}| ≤ max|err| / K
    worst_db = 20 * np.log10(err.max() / freqs.size)
    assert worst_db <= bound_db, f"delay {delay}: worst error {worst_db:.1f} dB > {bound_db} dB"


def test_fractional_delay_filter_is_causal_and_unit_dc():
    """FD kernel: lags ≥ 0 (no look-ahead), Σh = 1 (unit DC gain), group delay Σ m·h[m] = D for symmetric kernels."""
    for d in (0.25, 0.5, 3.5, 10.5, 15.5, 30.5):
        bulk, h = fractional_delay_filter(d)
        assert bulk >= 0
        assert h.sum() == pytest.approx(1.0, abs=1e-12)
        lags = bulk + np.arange(h.size)
        if d % 1 == 0.5:   # half-sample positions give symmetric kernels, centroid exactly D
            assert float(np.sum(lags * h)) == pytest.approx(d, abs=1e-9)


# ---------------------------------------------------------------- CFO, SCO, phase noise


def test_cfo_phase_slope_matches_formula():
    """Phase of y = x·exp(j2π f_off n/fs) grows by 2π·f_off/fs per sample, f_off = cfo_ppm·1e-6·fc; continuous
    across blocks."""
    p = LinkParams(cfo_ppm=3.3)
    ch = LinkChannel(p, FS, FC)
    x = np.ones(5000, np.complex64)
    y = np.concatenate([ch.process(x[:1234]), ch.process(x[1234:])])
    ph = np.unwrap(np.angle(y.astype(np.complex128)))
    slope = np.polyfit(np.arange(y.size), ph, 1)[0]
    expected = 2 * np.pi * 3.3e-6 * FC / FS
    assert slope == pytest.approx(expected, rel=1e-5)
    assert ph[0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("ppm, bulk", [(80.0, 0.0), (-80.0, 30.0)])
def test_sco_timing_drift_matches_ppm(ppm, bulk):
    """SCO: the delay of a known tone drifts as δ(n) = D + ppm·1e-6·n (timing drift = ppm·t). Measured from the phase
    of y·conj(x) = −2π f0 δ(n) with a low-frequency tone (f0 = 0.01 cycles/sample)."""
    f0 = 0.01
    n = 200_000
    t = np.arange(n)
    x = np.exp(2j * np.pi * f0 * t).astype(np.complex64)
    ch = LinkChannel(LinkParams(sco_ppm=ppm, delay_samples=bulk), FS, FC)
    y = np.concatenate([ch.process(b) for b in np.array_split(x, 7)])
    sl = slice(1000, None)
    delay = -np.unwrap(np.angle(y[sl] * np.conj(x[sl]))) / (2 * np.pi * f0)
    slope, icpt = np.polyfit(t[sl], delay, 1)
    assert slope == pytest.approx(ppm * 1e-6, rel=2e-3)
    # the absolute delay (mod one tone period) matches D at n = 0
    period = 1 / f0
    assert (icpt - bulk + period / 2) % period - period / 2 == pytest.approx(0.0, abs=0.02)
    assert ch.sco_clamped == 0


def test_negative_sco_clamps_at_zero_delay_and_counts():
    """δ(n) = D + ppm·1e-6·n < 0 is impossible for a causal link: clamped to 0 and counted (n > D/|ppm·1e-6|)."""
    ch = LinkChannel(LinkParams(sco_ppm=-100.0, delay_samples=0.5), FS, FC)
    ch.process(np.ones(20_000, np.complex64))
    assert ch.sco_clamped == 20_000 - (math.floor(0.5 / 100e-6) + 1)


def test_phase_noise_increment_variance_matches_linewidth():
    """Wiener phase noise: Var(φ[n] − φ[n−1]) = 2π·Δν/fs (Δν = 3-dB linewidth); estimate within 5 standard errors
    (standard error of a variance estimate: σ²·sqrt(2/N))."""
    lw = 5e3
    ch = LinkChannel(LinkParams(phase_noise_linewidth_hz=lw), FS, FC, seed=3)
    y = np.concatenate([ch.process(np.ones(50_000, np.complex64)) for _ in range(4)])
    inc = np.diff(np.unwrap(np.angle(y.astype(np.complex128))))
    var_th = 2 * np.pi * lw / FS
    assert np.var(inc) == pytest.approx(var_th, rel=5 * math.sqrt(2 / inc.size))
    assert abs(np.mean(inc)) < 5 * math.sqrt(var_th / inc.size)


# ---------------------------------------------------------------- multipath


@pytest.mark.parametrize("name", sorted(TDL_PROFILES))
def test_tdl_taps_follow_the_table(name):
    """Realized tap lags = round(τ_n,model · DS · fs) (TR 38.901 eq. 7.7-1) and mean tap powers = 10^(P_n/10)/Σ,
    merged per lag."""
    ds, fs = 300e-9, 100e6
    table = TDL_PROFILES[name]
    lags, powers = power_delay_profile(name, ds, fs)
    expected_lags = np.rint(np.array(table.delays) * ds * fs).astype(int)
    lin = 10 ** (np.array(table.powers_db) / 10)
    lin /= lin.sum()
    np.testing.assert_array_equal(lags, np.unique(expected_lags))
    for lag, p in zip(lags, powers):
        assert p == pytest.approx(lin[expected_lags == lag].sum(), rel=1e-12)
    ch = LinkChannel(LinkParams(profile=name, delay_spread_s=ds), fs, FC)
    np.testing.assert_array_equal(ch.tap_lags, lags)
    assert (np.abs(ch.tap_coeffs) > 0).all()


@pytest.mark.parametrize("name", ["TDL-A", "TDL-D", "exp"])
def test_average_power_gain_is_one(name):
    """E[Σ_k |c_k|²] = Σ_k p_k = 1 over realizations; the sample mean of R draws is within 4·std/sqrt(R)."""
    fs, ds, r = 100e6, 100e-9, 600
    gains = np.array([np.sum(np.abs(LinkChannel(LinkParams(profile=name, delay_spread_s=ds), fs, FC, seed=s)
                                    .tap_coeffs) ** 2) for s in range(r)])
    assert gains.mean() == pytest.approx(1.0, abs=4 * gains.std() / math.sqrt(r))


@pytest.mark.parametrize("name", ["TDL-A", "TDL-C", "TDL-E", "exp"])
def test_rms_delay_spread_of_sounded_pdp(name):
    """Channel sounding: an impulse through R realizations, PDP = mean |y[n]|²; its RMS delay spread
    sqrt(Σp τ²/Σp − (Σp τ/Σp)²) ≈ delay_spread_s (tables are normalized to DS = 1; TDL-D's is 0.994).
    fs·DS = 20 samples so the rounding to the sample grid costs < 1 %; 5 % covers the realization statistics."""
    fs, ds, r = 200e6, 100e-9, 300
    impulse = np.zeros(500, np.complex64)   # TDL-E spans 20.65·DS = 413 samples
    impulse[0] = 1
    pdp = np.zeros(impulse.size)
    for s in range(r):
        pdp += np.abs(LinkChannel(LinkParams(profile=name, delay_spread_s=ds), fs, FC, seed=s).process(impulse)) ** 2
    tau = np.arange(pdp.size) / fs
    mean = np.sum(pdp * tau) / pdp.sum()
    rms = math.sqrt(np.sum(pdp * tau ** 2) / pdp.sum() - mean ** 2)
    expected = ds * (TDL_PROFILES[name].rms_delay_spread() if name in TDL_PROFILES else 1.0)
    assert rms == pytest.approx(expected, rel=0.05)
    # the sampled mean PDP itself is within 1 % (rounding only)
    lags, p = power_delay_profile(name, ds, fs)
    m = np.sum(p * lags) / fs
    assert math.sqrt(np.sum(p * (lags / fs) ** 2) - m ** 2) == pytest.approx(expected, rel=0.01)


def test_block_fading_output_power_matches_taps(rng):
    """Parseval for an LTI realization: white unit-power input → output power Σ|h[m]|². The output is Gaussian and
    correlated over ~10 samples, so the standard error of its mean power is ≈ sqrt(10/N); allow 5 of them."""
    ch = LinkChannel(LinkParams(profile="TDL-C", delay_spread_s=300e-9), FS, FC, seed=9)
    x = cgauss(rng, 200_000)
    y = ch.process(x)[100:]
    _, h = ch.impulse_response
    expected = np.sum(np.abs(h) ** 2)
    assert np.mean(np.abs(y) ** 2) == pytest.approx(expected, rel=5 * math.sqrt(10 / y.size))


def test_doppler_autocorrelation_is_bessel_j0():
    """Time-varying Rayleigh tap (Clarke/Jakes model): E[c(n+τ)c*(n)] = J0(2π f_D τ/fs) and E|c|² = 1. Flat fading
    (one tap), unit input, ensemble of R realizations; coherence ≈ fs/f_D = 1000 samples gives ≈ R·N/1000 = 3000
    independent looks, so 0.06 is > 3 standard errors."""
    from scipy.special import j0
    fs, fd, n, r = 1e6, 1e3, 20_000, 150
    taus = np.array([0, 100, 240, 383, 600, 1000])
    acc = np.zeros(taus.size)
    for s in range(r):
        ch = LinkChannel(LinkParams(profile="exp", delay_spread_s=1e-12, doppler_hz=fd), fs, FC, seed=s)
        y = ch.process(np.ones(n, np.complex64)).astype(np.complex128)
        acc += [np.mean(y[t:] * np.conj(y[:n - t])).real for t in taus]
    np.testing.assert_allclose(acc / r, j0(2 * np.pi * fd * taus / fs), atol=0.06)


def test_doppler_keeps_los_path_constant():
    """TDL-D with Doppler: the specular LOS row keeps its amplitude while the Rayleigh rows fade around zero mean, so
    the time average of the flat-fading gain is the LOS amplitude: |mean c(n)|² = p_LOS = 10^(−0.2/10)/Σ_n 10^(P_n/10)
    (±0.1: ≈ 200 coherence times), whereas TDL-A (no LOS) averages to ≈ 0. E|c|² = 1."""
    lin = 10 ** (np.array(TDL_PROFILES["TDL-D"].powers_db) / 10)
    p_los = lin[0] / lin.sum()
    for name, expected in (("TDL-D", p_los), ("TDL-A", 0.0)):
        ch = LinkChannel(LinkParams(profile=name, delay_spread_s=10e-9, doppler_hz=2e3), 1e6, FC, seed=1)
        y = ch.process(np.ones(100_000, np.complex64))   # DS·fs ≪ 1: every row lands on lag 0
        assert abs(np.mean(y)) ** 2 == pytest.approx(expected, abs=0.1)
    assert np.mean(np.abs(y) ** 2) == pytest.approx(1.0, abs=0.35)   # one Rayleigh process, ~200 looks


# ---------------------------------------------------------------- streaming


PARAM_CASES = [
    LinkParams(),
    LinkParams(delay_samples=5.0, gain=0.3j),
    LinkParams(delay_samples=3.7),
    LinkParams(delay_samples=21.25, cfo_ppm=2.0, phase_noise_linewidth_hz=2e3),
    LinkParams(profile="TDL-B", delay_spread_s=1e-6, delay_samples=2.5),
    LinkParams(profile="exp", delay_spread_s=5e-6),          # 100-sample PDP → FFT overlap-add path
    LinkParams(sco_ppm=300.0, delay_samples=1.5, cfo_ppm=-1.0),
    LinkParams(sco_ppm=-300.0, delay_samples=4.0, profile="TDL-E", delay_spread_s=200e-9),
    LinkParams(profile="TDL-D", delay_spread_s=300e-9, doppler_hz=3e3, delay_samples=2.5),
    LinkParams(profile="exp", delay_spread_s=100e-9, doppler_hz=500.0, sco_ppm=100.0, delay_samples=20),
]


@pytest.mark.parametrize("case", range(len(PARAM_CASES)))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, 3000), max_size=12), silent=st.booleans())
def test_output_independent_of_block_cutting(case, cuts, silent):
    """process() over any cutting of the stream equals one process() call (to float32 rounding); with ``silent``,
    a silent gap fed through process_silence() equals feeding zeros explicitly (phase noise and SCO keep moving)."""
    rng = np.random.default_rng(case)
    x = cgauss(rng, 3000)
    if silent:
        x[800:2200] = 0     # a silent gap longer than any case's memory, then the signal resumes
    p = PARAM_CASES[case]
    ref = LinkChannel(p, FS, FC, seed=5).process(x)
    ch = LinkChannel(p, FS, FC, seed=5)
    parts = []
    if silent:
        cuts = cuts + [800, 1000, 2000]   # make sure whole blocks lie in the gap (the skip path)
    for block in np.split(x, sorted(set(cuts))):
        if silent and block.size and not block.any():
            y = ch.process_silence(block.size)
            parts.append(np.zeros(block.size, np.complex64) if y is None else y)
        else:
            parts.append(ch.process(block))
    out = np.concatenate(parts)
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5 * max(1.0, float(np.abs(ref).max())))


def test_silence_after_memory_is_skipped_cheaply():
    """After the channel's memory has passed with zero input, process_silence returns None (output exactly 0)."""
    ch = LinkChannel(LinkParams(delay_samples=10.5, profile="TDL-A", delay_spread_s=300e-9), FS, FC)
    ch.process(np.ones(100, np.complex64))
    assert ch.process_silence(5) is not None            # tail of the delayed burst still arriving
    assert ch.process_silence(ch.memory + 10) is not None
    assert ch.process_silence(1000) is None
    assert ch.position == 100 + 5 + ch.memory + 10 + 1000


@pytest.mark.parametrize("field, value", [("delay_samples", -1.0), ("profile", "TDL-Z"), ("cfo_ppm", float("nan")),
                                          ("phase_noise_linewidth_hz", -5.0), ("seed", -3), ("delay_spread_s", -1e-9)])
def test_invalid_params_name_field_and_value(field, value):
    """Bad LinkParams raise ValueError naming the field and the value."""
    with pytest.raises(ValueError, match=field) as exc:
        LinkParams(**{field: value})
    assert repr(value) in str(exc.value) or str(value) in str(exc.value)
