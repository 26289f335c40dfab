"""The practical digital chain's source side: pick a modulation and LDPC rate for the SNR, then the best image codec
setting whose COMPLETE file (headers included) fits the payload those channel uses carry.

The bytes go through phy's ``FrameBuilder.build_digital`` (CRC-32, 5G LDPC, QAM, OFDM) and the same radio path as
DeepJSCC (``lab.experiments.jscc_air.DigitalRadioLink``); a CRC failure means no image at all (the receiver shows the mean colour):
the cliff effect. One leading byte tells the receiver which codec made the file.
"""

from __future__ import annotations

import numpy as np

from learning.jscc.baselines import CODECS, MEAN_RGB, available_codecs

#: (minimum SNR in dB, modulation, code rate): typical 5G-LDPC AWGN requirements for ~1 % frame errors at a few
#: thousand bits plus ~1 dB margin for the real receiver (channel estimation, pilots); highest rate that fits wins
MCS_TABLE: tuple[tuple[float, str, float], ...] = (
    (-1.0, "bpsk", 1 / 2),
    (2.5, "qpsk", 1 / 2),
    (5.5, "qpsk", 3 / 4),
    (8.0, "16qam", 1 / 2),
    (11.5, "16qam", 3 / 4),
    (15.5, "64qam", 2 / 3),
    (19.0, "64qam", 5 / 6),
)


def choose_mcs(snr_db: float) -> tuple[str, float]:
    """The highest-rate (modulation, code rate) of :data:`MCS_TABLE` whose SNR requirement ``snr_db`` meets
    (the lowest one below every requirement)."""
    chosen = MCS_TABLE[0]
    for row in MCS_TABLE:
        if snr_db >= row[0]:
            chosen = row
    return chosen[1], chosen[2]


def max_payload_bytes(n_channel_uses: int, modem: str, code_rate: float) -> int:
    """Largest payload (bytes) whose CRC-32 + LDPC-coded + QAM-mapped symbols fit ``n_channel_uses`` complex symbols
    (0 if not even one byte fits)."""
    from phy.fec import DigitalCodec
    from phy.modulation import QamModem

    codec = DigitalCodec(modem, code_rate)
    m = QamModem.from_name(modem).bits_per_symbol
    lo, hi = 0, max(1, n_channel_uses * m // 8)
    while lo < hi:  # largest P with ceil(n_coded_bits(P)/m) <= n_channel_uses
        mid = (lo + hi + 1) // 2
        if -(-codec.n_coded_bits(mid) // m) <= n_channel_uses:
            lo = mid
        else:
            hi = mid - 1
    return lo


def encode_for_budget(img: np.ndarray, max_bytes: int, codecs: list[str] | None = None
                      ) -> tuple[bytes | None, dict]:
    """Best-PSNR file (codec id byte + complete file) of at most ``max_bytes``; (None, info) if nothing fits."""
    from learning.jscc.metrics import psnr_uint8

    names = codecs or available_codecs()
    best, info = None, {"codec": "mean", "quality": None, "bytes": 0}
    best_psnr = -np.inf
    for cid, name in enumerate(CODECS):
        if name not in names:
            continue
        codec = CODECS[name]
        for q in codec.qualities:
            data = codec.encode(img, q)
            if len(data) + 1 > max_bytes:
                continue
            p = psnr_uint8(img, codec.decode(data))
            if p > best_psnr:
                best_psnr, best = p, bytes([cid]) + data
                info = {"codec": name, "quality": q, "bytes": len(best)}
    return best, info


def decode_payload(payload: bytes | None, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`encode_for_budget`; the mean-colour image for None, garbage or a wrong-size image."""
    mean = np.ascontiguousarray(np.broadcast_to(MEAN_RGB, shape))
    if not payload or payload[0] >= len(CODECS):
        return mean
    codec = CODECS[list(CODECS)[payload[0]]]
    try:
        img = codec.decode(payload[1:])
    except Exception:  # noqa: BLE001 - a corrupt file from the air is reported as a lost image, never a crash
        return mean
    return img if img.shape == tuple(shape) else mean
