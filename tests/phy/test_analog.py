"""AnalogMapper: exact inversion, stated power, and the noise-variance mapping N0 / (2 scale^2)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from phy.analog import AnalogMapper

_magnitudes = st.one_of(st.just(0.0), st.floats(1e-6, 1e3), st.floats(-1e3, -1e-6))
_values = arrays(np.float64, st.integers(0, 41), elements=_magnitudes)


@settings(max_examples=200, deadline=None)
@given(x=_values, exponent=st.integers(-12, 12), power=st.floats(1e-3, 1e3))
def test_exact_inverse_and_power(x: np.ndarray, exponent: int, power: float) -> None:
    """from_symbols(to_symbols(x)) == x up to float32 rounding, for any length (odd, even, zero) and magnitudes
    1e-18 ... 1e15 (float32-normal results);
    mean |s|^2 equals the stated power (scale = sqrt(power / mean|pair|^2)), and scale = 1 for an all-zero input."""
    x = x * 10.0**exponent
    mapper = AnalogMapper(power)
    s, scale = mapper.to_symbols(x)
    assert s.dtype == np.complex64 and s.shape == ((x.size + 1) // 2,)
    x_hat, nv = mapper.from_symbols(s, scale, length=x.size)
    assert x_hat.dtype == np.float32 and x_hat.shape == x.shape and nv.shape == x.shape
    np.testing.assert_allclose(x_hat, x.astype(np.float32), rtol=4e-7, atol=0)
    np.testing.assert_array_equal(nv, 0)
    if np.any(x != 0):
        assert np.mean(np.abs(s.astype(np.complex128)) ** 2) == pytest.approx(power, rel=1e-6)
        pairs = np.pad(x, (0, x.size % 2)).reshape(-1, 2)
        assert scale == pytest.approx(np.sqrt(power / np.mean(np.sum(pairs**2, axis=1))), rel=1e-12)
    else:
        assert scale == 1.0
        assert np.all(s == 0)


def test_pairing_layout() -> None:
    """s[i] = scale * (x[2i] + j x[2i+1]), odd length zero-padded."""
    s, scale = AnalogMapper(2.0).to_symbols(np.array([3.0, 4.0, 1.0]))
    # pairs 3+4j and 1+0j: mean |pair|^2 = (25 + 1) / 2 = 13
    assert scale == pytest.approx(np.sqrt(2.0 / 13.0))
    np.testing.assert_allclose(s, np.array([3 + 4j, 1 + 0j]) * scale, rtol=1e-6)


@pytest.mark.parametrize("power", [0.5, 2.0])
def test_noise_variance_mapping(power: float, rng: np.random.Generator) -> None:
    """Complex AWGN of variance N0 on the symbols gives real-value errors of variance N0 / (2 scale^2): measured on
    2e5 values per case (estimator relative std sqrt(2/N) = 0.3%, tolerance 3%); per-symbol N0 vectors too."""
    length = 200_001
    x = rng.standard_normal(length) * 3.0 + 1.0
    mapper = AnalogMapper(power)
    s, scale = mapper.to_symbols(x)
    n0 = np.where(np.arange(s.size) % 2 == 0, 0.05, 0.2)  # two noise levels on alternating symbols
    noise = np.sqrt(n0 / 2) * (rng.standard_normal(s.size) + 1j * rng.standard_normal(s.size))
    x_hat, nv = mapper.from_symbols(s + noise, scale, length=length, noise_var=n0)
    err = x_hat.astype(np.float64) - x
    real_symbol = np.arange(length) // 2
    for level in (0.05, 0.2):
        sel = n0[real_symbol] == level
        expected = level / (2 * scale**2)
        np.testing.assert_allclose(nv[sel], expected, rtol=1e-6)
        assert np.var(err[sel]) == pytest.approx(expected, rel=0.03)
        assert np.mean(err[sel]) == pytest.approx(0.0, abs=4 * np.sqrt(expected / sel.sum()))
    # a scalar N0 broadcasts
    _, nv_scalar = mapper.from_symbols(s, scale, length=length, noise_var=0.1)
    np.testing.assert_allclose(nv_scalar, 0.1 / (2 * scale**2), rtol=1e-6)


def test_bad_inputs_raise_naming_the_argument() -> None:
    mapper = AnalogMapper()
    with pytest.raises(ValueError, match="power"):
        AnalogMapper(0.0)
    with pytest.raises(ValueError, match="x"):
        mapper.to_symbols(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="x"):
        mapper.to_symbols(np.array([1.0, np.nan]))
    s, scale = mapper.to_symbols(np.arange(5.0))
    with pytest.raises(ValueError, match="length"):
        mapper.from_symbols(s, scale, length=7)
    with pytest.raises(ValueError, match="scale"):
        mapper.from_symbols(s, 0.0, length=5)
    with pytest.raises(ValueError, match="noise_var"):
        mapper.from_symbols(s, scale, length=5, noise_var=-1.0)
    with pytest.raises(ValueError, match="noise_var"):
        mapper.from_symbols(s, scale, length=5, noise_var=np.ones(4))


def test_batch_inverse_equals_per_vector(rng: np.random.Generator) -> None:
    """from_symbols_batch (the receiver's one call per frame shape) gives row by row exactly from_symbols, for odd
    and even lengths; bad scales and noise variances raise naming the argument."""
    mapper = AnalogMapper()
    for length in (1, 2, 7, 300):
        n = (length + 1) // 2
        y = (rng.standard_normal((4, n)) + 1j * rng.standard_normal((4, n))).astype(np.complex64)
        scales = rng.uniform(0.01, 100.0, 4)
        nv = rng.uniform(0.0, 1.0, (4, n)).astype(np.float32)
        x_b, v_b = mapper.from_symbols_batch(y, scales, length, nv)
        for f in range(4):
            x, v = mapper.from_symbols(y[f], scales[f], length=length, noise_var=nv[f])
            np.testing.assert_array_equal(x_b[f], x)
            np.testing.assert_array_equal(v_b[f], v)
    with pytest.raises(ValueError, match="scales"):
        mapper.from_symbols_batch(y, [1.0, 0.0, 1.0, 1.0], 300, nv)
    with pytest.raises(ValueError, match="noise_var"):
        mapper.from_symbols_batch(y, scales, 300, -nv)


def test_unbias_mmse_against_the_mmse_equalizer_theory():
    """ŝ = conj(h) y / (|h|² + N0) for unit-power s has mean (1 - ν) s and error variance ν(1 - ν) with
    ν = N0 / (|h|² + N0). "symbol" divides by 1 - ν_i: unbiased, noise ν_i / (1 - ν_i) = N0 / |h_i|² (zero forcing),
    and the SNR it reports, -10 log10(mean ν'), is the measured one; "scalar" leaves no mean bias over the payload;
    "none" passes the values through."""
    from phy.analog import unbias_mmse

    rng = np.random.default_rng(11)
    n, n0 = 200_000, 0.1
    s = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)
    h = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)
    h = h / np.abs(h) * np.sqrt(0.5 + rng.uniform(0, 1.5, n))          # gains away from deep fades
    y = h * s + np.sqrt(n0 / 2) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
    s_hat = np.conj(h) * y / (np.abs(h) ** 2 + n0)
    nu = n0 / (np.abs(h) ** 2 + n0)
    vals = np.empty(2 * n, np.float32)
    vals[0::2], vals[1::2] = s_hat.real, s_hat.imag
    x = np.empty(2 * n)
    x[0::2], x[1::2] = s.real, s.imag

    sym, snr_db = unbias_mmse(vals, nu, "symbol")
    z = sym[0::2] + 1j * sym[1::2]
    gain = np.vdot(s, z) / np.vdot(s, s)                 # E[z s*] / E|s|²: 1 when unbiased
    assert abs(gain - 1) < 0.01
    err = np.mean(np.abs(z - s) ** 2)
    assert abs(err / np.mean(n0 / np.abs(h) ** 2) - 1) < 0.02           # zero-forcing noise N0/|h|²
    assert abs(snr_db - (-10 * np.log10(err))) < 0.1

    sc, snr_sc = unbias_mmse(vals, nu, "scalar")
    assert abs(np.dot(sc, x) / np.dot(x, x) - 1) < 0.02 and np.isfinite(snr_sc)
    raw, snr_raw = unbias_mmse(vals, nu, "none")
    assert np.array_equal(raw, vals) and abs(snr_raw - (-10 * np.log10(nu.mean()))) < 1e-9
    with pytest.raises(ValueError, match="mode"):
        unbias_mmse(vals, nu, "zf")
