"""`otalab jscc eval --photos`: the crossover SNR (linear interpolation of the PSNR difference), ratio parsing,
records per photo and ratio on a fast configuration (one photo, JPEG only, no digital chain), and bad input."""

from __future__ import annotations

from fractions import Fraction

import pytest

from lab.experiments.jscc_photos import crossover_db, crossovers, evaluate_photos, parse_ratio


def test_crossover_interpolates_the_first_sign_change():
    # difference +2 at 0 dB, -2 at 10 dB: zero at 5 dB; +3 at 5, -1 at 10: zero at 8.75
    assert crossover_db([0, 10, 20], [30, 28, 40], [28, 30, 30]) == pytest.approx(5.0)
    assert crossover_db([0, 5, 10], [13, 14, 15], [10, 11, 16]) == pytest.approx(8.75)
    assert crossover_db([0, 10], [30, 31], [20, 21]) == "above at every SNR"
    assert crossover_db([0, 10], [20, 31], [20, 21]) == "below at every SNR"


def test_parse_ratio():
    assert parse_ratio("1/6") == Fraction(1, 6) and parse_ratio(" 1/24") == Fraction(1, 24)
    for bad in ("a/b", "0", "3/2", "1/0"):
        with pytest.raises(ValueError, match="ratio"):
            parse_ratio(bad)


def test_crossovers_per_photo_mean_and_missing_model():
    recs = [{"photo": p, "ratio": "1/6", "method": m, "snr_db": s, "psnr_db": v, "ssim": 0.5}
            for p, off in (("a", 0.0), ("b", 2.0))
            for m, s, v in (("deepjscc-x", 0.0, 25 + off), ("deepjscc-x", 10.0, 27 + off),
                            ("digital-chain", 0.0, 20 + off), ("digital-chain", 10.0, 30 + off))]
    recs += [{"photo": "a", "ratio": "1/24", "method": "digital-chain", "snr_db": 0.0, "psnr_db": 18, "ssim": 0.4}]
    got = {(c["photo"], c["ratio"]): c["crossover_snr_db"] for c in crossovers(recs)}
    assert got["a", "1/6"] == pytest.approx(50 / 8) and got["mean", "1/6"] == pytest.approx(50 / 8)
    assert got["a", "1/24"] == "no DeepJSCC checkpoint at this ratio"


def test_evaluate_photos_records():
    from lab.experiments.jscc_air import DEFAULT_CHECKPOINT
    from learning.jscc.checkpoint import load_checkpoint

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("shipped DeepJSCC checkpoint missing")
    pytest.importorskip("skimage")
    model = load_checkpoint(DEFAULT_CHECKPOINT)
    res = evaluate_photos([model], ["chelsea"], [Fraction(1, 6), Fraction(1, 24)], (0, 20), digital=False,
                          codecs=["jpeg"])
    methods = {(r["ratio"], r["method"]) for r in res["results"]}
    assert ("1/6", "deepjscc-adjscc") in methods and ("1/24", "deepjscc-adjscc") not in methods
    assert ("1/24", "separation-payload") in methods
    for r in res["results"]:
        assert r["photo"] == "chelsea" and (r["height"], r["width"]) == (300, 448)
        assert r["channel_uses"] == round((1 / 6 if r["ratio"] == "1/6" else 1 / 24) * 300 * 448 * 3)
    deep = sorted((r["snr_db"], r["psnr_db"]) for r in res["results"] if r["method"] == "deepjscc-adjscc")
    assert deep[0][1] < deep[1][1]                      # more SNR, better picture
    assert any(c["crossover_snr_db"] == "no DeepJSCC checkpoint at this ratio" for c in res["crossovers"])


