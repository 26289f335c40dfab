"""learning.ht: exponents against their formulas, the importance-sampling estimator against plain Monte Carlo, and the
empirical exponents against theory as n grows (Sreekumar & Gündüz 2020, Gaussian/AWGN instance; docs/ht.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learning.ht import theory
from learning.ht.schemes import (
    AwgnChannel,
    IdealDigitalLink,
    QuantizeScheme,
    UncodedScheme,
    empirical_exponent,
    exponent_from_statistics,
    sample_pairs,
    statistics,
)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 20.0])
def test_joint_exponent_tai_closed_form_equals_optimal_separation(snr_db):
    p = theory.snr_from_db(snr_db)
    rho = 0.8
    # theta_J = -1/2 ln(1 - rho^2 P/(1+P)) (TAI) and theta_S = -1/2 ln(1 - rho^2 (1 - e^{-2C})), C = 1/2 ln(1+P)
    expect = -0.5 * math.log(1 - rho ** 2 * p / (1 + p))
    assert theory.joint_exponent(rho, p) == pytest.approx(expect, rel=1e-12)
    assert theory.separation_exponent_tai(rho, p) == pytest.approx(expect, rel=1e-12)
    # with more channel uses per sample the optimal separation exponent exceeds the b=1 value
    assert theory.separation_exponent_tai(rho, p, 2.0) > expect


def test_joint_exponent_and_dispersion_match_monte_carlo_llr(rng):
    """D(P0||P1) is the mean and V the variance of the per-sample LLR under H0 (general rho1)."""
    rho0, rho1, p = 0.7, -0.3, theory.snr_from_db(3.0)
    sch = UncodedScheme(rho0, rho1)
    x, y = sample_pairs(rng, 200_000, 1, rho0)
    v, s2 = AwgnChannel(3.0, rng)(x)
    llr = sch.statistic(v, s2, y)
    d, var = theory.joint_exponent(rho0, p, rho1), theory.dispersion_joint(rho0, p, rho1)
    se = math.sqrt(var / llr.size)
    assert abs(llr.mean() - d) < 4 * se
    assert llr.var() == pytest.approx(var, rel=0.03)


def test_quantizer_rate_and_limits():
    q = theory.quantizer_for_rate(1.5)
    assert q.entropy_bits() == pytest.approx(1.5, abs=1e-9)
    rho = 0.8
    # a very fine quantizer keeps all of I(X;Y) = -1/2 ln(1 - rho^2); a very coarse one keeps almost nothing
    fine, v_fine = theory.sq_exponent(rho, theory.ScalarQuantizer(0.02))
    assert fine == pytest.approx(-0.5 * math.log(1 - rho ** 2), rel=5e-4)
    assert v_fine == pytest.approx(rho ** 2, rel=1e-3)   # Gaussian information density variance
    coarse, _ = theory.sq_exponent(rho, theory.ScalarQuantizer(20.0))
    assert coarse < 1e-6


def test_sq_exponent_matches_monte_carlo_llr(rng):
    sch = QuantizeScheme(0.8, 0.2, snr_db=5.0)
    th, var = theory.sq_exponent(0.8, sch.quantizer, 0.2)
    x, y = sample_pairs(rng, 200_000, 1, 0.8)
    llr = sch.statistic(sch.encode(x), np.zeros(len(x)), y)
    assert abs(llr.mean() - th) < 4 * math.sqrt(var / llr.size)
    assert llr.var() == pytest.approx(var, rel=0.03)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 5.0, 10.0, 20.0])
def test_joint_beats_scalar_quantize_then_code_in_theory(snr_db):
    """TAI at one channel use per sample: uncoded = optimal separation > scalar-quantizer separation."""
    sq = QuantizeScheme(0.8, snr_db=snr_db)
    th_sq, _ = theory.sq_exponent(0.8, sq.quantizer)
    assert th_sq < theory.joint_exponent(0.8, theory.snr_from_db(snr_db)) - 1e-3


@pytest.mark.parametrize("scheme", ["joint", "separation-sq"])
def test_importance_sampling_matches_plain_monte_carlo(scheme):
    """At small n beta is large enough to count under H1: the IS estimate agrees with the plain count."""
    rng = np.random.default_rng(7)
    if scheme == "joint":
        sch, ch = UncodedScheme(0.8), AwgnChannel(0.0, rng)
    else:
        sch, ch = QuantizeScheme(0.8, snr_db=0.0), IdealDigitalLink()
    r = empirical_exponent(sch, ch, 4, 40_000, 0.1, rng, h1_trials=40_000)
    beta_is = math.exp(r["log_beta"])
    se = math.sqrt(r["beta_mc"] * (1 - r["beta_mc"]) / 40_000)
    assert 0.05 < r["beta_mc"] < 0.9
    assert abs(beta_is - r["beta_mc"]) < 4 * se + 4 * r["log_beta_rel_se"] * beta_is
    assert r["type1"] == pytest.approx(0.1, abs=0.005)


@pytest.mark.parametrize("scheme", ["joint", "separation-sq"])
def test_empirical_exponent_approaches_theory(scheme):
    """-ln(beta_n)/n -> theta: within 10 % at n = 4096, and the gap shrinks with n."""
    rng = np.random.default_rng(3)
    snr_db = 10.0
    if scheme == "joint":
        sch, ch = UncodedScheme(0.8), AwgnChannel(snr_db, rng)
        th = theory.joint_exponent(0.8, theory.snr_from_db(snr_db))
    else:
        sch, ch = QuantizeScheme(0.8, snr_db=snr_db), IdealDigitalLink()
        th, _ = theory.sq_exponent(0.8, sch.quantizer)
    gaps = [abs(empirical_exponent(sch, ch, n, 1000, 0.1, rng)["exponent"] / th - 1) for n in (64, 512, 4096)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.10


def test_joint_beats_separation_empirically():
    rng = np.random.default_rng(5)
    j = empirical_exponent(UncodedScheme(0.8), AwgnChannel(0.0, rng), 1024, 1000, 0.1, rng)
    s = empirical_exponent(QuantizeScheme(0.8, snr_db=0.0), IdealDigitalLink(), 1024, 1000, 0.1, rng)
    assert j["exponent"] > s["exponent"] + 0.02


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="rho0"):
        UncodedScheme(1.0)
    with pytest.raises(ValueError, match="eps"):
        exponent_from_statistics(np.arange(200.0), 4, 1.5)
    with pytest.raises(ValueError, match="non-finite"):
        exponent_from_statistics(np.array([1.0, np.nan] * 100), 4, 0.1)
    with pytest.raises(ValueError, match="non-finite"):
        AwgnChannel(0.0, np.random.default_rng(0))(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="snr_db"):
        QuantizeScheme(0.8)
    with pytest.raises(ValueError, match="trials"):
        statistics(UncodedScheme(0.5), IdealDigitalLink(), 0.5, 8, 0, np.random.default_rng(0))
