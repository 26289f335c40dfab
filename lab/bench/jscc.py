"""Benchmark: per-image encode + decode latency of DeepJSCC versus the digital chain on CPU.

``otalab bench jscc [--images N] [--snr-db S] [--checkpoint PATH] [--threads T] [--json PATH]`` (or
``python bench/jscc.py``) times, per 32×32 CIFAR-10 test image (batch of one, the latency a single image sees):

* ``deepjscc``: ``model.encode`` (image → power-normalized symbols) and ``model.decode`` (received symbols → image);
* ``digital``: the source side of the practical chain at the MCS chosen for ``--snr-db`` — the codec search that
  picks the best file that fits (``encode_for_budget``, every quality of every codec; ``codec_encode_one_ms`` is a
  single encode at the chosen setting), CRC-32 + 5G-LDPC encoding (phy ``DigitalCodec.encode``), LDPC
  belief-propagation decoding of the noisy LLRs (``DigitalCodec.decode``) and the image decoder.

The OFDM modulation/receiver is the same for both and is measured by ``otalab bench phy``. Medians over the images
(after one warm-up); wall clock and CPU time of this process. Prints ``{"benchmark": "jscc", "results": [...]}``.
"""

from __future__ import annotations

from lab.bench import report
import argparse
import os
import time
from pathlib import Path

import numpy as np


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print and return the JSON record."""
    ap = argparse.ArgumentParser(prog="otalab bench jscc", description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=20, help="CIFAR-10 test images to time")
    ap.add_argument("--snr-db", type=float, default=10.0, help="SNR for the digital MCS and the LLR noise")
    ap.add_argument("--checkpoint", type=Path, default=None, help="DeepJSCC checkpoint (default: the shipped one)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the record to this file")
    args = ap.parse_args(argv)

    import torch

    from lab.experiments.jscc_air import DEFAULT_CHECKPOINT
    from learning.jscc.baselines import CODECS
    from learning.jscc.checkpoint import load_checkpoint
    from learning.jscc.data import load_cifar10, to_tensor, to_uint8
    from learning.jscc.digital import (
        choose_mcs,
        decode_payload,
        encode_for_budget,
        max_payload_bytes,
    )
    from phy.fec import DigitalCodec
    from phy.modulation import QamModem

    torch.set_num_threads(args.threads)
    images = load_cifar10("test", args.data_dir, 0, args.images + 1)
    model, meta = load_checkpoint(args.checkpoint or DEFAULT_CHECKPOINT)
    k = model.n_channel_uses(32, 32)
    rng = np.random.default_rng(0)
    n0 = 10 ** (-args.snr_db / 10)

    jscc_enc, jscc_dec = [], []
    with torch.no_grad():
        for img in images:
            x = to_tensor(img[None])
            snr = torch.tensor([args.snr_db])
            z, te, _ = _timed(lambda: model.encode(x, snr))
            z_hat = z + torch.randn(z.shape) * float(np.sqrt(n0 / 2))
            _, td, _ = _timed(lambda: to_uint8(model.decode(z_hat, snr)))
            jscc_enc.append(te)
            jscc_dec.append(td)

    modem_name, rate = choose_mcs(args.snr_db)
    codec = DigitalCodec(modem_name, rate)
    modem = QamModem.from_name(modem_name)
    budget = max_payload_bytes(k, modem_name, rate)
    src_enc, one_enc, chan_enc, chan_dec, src_dec, sizes = [], [], [], [], [], []
    for img in images:
        (data, info), t_src, _ = _timed(lambda: encode_for_budget(img, budget))
        if data is None:
            continue
        chosen = CODECS[info["codec"]]
        _, t_one, _ = _timed(lambda: chosen.encode(img, info["quality"]))
        one_enc.append(t_one)
        bits, t_ce, _ = _timed(lambda: codec.encode(data))
        pad = (-bits.size) % modem.bits_per_symbol
        s = modem.modulate(np.concatenate([bits, np.zeros(pad, np.uint8)]))
        y = s + (rng.standard_normal(s.size) + 1j * rng.standard_normal(s.size)).astype(np.complex64) * np.sqrt(n0 / 2)
        llr = modem.demodulate_llr(y, n0)[:bits.size]
        (payload, ok), t_cd, _ = _timed(lambda: codec.decode(llr, len(data)))
        _, t_sd, _ = _timed(lambda: decode_payload(payload if ok else None, img.shape))
        src_enc.append(t_src)
        chan_enc.append(t_ce)
        chan_dec.append(t_cd)
        src_dec.append(t_sd)
        sizes.append(len(data))

    def med(v):
        return float(np.median(v[1:] if len(v) > 1 else v) * 1e3) if v else None

    results = [
        {"method": "deepjscc", "model": model.registry_name, "parameters": sum(p.numel() for p in model.parameters()),
         "encode_ms": med(jscc_enc), "decode_ms": med(jscc_dec),
         "total_ms": (med(jscc_enc) or 0) + (med(jscc_dec) or 0), "channel_uses": k},
        {"method": "digital", "modem": modem_name, "code_rate": rate, "payload_budget_bytes": budget,
         "mean_file_bytes": float(np.mean(sizes)) if sizes else None, "images_sent": len(sizes),
         "codec_search_ms": med(src_enc), "codec_encode_one_ms": med(one_enc), "ldpc_encode_ms": med(chan_enc), "ldpc_decode_ms": med(chan_dec),
         "image_decode_ms": med(src_dec),
         "total_ms": sum(x for x in (med(src_enc), med(chan_enc), med(chan_dec), med(src_dec)) if x is not None),
         "total_without_search_ms": sum(x for x in (med(one_enc), med(chan_enc), med(chan_dec), med(src_dec))
                                        if x is not None)},
    ]
    record = {"benchmark": "jscc", "snr_db": args.snr_db, "images": args.images, "threads": args.threads,
              "cpu_count": os.cpu_count(), "load_avg_1min": os.getloadavg()[0], "results": results}
    return report(record, args.json)
