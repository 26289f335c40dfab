"""Air against theory: SNR of the noise floor, superposition, determinism, chunking, LateError, bounded memory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radio.sim.air import Air, AirConfig
from radio.base import LateError
from radio.sim.channel import LinkParams

FS = 20e6
FC = 2.4e9


def cgauss(rng, n, power=1.0):
    return (np.sqrt(power / 2) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))).astype(np.complex64)


def ofdm_symbols(rng, n_sym, n_fft=64, used=48):
    """Unit power per used subcarrier (QPSK), unitary IFFT: returns (time samples complex64[n_sym·n_fft],
    frequency grid complex128[n_sym, n_fft], used-subcarrier indices)."""
    idx = np.r_[1:used // 2 + 1, n_fft - used // 2:n_fft]
    grid = np.zeros((n_sym, n_fft), np.complex128)
    grid[:, idx] = (rng.choice([-1, 1], (n_sym, used)) + 1j * rng.choice([-1, 1], (n_sym, used))) / np.sqrt(2)
    return np.fft.ifft(grid, axis=1, norm="ortho").astype(np.complex64).ravel(), grid, idx


@pytest.mark.parametrize("snr_db", [0.0, 17.0, 30.0])
def test_snr_per_used_subcarrier_matches_config(rng, snr_db):
    """AirConfig.snr_db: noise variance per complex sample σ² = 10^(−SNR/10); with a unitary FFT the noise per
    subcarrier keeps variance σ², so SNR_k = E|X_k|²/σ² = SNR for unit-power subcarriers. 96 000 used-subcarrier
    samples: the estimate's standard error is 10·log10(1 + 1/sqrt(96000)) ≈ 0.014 dB ≪ 0.1 dB."""
    cfg = AirConfig(snr_db=snr_db, seed=4)
    air = Air.from_config(cfg, FS, FC)
    air.add_endpoint("tx")
    air.add_endpoint("rx")
    x, grid, idx = ofdm_symbols(rng, 2000)
    air.schedule("tx", x, at=100)
    air.advance(100)
    r = air.advance(x.size)["rx"]
    rgrid = np.fft.fft(r.reshape(grid.shape).astype(np.complex128), axis=1, norm="ortho")
    noise = rgrid[:, idx] - grid[:, idx]
    measured = 10 * np.log10(np.mean(np.abs(grid[:, idx]) ** 2) / np.mean(np.abs(noise) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.1)


def test_snr_white_signal_via_noise_power(rng):
    """Explicit noise_power σ²: a unit-power white signal has SNR = 1/σ² per sample (±0.1 dB, 200 000 samples)."""
    air = Air(FS, FC, seed=2)
    air.add_endpoint("a")
    air.add_endpoint("b", noise_power=10 ** (-12 / 10))
    x = cgauss(rng, 200_000)
    air.schedule("a", x, 0)
    r = air.advance(x.size)["b"]
    assert 10 * np.log10(1 / np.mean(np.abs(r - x) ** 2)) == pytest.approx(12.0, abs=0.1)
    assert 10 * np.log10(np.mean(np.abs(x) ** 2)) == pytest.approx(0.0, abs=0.1)


LINKS = {
    "d0": LinkParams(delay_samples=3.0, gain=0.8),
    "d1": LinkParams(delay_samples=17.6, cfo_ppm=1.2, profile="TDL-C", delay_spread_s=300e-9),
    "d2": LinkParams(delay_samples=40.0, sco_ppm=50.0, phase_noise_linewidth_hz=1e3, gain=0.5j),
}


def _run(tx_names, rng_seed=0, chunks=(5000,), noise=0.0, seed=11):
    """Air with endpoints ps, d0, d1, d2; the named devices transmit a burst each; returns what ps receives."""
    rng = np.random.default_rng(rng_seed)
    bursts = {name: cgauss(rng, 3000) for name in LINKS}
    air = Air(FS, FC, seed=seed)
    air.add_endpoint("ps", noise_power=noise)
    for name, params in LINKS.items():
        air.add_endpoint(name, noise_power=noise)
        air.set_link(name, "ps", params)
    for i, name in enumerate(tx_names):
        air.schedule(name, bursts[name], at=200 + 500 * i)
    out = {name: [] for name in air.endpoints}
    for n in chunks:
        for k, v in air.advance(n).items():
            out[k].append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


def test_superposition_of_three_transmitters():
    """Over-the-air sum: with noise off, ps receives Σ_i channel_i(burst_i) — equal to the sum of three runs with one
    transmitter each (linearity of every LinkChannel; block fading drawn per (seed, link) so identical across runs)."""
    together = _run(["d0", "d1", "d2"])["ps"]
    parts = []
    for only in ["d0", "d1", "d2"]:
        # same schedule times as in the joint run: give the others silent (empty) slots
        rng = np.random.default_rng(0)
        bursts = {name: cgauss(rng, 3000) for name in LINKS}
        air = Air(FS, FC, seed=11)
        air.add_endpoint("ps", noise_power=0.0)
        for name, params in LINKS.items():
            air.add_endpoint(name, noise_power=0.0)
            air.set_link(name, "ps", params)
        i = ["d0", "d1", "d2"].index(only)
        air.schedule(only, bursts[only], at=200 + 500 * i)
        parts.append(air.advance(5000)["ps"])
    expected = parts[0] + parts[1] + parts[2]
    assert np.abs(expected).max() > 0.5
    np.testing.assert_allclose(together, expected, rtol=0, atol=1e-5)


def test_advance_chunking_does_not_change_output():
    """Deterministic and chunk-independent: the same schedule advanced in 1 block or in ragged blocks gives the same
    samples at every receiver, noise included."""
    one = _run(["d0", "d1", "d2"], chunks=(5000,), noise=0.01)
    many = _run(["d0", "d1", "d2"], chunks=(1, 999, 37, 2000, 1963), noise=0.01)
    for k in one:
        np.testing.assert_allclose(many[k], one[k], rtol=0, atol=1e-5)


def test_determinism_per_seed_and_noise_per_receiver():
    """Same seed → identical output; another seed → other noise; a receiver's noise does not change when other
    endpoints are added (seeded from (seed, name))."""
    a = _run(["d0"], noise=0.1)["ps"]
    b = _run(["d0"], noise=0.1)["ps"]
    c = _run(["d0"], noise=0.1, seed=12)["ps"]
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1

    def noise_of(names):
        air = Air(FS, FC, seed=5)
        for n in names:
            air.add_endpoint(n, noise_power=1.0)
        return air.advance(1000)["rx"]
    np.testing.assert_array_equal(noise_of(["rx"]), noise_of(["zz", "rx", "aa"]))
    w = noise_of(["rx"])
    assert np.mean(np.abs(w) ** 2) == pytest.approx(1.0, abs=5 / math.sqrt(1000))


def test_schedule_in_the_past_raises_late_error():
    air = Air(FS, FC)
    air.add_endpoint("a")
    air.advance(100)
    with pytest.raises(LateError) as exc:
        air.schedule("a", np.ones(10, np.complex64), at=99)
    assert exc.value.at == 99 and exc.value.now == 100
    assert air.schedule("a", np.ones(10, np.complex64), at=100) == 100
    with pytest.raises(ValueError, match="'nobody'"):
        air.schedule("nobody", np.ones(3, np.complex64), at=200)


def test_overlapping_bursts_add_and_self_is_not_heard():
    """Two overlapping bursts of one endpoint add sample by sample; an endpoint does not hear itself by default."""
    air = Air(FS, FC)
    air.add_endpoint("a")
    air.add_endpoint("b")
    air.schedule("a", np.ones(10, np.complex64), at=5)
    air.schedule("a", 2j * np.ones(10, np.complex64), at=10)
    out = air.advance(30)
    expected = np.zeros(30, np.complex64)
    expected[5:15] += 1
    expected[10:20] += 2j
    np.testing.assert_array_equal(out["b"], expected)
    np.testing.assert_array_equal(out["a"], 0)
    air.set_link("a", "a", LinkParams(gain=0.5))
    air.set_link("a", "b", None)                          # cut the link
    air.schedule("a", np.ones(4, np.complex64), at=air.now)
    out = air.advance(4)
    np.testing.assert_array_equal(out["a"], 0.5)
    np.testing.assert_array_equal(out["b"], 0)


def test_memory_is_bounded():
    """Consumed bursts are dropped and channel histories stay within the channel memory."""
    air = Air(FS, FC, seed=1)
    air.add_endpoint("a")
    air.add_endpoint("b", noise_power=0.01)
    air.set_link("a", "b", LinkParams(delay_samples=20.5, profile="TDL-A", delay_spread_s=100e-9, sco_ppm=20))
    rng = np.random.default_rng(0)
    for _ in range(200):
        air.schedule("a", cgauss(rng, 500), at=air.now + 10)
        air.advance(700)
    assert air.pending("a") == 0
    assert air._endpoints["a"].bursts == []
    ch = air.link("a", "b")
    assert ch._hist.size < 100 and ch._sco_buf.size < ch.memory + 64
    air.remove_endpoint("b")
    assert air.endpoints == ("a",) and air.link("a", "b") is None


def test_air_config_validation_and_links():
    """AirConfig: snr_db → noise 10^(−snr/10); bad values raise ValueError naming field and value; per-link overrides
    apply to that link only."""
    assert AirConfig(snr_db=20).receiver_noise_power == pytest.approx(0.01)
    for kwargs, name in [({"snr_db": 10, "noise_power": 0.1}, "snr_db"), ({"channel": "rician"}, "channel"),
                         ({"noise_power": -1.0}, "noise_power"), ({"cfo_ppm": float("inf")}, "cfo_ppm"),
                         ({"links": {"a-b": {}}}, "a-b"), ({"links": {"a->b": {"foo": 1}}}, "foo"),
                         ({"links": {"a->b": {"delay_samples": -2}}}, "delay_samples")]:
        with pytest.raises(ValueError, match=name):
            AirConfig(**kwargs)
    cfg = AirConfig(channel="TDL-A", delay_spread_s=50e-9, links={"ps->d0": {"delay_samples": 4, "cfo_ppm": 1.0}})
    air = Air.from_config(cfg, FS, FC)
    for n in ("ps", "d0", "d1"):
        air.add_endpoint(n)
    assert air.link("ps", "d0").params.delay_samples == 4 and air.link("ps", "d0").params.profile == "TDL-A"
    assert air.link("ps", "d1").params.delay_samples == 0 and air.link("ps", "d1").params.profile == "TDL-A"
    assert air.link("d0", "d0") is None
    yaml_like = AirConfig(links={"a->b": {"delay_spread_s": "1e-7", "profile": "TDL-B", "gain": "0.5"}})
    assert yaml_like.link_params("a", "b").delay_spread_s == 1e-7
    assert yaml_like.link_params("a", "b").gain == 0.5
    assert yaml_like.link_params("b", "a").profile == "none"


def test_redraw_fading_is_deterministic_and_changes_taps():
    """Block fading: redraw_fading() draws the next realization of every multipath link, the same sequence for the same
    seed; links without multipath are untouched."""
    def taps(seed):
        air = Air(FS, FC, seed=seed)
        air.add_endpoint("a")
        air.add_endpoint("b")
        air.set_link("a", "b", LinkParams(profile="TDL-B", delay_spread_s=300e-9))
        first = air.link("a", "b").tap_coeffs.copy()
        air.redraw_fading()
        return first, air.link("a", "b").tap_coeffs.copy()
    f1, s1 = taps(1)
    f2, s2 = taps(1)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(s1, s2)
    assert np.abs(f1 - s1).max() > 1e-3


def test_receiver_noise_is_white_circular_gaussian():
    """w ~ CN(0, σ²): E|w|² = σ², E[w²] = 0 (circular), kurtosis of Re w = 3, no correlation at lags 1..3 nor between
    consecutive noise blocks (the per-block generators are independent). Tolerances: 5 standard errors."""
    from radio.sim.air import NOISE_BLOCK
    sigma2 = 0.37
    air = Air(FS, FC, seed=8)
    air.add_endpoint("rx", noise_power=sigma2)
    n = 8 * NOISE_BLOCK
    w = air.advance(n)["rx"].astype(np.complex128)
    se = 5 / math.sqrt(n)
    assert np.mean(np.abs(w) ** 2) == pytest.approx(sigma2, rel=5 * math.sqrt(1 / n))
    assert abs(np.mean(w ** 2)) / sigma2 < se
    re = w.real / math.sqrt(sigma2 / 2)
    assert np.mean(re ** 4) == pytest.approx(3.0, abs=5 * math.sqrt(96 / n))
    for lag in (1, 2, 3, NOISE_BLOCK):
        assert abs(np.mean(w[lag:] * np.conj(w[:-lag]))) / sigma2 < 5 / math.sqrt(n - lag)


def test_transmit_only_endpoint_skips_noise_without_changing_anything():
    """receiving=False: no output for that endpoint; switching it back on gives the same samples as an endpoint that
    received all along (random-access noise), and the other receivers are unaffected."""
    def run(toggle):
        air = Air(FS, FC, seed=4, default_noise_power=0.5)
        air.add_endpoint("a", receiving=not toggle)
        air.add_endpoint("b")
        air.schedule("b", np.ones(5000, np.complex64), at=0)
        first = air.advance(70_000)
        if toggle:
            assert "a" not in first
            air.set_receiving("a", True)
        return first["b"], air.advance(1000)
    b_on, later_on = run(False)
    b_off, later_off = run(True)
    np.testing.assert_array_equal(b_on, b_off)
    np.testing.assert_array_equal(later_on["a"], later_off["a"])
