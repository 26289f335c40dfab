"""QamModem: constellations, LLR demapping against the definition, AWGN BER against theory, LLR calibration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from phy.modulation import SUPPORTED_ORDERS, QamModem
from phy.theory import ber_qam_awgn, llr_calibration, q_function

ORDERS = SUPPORTED_ORDERS


def _labels_bits(order: int) -> np.ndarray:
    m = int(np.log2(order))
    return (np.arange(order)[:, None] >> np.arange(m - 1, -1, -1)[None, :]) & 1


def _awgn(rng: np.random.Generator, shape, noise_var) -> np.ndarray:
    """Circular complex Gaussian noise with E|n|^2 = noise_var."""
    return np.sqrt(np.asarray(noise_var) / 2) * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


@pytest.mark.parametrize("order", ORDERS)
def test_constellation_unit_energy_and_gray(order: int) -> None:
    """E|s|^2 = 1 (square QAM normalized by sqrt(2(M-1)/3)); nearest neighbours differ in exactly one bit (Gray)."""
    modem = QamModem(order)
    c = modem.constellation.astype(np.complex128)
    assert modem.constellation.dtype == np.complex64 and c.shape == (order,)
    assert np.mean(np.abs(c) ** 2) == pytest.approx(1.0, rel=1e-6)
    assert len(np.unique(np.round(c, 6))) == order
    d = np.abs(c[:, None] - c[None, :])
    np.fill_diagonal(d, np.inf)
    neighbours = np.isclose(d, d.min(), rtol=1e-5)
    bits = _labels_bits(order)
    hamming = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    assert np.all(hamming[neighbours] == 1)
    assert neighbours.sum() > 0


def test_qam16_matches_3gpp_table() -> None:
    """TS 38.211 5.1.3: 16-QAM d = [(1-2b0)(2-(1-2b2)) + j(1-2b1)(2-(1-2b3))] / sqrt(10)."""
    b = _labels_bits(16)
    ref = ((1 - 2 * b[:, 0]) * (2 - (1 - 2 * b[:, 2])) + 1j * (1 - 2 * b[:, 1]) * (2 - (1 - 2 * b[:, 3]))) / np.sqrt(10)
    np.testing.assert_allclose(QamModem(16).constellation, ref, atol=1e-6)


@pytest.mark.parametrize("order", ORDERS)
def test_table_mapping_equals_label_definition(order: int, rng: np.random.Generator) -> None:
    """modulate (byte-table and packed-label paths, any 0/1 dtype) and modulate_bytes (zero-padded) both give
    constellation[label], label = the m bits of a symbol read MSB first."""
    modem = QamModem(order)
    m = modem.bits_per_symbol
    weights = 1 << np.arange(m - 1, -1, -1)
    for n_sym in (8, 7, 1):                       # whole bytes (8 symbols) and not
        bits = rng.integers(0, 2, (2, n_sym * m), dtype=np.uint8)
        want = modem.constellation[bits.reshape(2, n_sym, m) @ weights]
        for b in (bits, bits.astype(bool), bits.astype(np.int64), bits.astype(np.float64)):
            np.testing.assert_array_equal(modem.modulate(b), want)
    data = rng.integers(0, 256, 11, dtype=np.uint8).tobytes()
    n_bits = m * (-(-88 // m) + 3)
    bits = np.concatenate([np.unpackbits(np.frombuffer(data, np.uint8)), np.zeros(n_bits - 88, np.uint8)])
    np.testing.assert_array_equal(modem.modulate_bytes(data, n_bits), modem.modulate(bits))
    assert modem.modulate_bytes(data).size == -(-88 // m)
    with pytest.raises(ValueError, match="n_bits"):
        modem.modulate_bytes(data, 80)


@pytest.mark.parametrize("order", ORDERS)
def test_noiseless_roundtrip_batched(order: int, rng: np.random.Generator) -> None:
    """modulate -> demodulate_hard / sign of LLR is the identity; leading batch axes are kept."""
    modem = QamModem(order)
    m = modem.bits_per_symbol
    bits = rng.integers(0, 2, (3, 5, 7 * m), dtype=np.uint8)
    y = modem.modulate(bits)
    assert y.shape == (3, 5, 7) and y.dtype == np.complex64
    np.testing.assert_array_equal(modem.demodulate_hard(y), bits)
    for method in ("exact", "maxlog"):
        llr = modem.demodulate_llr(y, 0.05, method=method)
        assert llr.shape == bits.shape and llr.dtype == np.float32
        np.testing.assert_array_equal((llr < 0).astype(np.uint8), bits)


@pytest.mark.parametrize("order", ORDERS)
def test_llr_equals_definition(order: int, rng: np.random.Generator) -> None:
    """Exact LLR = log sum_{s: b=0} exp(-|y-s|^2/N0) - log sum_{s: b=1} exp(-|y-s|^2/N0) over the whole constellation;
    max-log replaces each sum by its largest term. Per-symbol noise variances (broadcast) from 1e-4 to 3."""
    modem = QamModem(order)
    m, n = modem.bits_per_symbol, 3000
    bits = rng.integers(0, 2, m * n, dtype=np.uint8)
    noise_var = 10.0 ** rng.uniform(-4, 0.5, n)
    y = modem.modulate(bits) + _awgn(rng, n, noise_var)
    y[:100] *= 3.0  # far outside the constellation too
    metric = -np.abs(y[:, None] - modem.constellation[None, :].astype(np.complex128)) ** 2 / noise_var[:, None]
    lab = _labels_bits(order)
    exact = np.stack([logsumexp(metric[:, lab[:, j] == 0], 1) - logsumexp(metric[:, lab[:, j] == 1], 1) for j in range(m)], 1)
    maxlog = np.stack([metric[:, lab[:, j] == 0].max(1) - metric[:, lab[:, j] == 1].max(1) for j in range(m)], 1)
    got_exact = modem.demodulate_llr(y, noise_var).reshape(n, m)
    got_maxlog = modem.demodulate_llr(y, noise_var, method="maxlog").reshape(n, m)
    scale = np.maximum(1.0, np.abs(exact))
    moderate = np.abs(exact) < 60  # exact to float32 precision; beyond, the far set is max-log (documented)
    assert np.max(np.abs(got_exact - exact)[moderate] / scale[moderate]) < 1e-4
    # saturated entries: far-set log-sum replaced by its largest term, off by at most log(L/2), L = sqrt(M) levels
    bound = np.log(max(np.sqrt(order) / 2, 1.0)) + 1e-3 * np.abs(exact)
    assert np.all(np.abs(got_exact - exact) <= bound + 1e-4 * scale)
    assert np.max(np.abs(got_maxlog - maxlog) / np.maximum(1.0, np.abs(maxlog))) < 1e-4


def _ber_points():
    """(order, Es/N0 dB) with theoretical BER between 1e-3 and 0.2."""
    return [(2, 2.0), (2, 6.0), (4, 4.0), (4, 8.0), (16, 8.0), (16, 14.0), (64, 14.0), (64, 19.0)]


@pytest.mark.parametrize(("order", "esn0_db"), _ber_points())
def test_awgn_ber_matches_theory(order: int, esn0_db: float, rng: np.random.Generator) -> None:
    """Hard-decision BER over AWGN within 10% of theory: BPSK Q(sqrt(2Es/N0)), QPSK Q(sqrt(Es/N0)) (exact), square
    M-QAM the exact Gray expression of Cho & Yoon (2002). The sample size gives >= 4000 expected errors, so 10% is
    >= 4 binomial sigmas even with a sqrt(2) allowance for errors correlated within a symbol. Exact-LLR sign errors match the hard BER (bitwise MAP vs nearest point: within 3%) and
    max-log sign decisions equal the hard decisions exactly."""
    modem = QamModem(order)
    m = modem.bits_per_symbol
    p = float(ber_qam_awgn(order, esn0_db))
    assert 1e-3 <= p <= 0.2
    n_sym = int(np.ceil(4000 / p / m))
    sigma_rel = 1.0 / np.sqrt(n_sym * m * p)
    assert 0.1 >= 4 * sigma_rel * np.sqrt(2)  # sqrt 2: margin for bit errors correlated within a symbol
    bits = rng.integers(0, 2, n_sym * m, dtype=np.uint8)
    noise_var = 10.0 ** (-esn0_db / 10)
    y = modem.modulate(bits) + _awgn(rng, n_sym, noise_var).astype(np.complex64)
    hard = modem.demodulate_hard(y)
    ber_hard = np.mean(hard != bits)
    assert ber_hard == pytest.approx(p, rel=0.1)
    llr = modem.demodulate_llr(y, noise_var)
    ber_llr = np.mean((llr < 0) != bits)
    assert ber_llr == pytest.approx(ber_hard, rel=0.03)
    np.testing.assert_array_equal((modem.demodulate_llr(y, noise_var, method="maxlog") < 0).astype(np.uint8), hard)


def test_bpsk_ber_at_1e4(rng: np.random.Generator) -> None:
    """BPSK at Es/N0 = 8.0 dB: Pb = Q(sqrt(2 Es/N0)) ~ 1.9e-4; 1.2e7 bits give ~2300 errors (10% ~ 4.8 sigma)."""
    modem = QamModem(2)
    esn0_db = 8.0
    p = float(q_function(np.sqrt(2 * 10 ** (esn0_db / 10))))
    n = 12_000_000
    assert 0.1 >= 4 / np.sqrt(n * p)
    noise = rng.standard_normal(n, dtype=np.float32) * np.float32(np.sqrt(10 ** (-esn0_db / 10) / 2))
    bits = rng.integers(0, 2, n, dtype=np.uint8)
    y = (1.0 - 2.0 * bits.astype(np.float32)) + noise  # the BPSK constellation, real axis
    np.testing.assert_array_equal(modem.modulate(bits[:64]).real, 1.0 - 2.0 * bits[:64])
    ber = np.mean(modem.demodulate_hard(y.astype(np.complex64)) != bits)
    assert ber == pytest.approx(p, rel=0.1)


@pytest.mark.parametrize(("order", "esn0_db"), [(4, 3.0), (16, 10.0), (64, 16.0)])
def test_exact_llrs_are_calibrated(order: int, esn0_db: float, rng: np.random.Generator) -> None:
    """For a true LLR l = log P(b=0|y)/P(b=1|y), the fraction of zeros among bits with LLR ~ l is 1/(1+e^-l).
    Checked per bin within 4 binomial sigmas (+0.01 for the bin width); LLRs scaled by 2 must fail the same check."""
    modem = QamModem(order)
    m, n = modem.bits_per_symbol, 200_000
    bits = rng.integers(0, 2, n * m, dtype=np.uint8)
    noise_var = 10.0 ** (-esn0_db / 10)
    y = modem.modulate(bits) + _awgn(rng, n, noise_var).astype(np.complex64)
    llr = modem.demodulate_llr(y, noise_var)
    edges = np.linspace(-6, 6, 25)

    def worst_z(values: np.ndarray) -> float:
        cal = llr_calibration(values, bits, edges, min_count=200)
        assert cal.counts.size >= 15
        sigma = np.sqrt(cal.p0_predicted * (1 - cal.p0_predicted) / cal.counts) + 0.01 / 4
        return float(np.max(np.abs(cal.p0_empirical - cal.p0_predicted) / sigma))

    assert worst_z(llr) < 4.0
    assert worst_z(2.0 * llr) > 4.0  # over-confident LLRs are detected


def test_per_symbol_noise_var_broadcast(rng: np.random.Generator) -> None:
    """noise_var broadcast over symbols: a [n] vector or a [F, 1] column scales each symbol's LLRs by 1/N0."""
    modem = QamModem(16)
    y = modem.modulate(rng.integers(0, 2, (2, 4 * 6), dtype=np.uint8)) + 0.1
    base = modem.demodulate_llr(y, 1.0)
    col = modem.demodulate_llr(y, np.array([[0.5], [0.25]]), method="maxlog")
    np.testing.assert_allclose(col, modem.demodulate_llr(y, 1.0, method="maxlog") * np.repeat([[2.0], [4.0]], 24, 1), rtol=1e-5)
    per_sym = np.full(6, 1.0)
    np.testing.assert_allclose(modem.demodulate_llr(y, per_sym), base, rtol=1e-6)