def test_cli_bad_photos_and_ratios(tmp_path, capsys):
    from lab.cli import main

    assert main(["jscc", "eval", "--photos", "dog", "--json", str(tmp_path / "x.json")]) == 2
    assert "--photos 'dog'" in capsys.readouterr().err
    assert main(["jscc", "eval", "--photos", "chelsea", "--ratios", "3/2", "--json", str(tmp_path / "x.json")]) == 2
    assert "ratio '3/2'" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_cli_merges_earlier_photo_runs(tmp_path):
    """`--photos '' --include a.json --include b.json` evaluates nothing, merges the records, recomputes the crossovers
    over all photos and plots them."""
    import json

    from lab.cli import main

    for photo, off in (("astronaut", 0.0), ("chelsea", 4.0)):
        recs = [{"photo": photo, "ratio": "1/6", "method": m, "snr_db": s, "psnr_db": v + off, "ssim": 0.5}
                for m, s, v in (("deepjscc-adjscc", 0.0, 25.0), ("deepjscc-adjscc", 10.0, 27.0),
                                ("digital-chain", 0.0, 20.0), ("digital-chain", 10.0, 30.0))]
        (tmp_path / f"{photo}.json").write_text(json.dumps({"photos": [photo], "ratios": ["1/6"], "results": recs}))
    out = tmp_path / "all.json"
    assert main(["jscc", "eval", "--photos", "", "--ratios", "1/6", "--include", str(tmp_path / "astronaut.json"),
                 "--include", str(tmp_path / "chelsea.json"), "--json", str(out), "--out", str(tmp_path)]) == 0
    doc = json.loads(out.read_text())
    assert doc["photos"] == ["astronaut", "chelsea"] and len(doc["results"]) == 8
    mean = [c for c in doc["crossovers"] if c["photo"] == "mean" and c["against"] == "digital-chain"]
    assert mean[0]["crossover_snr_db"] == pytest.approx(50 / 8)
    assert (tmp_path / "jscc_photos.png").stat().st_size > 1000


def test_cli_deepjscc_only_merged_with_earlier_baselines(tmp_path):
    """`--baselines none` evaluates DeepJSCC only (no rate table, no digital chain) and merges the baselines of an
    earlier run; a DeepJSCC record evaluated now replaces the earlier one of the same photo, ratio and SNR."""
    import json

    from lab.cli import main
    from lab.experiments.jscc_air import DEFAULT_CHECKPOINT

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("shipped DeepJSCC checkpoint missing")
    pytest.importorskip("skimage")
    stale = {"photo": "chelsea", "ratio": "1/6", "method": "deepjscc-adjscc", "snr_db": 0.0, "psnr_db": 1.0,
             "ssim": 0.1}
    digital = [{"photo": "chelsea", "ratio": "1/6", "method": "digital-chain", "snr_db": s, "psnr_db": v,
                "ssim": 0.9} for s, v in ((0.0, 30.0), (20.0, 40.0))]
    (tmp_path / "old.json").write_text(json.dumps({"photos": ["chelsea"], "ratios": ["1/6"],
                                                   "models": [{"checkpoint": "old.pt", "ratio": "1/6"}],
                                                   "results": [stale, *digital]}))
    out = tmp_path / "new.json"
    assert main(["jscc", "eval", "--photos", "chelsea", "--ratios", "1/6", "--snr-db", "0,20", "--baselines", "none",
                 "--include", str(tmp_path / "old.json"), "--json", str(out), "--out", str(tmp_path)]) == 0
    doc = json.loads(out.read_text())
    methods = sorted({r["method"] for r in doc["results"]})
    assert methods == ["deepjscc-adjscc", "digital-chain"]            # no separation bound computed
    deep = {r["snr_db"]: r["psnr_db"] for r in doc["results"] if r["method"] == "deepjscc-adjscc"}
    assert len(deep) == 2 and deep[0.0] > 20.0                        # the stale 1.0 dB record was replaced
    assert {m["checkpoint"] for m in doc["models"]} == {str(DEFAULT_CHECKPOINT), "old.pt"}
    cross = [c for c in doc["crossovers"] if c["photo"] == "chelsea" and c["against"] == "digital-chain"]
    assert cross[0]["crossover_snr_db"] == "below at every SNR"
    assert main(["jscc", "eval", "--photos", "chelsea", "--baselines", "bogus", "--json", str(out)]) == 2


def test_eval_labels_tell_ratios_apart(capsys):
    """`otalab jscc eval` with checkpoints of two ratios: one table row (and plot line) per method and ratio, not one
    row overwritten by the other ratio's values."""
    from lab.cli.jscc import _print_table
    from lab.plots import jscc_method_labels

    recs = [{"method": "deepjscc-adjscc", "ratio": q, "snr_db": 0.0, "psnr_db": v, "ssim": 0.5}
            for q, v in (("1/6", 22.0), ("1/12", 21.0))]
    assert jscc_method_labels(recs) == ["deepjscc-adjscc k/n=1/6", "deepjscc-adjscc k/n=1/12"]
    assert jscc_method_labels(recs[:1]) == ["deepjscc-adjscc"]
    _print_table(recs)
    out = capsys.readouterr().out
    assert "k/n=1/6" in out and "22.00" in out and "21.00" in out
