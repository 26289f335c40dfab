"""Streaming OFDM receiver: :class:`Receiver` turns a continuous complex64 sample stream into :class:`RxFrame` objects.

The chain, one stage per module of :mod:`phy.rx` (each states its algorithm, statistics and array shapes)::

    samples -> detection -> acquisition -> OFDM demodulation -> channel estimation -> header -> [frame complete]
               (scan)       (timing,       (FFT windows)        (LS + significant      (Golay,
                             CFO)                                 taps, noise, SNR)      CRC-16)
            -> OFDM demodulation -> phase tracking -> equalization -> demapping / decoding -> RxFrame
               (payload FFT)        (pilots, DD)      (MMSE / ZF,      (LLRs, LDPC, CRC-32;
                                                       effective noise)  analog values)

This module keeps only the stream: the buffer, the loop over candidates and the batching (speed; each frame gets the
numbers it gets alone, to float32 rounding): the metric is evaluated lazily from the scan position; a candidate is
acquired together with the candidates that would follow it (:meth:`phy.rx.detection.DetectionScan.speculate`: frames
as long as the last one; ``speculate_all`` while lengths vary), and the frames completed in one ``process`` call are
demodulated together whatever their kinds and lengths. ``defer_decode=True`` leaves LDPC to :func:`decode_frames`.

Bad input (pure noise, truncated frames, corrupted headers, NaN/inf samples, empty blocks) is counted in
:attr:`Receiver.stats` and dropped. ``process`` raises only ``ValueError`` for a ``samples`` argument that is not a
1-D numeric array, or a ``t0`` that is not an integer.
"""

from __future__ import annotations

import math

import numpy as np

from phy.detector import SchmidlCoxDetector
from phy.frame import frame_format
from phy.ofdm import OfdmConfig
from phy.rx.acquisition import Acquisition, LtsAcquisition, cfo_crlb_hz, genie_acquisition
from phy.rx.channel_estimation import LtsChannelEstimator
from phy.rx.demapping import PayloadDecoder, RxFrame, decode_frames, frames_out
from phy.rx.detection import CHUNK_MAX, CHUNK_MIN, DetectionScan
from phy.rx.equalization import effective_noise, equalize
from phy.rx.header import decode_header_symbols
from phy.rx.ofdm_demodulation import OfdmDemodulator, Segments, cis
from phy.rx.phase_tracking import PilotTracker

__all__ = ["Receiver", "RxFrame", "cfo_crlb_hz", "decode_frames"]

#: decision-directed phase refinement is applied below this estimated linear SNR (10 dB)
DD_MAX_SNR = 10.0
#: frames of the last length in a row before the speculation guesses lengths again after a frame of another length
IRREGULAR_HOLD = 16
#: longer blocks are processed in pieces of this many samples (measured fastest: wifi64, 2^16 .. 2^20)
PROCESS_BLOCK = 1 << 18

STAT_KEYS = ("samples", "nonfinite_samples", "gaps", "candidates", "detected", "rejected", "header_crc_fail",
             "header_invalid", "truncated", "frames", "payload_crc_fail", "payload_error")