@pytest.mark.parametrize("name,order", [("bpsk", 2), ("qpsk", 4), ("16qam", 16), ("64QAM", 64), ("256-qam", 256)])
def test_from_name(name: str, order: int) -> None:
    modem = QamModem.from_name(name)
    assert modem.order == order and modem.bits_per_symbol == int(np.log2(order))
    assert QamModem.from_name(modem.name).order == order


def test_bad_inputs_raise_naming_the_argument() -> None:
    modem = QamModem(16)
    with pytest.raises(ValueError, match="order"):
        QamModem(8)
    with pytest.raises(ValueError, match="name"):
        QamModem.from_name("8psk")
    with pytest.raises(ValueError, match="bits"):
        modem.modulate(np.zeros(6, dtype=np.uint8))
    with pytest.raises(ValueError, match="bits"):
        modem.modulate(np.full(8, 2, dtype=np.uint8))
    y = modem.modulate(np.zeros(8, dtype=np.uint8))
    with pytest.raises(ValueError, match="noise_var"):
        modem.demodulate_llr(y, 0.0)
    with pytest.raises(ValueError, match="noise_var"):
        modem.demodulate_llr(y, np.ones(3))
    with pytest.raises(ValueError, match="y"):
        modem.demodulate_llr(np.array([np.nan + 0j, 1]), 1.0)
    with pytest.raises(ValueError, match="method"):
        modem.demodulate_llr(y, 1.0, method="approx")


