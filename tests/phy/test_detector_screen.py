"""The detector's screen (``SchmidlCoxDetector.screen``: one fused numba pass, float64 prefix sums) and the scan's
metric built on it (``metric_screened``): the kernel's mask equals the numpy reference (``screen_numpy``) bit for
bit; the mask holds every position where the exact float32 metric crosses the threshold, with the float64 statistic
within a small share of the margin of the exact one; ``metric_screened`` equals ``metric`` wherever it evaluates and
the scan's decisions (first crossing, peak, received frames) are the same with and without the screen."""

from __future__ import annotations

import numpy as np
import pytest

import phy.detector as detector_mod
from phy.detector import SchmidlCoxDetector, screen_numpy
from phy.frame import FrameBuilder
from phy.ofdm import OfdmConfig
from phy.receiver import Receiver
from tests.phy.chan import mixed_frames

needs_numba = pytest.mark.skipif(not detector_mod.kernel_available(), reason="numba is not installed")


def _stream(rng, cfg, n_frames=4, gap=3000, snr_db=5.0, dyn=False):
    """Frames of random kinds with noise gaps, CFO and AWGN; with ``dyn`` each stretch is scaled by 10^U(-4, 4)
    and a stretch is silent (exact zeros)."""
    fb = FrameBuilder(cfg)
    parts = []
    for i in range(n_frames):
        parts.append(np.zeros(int(rng.integers(100, gap)), np.complex64))
        parts.append(fb.build_digital(rng.bytes(int(rng.integers(1, 300))), seq=i, modem="qpsk", code_rate=None))
    x = np.concatenate(parts + [np.zeros(gap, np.complex64)])
    x = x * np.exp(2j * np.pi * 0.3 * np.arange(x.size) / cfg.fft_size)
    s = np.sqrt(10 ** (-snr_db / 10) / 2)
    x = x + s * (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size))
    if dyn:
        edges = np.sort(rng.integers(0, x.size, 12))
        for a, b in zip(edges[:-1], edges[1:]):
            x[a:b] *= 10.0 ** rng.uniform(-4, 4)
        x[edges[3]:edges[3] + 700] = 0
    return x.astype(np.complex64)


def _t64(det, r):
    """T by its definition in float64: each window summed on its own (complex128; reference only)."""
    r = r.astype(np.complex128)
    n_out = r.size - det.span + 1
    win = np.lib.stride_tricks.sliding_window_view
    power = np.abs(r) ** 2
    out = np.zeros(n_out)
    for lag, off, w, k in ((det.lag1, 0, det.w1, det.screen_k[0]), (det.lag2, det.off2, det.w2, det.screen_k[1])):
        prod = np.conj(r[:r.size - lag]) * r[lag:]
        p = win(prod[off:], w)[:n_out].sum(axis=1)
        e = win(power[off:], w + lag)[:n_out].sum(axis=1)
        out += np.where(e > 0, k * np.abs(p) ** 2 / np.where(e > 0, e, 1) ** 2, 0)
    return out


@needs_numba
@pytest.mark.parametrize("preset", ["wifi64", "wide256"])
def test_screen_kernel_equals_numpy_reference_bit_for_bit(preset):
    cfg = OfdmConfig.preset(preset)
    rng = np.random.default_rng(11)
    for pfa in (1e-5, 0.05):
        det = SchmidlCoxDetector(cfg, pfa)
        tile = detector_mod.SCREEN_TILE
        for n_out in (1, 2, tile - 1, tile, tile + 1, 3 * tile + 17):
            r = _stream(rng, cfg, 1, 400, dyn=True)[:n_out + det.span - 1]
            r = np.pad(r, (0, n_out + det.span - 1 - r.size))
            mask, count = det.screen(r)
            want = screen_numpy(r, det, det.screen_threshold)
            assert mask.dtype == bool and mask.size == n_out
            np.testing.assert_array_equal(mask, want)
            assert count == int(want.sum())
        r = _stream(rng, cfg, 3, dyn=True)
        mask, count = det.screen(r)
        np.testing.assert_array_equal(mask, screen_numpy(r, det, det.screen_threshold))
        assert 0 < count < mask.size


