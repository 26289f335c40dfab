"""SigMF recording wrapper (radio/recording.py): what is recorded, where, with which times; atomic files; reading
back, including a data file cut short."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from radio.drivers.loopback import loopback_pair
from radio.recording import RecordingRadio, read_recording, recording_meta_path


def _burst(rng, n):
    return ((rng.standard_normal(n) + 1j * rng.standard_normal(n)) * 0.1).astype(np.complex64)


def test_records_rx_and_tx_with_times_captures_and_annotations(tmp_path, rng):
    txr, rxr = loopback_pair(seed=3)
    tx = RecordingRadio(txr, tmp_path / "run" / "dev", description="probe", author="lab")
    rx = RecordingRadio(rxr, tmp_path / "run" / "ps")
    burst = _burst(rng, 300)
    t_tx = tx.tx(burst, at=1000)
    t_tx2 = tx.tx(burst[:50], at=5000)
    a, ta = rx.rx(2000, at=0)
    b, tb = rx.rx(500)                          # contiguous: same capture
    c, tc = rx.rx(100, at=4000)                 # gap: new capture
    rx.annotate(t_tx, 300, "frame", "seq 0 detected", snr_db=31.5)
    tx.annotate(t_tx2, 50, "timing_advance", "TA=12 samples applied", stream="tx")
    with pytest.raises(ValueError, match=r"sample time 3000 is not in the recorded rx stream .*\(0, 2500\)"):
        rx.annotate(3000, 10, "nothing here")
    # nothing under the final names until close
    assert not (tmp_path / "run" / "ps-rx.sigmf-meta").exists()
    assert not (tmp_path / "run" / "ps-rx.sigmf-data").exists()
    tx.close()
    rx.close()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [   # dev-rx and ps-tx held no sample: not written
        "dev-tx.sigmf-data", "dev-tx.sigmf-meta", "ps-rx.sigmf-data", "ps-rx.sigmf-meta"]

    rec = read_recording(tmp_path / "run" / "ps-rx.sigmf-meta")
    assert not rec.truncated and rec.expected == 2600 and rec.sample_rate == 20e6
    assert rec.captures == [(0, 0, 2.4e9), (2500, 4000, 2.4e9)]
    np.testing.assert_array_equal(rec.samples, np.concatenate([a, b, c]))
    np.testing.assert_array_equal(rec.samples[t_tx:t_tx + 300], burst)   # ideal link: the burst at its time
    (seg0, s0), (seg1, s1) = rec.segments()
    assert (s0, seg0.size, s1, seg1.size) == (0, 2500, 4000, 100)
    ann, = rec.annotations
    assert (ann["core:sample_start"], ann["core:sample_count"], ann["core:label"]) == (1000, 300, "frame")
    assert ann["otalab:snr_db"] == 31.5 and ann["otalab:sample_time"] == 1000
    meta = json.loads((tmp_path / "run" / "ps-rx.sigmf-meta").read_text())
    g = meta["global"]
    assert g["core:datatype"] == "cf32_le" and "LoopbackRadio" in g["core:hw"] and len(g["core:sha512"]) == 128
    assert meta["captures"][0]["core:datetime"].endswith("Z") and meta["captures"][0]["core:frequency"] == 2.4e9

    txrec = read_recording(tmp_path / "run" / "dev-tx")
    assert txrec.captures == [(0, 1000, 2.4e9), (300, 5000, 2.4e9)]
    np.testing.assert_array_equal(txrec.samples, np.concatenate([burst, burst[:50]]))
    assert txrec.annotations[0]["core:label"] == "timing_advance"
    assert txrec.annotations[0]["core:sample_start"] == 300


def test_truncated_data_file_reads_to_its_end(tmp_path, rng):
    _, rxr = loopback_pair(snr_db=10, seed=1)
    with RecordingRadio(rxr, tmp_path / "cut", record_tx=False) as rx:
        x, _ = rx.rx(1000, at=0)
    data = tmp_path / "cut-rx.sigmf-data"
    with open(data, "r+b") as f:
        f.truncate(8 * 640 + 5)                 # 640 whole samples and half of one
    rec = read_recording(data)                  # any of the names works
    assert rec.truncated and rec.expected == 1000 and rec.samples.size == 640
    np.testing.assert_array_equal(rec.samples, x[:640])
    (seg, t0), = rec.segments()
    assert seg.size == 640 and t0 == 0


def test_changed_data_file_fails_checksum_and_bad_inputs(tmp_path):
    _, rxr = loopback_pair(seed=1)
    with RecordingRadio(rxr, tmp_path / "c", record_tx=False) as rx:
        rx.rx(100, at=0)
    data = tmp_path / "c-rx.sigmf-data"
    raw = bytearray(data.read_bytes())
    raw[0] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-512 does not match"):
        read_recording(tmp_path / "c-rx")
    assert read_recording(tmp_path / "c-rx", verify=False).samples.size == 100
    with pytest.raises(ValueError, match="no SigMF metadata file"):
        read_recording(tmp_path / "missing")
    os.remove(data)
    with pytest.raises(ValueError, match="data file .* is missing"):
        read_recording(tmp_path / "c-rx.sigmf-meta")
    assert recording_meta_path("a/b.sigmf-data").name == "b.sigmf-meta"


def test_wrapper_forwards_the_radio(tmp_path):
    txr, rxr = loopback_pair(seed=2)
    rec = RecordingRadio(txr, tmp_path / "w", record_rx=False, close_radio=False)
    assert rec.sample_rate == txr.sample_rate and rec.center_freq == txr.center_freq
    assert rec.capabilities == txr.capabilities and rec.driver == "loopback"
    assert rec.time_now() == txr.time_now() and rec.settings()["recording"] == str(tmp_path / "w")
    with pytest.raises(ValueError, match="stream 'rx' is not recorded"):
        rec.annotate(0, 1, "x")
    rec.close()
    assert txr.tx(np.zeros(4, np.complex64), at=10) == 10   # close_radio=False left it open
    assert not list(tmp_path.glob("w-tx*")) and not list(tmp_path.glob(".w-tx*"))  # no zero-length stream written


def test_archive_holds_the_same_recording(tmp_path):
    import sigmf
    from sigmf.sigmffile import fromfile

    _, rxr = loopback_pair(snr_db=20, seed=4)
    with RecordingRadio(rxr, tmp_path / "a", record_tx=False, archive=True) as rx:
        x, _ = rx.rx(300, at=50)
    archived = fromfile(str(tmp_path / "a-rx.sigmf"))
    assert isinstance(archived, sigmf.SigMFFile)
    np.testing.assert_array_equal(archived.read_samples(), x)
    assert archived.get_captures()[0]["core:global_index"] == 50
    assert not list(tmp_path.glob(".*.tmp"))   # no temporary files left behind