@pytest.mark.parametrize("order", SUPPORTED_ORDERS)
@pytest.mark.parametrize("esn0_db", [0.0, 10.0, 30.0])
def test_llr_negative_is_the_sign_of_the_exact_llr(order: int, esn0_db: float, rng: np.random.Generator) -> None:
    """``llr_negative`` (max-log where its sign is sure, exact log-MAP elsewhere) gives exactly the signs of
    ``demodulate_llr``'s exact LLRs, including values on and around the decision boundaries, per-symbol variances."""
    m = QamModem(order)
    n = 20000
    s = m.modulate(rng.integers(0, 2, n * m.bits_per_symbol))
    nv = 10 ** (-esn0_db / 10) * rng.uniform(0.5, 2.0, n).astype(np.float32)
    y = (s + np.sqrt(nv / 2) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))).astype(np.complex64)
    # values near every level and mid-point (where max-log and exact disagree most)
    step = float(np.min(np.diff(np.unique(np.round(s.real, 6))))) if order > 2 else 2.0
    y[:2000] = (np.round(y[:2000].real / (step / 2)) * (step / 2) + rng.normal(0, 0.01, 2000)
                + 1j * (np.round(y[:2000].imag / (step / 2)) * (step / 2))).astype(np.complex64)
    got = m.llr_negative(y.reshape(40, -1), nv.reshape(40, -1))
    want = m.demodulate_llr(y.reshape(40, -1), nv.reshape(40, -1)) < 0
    assert got.shape == want.shape and got.dtype == bool
    assert np.array_equal(got, want)
    with pytest.raises(ValueError, match="noise_var"):
        m.llr_negative(y, -1.0)


