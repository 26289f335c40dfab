"""Remote classification at a budget of 128 real channel uses (64 complex symbols) per query: the schemes.

Every scheme maps a batch of device images (uint8 [B, 28, 28] or [B, 32, 32, 3], the checkpoint's data set) and an SNR (dB, per real channel use = per complex
symbol ``E|s|^2 / N0``) to server-side predictions (int64 [B]):

* ``noiseless`` — the server has the device's feature vector exactly (upper baseline);
* ``analog-jscc`` — the SNR-adaptive JSCC encoder maps the feature straight to 128 unit-power reals; AWGN; the JSCC
  decoder + head classifies (trained with the channel in the loop);
* ``digital-bound`` — task-oriented digital at the separation bound: ``B = floor(128 * 1/2 log2(1 + SNR))`` bits
  (capacity) of transform-coded features (PCA of the features, greedy bit allocation on the component variances,
  Max's optimal uniform quantizer steps for Gaussian components; fixed-rate, no entropy coder) delivered without error;
* ``digital-chain`` — the same transform code with the payload the real chain carries in 64 symbols: the MCS of
  :func:`learning.jscc.digital.choose_mcs` for the SNR, CRC-32 + 5G LDPC (``phy.fec.DigitalCodec``) + QAM
  (``phy.modulation.QamModem``), symbol-level AWGN, log-MAP demapping and BP decoding; a failed CRC leaves the
  server with the mean feature (the cliff);
* ``image-first`` — the image itself, with the best linear analog code for 128 uses: its 128 leading PCA
  coefficients, each scaled to unit power, sent uncoded, MMSE-estimated, the image rebuilt and classified by the
  noiseless model.
"""

from __future__ import annotations

import math

import numpy as np

SCHEMES = ("noiseless", "analog-jscc", "digital-bound", "digital-chain", "image-first")
#: Max (1960): step of the MSE-optimal uniform quantizer of a unit-variance Gaussian with 2^b levels, b = 1..8
MAX_STEP = (1.596, 0.9957, 0.5860, 0.3352, 0.1881, 0.1041, 0.0569, 0.0308)
MAX_BITS = 12


class CheckpointMismatch(ValueError):
    """A checkpoint made for another task, data set or budget."""


class InferenceModel:
    """The models and fitted statistics of one checkpoint (:mod:`learning.infer.train`), read with
    :func:`learning.safeio.read_checkpoint_file` (hash verified, payload loaded with ``weights_only=True``).

    Args:
        path: checkpoint file.
        expect_task: raise :class:`CheckpointMismatch` unless the checkpoint's task matches ("classification").
    """

    def __init__(self, path, expect_task: str | None = "classification"):
        import torch

        from learning.infer.models import (
            CHANNEL_USES,
            FEATURE_DIM,
            N_CLASSES,
            Head,
            JsccDecoder,
            JsccEncoder,
            backbone_for,
        )
        from learning.infer.data import image_shape
        from learning.infer.train import FORMAT
        from learning.safeio import CheckpointError, read_checkpoint_file

        try:
            _, ck = read_checkpoint_file(path, FORMAT)
        except CheckpointError as exc:   # missing, foreign (e.g. a DeepJSCC checkpoint), tampered, truncated
            raise CheckpointMismatch(f"{exc} (an `otalab infer train` checkpoint)") from None
        if ck.get("task") not in ("classification", "retrieval"):
            raise CheckpointMismatch(f"{path}: task {ck.get('task')!r}; expected 'classification' or 'retrieval'")
        if expect_task and ck.get("task") != expect_task:
            raise CheckpointMismatch(f"{path}: task {ck.get('task')!r}; expected {expect_task!r}")
        if ck.get("channel_uses") != CHANNEL_USES:
            raise CheckpointMismatch(f"{path}: {ck.get('channel_uses')} channel uses; expected {CHANNEL_USES}")
        try:
            self.image_shape = image_shape(ck.get("dataset"))
        except ValueError as exc:
            raise CheckpointMismatch(f"{path}: {exc}") from None
        self.meta = {k: v for k, v in ck.items() if not isinstance(v, (dict, torch.Tensor)) or k == "train_config"}
        self.backbone, self.head = backbone_for(ck["dataset"]).eval(), Head().eval()
        self.task = ck["task"]
        self.encoder = JsccEncoder().eval()
        self.decoder = JsccDecoder(n_out=N_CLASSES if self.task == "classification" else FEATURE_DIM).eval()
        for name, mod in (("backbone", self.backbone), ("head", self.head), ("jscc_encoder", self.encoder),
                          ("jscc_decoder", self.decoder)):
            mod.load_state_dict(ck[name])
        g = lambda k: ck[k].to(torch.float64).numpy()
        self.feat_mean, self.feat_basis, self.feat_var = g("feat_mean"), g("feat_basis"), g("feat_var")
        self.img_mean, self.img_basis, self.img_var = g("img_mean"), g("img_basis"), g("img_var")
        self.snr_range_db = tuple(ck["snr_range_db"])

    # -- device side ------------------------------------------------------------------------------------------
    def features(self, images: np.ndarray) -> np.ndarray:
        """uint8 [B, *image_shape] (the checkpoint's data set: 28x28 grayscale or 32x32x3 RGB) -> f float32 [B, F]."""
        import torch

        from learning.infer.data import check_images
        from learning.infer.models import images_to_tensor

        x = check_images(images, f"images for a {self.meta['dataset']} model", self.image_shape)
        with torch.no_grad():
            return torch.cat([self.backbone(images_to_tensor(x[i:i + 2000]))
                              for i in range(0, len(x), 2000)]).numpy()

    def encode(self, f: np.ndarray, snr_db: float) -> np.ndarray:
        """Analog JSCC: f [B, F] -> z float32 [B, 128], mean z^2 = 1 per row."""
        import torch

        with torch.no_grad():
            return self.encoder(torch.as_tensor(f), float(snr_db)).numpy()

    # -- server side ------------------------------------------------------------------------------------------
    def server_output(self, f: np.ndarray) -> np.ndarray:
        """What the server makes of (an estimate of) the feature: classes int64 [B] (classification) or unit-norm
        embeddings float32 [B, F] (retrieval)."""
        import torch

        f = np.asarray(f, np.float32)
        if self.task == "retrieval":
            return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        with torch.no_grad():
            return self.head(torch.as_tensor(f)).argmax(1).numpy()

    def decode(self, y: np.ndarray, snr_db) -> np.ndarray:
        """Analog JSCC: received [B, 128] -> predicted classes [B] or unit-norm embeddings [B, F]; ``snr_db`` (scalar or
        [B]) is clamped to the training range. Non-finite rows raise (the radio path drops them before)."""
        import torch

        y = np.asarray(y, np.float32)
        if y.ndim != 2 or y.shape[1] != self.encoder.channel_uses:
            raise ValueError(f"received values have shape {y.shape}; expected [B, {self.encoder.channel_uses}]")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{int(np.sum(~np.all(np.isfinite(y), 1)))} received rows contain NaN/inf; drop them "
                             "before decoding (the radio path counts and skips them)")
        lo, hi = self.snr_range_db
        s = np.clip(np.asarray(snr_db, np.float32), lo, hi)   # the decoder only knows its training range
        with torch.no_grad():
            out = self.decoder(torch.as_tensor(y), torch.as_tensor(s)).numpy()
        return out.argmax(1) if self.task == "classification" else self.server_output(out)


