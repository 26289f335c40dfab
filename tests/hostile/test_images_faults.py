"""Odd images (every Pillow mode, 16-bit and float, bombs, oversize, junk) and fault injections aimed at nothing."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from learning.jscc.data import load_image_file


def _save(tmp_path, im, name="x.png", **kw):
    path = tmp_path / name
    im.save(path, **kw)
    return path


def test_16bit_grey_is_scaled_not_clipped(tmp_path):
    """I;16 gradient 0..65535: pixel = round(v * 255 / 65535) (a clipping convert would make almost all 255)."""
    v = np.linspace(0, 65535, 64 * 8).astype(np.uint16).reshape(8, 64)
    img = load_image_file(_save(tmp_path, Image.fromarray(v)))
    want = np.rint(v.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert img.shape == (8, 64, 3) and np.array_equal(img[..., 0], want) and np.array_equal(img[..., 2], want)


def test_int32_and_float_images_are_scaled_by_their_range(tmp_path):
    wide = np.linspace(-5e6, 5e6, 64).reshape(8, 8).astype(np.int32)
    img = load_image_file(_save(tmp_path, Image.fromarray(wide, mode="I"), "i.tif"))
    assert img[..., 0].min() == 0 and img[..., 0].max() == 255                        # min..max -> 0..255
    f01 = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    img = load_image_file(_save(tmp_path, Image.fromarray(f01, mode="F"), "f.tif"))
    assert np.array_equal(img[..., 1], np.rint(f01.astype(np.float64) * 255).astype(np.uint8))
    fwide = np.linspace(-3.0, 7.0, 64, dtype=np.float32).reshape(8, 8)
    img = load_image_file(_save(tmp_path, Image.fromarray(fwide, mode="F"), "fw.tif"))
    want = np.rint((fwide.astype(np.float64) + 3.0) * 25.5).astype(np.uint8)
    assert np.abs(img[..., 0].astype(int) - want).max() <= 1


def test_float_nan_is_an_error(tmp_path):
    f = np.zeros((8, 8), np.float32)
    f[2, 3] = np.nan
    path = _save(tmp_path, Image.fromarray(f, mode="F"), "nan.tif")
    with pytest.raises(ValueError, match=f"image {path}: 1 NaN/Inf pixels .*expected finite"):
        load_image_file(path)


def test_palette_alpha_and_other_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    base = Image.fromarray(rgb, "RGB")
    for mode in ("1", "L", "P", "CMYK", "YCbCr", "LA", "RGBA", "I", "F"):
        im = base.convert(mode)
        ext = "tif" if mode in ("I", "F", "CMYK", "YCbCr") else ("jpg" if mode == "YCbCr" else "png")
        out = load_image_file(_save(tmp_path, im, f"m_{mode}.{ext}"))
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8, mode
    # RGBA: fully transparent pixels over white, opaque ones unchanged
    a = np.dstack([rgb, np.full((8, 8), 255, np.uint8)])
    a[:4, :, 3] = 0
    out = load_image_file(_save(tmp_path, Image.fromarray(a, "RGBA"), "a.png"))
    assert (out[:4] == 255).all() and np.array_equal(out[4:], rgb[4:])
    # palette keeps its colours exactly
    p = base.quantize(16)
    assert np.array_equal(load_image_file(_save(tmp_path, p, "p.png")), np.asarray(p.convert("RGB")))


def _png_header_only(path, w, h):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
    return path


def test_size_cap_bomb_and_junk_via_cli(tmp_path, cli, monkeypatch):
    bomb = _png_header_only(tmp_path / "bomb.png", 30000, 30000)       # 9e8 pixels: Pillow's bomb guard fires
    args = ["jscc", "send", "--symbol-level", "--out", tmp_path / "o", "--images"]
    cli([*args, bomb], str(bomb), "decompression-bomb", "OTALAB_MAX_IMAGE_PIXELS")
    big = _png_header_only(tmp_path / "big.png", 5000, 5000)           # over our cap, under Pillow's
    cli([*args, big], str(big), "5000x5000 = 25000000 pixels", "expected at most 16777216 pixels")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).bytes(300))
    cli([*args, junk], str(junk), "not a readable image", "expected")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    cli([*args, empty], str(empty), "expected")
    small = _save(tmp_path, Image.new("RGB", (16, 16)), "small.png")
    cli(["jscc", "send", "--symbol-level", "--out", tmp_path / "o", "--max-image-pixels", "100", "--images", small],
        "16x16 = 256 pixels", "expected at most 100 pixels")
    monkeypatch.setenv("OTALAB_MAX_IMAGE_PIXELS", "100")
    cli([*args, small], "16x16 = 256 pixels", "expected at most 100 pixels")


def test_psnr_is_against_the_scaled_image_sent(tmp_path):
    """jscc send's records compare the decoded image with the image sent, i.e. the correctly scaled 16-bit one."""
    from lab.experiments.jscc_air import SymbolLink, send_images
    from learning.jscc.checkpoint import load_checkpoint
    from learning.jscc.metrics import psnr_uint8
    import lab
    from pathlib import Path
    v = (np.indices((32, 32)).sum(0) * 1000).astype(np.uint16)
    img = load_image_file(_save(tmp_path, Image.fromarray(v)))
    assert 40 < img.mean() < 200                       # not blacked out / not clipped to white
    model, _ = load_checkpoint(Path(lab.__file__).parent / "assets" / "jscc_adjscc_r6.pt")
    recs = send_images(model, img[None], SymbolLink(20.0), 20.0, None)
    rec = next(r for r in recs if r["psnr_db"] is not None)
    assert rec["psnr_db"] == pytest.approx(psnr_uint8(img, rec["_image"]), abs=1e-9)


# ------------------------------------------------------------------------------------------- fault injection
@pytest.mark.parametrize("fault,msg", [("4:0:nan", "round 4 does not exist; expected ROUND in 0..3"),
                                       ("0:5:drop", "device 5 does not exist; expected DEVICE in 0..4"),
                                       ("1:2:melt", "expected ROUND:DEVICE:KIND"), ("-1:2:nan", "expected ROUND")])
def test_fault_targets_must_exist(fault, msg):
    from learning.feel.runner import FeelConfig
    with pytest.raises(ValueError, match=msg):
        FeelConfig(devices=5, rounds=4, faults=(fault,))


def test_fault_cli_exit_2(cli, feel_data):
    cli(["feel", "--devices", "3", "--rounds", "2", "--fault", "7:1:nan", "--data-dir", feel_data.dir, "--dataset",
         feel_data.name, "--no-progress"],
        "fault '7:1:nan'", "round 7 does not exist", "expected ROUND in 0..1")