@pytest.mark.parametrize("order", [16, 64, 256])
def test_least_reliable_maxlog_llr_is_the_distance_to_the_nearest_threshold(order: int,
                                                                            rng: np.random.Generator) -> None:
    """What ``llr_negative`` uses to pick the symbols that need the exact demapper: on a Gray PAM axis with level
    spacing s, min over bits of |max-log LLR| = ((r - a)^2 - (r - l)^2) / N0 = 2 s |r - t| / N0, with l the nearest
    level, a its neighbour across the nearest decision threshold t (outside the outer levels too)."""
    m = QamModem(order)
    levels = np.sort(np.unique(np.round(m.constellation.real, 6)))
    s = levels[1] - levels[0]
    r = rng.uniform(levels[0] - 2 * s, levels[-1] + 2 * s, 5000).astype(np.float32)
    inv = rng.uniform(0.5, 50.0, r.size).astype(np.float32)
    ml = m._axis_llr(r, inv, "maxlog")
    thresholds = (levels[:-1] + levels[1:]) / 2
    dist = np.min(np.abs(r[:, None].astype(np.float64) - thresholds[None, :]), axis=1)
    np.testing.assert_allclose(np.abs(ml).min(axis=1), 2 * s * dist * inv, rtol=1e-4, atol=1e-4)
