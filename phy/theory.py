"""Closed-form references for the PHY: Q function, Gray-QAM bit error rates over AWGN, CFO bounds, LLR calibration.

SNR convention (project-wide): ``esn0_db`` is Es/N0 in dB with unit-energy symbols, i.e. 10 log10(1 / noise_var)
where noise_var = E|n|^2 is the complex noise variance; Eb/N0 = Es/N0 / log2(M) (/ code rate for coded bits).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import erfc

__all__ = [
    "q_function",
    "ber_qam_awgn",
    "ber_qam_awgn_approx",
    "ebn0_to_esn0_db",
    "esn0_to_ebn0_db",
    "crlb_cfo",
    "var_cfo_repeated_preamble",
    "llr_calibration",
    "LlrCalibration",
]

_ORDERS = (2, 4, 16, 64, 256)


def q_function(x: float | np.ndarray) -> float | np.ndarray:
    """Gaussian tail probability Q(x) = P(N(0,1) > x) = erfc(x / sqrt 2) / 2."""
    return 0.5 * erfc(np.asarray(x, dtype=np.float64) / np.sqrt(2.0))


def _check_order(order: int) -> int:
    if int(order) not in _ORDERS:
        raise ValueError(f"order={order!r} is not supported; expected one of {_ORDERS}")
    return int(order)


def ber_qam_awgn(order: int, esn0_db: float | np.ndarray) -> float | np.ndarray:
    """Bit error rate of Gray-mapped QAM with hard (nearest-point) decisions over AWGN.

    * BPSK: Pb = Q(sqrt(2 Es/N0)) (exact).
    * QPSK: Pb = Q(sqrt(Es/N0)) (exact).
    * square M-QAM with per-axis binary-reflected Gray labels: the exact expression of K. Cho and D. Yoon,
      "On the general BER expression of one- and two-dimensional amplitude modulations", IEEE Trans. Commun. 50(7),
      2002, eq. (14):
      Pb = 1/log2(sqrt M) * sum_{k=1}^{log2 sqrt M} Pb(k),
      Pb(k) = 1/sqrt(M) * sum_{i=0}^{(1-2^-k) sqrt(M) - 1} (-1)^floor(i 2^(k-1) / sqrt M)
              * (2^(k-1) - floor(i 2^(k-1) / sqrt M + 1/2)) * erfc((2i+1) sqrt(3 Es/N0 / (2 (M-1)))).

    Args:
        order: M in {2, 4, 16, 64, 256}.
        esn0_db: Es/N0 in dB (scalar or array).

    Returns:
        Pb with the shape of ``esn0_db``.
    """
    order = _check_order(order)
    esn0 = 10.0 ** (np.asarray(esn0_db, dtype=np.float64) / 10.0)
    if order == 2:
        return q_function(np.sqrt(2.0 * esn0))
    if order == 4:
        return q_function(np.sqrt(esn0))
    sqrt_m = int(round(np.sqrt(order)))
    n_axis_bits = int(np.log2(sqrt_m))
    total = np.zeros_like(esn0)
    for k in range(1, n_axis_bits + 1):
        pk = np.zeros_like(esn0)
        for i in range(int((1 - 2.0**-k) * sqrt_m)):
            w = i * 2 ** (k - 1) / sqrt_m
            coeff = (-1) ** int(np.floor(w)) * (2 ** (k - 1) - np.floor(w + 0.5))
            pk = pk + coeff * erfc((2 * i + 1) * np.sqrt(3.0 * esn0 / (2.0 * (order - 1))))
        total = total + pk / sqrt_m
    return total / n_axis_bits


def ber_qam_awgn_approx(order: int, esn0_db: float | np.ndarray) -> float | np.ndarray:
    """Nearest-neighbour Gray approximation Pb ~ 4/log2(M) (1 - 1/sqrt M) Q(sqrt(3 Es/N0 / (M-1))) (M >= 4).

    Tight at high SNR; for BPSK it returns the exact Q(sqrt(2 Es/N0)).
    """
    order = _check_order(order)
    esn0 = 10.0 ** (np.asarray(esn0_db, dtype=np.float64) / 10.0)
    if order == 2:
        return q_function(np.sqrt(2.0 * esn0))
    m = np.log2(order)
    return 4.0 / m * (1.0 - 1.0 / np.sqrt(order)) * q_function(np.sqrt(3.0 * esn0 / (order - 1)))


def ebn0_to_esn0_db(ebn0_db: float | np.ndarray, bits_per_symbol: int, code_rate: float = 1.0) -> float | np.ndarray:
    """Es/N0 [dB] = Eb/N0 [dB] + 10 log10(bits_per_symbol * code_rate)."""
    return np.asarray(ebn0_db, dtype=np.float64) + 10.0 * np.log10(bits_per_symbol * code_rate)


def esn0_to_ebn0_db(esn0_db: float | np.ndarray, bits_per_symbol: int, code_rate: float = 1.0) -> float | np.ndarray:
    """Eb/N0 [dB] = Es/N0 [dB] - 10 log10(bits_per_symbol * code_rate)."""
    return np.asarray(esn0_db, dtype=np.float64) - 10.0 * np.log10(bits_per_symbol * code_rate)


def crlb_cfo(n_samples: int, snr: float, sample_rate: float = 1.0) -> float:
    """Cramér–Rao bound on the variance [Hz^2] of the frequency of a complex exponential in AWGN.

    var(f_hat) >= 6 fs^2 / ((2 pi)^2 SNR N (N^2 - 1))  (Rife & Boorstyn 1974), with SNR = |A|^2 / E|n|^2 per sample
    (linear) and N samples observed at rate fs.
    """
    n = int(n_samples)
    if n < 2 or snr <= 0:
        raise ValueError(f"need n_samples >= 2 and snr > 0; got n_samples={n_samples}, snr={snr}")
    return 6.0 * sample_rate**2 / ((2 * np.pi) ** 2 * snr * n * (n**2 - 1))


def var_cfo_repeated_preamble(half_len: int, snr: float, sample_rate: float = 1.0) -> float:
    """High-SNR variance [Hz^2] of the repeated-half CFO estimator (Moose 1994; Schmidl & Cox 1997).

    f_hat = fs * angle(sum_{n<D} r[n+D] conj(r[n])) / (2 pi D) with D = half_len identical halves; to first order
    var(angle) = 1 / (D * SNR) (SNR per sample, linear), so var(f_hat) = fs^2 / ((2 pi D)^2 D SNR).
    """
    d = int(half_len)
    if d < 1 or snr <= 0:
        raise ValueError(f"need half_len >= 1 and snr > 0; got half_len={half_len}, snr={snr}")
    return sample_rate**2 / ((2 * np.pi * d) ** 2 * d * snr)


class LlrCalibration(NamedTuple):
    """Result of :func:`llr_calibration`; each field is an array over the kept bins."""

    centres: np.ndarray  #: float64[n_bins], mean LLR in each bin
    p0_empirical: np.ndarray  #: float64[n_bins], fraction of bits equal to 0 in each bin
    p0_predicted: np.ndarray  #: float64[n_bins], mean of 1 / (1 + exp(-LLR)) over the bin
    counts: np.ndarray  #: int64[n_bins], number of LLRs in each bin


def llr_calibration(
    llr: np.ndarray, bits: np.ndarray, edges: np.ndarray | None = None, min_count: int = 1
) -> LlrCalibration:
    """Binned check that LLRs are calibrated: for a true LLR l = log P(b=0)/P(b=1), P(b=0 | LLR=l) = 1/(1+e^-l).

    Args:
        llr: float array [N] of LLRs (convention log P(b=0)/P(b=1)).
        bits: the transmitted bits, 0/1 array [N].
        edges: bin edges (default: 21 edges evenly spaced over [-8, 8]).
        min_count: bins with fewer samples are dropped.

    Returns:
        :class:`LlrCalibration` (centres, p0_empirical, p0_predicted, counts) over the kept bins.
    """
    llr = np.asarray(llr, dtype=np.float64).reshape(-1)
    bits = np.asarray(bits).reshape(-1)
    if llr.shape != bits.shape:
        raise ValueError(f"llr has {llr.size} values but bits has {bits.size}; expected equal lengths")
    edges = np.linspace(-8.0, 8.0, 21) if edges is None else np.asarray(edges, dtype=np.float64)
    which = np.digitize(llr, edges) - 1
    inside = (which >= 0) & (which < edges.size - 1)
    which, llr_in, zero = which[inside], llr[inside], (bits[inside] == 0)
    n_bins = edges.size - 1
    counts = np.bincount(which, minlength=n_bins)
    sum_llr = np.bincount(which, weights=llr_in, minlength=n_bins)
    sum_zero = np.bincount(which, weights=zero, minlength=n_bins)
    sum_pred = np.bincount(which, weights=1.0 / (1.0 + np.exp(-llr_in)), minlength=n_bins)
    keep = counts >= max(1, min_count)
    c = counts[keep]
    return LlrCalibration(sum_llr[keep] / c, sum_zero[keep] / c, sum_pred[keep] / c, c.astype(np.int64))