class Receiver:
    """Streaming OFDM receiver (see the module docstring and :mod:`phy.rx` for the stages).

    Parameters
    ----------
    cfg : OfdmConfig
    false_alarm_rate, fa_window : float, int
        Expected false frames per ``fa_window`` samples (a typical frame length) of pure noise (default 1e-4 / 4096).
    equalizer : "mmse" | "zf"
        Analog payloads: MMSE (default) or ZF; digital payloads always use the unbiased (ZF) estimate.
    detect_pfa : float
        Per-sample null probability of the first-stage detector (candidates are verified afterwards).
    max_cfo_subcarriers : float
        Largest |CFO| searched, in subcarrier spacings (>= 0.5).
    pilot_smoothing : int
        1 (default): pilot phases follow the frame-wide linear model only. Odd w >= 3: the residual common phase is
        also tracked per symbol, averaged over w symbols (use with phase noise).
    max_payload_symbols : int
        Headers announcing longer payloads are rejected as invalid.
    tap_threshold : float
        Channel taps are kept when their matched-filter power exceeds this multiple of its noise variance (9: a
        pure-noise tap passes with probability e^-9 = 1.2e-4); 0 keeps all ``cp`` taps.
    decision_directed : bool
        Digital payloads: refine the common phase with the data decisions after pilot tracking (default True;
        applied when the estimated SNR is below 10 dB, where the pilots alone leave a costly phase error).
    defer_decode : bool
        LDPC-coded digital frames come back undecoded (``payload`` None, ``crc_ok`` False, ``extra["llr"]``) for
        :func:`decode_frames` (one batched LDPC call per payload shape over any receivers' frames). Default False.
    header_repeat : int
        Header copies per frame, as the transmitter's ``FrameBuilder`` (default 1); soft values add: +10 log10 R dB.
    genie : dict or None
        Test hook (:func:`phy.rx.acquisition.genie_acquisition`): known channel, noise, CFO and frame starts are used
        instead of the estimates; no pilot tracking.

    ``process(samples, t0=None) -> list[RxFrame]``; ``flush() -> list[RxFrame]``; ``stats`` dict of counters.
    """

    def __init__(self, cfg: OfdmConfig, false_alarm_rate: float = 1e-4, *, equalizer: str = "mmse",
                 fa_window: int = 4096, detect_pfa: float = 1e-5, max_cfo_subcarriers: float = 2.0,
                 pilot_smoothing: int = 1, max_payload_symbols: int = 1 << 16, tap_threshold: float = 9.0,
                 decision_directed: bool = True, defer_decode: bool = False, genie: dict | None = None,
                 header_repeat: int = 1):
        if not isinstance(cfg, OfdmConfig):
            raise TypeError(f"cfg must be an OfdmConfig, got {type(cfg).__name__}")
        if not 0 < false_alarm_rate < 1:
            raise ValueError(f"false_alarm_rate = {false_alarm_rate!r}: expected 0 < rate < 1 (per fa_window)")
        if equalizer not in ("mmse", "zf"):
            raise ValueError(f"equalizer = {equalizer!r}: expected 'mmse' or 'zf'")
        if not max_cfo_subcarriers >= 0.5:
            raise ValueError(f"max_cfo_subcarriers = {max_cfo_subcarriers!r}: expected >= 0.5")
        if int(pilot_smoothing) < 1 or int(pilot_smoothing) % 2 == 0:
            raise ValueError(f"pilot_smoothing = {pilot_smoothing!r}: expected an odd integer >= 1")
        self.cfg, self.fmt, self.equalizer, self.genie = cfg, frame_format(cfg, header_repeat), equalizer, genie
        fmt = self.fmt
        self.false_alarm_rate, self.max_cfo = float(false_alarm_rate), float(max_cfo_subcarriers)
        self.pilot_smoothing, self.max_payload_symbols = int(pilot_smoothing), int(max_payload_symbols)
        self.tap_threshold, self.decision_directed = float(tap_threshold), bool(decision_directed)
        self.defer_decode = bool(defer_decode)
        self.backoff = max(1, cfg.cp_len // 4)        # FFT windows start this many samples inside the CP
        # the stages
        self.detector = SchmidlCoxDetector(cfg, detect_pfa)
        self.scan = DetectionScan(self.detector)
        self.acquisition = LtsAcquisition(cfg, fmt, self.max_cfo, self.false_alarm_rate, fa_window, detect_pfa)
        self.demodulator = OfdmDemodulator(cfg, fmt, self.backoff)
        self.channel_estimator = LtsChannelEstimator(cfg, self.backoff, self.tap_threshold, fmt.lts_grid)
        self.tracker = PilotTracker(cfg, fmt, self.pilot_smoothing)
        self.decoder = PayloadDecoder(fmt, self.max_payload_symbols, self.defer_decode)
        self.search = self.acquisition.search
        self.lts_threshold = self.acquisition.lts_threshold
        k = np.fft.fftfreq(cfg.fft_size, 1.0 / cfg.fft_size)
        self._backoff_phase = np.exp(2j * np.pi * k * self.backoff / cfg.fft_size)
        self.reset()

    # ------------------------------------------------------------------ stream state
    def reset(self) -> None:
        """Forget the stream and zero the counters."""
        self._buf = np.zeros(0, np.complex64)
        self._t0 = self._scan = 0   # sample times of _buf[0] and of the next candidate position to examine
        self._next_t, self._pending = None, None  # expected t0 of the next block; (candidate time, p1, p2) waiting
        self._acq_cache = None  # (candidate time, Acquisition, n_pay) of a frame whose payload is still arriving
        self._failed: list[int] = []  # frame starts whose header failed recently (not re-counted)
        self._ready: list[tuple[Acquisition, int]] = []  # complete frames (acquisition, payload symbols) to demodulate
        self._spec: dict[int, tuple] = {}  # candidate time -> (P1, P2, Acquisition | None, buffer t0) acquired ahead
        self._len_guess = 0      # length of the last frame received (guess for the next one, see _acquire)
        self._irregular = 0      # > 0: lengths vary, speculate without a length guess (frames to go)
        self.scan.reset()
        self.stats = {k: 0 for k in STAT_KEYS}

    def _drop_stream(self) -> None:
        self._pending, self._acq_cache, self._spec = None, None, {}
        self.scan.drop()

    def flush(self) -> list[RxFrame]:
        """End of stream: a frame still waiting for samples is counted as truncated; the buffer is cleared."""
        if self._pending is not None:
            self.stats["truncated"] += 1
        self._drop_stream()
        self._buf = np.zeros(0, np.complex64)
        self._t0 = self._scan = self._next_t if self._next_t is not None else 0
        return []

    def process(self, samples, t0: int | None = None) -> list[RxFrame]:
        """Feed the next block of the stream; returns the frames completed in it (possibly none).

        Parameters
        ----------
        samples : complex ndarray [M]
            Any M >= 0; NaN/inf samples are zeroed and counted.
        t0 : int or None
            Sample time of ``samples[0]``; None continues the stream. A jump starts a new stream (counted as a gap).

        Returns
        -------
        list of RxFrame
            In stream order.
        """
        arr = np.asarray(samples)
        if arr.ndim != 1:
            raise ValueError(f"samples must be a 1-D array of complex samples, got shape {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise ValueError(f"samples must be numeric (complex or real), got dtype {arr.dtype}")
        if t0 is not None and (isinstance(t0, bool) or not isinstance(t0, (int, np.integer))):
            raise ValueError(f"t0 = {t0!r}: expected an integer sample time or None")
        if arr.size == 0:
            return []
        if arr.size > PROCESS_BLOCK:        # the same frames, with the working arrays kept inside the CPU caches
            return [f for a in range(0, arr.size, PROCESS_BLOCK)
                    for f in self.process(arr[a:a + PROCESS_BLOCK], t0 if a == 0 else None)]
        with np.errstate(all="ignore"):
            # values beyond float32 range become inf and are zeroed below; the block is copied into the buffer
            # anyway, so complex64 input is not copied here (a finite sum rules out non-finite samples cheaply)
            x = arr if arr.dtype == np.complex64 else arr.astype(np.complex64)
            if not np.isfinite(x.sum()):
                bad = ~np.isfinite(x)
                if bad.any():
                    self.stats["nonfinite_samples"] += int(bad.sum())
                    x = x.copy() if x is arr else x
                    x[bad] = 0
            if t0 is None:
                t0 = self._next_t if self._next_t is not None else 0
            t0 = int(t0)
            if self._next_t is None or t0 != self._next_t:
                if self._next_t is not None:
                    self.stats["gaps"] += 1
                    if self._pending is not None:
                        self.stats["truncated"] += 1
                self._drop_stream()
                self._buf = x.copy()
                self._t0 = self._scan = t0
            else:
                self._buf = np.concatenate([self._buf, x])
            self._next_t = t0 + x.size
            self.stats["samples"] += x.size
            self._ready = []
            self._scan_frames()
            frames = self._decode_ready()
            # keep only what later stages can still need
            keep_from = (self._pending[0] if self._pending is not None else self._scan) - 2 * self.cfg.symbol_len
            cut = keep_from - self._t0
            if cut > 0:
                self._buf = self._buf[cut:]
                self._t0 += cut
        return frames

    # ------------------------------------------------------------------ the loop
    def _scan_frames(self) -> None:
        """Candidates in stream order: each is acquired (:meth:`_handle`); a frame moves the scan to its end."""
        det, scan, buf, t0 = self.detector, self.scan, self._buf, self._t0
        while True:
            if self._pending is not None:
                t_cand, p1, p2 = self._pending
                res = self._handle(t_cand - self._t0, p1, p2)
                if res is None:
                    return                   # wait for more samples
                self._pending = None
                self._scan = max(self._scan, res)
                continue
            start = max(0, self._scan - t0)
            t_abs = t0 + start
            avail = t0 + buf.size - det.span + 1 - t_abs     # positions evaluable now
            if avail <= 0:
                return
            # the speculation already searched from at most here and found its first threshold crossing at or after
            # this position: the scan would find the very same candidate (the metric depends only on the samples)
            spec = scan.found
            while spec and spec[0][1] < t_abs:
                spec.pop(0)
            if spec and spec[0][0] <= t_abs:
                _, _, t_c, p1, p2 = spec.pop(0)
                scan.chunk = CHUNK_MIN
                self.stats["candidates"] += 1
                self._pending = (t_c, p1, p2)
                self._scan = t_c + 1
                continue
            # positions inside a decoded frame are skipped by the scan and never evaluated
            n = min(avail, scan.cached_positions(t_abs) or scan.chunk)   # what is computed already first
            n, (T, P1, P2), found = scan.search(buf, t0, t_abs, n, avail)
            if found is None:
                self._scan = t_abs + n
                scan.chunk = min(2 * scan.chunk, CHUNK_MAX)
                continue
            scan.chunk = CHUNK_MIN
            c, first = found
            if first + det.peak_window > T.size:
                self._scan = t_abs + first      # peak window incomplete: wait for more samples
                return
            self.stats["candidates"] += 1
            self._pending = (t_abs + c, complex(P1[c]), complex(P2[c]))
            self._scan = t_abs + c + 1

    def _handle(self, i0: int, p1: complex, p2: complex):
        """Acquire the candidate at buffer index ``i0`` and check its header; queue a complete frame in
        ``self._ready``. Returns None (need more samples) or the next scan time."""
        cfg, fmt = self.cfg, self.fmt
        t_cand = self._t0 + i0
        cached = self._acq_cache
        if cached is not None and cached[0] == t_cand:
            _, acq, n_pay = cached
            acq.shift(acq.t_start - self._t0 - acq.start)       # the buffer was trimmed meanwhile
        else:
            if i0 + fmt.preamble_len + fmt.header_len + self.search > self._buf.size:
                return None
            acq = self._acquire(i0, p1, p2)
            if acq is None:   # not verified: look again just after this peak's plateau
                self.stats["rejected"] += 1
                return t_cand + cfg.cp_len + 1
            t_acq = self._t0 + acq.start
            if t_acq in self._failed:        # this very preamble was already tried: keep scanning
                return t_cand + cfg.cp_len + 1
            self.stats["detected"] += 1
            if not acq.hdr_done:    # genie: header FFT with the known phase, no pilot correction
                acq.y_hdr, ph = self.demodulator.symbols_one(self._buf, acq.start, acq.eps, acq.ref, 0, fmt.n_hdr_symbols)
                acq.header = decode_header_symbols(fmt, acq.y_hdr[None], acq.H[None], ph[None])[0]
            hdr, y_hdr = acq.header, acq.y_hdr
            plan = None if hdr is None else self.decoder.plan(hdr)
            n_pay = None if plan is None else plan[2]
            if n_pay is None:
                self.stats["header_crc_fail" if hdr is None else "header_invalid"] += 1
                self._failed.append(t_acq)
                del self._failed[:-8]
                return t_cand + cfg.cp_len + 1
            length = fmt.frame_len(n_pay)
            if self._len_guess:
                self._irregular = IRREGULAR_HOLD if length != self._len_guess else max(self._irregular - 1, 0)
            self._len_guess = length
            acq.header, acq.y_hdr, acq.t_start = hdr, y_hdr, self._t0 + acq.start
        end = acq.start + fmt.frame_len(n_pay)
        if end > self._buf.size:
            self._acq_cache = (t_cand, acq, n_pay)
            return None
        self._acq_cache = None
        self._ready.append((acq, n_pay))
        self.stats["frames"] += 1
        return self._t0 + end - cfg.cp_len

    # ------------------------------------------------------------------ batching: acquisition and header
    def _acquire(self, i0: int, p1: complex, p2: complex) -> Acquisition | None:
        """Acquisition of the candidate at buffer index ``i0`` (None: not verified), batched with the candidates
        that would follow it if it is a frame as long as the last one; the scan later takes theirs from
        ``self._spec`` when it arrives at the same candidate with the same metric values."""
        if self.genie is not None:
            return genie_acquisition(self.cfg, self.genie, i0, self._t0, self.backoff)
        hit = self._spec.pop(self._t0 + i0, None)
        if hit is not None and hit[0] == p1 and hit[1] == p2:
            acq, t0 = hit[2], hit[3]
            if acq is not None:                 # buffer indices of that time -> now
                acq.shift(t0 - self._t0)
            return acq
        cands = [(i0, p1, p2)]
        if self._len_guess:
            # a speculated candidate after this one means the last guess of frame lengths skipped this frame; frames
            # of other lengths than the last mean it will: resume instead where the shortest possible frame would
            # end, so that no frame is skipped, with the metric of the rest of the buffer in one call
            if any(t > self._t0 + i0 for t in self._spec):
                self._irregular = IRREGULAR_HOLD
            need, back = self.fmt.preamble_len + self.fmt.header_len + self.search, self.cfg.cp_len + self.search
            if self._irregular:
                cands += self.scan.speculate_all(self._buf, self._t0, i0, self.fmt.frame_len(1) - back, need)
            else:
                cands += self.scan.speculate(self._buf, self._t0, i0, self._len_guess - back, need, True)
        acqs = self._acquire_batch(cands)
        self._spec = {self._t0 + c[0]: (c[1], c[2], a, self._t0) for c, a in zip(cands[1:], acqs[1:])}
        return acqs[0]

    def _acquire_batch(self, cands: list[tuple[int, complex, complex]]) -> list[Acquisition | None]:
        """Acquisition -> OFDM demodulation of LTS and header -> channel estimate -> header, for F candidates
        ``(buffer index, P1, P2)`` at once (each result is the one the candidate gets alone)."""
        out: list[Acquisition | None] = [None] * len(cands)
        verified, start, eps = self.acquisition.acquire(self._buf, cands)
        if not verified:
            return out
        Y = self.demodulator.preamble(self._buf, start, eps)                  # [F, 2 + n_hdr, N]
        H, s2, snr, err_var = self.channel_estimator.estimate(Y[:, :2])
        ref = start + self.demodulator.lts_offset
        # header: pilot common phase, BPSK soft values Re(conj(H) Y), soft-ML Golay, CRC-16
        ph = self.demodulator.residual_phase(start, ref, eps, 0, self.fmt.n_hdr_symbols)
        hdrs = decode_header_symbols(self.fmt, Y[:, 2:], H, self.tracker.header_phase(Y[:, 2:], H, ph))
        for j, (f, st, ep, s2_j, snr_j, ref_j) in enumerate(zip(verified, start.tolist(), eps.tolist(), s2.tolist(),
                                                                snr.tolist(), ref.tolist())):
            out[f] = Acquisition(start=st, eps=ep, H=H[j], sigma2=s2_j, err_var=err_var[j], snr=snr_j, ref=ref_j,
                                 y_hdr=Y[j, 2:], header=hdrs[j], hdr_done=True)
        return out

    # ------------------------------------------------------------------ batching: payloads
    def _decode_ready(self) -> list[RxFrame]:
        """OFDM demodulation -> phase tracking -> equalization -> demapping / decoding of the frames queued by
        :meth:`_handle`, all in one pass whatever their kinds and lengths (rows of symbols, frame after frame)."""
        ready, self._ready = self._ready, []
        if not ready:
            return []
        cfg, fmt, n_hdr = self.cfg, self.fmt, self.fmt.n_hdr_symbols
        acqs = [a for a, _ in ready]
        hdrs = [a.header for a in acqs]
        genie = acqs[0].genie
        start, ref, eps = (np.array([getattr(a, k) for a in acqs]) for k in ("start", "ref", "eps"))
        seg = Segments([n_pay for _, n_pay in ready])
        Y, ph = self.demodulator.symbol_rows(self._buf, start, eps, ref, n_hdr, seg)    # [T, N], [T]
        H = np.stack([a.H for a in acqs])
        Hd = H[:, cfg.data_bins]
        h2 = Hd.real * Hd.real + Hd.imag * Hd.imag                                   # float32 [F, n_data]
        sigma2 = np.array([a.sigma2 for a in acqs])
        err_var = np.stack([a.err_var for a in acqs])[:, cfg.data_bins]
        Yd = np.take(Y, cfg.data_bins, axis=1)
        if genie:
            Yd *= cis(-ph)[:, None]
            noise = effective_noise(sigma2, err_var)
        else:
            pb = cfg.pilot_bins
            ph_hdr = self.demodulator.residual_phase(start, ref, eps, 0, n_hdr)
            cpe, slope = self.tracker.track_frames(H[:, pb], np.stack([a.y_hdr for a in acqs])[:, :, pb], ph_hdr,
                                                   Y[:, pb], ph, seg)
            self.tracker.derotate(Yd, cpe, slope)
            noise = effective_noise(sigma2, err_var, h2, self.tracker.phase_var(sigma2, H[:, pb], seg.counts + n_hdr))
        h2s = np.maximum(h2, 1e-30).astype(np.float32)
        analog = np.array([h.kind == "analog" for h in hdrs])
        X, nv_k = equalize(Yd, Hd, h2s, noise, analog & (self.equalizer == "mmse"), seg)
        n_cells = np.array([self.decoder.plan(h)[0] for h in hdrs])
        # (above ~10 dB the frame-wide pilot fit is already accurate to ~0.02 rad: skip the extra pass)
        if not genie and self.decision_directed:
            low = ~analog & np.array([a.snr < DD_MAX_SNR for a in acqs])
            self.tracker.refine(X, h2s, [h.modem for h in hdrs], low, seg, n_cells)
        decoded = self.decoder.decode(hdrs, X, nv_k, seg, n_cells, self.stats)
        return frames_out(hdrs, decoded, t_start=(start + self._t0).tolist(),
                          snr_db=[10 * math.log10(a.snr) for a in acqs], cfo_hz=(eps * cfg.subcarrier_spacing).tolist(),
                          channel=list((H * self._backoff_phase).astype(np.complex64)),
                          n_samples=(seg.counts * cfg.symbol_len + fmt.frame_len(0)).tolist(),
                          noise_power=sigma2.tolist())
