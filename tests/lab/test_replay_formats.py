"""`otalab replay` on recordings otalab did not write: SigMF made by the ``sigmf`` package itself (a ci16_le
meta/data pair and a ``.sigmf`` archive) and headerless complex64 files with ``--rate/--freq``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lab.cli import main
from phy.frame import FrameBuilder
from phy.ofdm import OfdmSection
from radio.recording import read_raw_recording, read_recording

RATE = 1.92e6
FREQ = 2.45e9
GUARD = 600


def _frames(n: int = 3, seed: int = 5, snr_db: float = 30.0) -> tuple[np.ndarray, list[bytes]]:
    """complex64 stream: n uncoded QPSK frames (seq 0..n-1, 48-byte payloads) at amplitude 0.1 (OFDM peaks stay inside full scale), GUARD samples of
    silence around each, complex white noise at ``snr_db`` below the frames' mean power."""
    rng = np.random.default_rng(seed)
    builder = FrameBuilder(OfdmSection().to_config(RATE))
    payloads = [rng.integers(0, 256, 48, dtype=np.uint8).tobytes() for _ in range(n)]
    parts = [np.zeros(GUARD, np.complex64)]
    for i, p in enumerate(payloads):
        parts += [0.1 * builder.build_digital(p, seq=i, modem="qpsk", code_rate=None), np.zeros(GUARD, np.complex64)]
    x = np.concatenate(parts).astype(np.complex64)
    power = float(np.mean(np.abs(np.concatenate(parts[1::2])) ** 2))
    sigma = np.sqrt(power * 10 ** (-snr_db / 10) / 2)
    x += (sigma * (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size))).astype(np.complex64)
    assert max(np.abs(x.real).max(), np.abs(x.imag).max()) < 1      # no clipping in ci16
    return x, payloads


def _ci16(x: np.ndarray) -> np.ndarray:
    """complex -> interleaved int16 I/Q (full scale 2**15), as an SDR's ci16_le stream."""
    iq = np.empty(2 * x.size, np.int16)
    iq[0::2] = np.round(x.real * 2 ** 15).clip(-32768, 32767)
    iq[1::2] = np.round(x.imag * 2 ** 15).clip(-32768, 32767)
    return iq


def _sigmf_ci16(tmp_path, x: np.ndarray, archive: bool):
    """A ci16_le recording written by sigmf's own API (SigMFFile + tofile), as a meta/data pair or an archive."""
    from sigmf import SigMFFile

    base = tmp_path / "foreign"
    data = tmp_path / "foreign.sigmf-data"
    _ci16(x).astype("<i2").tofile(data)
    meta = SigMFFile(data_file=str(data), global_info={
        "core:datatype": "ci16_le", "core:sample_rate": RATE, "core:hw": "test",
        "core:description": "frames written by the sigmf package"})
    meta.add_capture(0, metadata={"core:frequency": FREQ})
    meta.add_annotation(GUARD, 100, metadata={"core:label": "first frame"})
    if archive:
        meta.tofile(str(base), toarchive=True)
        data.unlink()
        return tmp_path / "foreign.sigmf"
    meta.tofile(str(base))
    return tmp_path / "foreign.sigmf-meta"


def _replay_json(capsys, *args) -> tuple[int, dict]:
    rc = main(["replay", *map(str, args), "--json", "-"])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if rc == 0 else {"err": out.err})


@pytest.mark.parametrize("archive", [False, True], ids=["ci16-pair", "ci16-archive"])
def test_replay_reads_a_ci16_recording_made_by_sigmf(tmp_path, capsys, archive):
    x, payloads = _frames()
    path = _sigmf_ci16(tmp_path, x, archive)
    rec = read_recording(path)
    # ci16 is scaled by sigmf to value / 2**15: the samples are x within half a quantization step (2**-16)
    assert rec.samples.dtype == np.complex64 and rec.samples.size == x.size
    assert np.max(np.abs(rec.samples.real - x.real)) <= 2 ** -16 + 1e-7
    assert rec.sample_rate == RATE and rec.center_freq == FREQ and not rec.truncated
    rc, report = _replay_json(capsys, path)
    assert rc == 0, report
    assert report["crc_ok"] == len(payloads) and report["crc_fail"] == 0
    assert [f["seq"] for f in report["frame_list"]] == list(range(len(payloads)))
    assert report["recording"]["center_freq"] == FREQ and report["recording"]["annotations"] == 1


@pytest.mark.parametrize("archive", [False, True], ids=["pair", "archive"])
def test_a_changed_byte_in_a_sigmf_recording_is_refused_naming_the_file(tmp_path, capsys, archive):
    x, _ = _frames(n=1)
    path = _sigmf_ci16(tmp_path, x, archive)
    target = path if archive else tmp_path / "foreign.sigmf-data"
    raw = bytearray(target.read_bytes())
    raw[raw.find(_ci16(x).astype("<i2").tobytes()[:64]) + 100] ^= 0x01     # one bit of one sample
    target.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f"{target.name}: SHA-512 does not match"):
        read_recording(path)
    rc, out = _replay_json(capsys, path)
    assert rc == 2 and f"{target.name}: SHA-512 does not match" in out["err"]
    assert read_recording(path, verify=False).samples.size == x.size


def test_real_valued_recordings_are_refused_with_the_datatype(tmp_path):
    from sigmf import SigMFFile

    data = tmp_path / "real.sigmf-data"
    np.zeros(64, "<f4").tofile(data)
    SigMFFile(data_file=str(data), global_info={"core:datatype": "rf32_le",
                                                "core:sample_rate": RATE}).tofile(str(tmp_path / "real"))
    with pytest.raises(ValueError, match="real.sigmf-meta: core:datatype 'rf32_le'"):
        read_recording(tmp_path / "real")


def test_replay_takes_a_raw_complex64_file_with_rate_and_freq(tmp_path, capsys):
    x, payloads = _frames(seed=8)
    raw = tmp_path / "capture.c64"
    x.astype("<c8").tofile(raw)
    rc, report = _replay_json(capsys, raw, "--rate", "1.92M", "--freq", "2.45G")
    assert rc == 0, report
    assert report["crc_ok"] == len(payloads)
    assert report["recording"]["sample_rate"] == RATE and report["recording"]["center_freq"] == FREQ
    assert report["recording"]["samples"] == x.size and not report["recording"]["truncated"]
    rc, out = _replay_json(capsys, raw)
    assert rc == 2 and "--rate" in out["err"]          # a raw file without its rate is a clear error
    rc, out = _replay_json(capsys, raw, "--rate", "fast")
    assert rc == 2 and "--rate = 'fast'" in out["err"]
    with open(raw, "ab") as f:
        f.write(b"\x00\x01\x02")                    # a partial sample at the end
    rec = read_raw_recording(raw, RATE)
    assert rec.truncated and rec.samples.size == x.size