# -- transform coding of features (digital schemes) ---------------------------------------------------------------
def allocate_bits(variances: np.ndarray, total_bits: int) -> np.ndarray:
    """Greedy bit allocation: each bit to the component with the largest ``var * 4^-b`` (b <= MAX_BITS)."""
    b = np.zeros(len(variances), np.int64)
    d = np.asarray(variances, np.float64).copy()
    for _ in range(max(0, int(total_bits))):
        j = int(np.argmax(np.where(b < MAX_BITS, d, -1.0)))
        if d[j] <= 0:
            break
        b[j] += 1
        d[j] /= 4.0
    return b


def _steps(bits: np.ndarray, variances: np.ndarray) -> np.ndarray:
    unit = np.array([MAX_STEP[min(k, 8) - 1] / 2.0 ** max(k - 8, 0) if k > 0 else np.inf for k in bits])
    return unit * np.sqrt(np.maximum(variances, 1e-12))


def quantize_features(model: InferenceModel, f: np.ndarray, total_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(bits uint8 [B, total_bits'], f_hat [B, F]): PCA coefficients quantized with the allocation for
    ``total_bits`` (``total_bits' = sum of the allocation <= total_bits``) and the features rebuilt from them."""
    bits = allocate_bits(model.feat_var, total_bits)
    c = (np.asarray(f, np.float64) - model.feat_mean) @ model.feat_basis
    step = _steps(bits, model.feat_var)
    levels = 2 ** bits
    idx = np.clip(np.floor(c / step) + levels // 2, 0, levels - 1).astype(np.int64)
    idx[:, bits == 0] = 0
    out = [((idx[:, j:j + 1] >> np.arange(bits[j] - 1, -1, -1)) & 1).astype(np.uint8)
           for j in range(len(bits)) if bits[j]]
    packed = np.concatenate(out, 1) if out else np.zeros((len(f), 0), np.uint8)
    return packed, dequantize_bits(model, packed, total_bits)


def dequantize_bits(model: InferenceModel, packed: np.ndarray, total_bits: int) -> np.ndarray:
    """Inverse of :func:`quantize_features`: bits [B, sum(allocation)] -> f_hat float32 [B, F]."""
    bits = allocate_bits(model.feat_var, total_bits)
    step = _steps(bits, model.feat_var)
    c = np.zeros((len(packed), len(bits)))
    pos = 0
    for j in np.flatnonzero(bits):
        k = bits[j]
        idx = (packed[:, pos:pos + k].astype(np.int64) << np.arange(k - 1, -1, -1)).sum(1)
        c[:, j] = (idx - 2 ** k // 2 + 0.5) * step[j]
        pos += k
    return (c @ model.feat_basis.T + model.feat_mean).astype(np.float32)


def capacity_bits(snr_db: float, channel_uses: int = 128) -> int:
    """``floor(n * 1/2 log2(1 + SNR))``: bits an ideal code delivers in ``n`` real channel uses."""
    return math.floor(channel_uses * 0.5 * math.log2(1.0 + 10.0 ** (snr_db / 10.0)))


def digital_chain(model: InferenceModel, f: np.ndarray, snr_db: float, rng: np.random.Generator,
                  symbols: int = 64) -> tuple[np.ndarray, dict]:
    """The real chain at symbol level: (f_hat [B, F], info). A failed CRC gives the mean feature."""
    from learning.jscc.digital import choose_mcs, max_payload_bytes
    from phy.fec import DigitalCodec

    modem_name, rate = choose_mcs(snr_db)
    payload = max_payload_bytes(symbols, modem_name, rate)
    info = {"modem": modem_name, "code_rate": round(rate, 4), "payload_bytes": payload, "bits": 8 * payload}
    fail = np.broadcast_to(model.feat_mean.astype(np.float32), f.shape).copy()
    if payload == 0:
        return fail, {**info, "crc_ok": 0.0, "status": "nothing fits"}
    packed, _ = quantize_features(model, f, 8 * payload)
    buf = np.zeros((len(f), 8 * payload), np.uint8)
    buf[:, :packed.shape[1]] = packed
    data = np.packbits(buf, axis=1)
    codec = DigitalCodec(modem_name, rate)
    coded = codec.encode_batch(data)
    m = codec.modem.bits_per_symbol
    pad = (-coded.shape[1]) % m
    coded = np.concatenate([coded, np.zeros((len(f), pad), np.uint8)], 1)
    s = codec.modem.modulate(coded)
    if s.shape[1] > symbols:
        raise AssertionError(f"{s.shape[1]} symbols > budget {symbols}")
    n0 = 10.0 ** (-snr_db / 10.0)
    y = s + math.sqrt(n0 / 2) * (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape))
    llr = codec.modem.demodulate_llr(y.astype(np.complex64), n0)[:, :coded.shape[1] - pad]
    rx, ok = codec.decode_batch(llr, payload)
    bits_rx = np.unpackbits(rx, axis=1)[:, :packed.shape[1]]
    f_hat = dequantize_bits(model, bits_rx, 8 * payload)
    f_hat[~ok] = fail[~ok]
    return f_hat, {**info, "symbols": int(s.shape[1]), "crc_ok": float(np.mean(ok)), "status": "ok"}


def image_first(model: InferenceModel, images: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """128 leading PCA coefficients, unit power each, AWGN, MMSE, rebuilt image (uint8, the shape of ``images``)."""
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    sd = np.sqrt(np.maximum(model.img_var, 1e-12))
    c = (x - model.img_mean) @ model.img_basis / sd                        # unit variance per channel use
    n0 = 10.0 ** (-snr_db / 10.0)
    y = c + math.sqrt(n0) * rng.standard_normal(c.shape)
    c_hat = y / (1.0 + n0)                                               # MMSE for a unit-variance Gaussian
    rec = (c_hat * sd) @ model.img_basis.T + model.img_mean
    return np.clip(np.rint(rec * 255.0), 0, 255).astype(np.uint8).reshape(images.shape)


def predict(model: InferenceModel, scheme: str, images: np.ndarray, snr_db: float, rng: np.random.Generator,
            feats: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """(server output, info) of ``scheme`` at ``snr_db``: classes int64 [B] or embeddings [B, F] by the model's task."""
    import torch

    from learning.infer.models import awgn

    if scheme not in SCHEMES:
        raise ValueError(f"scheme = {scheme!r}: expected one of {', '.join(SCHEMES)}")
    f = model.features(images) if feats is None else feats
    if scheme == "noiseless":
        return model.server_output(f), {}
    if scheme == "analog-jscc":
        z = model.encode(f, snr_db)
        gen = torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
        y = awgn(torch.as_tensor(z), float(snr_db), gen).numpy()
        return model.decode(y, snr_db), {"channel_uses": z.shape[1]}
    if scheme == "digital-bound":
        b = capacity_bits(snr_db)
        _, f_hat = quantize_features(model, f, b)
        return model.server_output(f_hat), {"bits": b}
    if scheme == "digital-chain":
        f_hat, info = digital_chain(model, f, snr_db, rng)
        return model.server_output(f_hat), info
    return model.server_output(model.features(image_first(model, images, snr_db, rng))), {"channel_uses": 128}