def test_screen_holds_every_crossing_with_the_float_error_far_inside_the_margin():
    """The numpy reference flags every position where the exact (float32) metric exceeds the threshold, at the
    default and at a low threshold (pfa 0.05 per position: thousands of crossings), over noise, frames, 10^±4
    amplitude steps and silence; and |T32 - T64| (the float32 metric against its float64 definition) stays below
    1/500 of the margin near the threshold."""
    for preset in ("wifi64", "wide256"):
        cfg = OfdmConfig.preset(preset)
        rng = np.random.default_rng(2)
        r = _stream(rng, cfg, 3, dyn=True)
        for pfa in (1e-5, 0.05):
            det = SchmidlCoxDetector(cfg, pfa)
            T = det.metric(r)[0].astype(np.float64)
            mask = screen_numpy(r, det, det.screen_threshold)
            cross = T > det.threshold
            assert cross.sum() > (500 if pfa == 0.05 else 50)
            assert not (cross & ~mask).any()
            margin = det.threshold - det.screen_threshold
            t64 = _t64(det, r)
            near = t64 < 3 * det.threshold             # the margin matters only near the threshold
            # measured: max 2.3e-5 (wide256), 1.4e-5 (wifi64) against margins of 0.057 (pfa 0.05) and 0.152 (1e-5)
            assert np.abs(T - t64)[near].max() < 2e-3 * margin


@needs_numba
def test_metric_screened_is_the_metric_where_it_evaluates():
    cfg = OfdmConfig.preset("wifi64")
    det = SchmidlCoxDetector(cfg)
    rng = np.random.default_rng(4)
    r = _stream(rng, cfg, 6, snr_db=3.0, dyn=True)
    T, P1, P2 = det.metric(r)
    Ts, P1s, P2s = det.metric_screened(r)
    mask, _ = det.screen(r)
    assert Ts.dtype == np.float32 and P1s.dtype == P2s.dtype == np.complex64 and Ts.size == T.size
    np.testing.assert_array_equal(Ts[mask], T[mask])
    np.testing.assert_array_equal(P1s[mask], P1[mask])
    np.testing.assert_array_equal(P2s[mask], P2[mask])
    ev = Ts != 0
    np.testing.assert_array_equal(Ts[ev], T[ev])               # evaluated beyond the mask: exact values too
    assert (T[~ev] <= det.threshold).all() and (Ts[~ev] == 0).all() and (P1s[~ev] == 0).all()
    assert det.first_candidate(Ts) == det.first_candidate(T) is not None
    rows = np.stack([r[a:a + 5000] for a in (0, 3000, 9000)])
    for got, full in zip(det.metric_screened(rows), det.metric(rows)):
        assert got.shape == full.shape
    assert [det.first_candidate(t) for t in det.metric_screened(rows)[0]] == \
        [det.first_candidate(t) for t in det.metric(rows)[0]]
    noise = (rng.standard_normal(50000) + 1j * rng.standard_normal(50000)).astype(np.complex64)
    Tn = det.metric_screened(noise)[0]
    assert not Tn.flags.writeable and not Tn.any()               # noise: nothing flagged, shared zeros


@needs_numba
def test_receiver_frames_equal_with_and_without_screen(monkeypatch):
    """Varying kinds and lengths, gaps, dynamic range, blocks that cut frames: every frame and counter is the same
    with the screen and with the exact metric everywhere."""
    cfg = OfdmConfig.preset("wifi64")
    x = mixed_frames(FrameBuilder(cfg), np.random.default_rng(9), 16, 4000, 4, 3000)
    got, stats = {}, {}
    for screen in (False, True):
        monkeypatch.setattr(detector_mod, "SCREEN", screen)
        for block in (7001, 1 << 18):
            rx = Receiver(cfg)
            got[screen, block] = [f for a in range(0, x.size, block) for f in rx.process(x[a:a + block], a)]
            stats[screen, block] = rx.stats
    for block in (7001, 1 << 18):
        a, b = got[True, block], got[False, block]
        assert len(a) == len(b) == 16 and stats[True, block] == stats[False, block]
        for f, g in zip(a, b):
            assert (f.seq, f.t_start, f.crc_ok, f.payload, f.snr_db, f.cfo_hz) == \
                (g.seq, g.t_start, g.crc_ok, g.payload, g.snr_db, g.cfo_hz)
            for name in ("values", "symbols", "channel"):
                u, v = getattr(f, name), getattr(g, name)
                assert (u is None) == (v is None)
                if u is not None:
                    np.testing.assert_array_equal(u, v)


def test_screen_without_numba_is_an_error_and_metric_screened_is_metric(monkeypatch):
    det = SchmidlCoxDetector(OfdmConfig.preset("wifi64"))
    monkeypatch.setattr(detector_mod, "_KERNEL", [None, None])
    x = (np.arange(3000) % 7).astype(np.complex64)
    with pytest.raises(RuntimeError, match="screen needs numba"):
        det.screen(x)
    for got, want in zip(det.metric_screened(x), det.metric(x)):
        np.testing.assert_array_equal(got, want)
