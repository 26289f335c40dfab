"""`otalab ht`: distributed hypothesis testing over a noisy channel — empirical type-II exponents against theory.

:func:`run_sweep` estimates, for each SNR and block length n, the type-II error exponent at type-I error eps of the
joint (uncoded) and the separation (scalar quantize-then-code) schemes of :mod:`learning.ht.schemes` on the
symbol-level AWGN channel, and lists beside them the theoretical exponents of :mod:`learning.ht.theory` (joint, optimal
separation for testing against independence, the scalar-quantizer separation scheme) and the second-order
(Strassen) prediction ``theta + sqrt(V/n) Phi^-1(eps) + ln(n)/(2n)``.

:func:`run_air` sends the joint scheme's samples through radios (one phy analog frame per block of n samples,
:class:`lab.experiments.jscc_air.RadioLink`: OFDM framing, detection, CFO and channel estimation, equalization); the
DM uses the noise variance its receiver estimated per frame. Frames that are lost or not finite are counted and
dropped. It reports the IS exponent from the H0 frames, the plain Monte-Carlo type-II error from H1 frames, and the
symbol-level AWGN result at the measured SNR for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from learning.ht import theory
from learning.ht.schemes import (
    AwgnChannel,
    IdealDigitalLink,
    QuantizeScheme,
    UncodedScheme,
    empirical_exponent,
    exponent_from_statistics,
    statistics,
)


def theory_row(rho0: float, rho1: float, snr_db: float) -> dict:
    """Theoretical exponents (nats/sample) at one SNR: joint, optimal separation (TAI only), scalar quantizer."""
    snr = theory.snr_from_db(snr_db)
    sq = QuantizeScheme(rho0, rho1, snr_db=snr_db)
    th_sq, v_sq = theory.sq_exponent(rho0, sq.quantizer, rho1)
    return {"snr_db": float(snr_db), "capacity_bits": sq.rate_bits, "quantizer_step": sq.quantizer.step,
            "theta_joint": theory.joint_exponent(rho0, snr, rho1),
            "dispersion_joint": theory.dispersion_joint(rho0, snr, rho1),
            "theta_separation_opt": theory.separation_exponent_tai(rho0, snr) if rho1 == 0 else None,
            "theta_separation_sq": th_sq, "dispersion_separation_sq": v_sq}


def second_order(theta: float, dispersion: float, n: int, eps: float) -> float:
    """Strassen's expansion of ``-ln beta_n / n`` (Strassen 1962; Polyanskiy's thesis, non-lattice LLR):
    ``theta + sqrt(V / n) Phi^-1(eps) + ln(n) / (2 n)``, dropping the O(1/n) term."""
    from scipy.stats import norm

    return theta + math.sqrt(dispersion / n) * float(norm.ppf(eps)) + 0.5 * math.log(n) / n


def run_sweep(rho0: float = 0.8, rho1: float = 0.0, snrs_db=(0.0, 5.0, 10.0, 15.0, 20.0),
              ns=(64, 256, 1024, 4096), eps: float = 0.1, trials: int = 4000, seed: int = 0,
              schemes=("joint", "separation-sq"),
              progress: Callable[[int, int], None] | None = None) -> dict:
    """Empirical and theoretical exponents over ``snrs_db`` x ``ns`` (symbol-level). Returns a JSON-ready dict with
    ``theory`` (one row per SNR) and ``results`` (one record per scheme, SNR and n)."""
    if not schemes or any(s not in ("joint", "separation-sq") for s in schemes):
        raise ValueError(f"schemes = {schemes!r}: expected some of 'joint', 'separation-sq'")
    ns = [int(n) for n in ns]
    if any(n < 1 for n in ns):
        raise ValueError(f"n = {ns}: expected block lengths >= 1")
    trials = int(trials)
    if trials < 100:
        raise ValueError(f"trials = {trials}: expected >= 100 (the eps-quantile needs them)")
    rng = np.random.default_rng(seed)
    rows = [theory_row(rho0, rho1, s) for s in snrs_db]
    results = []
    total, done = len(rows) * len(ns) * len(schemes), 0
    for row in rows:
        for name in schemes:
            if name == "joint":
                scheme, channel = UncodedScheme(rho0, rho1), AwgnChannel(row["snr_db"], rng)
                th, v = row["theta_joint"], row["dispersion_joint"]
            else:
                scheme, channel = QuantizeScheme(rho0, rho1, snr_db=row["snr_db"]), IdealDigitalLink()
                th, v = row["theta_separation_sq"], row["dispersion_separation_sq"]
            for n in ns:
                r = empirical_exponent(scheme, channel, n, trials, eps, rng)
                results.append({"scheme": name, "snr_db": row["snr_db"], **r, "theory": th,
                                "second_order": second_order(th, v, n, eps),
                                "rel_gap": r["exponent"] / th - 1.0})
                done += 1
                if progress:
                    progress(done, total)
    return {"experiment": "ht", "channel": "awgn (symbol level)", "rho0": rho0, "rho1": rho1, "eps": eps,
            "trials": trials, "seed": seed, "channel_uses_per_sample": 1, "units": "nats per sample",
            "theory": rows, "results": results}


class RadioChannel:
    """The channel protocol (``x [m, n] -> (v [m, n], sigma2 [m])``) over a :class:`RadioLink`: one analog frame per
    row; lost or non-finite frames come back as NaN rows (the caller counts and drops them)."""

    def __init__(self, link):
        self.link = link
        self.measured: list[tuple[float, float]] = []   # (sum (v-x)^2, count) of delivered rows: the genie SNR

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, np.float64)
        # the link expects unit power per complex pair (1/2 per real value); X has unit power per real value
        recs = self.link.send((x / math.sqrt(2.0)).astype(np.float32))
        v = np.full(x.shape, np.nan)
        s2 = np.full(x.shape[0], np.nan)
        for i, rec in enumerate(recs):
            if rec.values is None:
                continue
            v[i] = np.asarray(rec.values, np.float64) * math.sqrt(2.0)
            s2[i] = 10.0 ** (-rec.snr_est_db / 10.0)   # per-real-value noise / signal power, as the DM's model
            self.measured.append((float(np.sum((v[i] - x[i]) ** 2)), x.shape[1]))
        return v, s2


def run_air(tx, rx, ofdm, rho0: float = 0.8, rho1: float = 0.0, n: int = 16, frames: int = 300,
            eps: float = 0.1, seed: int = 0, sim_trials: int = 20000) -> dict:
    """The joint scheme through radios (``frames`` blocks of ``n`` samples under each hypothesis), beside the
    symbol-level AWGN result at the measured SNR. Returns a JSON-ready dict."""
    from lab.experiments.jscc_air import RadioLink

    n, frames = int(n), int(frames)
    if n < 2 or frames < 20:
        raise ValueError(f"n = {n}, frames = {frames}: expected n >= 2 and frames >= 20")
    rng = np.random.default_rng(seed)
    scheme = UncodedScheme(rho0, rho1)
    chan = RadioChannel(RadioLink(tx, rx, ofdm))
    s0 = statistics(scheme, chan, rho0, n, frames, rng, max_chunk_values=64 * n)
    s1 = statistics(scheme, chan, rho1, n, frames, rng, max_chunk_values=64 * n)
    dropped = int(np.sum(~np.isfinite(s0)) + np.sum(~np.isfinite(s1)))
    s0, s1 = s0[np.isfinite(s0)], s1[np.isfinite(s1)]
    if s0.size < 20 or s1.size < 20:
        raise ValueError(f"only {s0.size} H0 and {s1.size} H1 frames arrived of {frames} each: check the link")
    err = sum(e for e, _ in chan.measured)
    cnt = sum(c for _, c in chan.measured)
    measured_db = 10.0 * math.log10(cnt / err) if err > 0 else float("inf")
    air = exponent_from_statistics(s0, n, eps, s1)
    sim_rng = np.random.default_rng(seed + 1)
    sim = empirical_exponent(scheme, AwgnChannel(measured_db, sim_rng), n, sim_trials, eps, sim_rng,
                             h1_trials=sim_trials)
    th = theory.joint_exponent(rho0, theory.snr_from_db(measured_db), rho1)
    return {"experiment": "ht-air", "scheme": "joint", "rho0": rho0, "rho1": rho1, "n": n, "eps": eps,
            "frames_per_hypothesis": frames, "frames_dropped": dropped, "link_stats": dict(chan.link.stats),
            "measured_snr_db": measured_db, "air": air, "symbol_level_at_measured_snr": sim,
            "theory_at_measured_snr": th, "second_order_at_measured_snr":
                second_order(th, theory.dispersion_joint(rho0, theory.snr_from_db(measured_db), rho1), n, eps)}


def plot(result: dict, path) -> None:
    """PNG: exponent vs SNR (theory curves, empirical at the largest n) and exponent vs n at the middle SNR."""
    from lab.plots import save_figure, subplots

    rows, res = result["theory"], result["results"]
    snrs = [r["snr_db"] for r in rows]
    fig, (a1, a2) = subplots(1, 2, figsize=(10, 4))
    a1.plot(snrs, [r["theta_joint"] for r in rows], "-", color="C0", label="joint (uncoded), theory")
    if rows[0]["theta_separation_opt"] is not None:
        a1.plot(snrs, [r["theta_separation_opt"] for r in rows], ":", color="k", lw=2,
                label="separation, optimal VQ (= joint at b=1)")
    a1.plot(snrs, [r["theta_separation_sq"] for r in rows], "-", color="C1", label="separation, scalar Q, theory")
    nmax = max(r["n"] for r in res)
    for name, c in (("joint", "C0"), ("separation-sq", "C1")):
        pts = [(r["snr_db"], r["exponent"]) for r in res if r["scheme"] == name and r["n"] == nmax]
        if pts:
            a1.plot(*zip(*pts), "o", color=c, label=f"{name}, empirical n={nmax}")
    a1.set_xlabel("SNR per real channel use [dB]")
    a1.set_ylabel("type-II exponent [nats/sample]")
    a1.set_title(f"rho0={result['rho0']}, rho1={result['rho1']}, eps={result['eps']}")
    a1.legend(fontsize=7)
    a1.grid(alpha=0.3)
    mid = snrs[len(snrs) // 2]
    for name, c in (("joint", "C0"), ("separation-sq", "C1")):
        pts = sorted((r["n"], r["exponent"], r["theory"], r["second_order"]) for r in res
                     if r["scheme"] == name and r["snr_db"] == mid)
        if pts:
            ns, emp, th, so = zip(*pts)
            a2.semilogx(ns, emp, "o", color=c, label=f"{name} empirical")
            a2.semilogx(ns, so, "--", color=c, lw=0.8, label=f"{name} Strassen expansion")
            a2.axhline(th[0], color=c, lw=0.8)
    a2.set_xlabel("n (samples = real channel uses)")
    a2.set_ylabel("-ln(beta_n) / n [nats/sample]")
    a2.set_title(f"{mid:g} dB")
    a2.legend(fontsize=7)
    a2.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
