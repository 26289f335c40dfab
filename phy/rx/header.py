"""Header decoding: soft-ML Golay (24, 12) decoding of the BPSK header soft values and the CRC-16 check.

The header's 96 bits (80 bits of fields + CRC-16/CCITT) are carried by 8 extended-Golay codewords spread over the
header symbols' data subcarriers (``FrameFormat.hdr_perm``; ``header_repeat`` copies are added first,
``FrameFormat.combine_header_soft``). Soft-ML decoding correlates each codeword's 24 soft
values with all 4096 codewords; :func:`decode_headers` does the same faster: a codeword whose 24 hard decisions (no
zero soft value) already form a codeword is that codeword's ML decision (the correlation ``sum_j s_j c_j`` is at most
``sum_j |s_j|``, reached only by ``c = sign(s)``), so only the other codewords go through the full correlation.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from phy.frame import FrameFormat, FrameHeader, golay_codebook, golay_decode_soft
from phy.rx.ofdm_demodulation import cis


@lru_cache(maxsize=1)
def golay_lookup() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hard-decision lookup of the Golay codebook.

    Returns
    -------
    ints : int64 ndarray [4096]
        Codewords as 24-bit integers, sorted.
    info : uint8 ndarray [4096, 12]
        Their information bits.
    weights : int64 ndarray [24]
        Bit weights (MSB first) turning 24 bits into an integer.
    """
    cw = golay_codebook()[0]
    wts = 1 << np.arange(23, -1, -1, dtype=np.int64)
    ints = cw.astype(np.int64) @ wts
    order = np.argsort(ints)
    info = ((order[:, None] >> np.arange(11, -1, -1)[None, :]) & 1).astype(np.uint8)
    return ints[order], info, wts


def decode_headers(fmt: FrameFormat, soft: np.ndarray) -> list[FrameHeader | None]:
    """``fmt.decode_header`` (soft-ML Golay + CRC-16) of F headers at once (same results, faster).

    Parameters
    ----------
    fmt : FrameFormat
    soft : float ndarray [F, n_hdr_symbols * n_data]
        BPSK soft values (positive = bit 0), data subcarriers of the header symbols in order.

    Returns
    -------
    list of FrameHeader or None
        None where the CRC or a field check fails.
    """
    n_frames = soft.shape[0]
    s = fmt.combine_header_soft(soft).reshape(-1, 24)
    ints, info, wts = golay_lookup()
    v = (s < 0).astype(np.int64) @ wts
    i = np.minimum(np.searchsorted(ints, v), ints.size - 1)
    ok = ints[i] == v
    zero = s == 0
    if zero.any():                      # a zero soft value leaves the hard decision open: full correlation
        ok &= ~zero.any(axis=1)
    bits = info[i]
    if not ok.all():
        bits[~ok] = golay_decode_soft(s[~ok].reshape(-1)).reshape(-1, 12)
    packed = np.packbits(bits.reshape(n_frames, -1), axis=1)                        # [F, 12] header bytes
    return [FrameHeader.from_bytes(row.tobytes()) for row in packed]


def decode_header(fmt: FrameFormat, soft: np.ndarray) -> FrameHeader | None:
    """:func:`decode_headers` of one header, ``soft`` float [n_hdr_symbols * n_data]."""
    return decode_headers(fmt, soft[None, :])[0]


def decode_header_symbols(fmt: FrameFormat, Yh: np.ndarray, H: np.ndarray, phase: np.ndarray
                          ) -> list[FrameHeader | None]:
    """Headers of F frames from their header symbols: BPSK soft values ``Re(conj(H) Y e^{-j phase})`` on the data
    subcarriers, then :func:`decode_headers`.

    Parameters
    ----------
    fmt : FrameFormat
    Yh : complex64 ndarray [F, n_hdr_symbols, N]
        FFTs of the header symbols.
    H : complex64 ndarray [F, N]
        Channel per FFT bin.
    phase : float ndarray [F, n_hdr_symbols]
        Phase to remove per symbol (residual CFO + tracked common phase), radians.

    Returns
    -------
    list of FrameHeader or None
        None where the CRC or a field fails, or the soft values are not finite.
    """
    db = fmt.cfg.data_bins
    Yd = Yh[:, :, db] * cis(-phase)[:, :, None]
    soft = (Yd * np.conj(H[:, db])[:, None, :]).real.reshape(Yh.shape[0], -1)
    finite = np.isfinite(soft).all(axis=1)
    hdrs = decode_headers(fmt, np.where(finite[:, None], soft, 0.0))
    return [h if ok else None for h, ok in zip(hdrs, finite.tolist())]
