"""The numba kernel of the detector's window sums (``phy.detector.window_sums``) against the numpy path: the same bits
for the metric (T, P1, P2) and for the frames the receiver gets, on random streams of any length (one position, not a
multiple of the kernel tile, several metric passes), [K, M] batches, a wide dynamic range and silent stretches."""

from __future__ import annotations

import numpy as np
import pytest

import phy.detector as detector_mod
from phy.detector import SchmidlCoxDetector
from phy.frame import FrameBuilder
from phy.ofdm import OfdmConfig
from phy.receiver import Receiver
from tests.phy.chan import mixed_frames

pytestmark = pytest.mark.skipif(not detector_mod.kernel_available(), reason="numba is not installed")


def _metric(det, r, kernel, monkeypatch):
    monkeypatch.setattr(detector_mod, "USE_KERNEL", kernel)
    return det.metric(r)


@pytest.mark.parametrize("preset", ["wifi64", "wide256"])
def test_kernel_metric_equals_numpy_bit_for_bit(preset, monkeypatch):
    rng = np.random.default_rng(7)
    det = SchmidlCoxDetector(OfdmConfig.preset(preset))
    tile = detector_mod.KERNEL_TILE
    for n_out in (1, 2, tile - 1, tile, tile + 1, 3 * tile + 17, 2 * detector_mod.BLOCK + 5):
        n = n_out + det.span - 1
        r = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * 10.0 ** rng.uniform(-4, 4, n)
        r[n // 3:n // 3 + 500] = 0                      # silence: zero energy windows
        r = r.astype(np.complex64)
        want = _metric(det, r, False, monkeypatch)
        got = _metric(det, r, True, monkeypatch)
        assert want[0].size == n_out
        for g, w in zip(got, want):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
    rows = (rng.standard_normal((3, 5000)) + 1j * rng.standard_normal((3, 5000))).astype(np.complex64)
    for g, w in zip(_metric(det, rows, True, monkeypatch), _metric(det, rows, False, monkeypatch)):
        np.testing.assert_array_equal(g, w)


def test_kernel_window_sums_are_the_window_sums(monkeypatch):
    """window_sums against the definition (float64 sums of the window's samples) and the numpy path's bits, one
    and two lanes, windows of 1 .. 300 samples (one to eight binary blocks)."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal(5000).astype(np.float32)
    c = (rng.standard_normal(5000) + 1j * rng.standard_normal(5000)).astype(np.complex64)
    for w1, w2 in ((1, 2), (3, 48), (80, 144), (255, 300)):
        n_out = 5000 - 700 - w2 + 1
        for arr in (a, c):
            ws = detector_mod.WindowSet([(0, w1), (700, w2)], 2 if arr is c else 1)
            out = np.empty((2, n_out), arr.dtype)
            detector_mod.window_sums(arr, ws, n_out, out)
            x = arr.astype(np.complex128)
            csum = np.concatenate([[0], np.cumsum(x)])
            for row, (o, w) in zip(out, ((0, w1), (700, w2))):
                want = csum[o + w:o + w + n_out] - csum[o:o + n_out]
                np.testing.assert_allclose(row, want, rtol=0, atol=1e-4 * w)
                blocks = detector_mod._binary_blocks(w)          # and the numpy path's additions, to the bit
                ref = np.empty(n_out, arr.dtype)
                detector_mod._window_sum(detector_mod._block_sums(arr, {k for k, _ in blocks}), blocks, o, ref)
                np.testing.assert_array_equal(row, ref)


def test_receiver_frames_equal_with_and_without_kernel(monkeypatch):
    """Frames of varying kinds and lengths with gaps, CFO and noise, in blocks that cut frames: every field of every
    frame is the same with the kernel and with the numpy path."""
    cfg = OfdmConfig.preset("wifi64")
    x = mixed_frames(FrameBuilder(cfg), np.random.default_rng(5), 12, 3000, 3, 2000)
    got = {}
    for kernel in (False, True):
        monkeypatch.setattr(detector_mod, "USE_KERNEL", kernel)
        rx = Receiver(cfg)
        got[kernel] = [f for a in range(0, x.size, 7001) for f in rx.process(x[a:a + 7001], a)]
    assert len(got[True]) == len(got[False]) == 12
    for f, g in zip(got[True], got[False]):
        assert (f.seq, f.kind, f.t_start, f.crc_ok, f.payload) == (g.seq, g.kind, g.t_start, g.crc_ok, g.payload)
        assert (f.snr_db, f.cfo_hz, f.noise_power) == (g.snr_db, g.cfo_hz, g.noise_power)
        assert (f.header, f.n_samples) == (g.header, g.n_samples)
        for name in ("values", "noise_var", "symbols", "symbol_noise_var", "channel"):
            a, b = getattr(f, name), getattr(g, name)
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_array_equal(a, b)


def test_window_sums_refuses_a_set_made_for_other_lanes():
    ws = detector_mod.WindowSet([(0, 3), (10, 5)], 1)
    with pytest.raises(ValueError, match="complex64 .2 lanes.: the window set was made for 1 lanes"):
        detector_mod.window_sums(np.zeros(64, np.complex64), ws, 8, np.empty((2, 8), np.complex64))


def test_kernel_forced_without_numba_is_an_error(monkeypatch):
    monkeypatch.setattr(detector_mod, "_KERNEL", [None])
    monkeypatch.setattr(detector_mod, "USE_KERNEL", True)
    with pytest.raises(RuntimeError, match="numba is not installed"):
        SchmidlCoxDetector(OfdmConfig.preset("wifi64")).metric(np.zeros(1000, np.complex64))
