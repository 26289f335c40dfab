"""Separation-based digital baselines for DeepJSCC at the same channel-use budget.

Separation bound (optimistic for the digital side): an image given ``k`` complex channel uses at SNR carries at most
``k·log2(1 + SNR)`` bits (Shannon capacity of the complex AWGN channel, reached only with infinitely long ideal codes).
For every image and SNR the bound takes the BEST of WebP, JPEG 2000, JPEG (Pillow) and HEIF (pillow-heif, a stand-in
for BPG) whose size fits the budget, searching each codec's whole quality grid (a superset of a binary search, which
would assume size grows monotonically with quality). When nothing fits, the receiver shows the CIFAR-10 mean colour
(zero bits). Two byte accountings are reported:

* ``full``: the complete file as the codec writes it (container and headers included);
* ``payload``: only the entropy-coded payload, as if every header were known to the receiver for free — JPEG: the scan
  data after the SOS segment (encoded with the standard, image-independent Huffman tables, so the tables are free);
  WebP: the VP8 frame without the RIFF
  and chunk headers, start code and dimensions; JPEG 2000: the tile data after SOD (raw ``.j2k`` codestream, no JP2
  box); HEIF: the ``mdat`` contents (HEVC slices; VPS/SPS/PPS and all boxes are free).

``payload`` is the bound DeepJSCC should beat: it removes every overhead a practical system could plausibly shave off.

The real digital chain (codec → LDPC → QAM → OFDM) lives in :mod:`learning.jscc.digital`.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable

import numpy as np

from learning.jscc.metrics import psnr_uint8, ssim_uint8

#: CIFAR-10 training-set mean colour (README of shared/data), the zero-bit reconstruction
MEAN_RGB = np.array([125, 123, 114], dtype=np.uint8)


def capacity_bits(k: int, snr_db: float) -> float:
    """Shannon bound on the bits ``k`` complex AWGN channel uses carry: ``k · log2(1 + 10^(snr_db/10))``."""
    return k * math.log2(1.0 + 10.0 ** (snr_db / 10.0))


def _find(data: bytes, marker: bytes, start: int = 0) -> int:
    pos = data.find(marker, start)
    if pos < 0:
        raise ValueError(f"codec output of {len(data)} bytes: marker {marker.hex()} not found")
    return pos


def _jpeg_payload(data: bytes) -> int:
    sos = _find(data, b"\xff\xda")
    seg_len = int.from_bytes(data[sos + 2:sos + 4], "big")
    return len(data) - (sos + 2 + seg_len) - 2  # scan data, without the EOI marker


def _webp_payload(data: bytes) -> int:
    if data[12:16] == b"VP8 ":
        return len(data) - 20 - 7  # RIFF + chunk headers; VP8 start code (3) + dimensions (4)
    return len(data) - 20


def _j2k_payload(data: bytes) -> int:
    sod = _find(data, b"\xff\x93")
    return len(data) - (sod + 2) - 2  # tile data, without the EOC marker


def _heif_payload(data: bytes) -> int:
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = len(data) - pos
        if kind == b"mdat":
            return size - header
        if size < header:
            break
        pos += size
    raise ValueError(f"HEIF output of {len(data)} bytes: no mdat box")


def _pil_encode(fmt: str, **fixed) -> Callable[[np.ndarray, float], bytes]:
    def encode(img: np.ndarray, quality: float) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        kwargs = dict(fixed)
        if fmt == "JPEG2000":
            kwargs.update(quality_mode="rates", quality_layers=[float(quality)])
        else:
            kwargs["quality"] = int(quality)
        Image.fromarray(img).save(buf, format=fmt, **kwargs)
        return buf.getvalue()

    return encode


def _pil_decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _heif_decode(data: bytes) -> np.ndarray:
    import pillow_heif

    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    return np.asarray(heif.to_pillow().convert("RGB"))


def _heif_encode(img: np.ndarray, quality: float) -> bytes:
    import pillow_heif

    buf = io.BytesIO()
    pillow_heif.from_bytes(mode="RGB", size=(img.shape[1], img.shape[0]), data=np.ascontiguousarray(img).tobytes()) \
        .save(buf, quality=int(quality))
    return buf.getvalue()


@dataclasses.dataclass(frozen=True)
class Codec:
    """An image codec: ``encode(img uint8 [H, W, 3], quality) -> bytes``, ``decode(bytes) -> uint8 [H, W, 3]``,
    ``payload(bytes) -> int`` (entropy-coded bytes only) and its quality grid (low to high rate)."""

    name: str
    encode: Callable[[np.ndarray, float], bytes]
    decode: Callable[[bytes], np.ndarray]
    payload: Callable[[bytes], int]
    qualities: tuple[float, ...]


CODECS: dict[str, Codec] = {
    "webp": Codec("webp", _pil_encode("WEBP", method=6), _pil_decode, _webp_payload, tuple(range(0, 101, 5))),
    "jpeg2000": Codec("jpeg2000", _pil_encode("JPEG2000", irreversible=True, no_jp2=True), _pil_decode,
                      _j2k_payload, (400, 300, 200, 150, 120, 100, 80, 64, 50, 40, 32, 25, 20, 16, 12, 10, 8, 6, 5,
                                     4, 3, 2)),
    "jpeg": Codec("jpeg", _pil_encode("JPEG"), _pil_decode, _jpeg_payload,
                  (1, 3, 5, 8, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 95)),
    "heif": Codec("heif", _heif_encode, _heif_decode, _heif_payload, tuple(range(0, 101, 5))),
}


def available_codecs() -> list[str]:
    """Codecs that work in this install (HEIF needs pillow-heif, JPEG 2000 needs Pillow built with OpenJPEG)."""
    from PIL import features

    out = ["webp", "jpeg"] if features.check("webp") else ["jpeg"]
    if features.check("jpg_2000"):
        out.insert(1, "jpeg2000")
    try:
        import pillow_heif  # noqa: F401
        out.append("heif")
    except ImportError:
        pass
    return out


@dataclasses.dataclass
class RatePoint:
    """One codec setting for one image: sizes in bytes and the decoded quality."""

    codec: str
    quality: float
    full_bytes: int
    payload_bytes: int
    psnr_db: float
    ssim: float


def rate_table(img: np.ndarray, codecs: list[str] | None = None) -> list[RatePoint]:
    """Encode/decode ``img`` (uint8 [H, W, 3]) at every quality of every codec."""
    out = []
    for name in codecs or available_codecs():
        codec = CODECS[name]
        for q in codec.qualities:
            data = codec.encode(img, q)
            rec = codec.decode(data)
            if rec.shape != img.shape:
                raise ValueError(f"{name} q={q}: decoded shape {rec.shape}, expected {img.shape}")
            out.append(RatePoint(name, q, len(data), codec.payload(data), psnr_uint8(img, rec), ssim_uint8(img, rec)))
    return out


def best_fit(table: list[RatePoint], budget_bits: float, accounting: str = "payload") -> RatePoint | None:
    """The highest-PSNR point whose size (``accounting``: "payload" or "full") fits ``budget_bits``; None if none."""
    if accounting not in ("payload", "full"):
        raise ValueError(f"accounting = {accounting!r}: expected 'payload' or 'full'")
    fits = [p for p in table if 8 * (p.payload_bytes if accounting == "payload" else p.full_bytes) <= budget_bits]
    return max(fits, key=lambda p: p.psnr_db) if fits else None


def separation_bound(images: np.ndarray, snrs_db: list[float], ratio: float,
                     codecs: list[str] | None = None, accountings=("payload", "full"),
                     tables: list[list[RatePoint]] | None = None) -> list[dict]:
    """Per image and SNR: the best codec that fits ``k·log2(1+SNR)`` bits with ``k = ratio · 3HW`` channel uses.

    Args:
        images: uint8 [N, H, W, 3].
        tables: the images' :func:`rate_table` when already computed (several ratios of one image); None: computed.
    Returns:
        records ``{method: "separation-<accounting>", image, snr_db, budget_bits, codec, quality, bytes, psnr_db,
        ssim}`` (codec ``"mean"`` when nothing fits).
    """
    records = []
    mean_cache: dict[tuple, tuple[float, float]] = {}
    for i, img in enumerate(images):
        table = rate_table(img, codecs) if tables is None else tables[i]
        k = int(round(ratio * img.size))
        key = img.shape
        mean_img = np.broadcast_to(MEAN_RGB, img.shape)
        for snr in snrs_db:
            budget = capacity_bits(k, snr)
            for acc in accountings:
                p = best_fit(table, budget, acc)
                if p is None:
                    if (i, key) not in mean_cache:
                        mean_cache[(i, key)] = (psnr_uint8(img, mean_img), ssim_uint8(img, mean_img))
                    ps, ss = mean_cache[(i, key)]
                    rec = {"codec": "mean", "quality": None, "bytes": 0, "psnr_db": ps, "ssim": ss}
                else:
                    rec = {"codec": p.codec, "quality": p.quality,
                           "bytes": p.payload_bytes if acc == "payload" else p.full_bytes,
                           "psnr_db": p.psnr_db, "ssim": p.ssim}
                records.append({"method": f"separation-{acc}", "image": i, "snr_db": float(snr),
                                "budget_bits": round(budget, 1), **rec})
    return records
