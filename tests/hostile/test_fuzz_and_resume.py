"""Receiver fuzz (hypothesis, fixed small budget), FEEL resume from hostile checkpoints via the CLI, flipped bytes in
SigMF recordings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.bench.fuzz import RECEIVER_KINDS, config_case, receiver_case, run_config_case, run_receiver_case


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31), kind=st.sampled_from(RECEIVER_KINDS))
def test_receiver_fuzz(seed, kind):
    """No exception and no valid-CRC frame that was never sent, for junk and damaged frames fed in random blocks."""
    x, sent = receiver_case(seed, kind)
    assert run_receiver_case(x, sent, seed) is None


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(min_size=0, max_size=3000), scale=st.sampled_from([1e-30, 1.0, 1e30]))
def test_receiver_raw_bytes(raw, scale):
    """Arbitrary bytes reinterpreted as complex64 samples (NaN/Inf bit patterns included)."""
    with np.errstate(all="ignore"):
        x = np.frombuffer(raw[: len(raw) // 8 * 8], dtype=np.complex64) * np.float32(scale)
    assert run_receiver_case(x, set(), 0) is None


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31), driver=st.sampled_from([None, "loopback", "zmq", "pluto", "usrp"]))
def test_config_fuzz(seed, driver):
    assert run_config_case(config_case(seed), driver) is None


@pytest.fixture
def feel_run(feel_data, tmp_path):
    """A real 1-round FEEL checkpoint and the CLI arguments that resume from it."""
    from lab.cli import main
    out = tmp_path / "run"
    args = ["feel", "--scheme", "ideal", "--devices", "2", "--samples-per-device", "20", "--rounds", "2",
            "--data-dir", feel_data.dir, "--dataset", feel_data.name, "--out", out, "--no-progress",
            "--checkpoint-every", "1"]
    assert main([str(a) for a in args]) == 0
    ckpt = out / "checkpoints" / f"feel_{feel_data.name}_ideal_iid_M2.pt"
    assert ckpt.is_file()
    return args, ckpt


def test_feel_resume_refuses_hostile_checkpoints(feel_run, cli, marker, tmp_path):
    import torch

    from tests.hostile.conftest import MarkerPayload, evil_pickle_bytes
    args, ckpt = feel_run
    good = ckpt.read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 3] ^= 0x10
    bare = tmp_path / "bare.pt"
    torch.save({"version": 1, "x": MarkerPayload(marker)}, bare)
    cases = {"empty": b"", "truncated": good[:100], "random": np.random.default_rng(2).bytes(2000),
             "plain pickle": evil_pickle_bytes(marker), "flipped": bytes(flipped), "bare torch": bare.read_bytes()}
    for name, blob in cases.items():
        ckpt.write_bytes(blob)
        cli(args, f"checkpoint {ckpt}", "expected")
    ckpt.write_bytes(good)                       # the intact checkpoint resumes
    cli(args, rc=0)


def test_recording_with_flipped_byte_is_refused(tmp_path):
    from radio.recording import SigmfStreamWriter, read_recording
    w = SigmfStreamWriter(tmp_path / "r", "rx", 1e6, "test")
    w.append(np.arange(64, dtype=np.complex64), 0, 2.4e9)
    meta = w.close()
    assert read_recording(meta).samples.size == 64
    data = tmp_path / "r.sigmf-data"
    blob = bytearray(data.read_bytes())
    blob[100] ^= 0x01
    data.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=f"{data}: SHA-512 does not match"):
        read_recording(meta)


def test_recording_metadata_with_a_flipped_byte_is_refused(tmp_path):
    """SigMF hashes only the data; otalab's metadata carries otalab:meta_sha256 of itself, so a flipped byte
    anywhere in the .sigmf-meta is refused naming the file: as JSON or schema damage, or as a changed value."""
    from radio.recording import SigmfStreamWriter, read_recording
    w = SigmfStreamWriter(tmp_path / "r", "rx", 1e6, "test")
    w.append(np.arange(64, dtype=np.complex64), 0, 2.4e9)
    meta = w.close()
    good = meta.read_bytes()
    refused = 0
    rng = np.random.default_rng(5)
    for pos in rng.choice(len(good), size=60, replace=False):
        blob = bytearray(good)
        blob[pos] ^= 0x01
        meta.write_bytes(bytes(blob))
        try:
            rec = read_recording(meta)
        except ValueError as exc:
            assert str(meta) in str(exc)
            refused += 1
        else:   # only a flip the JSON reader cannot see (e.g. inside insignificant whitespace) may pass
            assert rec.samples.size == 64 and rec.sample_rate == 1e6 and rec.captures[0][2] == 2.4e9
    meta.write_bytes(good.replace(b'"core:sample_rate": 1000000.0', b'"core:sample_rate": 2000000.0'))
    with pytest.raises(ValueError, match="metadata changed since it was written"):
        read_recording(meta)
    assert refused >= 50
