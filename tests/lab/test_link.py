"""`otalab link` and lab.experiments.link.run_link over the in-process simulated air (radio.drivers.loopback)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from phy.ofdm import OfdmConfig
from phy.theory import ber_qam_awgn


def test_run_link_loopback_snr_and_ber():
    """Loopback air with noise set by air_noise_power: the receiver's SNR estimate matches --snr-db (mean over
    frames within 0.5 dB) and uncoded QPSK BER at 7 dB is within 25 % of Q(sqrt(2 Es/N0)) (32 kbit, ~400 errors,
    >= 4 sigma)."""
    from lab.experiments.link import air_noise_power, run_link, tx_scale_for
    from radio.sim.air import Air
    from radio.drivers.loopback import LoopbackRadio

    cfg = OfdmConfig.preset("wifi64")
    scale = tx_scale_for(cfg)
    air = Air(20e6, 2.4e9, seed=3)
    tx = LoopbackRadio(air, "tx", noise_power=0.0)
    rx = LoopbackRadio(air, "rx", noise_power=air_noise_power(7.0, scale))
    res = run_link(tx, rx, cfg, mod="qpsk", frames=8, payload_bytes=500, seed=1, snr_db_true=7.0)
    assert res["detected"] == 8
    assert abs(res["snr_db_est"] - 7.0) < 0.5
    theory = float(ber_qam_awgn(4, 7.0))
    assert abs(res["ber"] / theory - 1) < 0.25, (res["ber"], theory)
    assert res["timing_error_max"] == 0


def test_link_cli_writes_json(tmp_path):
    from lab.cli import main
    out = tmp_path / "r" / "link.json"
    rc = main(["link", "--mod", "analog", "--frames", "5", "--snr-db", "15", "--cfo-ppm", "10", "--seed", "2",
               "--json", str(out), "--no-progress"])
    assert rc == 0
    res = json.loads(out.read_text())
    for key in ("frames", "detected", "ber", "bler", "nmse_db", "snr_db_true", "snr_db_est", "cfo_hz_rmse",
                "config", "seed", "git_revision"):
        assert key in res
    assert res["detected"] == 5 and res["nmse_db"] < -12
    assert res["cfo_hz_true"] == pytest.approx(10e-6 * 2.4e9)
    assert res["cfo_hz_rmse"] < 0.05 * 312.5e3


def test_link_cli_rejects_bad_options(tmp_path):
    from lab.cli import main
    assert main(["link", "--mod", "8psk", "--frames", "1"]) == 2
    assert main(["link", "--mod", "analog", "--code-rate", "1/2", "--frames", "1"]) == 2
    assert main(["link", "--frames", "1", "--set", "ofdm.cp_len=500"]) == 2


@pytest.mark.iio
@pytest.mark.parametrize("mod", ["qpsk", "analog"])
def test_link_over_the_emulated_pluto_matches_the_loopback_air(tmp_path, mod):
    """`otalab link --config hw_configs/pluto-emulated.yaml`: the real pyadi-iio + libiio client against otalab's iiod
    emulator on the simulated air. At the same SNR its BER (QPSK, 7 dB) / NMSE (analog, 12 dB) match the loopback
    air's: BER within 5 sigma of the binomial difference of two 48 kbit runs, NMSE within 0.5 dB."""
    pytest.importorskip("adi")
    pytest.importorskip("iio")
    from pathlib import Path

    from lab.cli import main
    cfg = Path(__file__).resolve().parents[2] / "hw_configs" / "pluto-emulated.yaml"
    snr = "7" if mod == "qpsk" else "12"
    res = {}
    for name, extra in (("pluto", ["--config", str(cfg)]), ("loopback", [])):
        out = tmp_path / f"{name}.json"
        rc = main(["link", "--mod", mod, "--frames", "12", "--snr-db", snr, "--seed", "4", "--no-progress",
                   "--json", str(out), *extra])
        assert rc == 0, name
        res[name] = json.loads(out.read_text())
        assert res[name]["detected"] == 12, name
    assert res["pluto"]["config"]["driver"] == "pluto"
    if mod == "qpsk":
        p = float(ber_qam_awgn(4, 7.0))
        n = 12 * 500 * 8
        sigma = np.sqrt(2 * p * (1 - p) / n)
        assert abs(res["pluto"]["ber"] - res["loopback"]["ber"]) < 5 * sigma, (res["pluto"]["ber"],
                                                                              res["loopback"]["ber"])
    else:
        assert abs(res["pluto"]["nmse_db"] - res["loopback"]["nmse_db"]) < 0.5, (res["pluto"]["nmse_db"],
                                                                                res["loopback"]["nmse_db"])
