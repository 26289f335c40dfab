"""DeepJSCC over the air: phy analog frames through the in-process air and the ZeroMQ broker with the full receiver,
compared with the symbol-level simulation at the same measured SNR; lost/NaN frames are reported and skipped; the
send and eval CLIs write their JSON/PNG."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lab.cli.jscc import DEFAULT_CHECKPOINT
from lab.experiments.jscc_air import RadioLink, SymbolLink, send_images
from learning.jscc.checkpoint import load_checkpoint
from phy.ofdm import OfdmConfig
from radio.sim.channel import LinkParams

MULTIPATH = LinkParams(profile="TDL-A", delay_spread_s=30e-9, cfo_ppm=1.0, delay_samples=17.3)


@pytest.fixture(scope="module")
def shipped():
    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip(f"shipped checkpoint {DEFAULT_CHECKPOINT} missing")
    model, meta = load_checkpoint(DEFAULT_CHECKPOINT, expect_ratio="1/6")
    return model


@pytest.fixture(scope="module")
def cifar8(cifar_data):
    """CIFAR-10 test images 0-7, or the first 8 tiles of the conftest stand-in where CIFAR-10 is absent."""
    from learning.jscc.data import load_cifar10

    return load_cifar10("test", cifar_data.dir, 0, 8)


def _compare_with_symbol_level(model, images, link):
    """Mean PSNR over the air vs. the symbol-level AWGN simulation of each image at its measured SNR."""
    air = send_images(model, images, link, 10.0)
    assert all(r["status"] == "ok" for r in air)
    sym = []
    for i, r in enumerate(air):
        sym += send_images(model, images[i:i + 1], SymbolLink(r["snr_db"], seed=i), r["snr_db"])
    psnr_air = float(np.mean([r["psnr_db"] for r in air]))
    psnr_sym = float(np.mean([r["psnr_db"] for r in sym]))
    return psnr_air, psnr_sym, air


def test_in_process_air_matches_symbol_level(shipped, cifar8):
    """Multipath (TDL-A), 1 ppm CFO, fractional delay, streaming receiver (detection, CFO, channel estimation, MMSE):
    PSNR within 1 dB of the symbol-level AWGN simulation at the same measured SNR, and the receiver's SNR estimate
    within 1.5 dB of the measured one on average over the images and 3.5 dB for each (measured on this seed: CIFAR-10
    images under 1 dB on average, up to 2.57 dB for one; the scikit-image stand-in tiles used where CIFAR-10 is
    absent 1.24 dB on average and up to 3.05 dB for one, 1.06 dB on average before the prior-normalized error
    variances; the estimate is optimistic on faded subcarriers, see docs/infer.md. The LTS-based estimate averages
    the subcarriers evenly, while an image's measured SNR weights them by where its latent puts its power, which
    varies from image to image on a frequency-selective channel)."""
    from radio.drivers.loopback import loopback_pair

    tx, rx = loopback_pair(snr_db=10.0, link=MULTIPATH, seed=3)
    link = RadioLink(tx, rx, OfdmConfig.preset("wifi64"))
    psnr_air, psnr_sym, air = _compare_with_symbol_level(shipped, cifar8, link)
    assert link.stats["received"] == 8
    assert abs(psnr_air - psnr_sym) < 1.0, (psnr_air, psnr_sym)
    est = np.array([r["snr_est_db"] for r in air])
    meas = np.array([r["snr_db"] for r in air])
    assert abs(np.mean(est - meas)) < 1.5, (est, meas)
    assert np.all(np.abs(est - meas) < 3.5), (est, meas)


def test_zmq_air_matches_symbol_level(shipped, cifar8):
    """The same over the ZeroMQ broker (in-process broker thread, two ZmqRadio endpoints on 127.0.0.1:0), averaged
    over five multipath realizations (air seeds 4..8, 4 images each): mean gap to the symbol-level simulation at the
    same measured SNR < 1 dB, and no single realization more than 1.5 dB off (a deep fade leaves a non-white error
    that the AWGN-trained decoder handles worse than white noise of the same power)."""
    from radio.sim.air import Air
    from radio.servers.zmq_broker import BrokerConfig, ChannelBroker
    from radio.drivers.zmq import ZmqRadio

    gaps = []
    for seed in range(4, 9):
        air = Air(20e6, 2.4e9, seed=seed, default_link=MULTIPATH, default_noise_power=0.1)
        with ChannelBroker(air, BrokerConfig(endpoints=["t", "r"]), bind="tcp://127.0.0.1:0") as b, \
                ZmqRadio(b.endpoint, "t") as tx, ZmqRadio(b.endpoint, "r") as rx:
            link = RadioLink(tx, rx, OfdmConfig.preset("wifi64"))
            psnr_air, psnr_sym, _ = _compare_with_symbol_level(shipped, cifar8[:4], link)
        gaps.append(psnr_sym - psnr_air)
    assert abs(np.mean(gaps)) < 1.0, gaps
    assert max(abs(g) for g in gaps) < 1.5, gaps


def test_lost_and_nan_frames_are_reported_and_skipped(shipped, cifar8):
    """A frame the receiver never delivers is 'lost'; one with NaN values is 'non-finite'; neither is decoded."""
    from radio.drivers.loopback import loopback_pair

    tx, rx = loopback_pair(snr_db=30.0, seed=5)
    link = RadioLink(tx, rx, OfdmConfig.preset("wifi64"))
    real_process = link.receiver.process
    calls = {"n": 0}

    def tamper(samples, t0):
        frames = real_process(samples, t0)
        kept = []
        for fr in frames:
            calls["n"] += 1
            if fr.seq == 0:
                continue  # dropped: lost
            if fr.seq == 1:
                fr.values = fr.values.copy()
                fr.values[3] = np.nan
            kept.append(fr)
        return kept

    link.receiver.process = tamper
    recs = send_images(shipped, cifar8[:3], link, 30.0)
    assert [r["status"] for r in recs] == ["lost", "non-finite", "ok"]
    assert recs[0]["psnr_db"] is None and recs[1]["psnr_db"] is None and recs[2]["psnr_db"] > 15
    assert link.stats == {"sent": 3, "received": 1, "lost": 1, "non_finite": 1}


def test_send_cli_writes_png_and_json(shipped, tmp_path, cifar_data, capsys):
    from lab.cli import main

    cfg = tmp_path / "air.yaml"
    cfg.write_text("radio: {driver: loopback}\nair: {snr_db: 20, channel: awgn}\n")
    rc = main(["jscc", "send", "-c", str(cfg), "--cifar", "2", "--data-dir", str(cifar_data.dir),
               "--out", str(tmp_path / "out"), "--json", str(tmp_path / "out" / "send.json"), "--no-digital"])
    assert rc == 0
    doc = json.loads((tmp_path / "out" / "send.json").read_text())
    assert doc["config"]["source"] == str(cfg) and doc["git_revision"] is None or isinstance(doc["git_revision"], str)
    assert (tmp_path / "out" / "side_by_side.png").stat().st_size > 1000
    methods = {r["method"] for r in doc["results"]}
    assert methods == {"deepjscc-adjscc"}
    for r in doc["results"]:
        assert {"method", "snr_db", "psnr_db", "ssim"} <= set(r)
    assert main(["jscc", "send", "--config", str(cfg), "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_digital_chain_delivers_then_falls_off_the_cliff(cifar8):
    """The practical chain over the same air: at 20 dB with its MCS (64-QAM 5/6) every CRC passes and the image is
    exactly the codec's; forcing that MCS at 5 dB fails every CRC and the receiver shows the mean colour (the cliff)."""
    from lab.experiments.jscc_air import DigitalRadioLink
    from learning.jscc.baselines import MEAN_RGB
    from learning.jscc.digital import (
        decode_payload,
        encode_for_budget,
        max_payload_bytes,
    )
    from radio.drivers.loopback import loopback_pair

    imgs = cifar8[:2]
    tx, rx = loopback_pair(snr_db=20.0, seed=6)
    good = DigitalRadioLink(tx, rx, OfdmConfig.preset("wifi64"), 20.0, codecs=["webp", "jpeg"])
    res = good(imgs, 1 / 6)
    assert (good.modem, round(good.code_rate, 3)) == ("64qam", 0.833) and good.stats["crc_ok"] == 2
    budget = max_payload_bytes(512, "64qam", 5 / 6)
    for img, (rec, info) in zip(imgs, res):
        data, _ = encode_for_budget(img, budget, ["webp", "jpeg"])
        assert np.array_equal(rec, decode_payload(data, img.shape)) and info["status"] == "ok"
    tx, rx = loopback_pair(snr_db=5.0, seed=7)
    bad = DigitalRadioLink(tx, rx, OfdmConfig.preset("wifi64"), 5.0, modem="64qam", code_rate=5 / 6,
                           codecs=["webp", "jpeg"])
    res = bad(imgs, 1 / 6)
    assert bad.stats["crc_ok"] == 0 and bad.stats["crc_fail"] + bad.stats["lost"] == 2
    for rec, info in res:
        assert np.all(rec == MEAN_RGB) and info["status"] in ("crc fail", "lost")


