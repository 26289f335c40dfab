"""DeepJSCC over a link: the same encode → channel → decode pipeline on a symbol-level simulation or a real radio path.

A *link* sends a batch of latent vectors and returns what the receiver made of each (:class:`Reception`):

* :class:`SymbolLink` — symbol-level simulation with the differentiable channels of :mod:`learning.jscc.channels`
  (AWGN by default); the decoder is told the nominal SNR.
* :class:`RadioLink` — every latent becomes one phy analog frame (``phy.frame.FrameBuilder.build_analog``: Schmidl–Cox
  preamble, LTS, header, payload OFDM symbols with pilots), the frames are transmitted back to back by a ``Radio``,
  received by another ``Radio`` and recovered by the streaming ``phy.receiver.Receiver`` (detection, CFO, channel
  estimation, MMSE equalization). The decoder is told the receiver's post-equalization SNR estimate,
  ``-10·log10(mean(symbol_noise_var))`` from the per-symbol error variances the receiver reports. Frames
  that are lost, or whose values are not finite, are reported and skipped — never decoded.

:func:`send_images` runs the whole pipeline and returns per-image records (PSNR, SSIM, SNRs), and
:func:`lab.plots.side_by_side_figure` draws the original / DeepJSCC / digital comparison.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from phy.analog import UNBIAS_MODES, unbias_mmse

#: copies of the frame header (``phy.frame.FrameFormat``'s ``header_repeat``) on these links: one copy (Golay (24, 12),
#: BPSK) fails about one frame in five at 0 dB over the air (AWGN, 1 ppm CFO: 21 of 100 frames), below where the
#: analog payload is still useful; two copies add 3 dB (0 of 200 lost)
HEADER_REPEAT = 2

#: the shipped DeepJSCC checkpoint (see docs/deepjscc.md for the command that made it)
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "jscc_adjscc_r6.pt"


@dataclasses.dataclass
class Reception:
    """What the receiver made of one latent vector.

    values: float32 [L] or None (lost); snr_est_db: the SNR the decoder is told; measured_snr_db: genie measurement
    ``10 log10(sum x² / sum (x̂ - x)²)`` against the transmitted values (for comparisons only); status: "ok",
    "lost" or "non-finite".
    """

    values: np.ndarray | None
    snr_est_db: float
    measured_snr_db: float
    status: str = "ok"
    rx_snr_db: float = float("nan")  # the receiver's LTS-based per-subcarrier SNR estimate (RadioLink)
    cfo_hz: float = float("nan")


def measured_snr_db(sent: np.ndarray, received: np.ndarray) -> float:
    """``10 log10(sum x² / sum (x̂ - x)²)`` for real vectors (the SNR per complex pair when x has unit pair power)."""
    err = float(np.sum((np.asarray(received, np.float64) - sent) ** 2))
    sig = float(np.sum(np.asarray(sent, np.float64) ** 2))
    return float("inf") if err == 0 else 10.0 * math.log10(sig / err)


class SymbolLink:
    """Symbol-level simulation: ``channel`` ("awgn", "rayleigh", "ofdm") at ``snr_db``, deterministic for ``seed``."""

    def __init__(self, snr_db: float, channel: str = "awgn", seed: int = 0):
        from learning.jscc.channels import build_channel

        self.snr_db = float(snr_db)
        self.channel = build_channel(channel)
        self.seed = seed

    def send(self, latents: np.ndarray) -> list[Reception]:
        """latents float32 [B, L] (unit power per complex pair) -> one Reception per row."""
        import torch

        z = torch.as_tensor(np.asarray(latents, np.float32))
        gen = torch.Generator().manual_seed(self.seed)
        z_hat, snr_eff = self.channel(z, torch.full((len(z),), self.snr_db), generator=gen)
        out = []
        for x, y, s in zip(latents, z_hat.numpy(), snr_eff.numpy()):
            out.append(Reception(y.astype(np.float32), float(s), measured_snr_db(x, y)))
        return out


class RadioLink:
    """phy analog frames through ``tx_radio`` → air → ``rx_radio`` and phy's streaming receiver.

    Args:
        tx_radio, rx_radio: ``radio.base.Radio`` objects on the same air (or cabled hardware).
        ofdm: ``phy.ofdm.OfdmConfig``.
        gap_samples: silence between frames (and before the first).
        block: samples per ``Receiver.process`` call (frames straddle blocks, as with a real stream).
        unbias: how :func:`phy.analog.unbias_mmse` undoes the MMSE equalizer's shrinkage before the decoder
            (``"scalar"``, the default, ``"symbol"`` or ``"none"``), with the error variances taken per unit of the
            equalizer's symbol-power prior (:func:`prior_normalized_noise_var`).
        header_repeat: copies of the frame header (:data:`HEADER_REPEAT`; both ends must agree).
    """

    def __init__(self, tx_radio, rx_radio, ofdm, gap_samples: int = 400, block: int = 8192, seq0: int = 0,
                 unbias: str = "scalar", header_repeat: int = HEADER_REPEAT):
        from phy.frame import FrameBuilder
        from phy.receiver import Receiver

        self.tx, self.rx = tx_radio, rx_radio
        self.builder = FrameBuilder(ofdm, header_repeat)
        self.receiver = Receiver(ofdm, header_repeat=header_repeat)
        self.gap = int(gap_samples)
        self.block = int(block)
        self.seq = int(seq0)
        if unbias not in UNBIAS_MODES:
            raise ValueError(f"unbias = {unbias!r}: expected one of {', '.join(map(repr, UNBIAS_MODES))}")
        self.unbias = unbias
        self.stats: dict[str, int] = {"sent": 0, "received": 0, "lost": 0, "non_finite": 0}

    def send(self, latents: np.ndarray) -> list[Reception]:
        """latents float32 [B, L] -> one Reception per row (values None when the frame was lost or corrupt)."""
        latents = np.asarray(latents, np.float32)
        frames = []
        seqs = []
        for x in latents:
            seqs.append(self.seq)
            frames.append(self.builder.build_analog(x, self.seq))
            self.seq = (self.seq + 1) % 1000  # digital frames use 1000..65535
        got = _transmit_frames(self.tx, self.rx, self.receiver, frames, self.gap, self.block, "analog")
        out = []
        for x, seq in zip(latents, seqs):
            self.stats["sent"] += 1
            fr = got.get(seq)
            if fr is None or fr.values is None or fr.values.size != x.size:
                self.stats["lost"] += 1
                out.append(Reception(None, float("nan"), float("nan"), "lost"))
                continue
            vals = np.asarray(fr.values, np.float32)
            if not (np.all(np.isfinite(vals)) and np.all(np.isfinite(fr.noise_var))):
                self.stats["non_finite"] += 1
                out.append(Reception(None, float("nan"), float("nan"), "non-finite", fr.snr_db, fr.cfo_hz))
                continue
            self.stats["received"] += 1
            # the receiver's error variance per equalized symbol (MMSE: N0/(|H|^2 + N0) + estimation and
            # phase-tracking error): phy's analog payload unbiases the values and gives the decoder its SNR
            vals, snr_est = unbias_mmse(vals, prior_normalized_noise_var(fr.symbols, fr.symbol_noise_var),
                                        self.unbias)
            out.append(Reception(vals, snr_est, measured_snr_db(x, vals), "ok", float(fr.snr_db), float(fr.cfo_hz)))
        return out


def prior_normalized_noise_var(symbols: np.ndarray, symbol_noise_var: np.ndarray) -> np.ndarray:
    """The MMSE error variances ``ν`` of an analog frame per unit of the symbol-power prior ``P`` the equalizer
    estimated from the frame (``phy.rx.equalization.equalize``): ``ν / P̂`` with ``P̂ = mean |ŝ|² + mean ν``.

    The equalizer's output is ``ŝ = g s + e`` with shrinkage ``g = 1 - ν/P`` and ``E|ŝ|² = P g = P - ν`` (exact for a
    flat channel, on average over subcarriers otherwise), so ``P = E|ŝ|² + ν``. :func:`phy.analog.unbias_mmse` divides
    by ``1 - mean ν``, which is the shrinkage only when ``P`` = 1. The equalizer estimates ``P`` as the received power
    minus its noise estimate, and the noise estimate from the two LTS symbols is ±25 % at 0 dB, so ``P`` is too:
    measured on AWGN at 0 dB (30 frames of 3072 symbols, 1 ppm CFO), the unbiased values carried a per-frame gain of
    0.92 ± 0.28 without this normalization and 0.99 ± 0.06 with it.

    Args: symbols complex [n] (``RxFrame.symbols``), symbol_noise_var float [n] (``RxFrame.symbol_noise_var``).
    Returns float64 [n].
    """
    nv = np.asarray(symbol_noise_var, np.float64)
    sym = np.asarray(symbols)
    p_hat = float(np.mean(sym.real.astype(np.float64) ** 2 + sym.imag.astype(np.float64) ** 2) + nv.mean())
    return nv / p_hat if np.isfinite(p_hat) and p_hat > 0 else nv


class DigitalRadioLink:
    """The practical digital chain over the same radio path: codec file → CRC-32 + LDPC → QAM → OFDM frames
    (``FrameBuilder.build_digital``) → ``Receiver``; a frame that is lost or fails its CRC yields no image (the cliff).

    ``modem``/``code_rate`` None: chosen for ``snr_db`` by :func:`learning.jscc.digital.choose_mcs`; ``codecs``: the
    image codecs to choose from (default: every available one).
    """

    def __init__(self, tx_radio, rx_radio, ofdm, snr_db: float, modem: str | None = None,
                 code_rate: float | None = None, gap_samples: int = 400, block: int = 8192, seq0: int = 1000,
                 codecs: list[str] | None = None, header_repeat: int = HEADER_REPEAT):
        from learning.jscc.digital import choose_mcs
        from phy.frame import FrameBuilder
        from phy.receiver import Receiver

        self.tx, self.rx = tx_radio, rx_radio
        self.builder = FrameBuilder(ofdm, header_repeat)
        self.receiver = Receiver(ofdm, header_repeat=header_repeat)
        self.snr_db = float(snr_db)
        self.codecs = codecs
        self.modem, self.code_rate = (modem, code_rate) if modem else choose_mcs(snr_db)
        self.gap, self.block, self.seq = int(gap_samples), int(block), int(seq0)
        self.stats = {"sent": 0, "crc_ok": 0, "crc_fail": 0, "lost": 0, "nothing_fits": 0}

    def __call__(self, images: np.ndarray, ratio: float) -> list[tuple[np.ndarray, dict]]:
        """images uint8 [N, H, W, 3] -> per image (received image, info); ``ratio`` k/n sets the channel uses."""
        from learning.jscc.digital import (
            decode_payload,
            encode_for_budget,
            max_payload_bytes,
        )

        out: list = [None] * len(images)
        sends = []
        for i, img in enumerate(images):
            k = int(round(ratio * img.size))
            budget = max_payload_bytes(k, self.modem, self.code_rate)
            data, info = encode_for_budget(img, budget, self.codecs)
            info = {"method": "digital-chain", "snr_db": self.snr_db, "modem": self.modem,
                    "code_rate": round(self.code_rate, 4),
                    "payload_budget_bytes": budget, "channel_uses": k, **info}
            if data is None:
                self.stats["nothing_fits"] += 1
                out[i] = (decode_payload(None, img.shape), {**info, "status": "nothing fits"})
            else:
                sends.append((i, data, info))
        frames, seqs = [], []
        for i, data, info in sends:
            seqs.append(self.seq)
            frames.append(self.builder.build_digital(data, self.seq, self.modem, self.code_rate))
            self.seq = (self.seq + 1) % 65536
        got = self._transmit(frames)
        for (i, data, info), seq in zip(sends, seqs):
            self.stats["sent"] += 1
            fr = got.get(seq)
            if fr is None:
                self.stats["lost"] += 1
                out[i] = (decode_payload(None, images[i].shape), {**info, "status": "lost"})
            elif not fr.crc_ok or fr.payload is None:
                self.stats["crc_fail"] += 1
                out[i] = (decode_payload(None, images[i].shape), {**info, "status": "crc fail",
                                                                  "snr_db": fr.snr_db, "snr_est_db": fr.snr_db})
            else:
                self.stats["crc_ok"] += 1
                out[i] = (decode_payload(fr.payload, images[i].shape), {**info, "status": "ok",
                                                                        "snr_db": fr.snr_db, "snr_est_db": fr.snr_db})
        return out

    def _transmit(self, frames: list[np.ndarray]) -> dict:
        return _transmit_frames(self.tx, self.rx, self.receiver, frames, self.gap, self.block, "digital")


def digital_chain_records(images, snrs: list[float], ratio: float, seed: int) -> list[dict]:
    """Mean PSNR/SSIM of the real digital chain (:class:`DigitalRadioLink`: best codec file that fits, CRC-32 + LDPC +
    QAM, wifi64 OFDM frames, phy's receiver) over the in-process AWGN air at each SNR; ``images`` uint8 [N, H, W, 3]
    (one size), ``ratio`` k/n."""
    from learning.jscc.metrics import psnr_uint8, ssim_uint8
    from phy.ofdm import OfdmConfig
    from radio.drivers.loopback import loopback_pair

    out = []
    for snr in snrs:
        tx, rx = loopback_pair(snr_db=snr, seed=seed)
        link = DigitalRadioLink(tx, rx, OfdmConfig.preset("wifi64"), snr)
        res = link(images, ratio)
        ps = [psnr_uint8(a, img) for a, (img, _) in zip(images, res)]
        ss = [ssim_uint8(a, img) for a, (img, _) in zip(images, res)]
        out.append({"method": "digital-chain", "snr_db": float(snr), "psnr_db": float(np.mean(ps)),
                    "ssim": float(np.mean(ss)), "psnr_std_db": float(np.std(ps)), "n_images": len(images),
                    "channel": "awgn air (wifi64 OFDM, full receiver)", "modem": link.modem,
                    "code_rate": round(link.code_rate, 4), **{f"frames_{k}": v for k, v in link.stats.items()},
                    "codec": [info.get("codec") for _, info in res]})
    return out


def _transmit_frames(tx, rx, receiver, frames: list[np.ndarray], gap: int, block: int, kind: str) -> dict:
    """Send ``frames`` back to back (``gap`` samples apart) and return the received frames of ``kind`` by seq."""
    if not frames:
        return {}
    starts, pos = [], gap
    for f in frames:
        starts.append(pos)
        pos += f.size + gap
    burst = np.zeros(pos + gap, np.complex64)
    for s, f in zip(starts, frames):
        burst[s:s + f.size] = f
    t_tx = tx.time_now() + 64
    tx.tx(burst, at=t_tx)
    got: dict[int, object] = {}
    t, end = t_tx, t_tx + burst.size
    while t < end:
        n = min(block, end - t)
        samples, t_rx = rx.rx(n, at=t)
        for fr in receiver.process(samples, t_rx):
            if fr.kind == kind:
                got.setdefault(fr.seq, fr)
        t += n
    receiver.flush()
    return got


def encode_latents(model, images: np.ndarray, encoder_snr_db: float,
                   snr_range_db: tuple[float, float] | None = None) -> tuple[np.ndarray, tuple]:
    """The DeepJSCC encoder's output for ``images`` (uint8 [N, H, W, 3], one shape): (latents float32 [N, L], unit
    power per complex pair; the latent's shape before flattening). The encoder is told ``encoder_snr_db`` clamped
    into ``snr_range_db`` (see :func:`send_images`). A transmitter that is not where the decoder runs (a device of
    ``otalab cell --task jscc``) calls this on its own images."""
    import torch

    from learning.jscc.data import to_tensor

    x = to_tensor(np.asarray(images))
    with torch.no_grad():
        z = model.encode(x, torch.full((len(x),), float(_clamp(encoder_snr_db, snr_range_db))))
    return z.reshape(len(z), -1).numpy().astype(np.float32, copy=False), tuple(z.shape[1:])


def send_images(model, images: np.ndarray, link, encoder_snr_db: float, digital=None,
                snr_range_db: tuple[float, float] | None = None) -> list[dict]:
    """Encode ``images`` (uint8 [N, H, W, 3]), send the latents over ``link``, decode with the receiver's SNR estimate.

    ``snr_range_db``: the SNR range the model was trained on (its checkpoint's ``snr_range_db``): the SNRs told to
    the encoder and the decoder are clamped into it (a decoder told 119 dB on a noiseless air, or 30 dB when it saw
    at most 20, decodes worse than one told the range's edge); records say ``decoder_snr_db`` and ``snr_clamped``.
    For the digital chain ``snr_db`` is the receiver's LTS estimate (the configured SNR when no frame arrived).
    ``digital``: optional callable ``(images, ratio) -> list[(uint8 image | None, info dict)]`` (the digital
    comparison shown next to DeepJSCC). Returns per-image records with ``method``, ``snr_db`` (measured), ``psnr_db``,
    ``ssim``, the SNR estimate and status; lost/corrupt frames have ``psnr_db`` None and are not decoded. The decoded
    images are in the records under the key ``"_image"`` (uint8 [H, W, 3], removed before JSON output).
    """
    import torch

    from learning.jscc.data import to_uint8
    from learning.jscc.metrics import psnr_uint8, ssim_uint8

    images = np.asarray(images)
    shapes = {img.shape for img in images}
    records = []
    for shape in sorted(shapes):
        idx = [i for i, img in enumerate(images) if img.shape == shape]
        latents, lat_shape = encode_latents(model, np.stack([images[i] for i in idx]), encoder_snr_db, snr_range_db)
        receptions = link.send(latents)
        for i, lat, rec in zip(idx, latents, receptions):
            decoder_snr = _clamp(rec.snr_est_db, snr_range_db)
            base = {"image": i, "method": f"deepjscc-{model.registry_name}", "encoder_snr_db": float(encoder_snr_db),
                    "decoder_snr_db": decoder_snr, "snr_clamped": bool(
                        (rec.values is not None and decoder_snr != rec.snr_est_db)
                        or _clamp(encoder_snr_db, snr_range_db) != encoder_snr_db),
                    "snr_est_db": rec.snr_est_db, "snr_db": rec.measured_snr_db, "rx_snr_db": rec.rx_snr_db,
                    "status": rec.status, "channel_uses": lat.size // 2}
            if rec.values is None:
                records.append({**base, "psnr_db": None, "ssim": None, "_image": None})
                continue
            z_hat = torch.from_numpy(rec.values.reshape(1, *lat_shape))
            with torch.no_grad():
                y = to_uint8(model.decode(z_hat, torch.tensor([decoder_snr], dtype=torch.float32)))[0]
            records.append({**base, "psnr_db": psnr_uint8(images[i], y), "ssim": ssim_uint8(images[i], y),
                            "_image": y})
    records.sort(key=lambda r: r["image"])
    if digital is not None:
        for i, (img, info) in enumerate(digital(images, model.ratio)):
            rec = {"image": i, "method": info.get("method", "digital"), **info}
            if img is not None:
                rec.update(psnr_db=psnr_uint8(images[i], img), ssim=ssim_uint8(images[i], img))
            else:
                rec.update(psnr_db=None, ssim=None)
            rec["_image"] = img
            records.append(rec)
    return records


def _clamp(snr_db, snr_range_db):
    """``snr_db`` inside the model's training range ``(lo, hi)`` (None: unchanged; NaN stays NaN)."""
    if snr_range_db is None or snr_db is None or not np.isfinite(snr_db):
        return snr_db
    lo, hi = snr_range_db
    return float(min(max(float(snr_db), float(lo)), float(hi)))


def json_records(records: list[dict]) -> list[dict]:
    """Records without the decoded images (for JSON output)."""
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in records]
