"""The shipped DeepJSCC checkpoint degrades gracefully: PSNR rises with SNR over 0-20 dB with no cliff."""

import numpy as np
import pytest

from lab.cli.jscc import DEFAULT_CHECKPOINT
from learning.jscc.checkpoint import load_checkpoint
from learning.jscc.evaluate import evaluate_model
from learning.jscc.metrics import psnr_uint8


def test_shipped_checkpoint_psnr_rises_with_snr_without_a_cliff(cifar_data, cifar_standin_dir):
    """CIFAR-10 test images 0-99 where CIFAR-10 is present, and the first 100 images of the conftest stand-in, AWGN at
    k/n = 1/6 (one model for every SNR): mean PSNR increases at every 5 dB step from 0 to 20 dB, by less than 1 dB of
    PSNR per dB of SNR (graceful: the real digital chain gains 6.2 dB between 7.5 and 10 dB as its modulation and coding
    step in, and nothing below), and at 0 dB it is far above sending nothing (the mean colour of each image).

    Measured (0/5/10/15/20 dB; sending nothing): CIFAR-10 22.73/25.88/28.25/29.54/30.06 dB; 14.30 dB (8.4 dB below
    0 dB). Stand-in 23.01/26.07/28.14/29.19/29.56 dB; 16.09 dB (6.9 dB below 0 dB). The same bounds hold on both.
    """
    from learning.jscc.data import load_cifar10

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip(f"shipped checkpoint {DEFAULT_CHECKPOINT} missing")
    model, meta = load_checkpoint(DEFAULT_CHECKPOINT, expect_ratio="1/6")
    sets = {"stand-in": cifar_standin_dir} | ({"CIFAR-10": cifar_data.dir} if cifar_data.real else {})
    snrs = [0.0, 5.0, 10.0, 15.0, 20.0]
    for name, directory in sets.items():
        images = load_cifar10("test", directory, 0, 100)
        assert len(images) == 100
        psnr = np.array([r["psnr_db"] for r in evaluate_model(model, meta, images, snrs)])
        steps = np.diff(psnr)
        assert np.all(steps > 0), (name, dict(zip(snrs, psnr.round(2))))
        assert np.all(steps < 5.0), (name, dict(zip(snrs, psnr.round(2))))
        mean_colour = np.broadcast_to(images.mean(axis=(1, 2), keepdims=True).round().astype(np.uint8), images.shape)
        nothing = np.mean([psnr_uint8(a, b) for a, b in zip(images, mean_colour)])
        assert psnr[0] > nothing + 6.0, (name, psnr[0], nothing)