def test_eval_cli_json_and_plot(shipped, tmp_path, cifar_data):
    from lab.cli import main

    out = tmp_path / "eval.json"
    rc = main(["jscc", "eval", "--n-images", "3", "--snr-db", "0,10", "--codecs", "webp,jpeg", "--data-dir",
               str(cifar_data.dir), "--json", str(out), "--out", str(tmp_path), "--ratio", "1/6"])
    assert rc == 0
    doc = json.loads(out.read_text())
    methods = {r["method"] for r in doc["results"]}
    assert methods == {"deepjscc-adjscc", "separation-payload", "separation-full"}
    for r in doc["results"]:
        assert {"method", "snr_db", "psnr_db", "ssim"} <= set(r)
    jscc = sorted((r["snr_db"], r["psnr_db"]) for r in doc["results"] if r["method"] == "deepjscc-adjscc")
    assert jscc[1][1] > jscc[0][1]  # more SNR, better images
    assert (tmp_path / "jscc_eval.png").stat().st_size > 1000
    assert main(["jscc", "eval", "--ratio", "1/12", "--n-images", "1", "--data-dir", str(cifar_data.dir),
                 "--json", str(out)]) == 2


def test_send_snr_sets_the_air_and_the_decoder_snr_stays_in_the_trained_range(shipped, tmp_path):
    """`otalab jscc send --images X --snr-db S` with no config runs on an in-process air whose noise gives S (it
    used to be noiseless while the decoder was told S): for S in {0, 10, 20} (the issue's points; at 0 dB a single
    header copy failed about one frame in five, hence two copies on these links) PSNR within 1 dB of --symbol-level
    at the same S, not falling as S rises; an SNR outside the model's training range (0-20 dB) is clamped and the
    record says so."""
    import skimage.data
    from PIL import Image

    from lab.cli import main

    img = tmp_path / "cat.png"
    Image.fromarray(skimage.data.chelsea()[100:196, 150:278]).save(img)
    psnr = {}
    for s in (0, 10, 20, 30):
        for mode in ("air", "symbol"):
            out = tmp_path / f"{mode}{s}.json"
            args = ["jscc", "send", "--images", str(img), "--snr-db", str(s), "--no-digital", "--json", str(out),
                    "--out", str(tmp_path / "png")] + (["--symbol-level"] if mode == "symbol" else [])
            assert main(args) == 0
            rec = json.loads(out.read_text())["results"][0]
            psnr[mode, s] = rec["psnr_db"]
            if mode == "air":
                assert abs(rec["snr_db"] - s) < 1.0, rec          # the air really had that SNR
            assert rec["decoder_snr_db"] <= 20.0
            assert rec["status"] == "ok", rec
            if s not in (0, 20):                              # at the range's edges the estimate may fall either side
                assert rec["snr_clamped"] is (s > 20), rec
    for s in (0, 10, 20, 30):
        assert abs(psnr["air", s] - psnr["symbol", s]) < 1.0, psnr
    assert psnr["air", 0] <= psnr["air", 10] <= psnr["air", 20] + 0.1 <= psnr["air", 30] + 0.2, psnr
