"""Streaming OFDM receiver: :class:`Receiver` turns a continuous complex64 sample stream into :class:`RxFrame` objects.

Stages (one readable chain; only the first runs on the samples between frames)
-----------------------------------------------------------------------------
1. **Detection** (:class:`phy.detector.SchmidlCoxDetector`): Schmidl–Cox + LTS-periodicity statistic ``T`` from
   window sums, threshold from its Gamma(2,1) null (per-sample false-alarm ``detect_pfa``), peak picking.
2. **Acquisition** per candidate ``d0``: fractional CFO from ``angle(P1)/pi`` (subcarrier units, ambiguous by 2) and
   ``angle(P2)/(2 pi)`` (ambiguous by 1); the integer hypotheses ``eps_a + 2j`` within ``max_cfo_subcarriers`` are
   resolved, together with **fine timing**, by the normalized cross-correlation ``rho^2`` of the CFO-corrected stream
   with the known LTS pair over ``±cp`` samples. ``rho^2`` of a fixed template of M samples against white circular
   Gaussian noise is exactly Beta(1, M-1) distributed. Candidates were selected for lag-N periodicity of this very
   segment, and a lag-N periodic segment lives in an N-dimensional subspace, so the receiver uses the conservative
   M = N (not 2N): ``max rho^2 > g`` over K (timing, CFO) trials has null probability ``<= K (1-g)^(N-1)``; ``g`` is
   chosen so that the expected number of false detections per ``fa_window`` samples of noise is
   ``<= false_alarm_rate`` (at most ``fa_window * detect_pfa`` candidates per window, each
   passing with probability ``K (1-g)^(N-1)``). Timing is then moved to the earliest LTS-correlation path within
   cp/2 before the peak holding >= 30 % of it (first-path timing for multipath).
3. **Fine CFO** (Moose / ML for a repeated block): ``eps = angle(sum r*(n) r(n+N))/(2 pi)`` over the ``N + cp``
   periodic LTS products, unwrapped onto the chosen integer hypothesis. Cramér–Rao bound for the unknown periodic
   block over the 2N + cp samples it uses (per-sample SNR g): ``var(eps) >= 1 / ((2 pi)^2 (N + 3 cp) g)``
   subcarriers^2, i.e. ``std(f) >= fs / (2 pi N sqrt((N + 3 cp) g))`` (:func:`cfo_crlb_hz`; the estimator
   reaches ~1.1x that at 10 dB).
4. **Channel estimate**: FFT windows start ``b = cp/4`` samples inside the CP. LS on both LTS looks, averaged;
   per-bin noise variance ``sigma^2 = mean |Y1 - Y2|^2 / 2``; the LS estimate is projected onto ``cp`` time-domain
   taps (delays ``-b .. cp-b-1``) by least squares over the used subcarriers, keeping only *significant* taps, found
   by orthogonal matching pursuit: add the tap where the matched filter of the residual, ``g = F^H r / n_used``, is
   strongest while its power exceeds ``tap_threshold`` x its noise variance ``sigma^2 / (2 n_used)`` (a pure-noise
   tap passes with probability ``exp(-tap_threshold)``; the residual removes the band-limited side lobes of the
   strong taps, which a one-shot threshold would keep). This interpolates across DC and the guard band and reduces the
   estimation-error variance from ``sigma^2/2`` (raw LS) to about ``sigma^2/2 * L_kept / n_used``
   (1 tap over AWGN). SNR estimate ``(mean|H_ls|^2 - sigma^2/2) / sigma^2``.
5. **Header**: pilot common-phase correction (smoothed over 3 symbols, no slope), BPSK soft values ``Re(conj(H) Y)``, soft-ML Golay, CRC-16.
6. **Payload**: pilot tracking over the whole frame (header + payload symbols): the pilot phases are fitted by
   least squares to ``a + b s + d (s - s_lts) k`` (common phase linear in the symbol index s: residual CFO; phase
   slope across subcarriers k growing from the LTS: timing drift from a sampling-clock offset), averaging the pilot noise over all
   pilots of the frame (the drift term only where significant); optionally (``pilot_smoothing`` = w >= 3) the residual common phase is tracked per symbol by
   a centered moving average over w symbols (phase noise). Digital payloads: decision-directed refinement of the
   common phase (``a + b s`` fitted to data-symbol correlations with their hard decisions). Then MMSE (default) or
   ZF equalization. Effective noise
   per data subcarrier ``sigma_eff^2 = sigma^2 (1 + L_kept/(2 n_used)) + |H_k|^2 var(phi_k)`` (estimation error +
   pilot-phase error, ``var(phi_k) ~ sigma^2/(2 |H_p|^2) [(1/n_p + k^2/sum k_p^2) / (n_sym/2) + 1/(w n_p)]``).
   Analog: MMSE ``x = P conj(H) Y / (P |H|^2 + sigma_eff^2)`` with error variance
   ``P sigma_eff^2 / (P |H|^2 + sigma_eff^2)`` (``P`` estimated symbol power), or ZF ``Y/H`` with
   ``sigma_eff^2/|H|^2``; then :class:`phy.analog.AnalogMapper` gives per-real-value noise variances. Digital: the
   unbiased estimate ``Y/H`` (for one stream per subcarrier the unbiased MMSE equals ZF) with ``sigma_eff^2/|H|^2``
   into :meth:`QamModem.demodulate_llr`, then :meth:`DigitalCodec.decode`.

Batching (speed; results are those of one frame at a time): detection is evaluated lazily from the scan position;
a candidate is acquired (stages 2-5) together with the candidates that would follow it if the next frames are as
long as the last one received (:meth:`Receiver._speculate`; their detector windows in one batch when the frames also
keep their spacing), and all frames completed in one ``process`` call are demodulated (stage 6) together, per payload
shape. Numpy's per-call cost (~1-3 µs) dominates short frames, so each stage works on all frames of a batch with
array operations: FFT correlations for all timing/CFO hypotheses, tap selection in the tap domain, one gather of
whole rows for the FFT windows. With ``defer_decode=True`` LDPC decoding is left to
:func:`decode_frames`, which batches it over frames from any number of receivers.

Bad input (pure noise, truncated frames, corrupted headers, NaN/inf samples, empty blocks) is counted in
:attr:`Receiver.stats` and dropped. ``process`` raises only ``ValueError`` for a ``samples`` argument that is not a
1-D numeric array, or a ``t0`` that is not an integer.
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from phy.detector import SchmidlCoxDetector
from phy.frame import (
    FrameHeader,
    _codec,
    _modem,
    frame_format,
    golay_codebook,
    golay_decode_soft,
)
from phy.ofdm import OfdmConfig, _fft

#: decision-directed phase refinement is applied below this estimated linear SNR (10 dB)
DD_MAX_SNR = 10.0
#: detector metric chunk (positions) after a candidate, and its limit while nothing is found (doubling)
#: most candidates acquired ahead in one batch
SPECULATE_MAX = 64
CHUNK_MIN, CHUNK_MAX = 768, 1 << 16

STAT_KEYS = ("samples", "nonfinite_samples", "gaps", "candidates", "detected", "rejected", "header_crc_fail",
             "header_invalid", "truncated", "frames", "payload_crc_fail", "payload_error")


def _cis(phase: np.ndarray) -> np.ndarray:
    """exp(j phase) as complex64 via float32 cos/sin (several times faster than complex exp)."""
    ph = np.asarray(phase, dtype=np.float32)
    out = np.empty(ph.shape, np.complex64)
    np.cos(ph, out=out.real)
    np.sin(ph, out=out.imag)
    return out


def _sum3(z: np.ndarray) -> np.ndarray:
    """Centred sum of 3 along the last axis (z[..., s-1] + z[..., s] + z[..., s+1], missing ends left out), same
    shape and dtype as z [..., n_sym]."""
    if z.shape[-1] < 2:
        return z
    zs = z.copy()
    zs[..., 1:] += z[..., :-1]
    zs[..., :-1] += z[..., 1:]
    return zs


def _rows(x: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """x[starts[i]:starts[i] + width] for every i as a new array [len(starts), width] (one gather of whole rows from
    a strided view; every row must lie inside x, which the view's row count enforces)."""
    view = np.lib.stride_tricks.as_strided(x, shape=(max(x.size - width + 1, 0), width),
                                           strides=(x.strides[0], x.strides[0]), writeable=False)
    return view[starts]


@lru_cache(maxsize=1)
def _golay_lookup() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted codeword integers int64 [4096], their info bits uint8 [4096, 12], bit weights int64 [24])."""
    cw = golay_codebook()[0]
    wts = 1 << np.arange(23, -1, -1, dtype=np.int64)
    ints = cw.astype(np.int64) @ wts
    order = np.argsort(ints)
    info = ((order[:, None] >> np.arange(11, -1, -1)[None, :]) & 1).astype(np.uint8)
    return ints[order], info, wts


def _golay_header(fmt, soft: np.ndarray) -> FrameHeader | None:
    """Same result as ``fmt.decode_header(soft)`` (soft-ML Golay), faster: see :func:`_golay_headers`."""
    return _golay_headers(fmt, soft[None, :])[0]


def _golay_headers(fmt, soft: np.ndarray) -> list[FrameHeader | None]:
    """``fmt.decode_header`` (soft-ML Golay + CRC) of F headers, soft float [F, n_hdr_symbols * n_data]. A codeword
    whose 24 hard decisions (no zero soft value) already form a codeword is that codeword's ML decision (the
    correlation sum_j s_j c_j is at most sum_j |s_j|, reached only by c = sign(s)); only the other codewords go
    through the 4096-way correlation."""
    n_frames = soft.shape[0]
    s = soft[:, fmt.hdr_perm].reshape(-1, 24)
    ints, info, wts = _golay_lookup()
    v = (s < 0).astype(np.int64) @ wts
    i = np.minimum(np.searchsorted(ints, v), ints.size - 1)
    ok = ints[i] == v
    zero = s == 0
    if zero.any():                      # a zero soft value leaves the hard decision open: full correlation
        ok &= ~zero.any(axis=1)
    bits = info[i]
    if not ok.all():
        bits[~ok] = golay_decode_soft(s[~ok].reshape(-1)).reshape(-1, 12)
    packed = np.packbits(bits.reshape(n_frames, -1), axis=1)                        # [F, 12] header bytes
    return [FrameHeader.from_bytes(row.tobytes()) for row in packed]


def cfo_crlb_hz(cfg: OfdmConfig, snr: float) -> float:
    """Cramér–Rao bound (standard deviation, Hz) of the CFO from the LTS block samples the fine estimator uses.

    Model: y(n) = s(n mod N) e^{j w n} + noise over the last 2N + cp samples of the LTS block (s unknown,
    per-sample SNR g = snr * n_used / N, ``snr`` the linear per-subcarrier SNR). Projecting out s, an element of s
    seen at times t_1..t_m contributes 2 sum (t_i - mean t)^2 |s|^2 / sigma^2 to the Fisher information of w: cp
    elements are seen three times (4 N^2 each), N - cp twice (N^2 each), so with phase = w N:
    var(phase) >= 1 / ((N + 3 cp) g), i.e. std(f) >= fs / (2 pi N sqrt((N + 3 cp) g)).
    (Two disjoint copies of a W-sample block give the familiar 1/(W g).)
    """
    g = snr * cfg.n_used / cfg.fft_size
    w_eff = cfg.fft_size + 3 * cfg.cp_len
    return float(cfg.sample_rate / (2 * np.pi * cfg.fft_size) / np.sqrt(w_eff * g))


@dataclass
class RxFrame:
    """One received frame.

    Attributes
    ----------
    t_start : int            sample time of the frame's first sample (start of the Schmidl–Cox CP)
    seq : int                sequence number from the header
    kind : str               "analog" | "digital"
    values, noise_var        analog: float32 [L] estimates and per-real-value noise variance; else None
    payload : bytes | None   digital payload (None for analog)
    crc_ok : bool            digital: CRC-32 of the payload; analog: True (the header CRC passed)
    snr_db : float           estimated per-subcarrier SNR (from the LTS)
    cfo_hz : float           estimated carrier frequency offset
    symbols                  complex64 [n_payload_symbols] equalized data symbols
    symbol_noise_var         float32 [n_payload_symbols] per-symbol noise (error) variance
    channel                  complex64 [fft_size] estimated channel per FFT bin (FFT window at the CP end)
    header : FrameHeader     all decoded header fields
    n_samples : int          frame length in samples
    noise_power : float      estimated noise variance per complex sample
    """

    t_start: int
    seq: int
    kind: str
    values: np.ndarray | None
    noise_var: np.ndarray | None
    payload: bytes | None
    crc_ok: bool
    snr_db: float
    cfo_hz: float
    symbols: np.ndarray
    symbol_noise_var: np.ndarray
    channel: np.ndarray
    header: FrameHeader
    n_samples: int
    noise_power: float
    extra: dict = field(default_factory=dict)


@dataclass
class _Acq:
    """Acquisition result for one candidate (indices relative to the buffer)."""

    start: int          # frame start index in the buffer
    eps: float          # CFO in subcarrier spacings
    H: np.ndarray       # complex64 [N] channel per FFT bin (including the backoff phase)
    sigma2: float       # noise variance per bin
    err_var: np.ndarray  # float32 [N] channel-estimation error variance per bin
    snr: float
    header: FrameHeader | None = None
    genie: bool = False
    ref: int = 0        # buffer index of the phase reference (first LTS FFT window)
    y_hdr: np.ndarray | None = None
    hdr_done: bool = False  # header already decoded (batched acquisition)
    t_start: int = 0    # absolute time of ``start`` (buffer indices move when the buffer is trimmed)


class Receiver:
    """Streaming OFDM receiver (see the module docstring for the algorithm and its statistics).

    Parameters
    ----------
    cfg : OfdmConfig
    false_alarm_rate : float
        Expected false frames per ``fa_window`` samples of pure noise (default 1e-4 per 4096 samples).
    equalizer : "mmse" | "zf"
    fa_window : int
        Samples per false-alarm unit (a typical frame length).
    detect_pfa : float
        Per-sample null probability of the first-stage detector (candidates are verified afterwards).
    max_cfo_subcarriers : float
        Largest |CFO| searched, in subcarrier spacings (>= 1).
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
        LDPC-coded digital frames are returned undecoded: ``payload`` None, ``crc_ok`` False and
        ``extra["llr"]`` float32 [n_coded_bits] holding the coded-bit LLRs; :func:`decode_frames` then decodes many
        such frames - from this and other receivers - in one batched LDPC call per payload shape (their CRC failures
        are not counted in ``stats``). Uncoded and analog frames are unaffected. Default False.
    genie : dict | None
        Test hook: ``{"channel": complex [N] per FFT bin or scalar, "noise_var": float, "cfo_hz": float,
        "frame_starts": int array}``; the receiver then uses these instead of its estimates (timing: the nearest true
        frame start) and disables pilot tracking.

    ``process(samples, t0=None) -> list[RxFrame]``; ``flush() -> list[RxFrame]``; ``stats`` dict of counters.
    """

    def __init__(self, cfg: OfdmConfig, false_alarm_rate: float = 1e-4, *, equalizer: str = "mmse",
                 fa_window: int = 4096, detect_pfa: float = 1e-5, max_cfo_subcarriers: float = 2.0,
                 pilot_smoothing: int = 1, max_payload_symbols: int = 1 << 16, tap_threshold: float = 9.0,
                 decision_directed: bool = True, defer_decode: bool = False, genie: dict | None = None):
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
        self.cfg = cfg
        self.fmt = frame_format(cfg)
        self.equalizer = equalizer
        self.false_alarm_rate = float(false_alarm_rate)
        self.max_cfo = float(max_cfo_subcarriers)
        self.pilot_smoothing = int(pilot_smoothing)
        self.max_payload_symbols = int(max_payload_symbols)
        self.genie = genie
        self.decision_directed = bool(decision_directed)
        self.defer_decode = bool(defer_decode)
        self.detector = SchmidlCoxDetector(cfg, detect_pfa)
        n, cp = cfg.fft_size, cfg.cp_len
        self.search = cp                      # fine-timing search ±cp around the coarse estimate
        self.backoff = max(1, cp // 4)        # FFT windows start this many samples inside the CP
        # LTS verification threshold (see module docstring)
        m = n  # conservative dimension, see module docstring
        n_hyp = 2 * int(np.ceil((self.max_cfo + 1) / 2)) + 1
        self._j_max = int(np.ceil((self.max_cfo + 1) / 2)) + 1
        k_trials = n_hyp * (2 * self.search + 1)
        q = min(0.5, self.false_alarm_rate / (fa_window * detect_pfa))
        self.lts_threshold = float(1.0 - (q / k_trials) ** (1.0 / (m - 1)))
        self._lts_pair = np.concatenate([self.fmt.lts_symbol, self.fmt.lts_symbol]).astype(np.complex64)
        self._lts_pair_conj = np.conj(self._lts_pair) / np.float32(np.sqrt(np.sum(np.abs(self._lts_pair) ** 2)))
        # channel-estimate projection onto cp taps with delays -b .. cp-b-1
        used = np.asarray(cfg.used_subcarriers, dtype=np.float64)
        taps = np.arange(-self.backoff, cp - self.backoff, dtype=np.float64)
        F_used = np.exp(-2j * np.pi * np.outer(used, taps) / n)
        all_k = np.fft.fftfreq(n, 1.0 / n)
        self._F_used = F_used
        self._F_used_h = (F_used.conj().T / cfg.n_used).astype(np.complex64)           # [L, n_used]
        self._gram = F_used.conj().T @ F_used                                          # [L, L] complex128
        self._tap_bins = np.arange(-self.backoff, cp - self.backoff) % n                 # FFT bins of the tap delays
        self._fit_cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self._plans: dict[tuple, tuple[int, int, int] | None] = {}
        self._pilot_grids: dict[int, tuple] = {}
        self._F_all = np.exp(-2j * np.pi * np.outer(all_k, taps) / n)                     # [N, L] complex128
        self._used_mask = np.zeros(n, np.float32)
        self._used_mask[cfg.used_bins] = 1.0
        self.tap_threshold = float(tap_threshold)
        self._m2n = np.arange(2 * n, dtype=np.float64)
        self._m_seg = np.arange(2 * n + 2 * self.search, dtype=np.float64)
        self._template_table = np.zeros((0, 2 * n + 2 * self.search), np.complex64)
        # buffer offsets, from a frame start, of the two LTS FFT windows and the header symbols' FFT windows
        hdr_win = self.fmt.preamble_len + np.arange(self.fmt.n_hdr_symbols)[:, None] * cfg.symbol_len \
            + (cp - self.backoff) + np.arange(n)[None, :]
        self._acq_offsets = np.concatenate([cfg.symbol_len + 2 * cp - self.backoff + np.arange(2 * n).reshape(2, n),
                                            hdr_win]).astype(np.int64)                # [2 + n_hdr, N]
        kp = np.asarray(cfg.pilot_subcarriers, dtype=np.float64)
        self._kp = kp - kp.mean()
        self._kp_mean = kp.mean()
        self._kd = np.asarray(cfg.data_subcarriers, dtype=np.float64)
        self._kd32 = self._kd.astype(np.float32)
        self._phase_var_shape = (1.0 / cfg.n_pilots + (self._kd - self._kp_mean) ** 2
                                 / max(float(self._kp @ self._kp), 1e-12)).astype(np.float32)
        self._phase_n = (-2 * np.pi / n) * np.arange(n, dtype=np.float64)
        self._lts_half = (0.5 * self.fmt.lts_grid[cfg.used_bins].real).astype(np.float32)
        self._backoff_phase = np.exp(2j * np.pi * np.fft.fftfreq(n, 1.0 / n) * self.backoff / n)
        self.reset()

    # ------------------------------------------------------------------ stream state
    def reset(self) -> None:
        """Forget the stream and zero the counters."""
        self._buf = np.zeros(0, np.complex64)
        self._t0 = 0            # sample time of _buf[0]
        self._scan = 0          # sample time of the next candidate position to examine
        self._next_t = None     # expected t0 of the next block
        self._pending = None    # (time of candidate, p1, p2) waiting for more samples
        self._cache = None      # [[time of first position, T, P1, P2], ...] detector metric already computed
        self._acq_cache = None  # (candidate time, _Acq, n_pay) of a frame whose payload is still arriving
        self._failed: list[int] = []  # frame starts whose header failed recently (not re-counted)
        self._chunk = CHUNK_MIN  # detector metric positions computed per step (grows over noise)
        self._ready: list[tuple[_Acq, int]] = []  # complete frames (acquisition, payload symbols) to demodulate
        self._spec: dict[int, tuple] = {}  # candidate time -> (P1, P2, _Acq | None, buffer t0) acquired ahead
        # candidates the speculation found, in stream order: (search start, first crossing, candidate, P1, P2) times
        self._spec_found: list[tuple[int, int, int, complex, complex]] = []
        self._len_guess = 0      # length of the last frame received (guess for the next one, see _speculate)
        self._spacing_guess = (0, 0)   # (candidate spacing, search reach) the last speculation found
        self.stats = {k: 0 for k in STAT_KEYS}

    def flush(self) -> list[RxFrame]:
        """End of stream: a frame still waiting for samples is counted as truncated; the buffer is cleared."""
        if self._pending is not None:
            self.stats["truncated"] += 1
        self._pending = None
        self._cache = self._acq_cache = None
        self._spec = {}
        self._spec_found = []
        self._buf = np.zeros(0, np.complex64)
        self._t0 = self._scan = self._next_t if self._next_t is not None else 0
        return []

    def process(self, samples, t0: int | None = None) -> list[RxFrame]:
        """Feed the next block of the stream; returns the frames completed in it (possibly none).

        samples : complex [M] (any M >= 0; NaN/inf samples are zeroed and counted).
        t0 : sample time of ``samples[0]``; None continues the stream. A jump starts a new stream (counted as a gap).
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
                self._pending = None
                self._cache = self._acq_cache = None
                self._spec = {}
                self._spec_found = []
                self._buf = x.copy()
                self._t0 = self._scan = t0
            else:
                self._buf = np.concatenate([self._buf, x])
            self._next_t = t0 + x.size
            self.stats["samples"] += x.size
            frames = self._run()
            # keep only what later stages can still need
            keep_from = (self._pending[0] if self._pending is not None else self._scan) - 2 * self.cfg.symbol_len
            cut = keep_from - self._t0
            if cut > 0:
                self._buf = self._buf[cut:]
                self._t0 += cut
        return frames

    # ------------------------------------------------------------------ main loop
    def _run(self) -> list[RxFrame]:
        """Scan, acquire and parse headers frame by frame; then demodulate all frames completed in this block
        together (:meth:`_decode_ready`)."""
        self._ready = []
        self._scan_frames()
        return self._decode_ready()

    def _scan_frames(self) -> None:
        det = self.detector
        while True:
            if self._pending is not None:
                t_cand, p1, p2 = self._pending
                res = self._handle(t_cand - self._t0, p1, p2)
                if res is None:
                    return                   # wait for more samples
                self._pending = None
                self._scan = max(self._scan, res)
                continue
            start = max(0, self._scan - self._t0)
            t_abs = self._t0 + start
            avail = self._t0 + self._buf.size - det.span + 1 - t_abs     # positions evaluable now
            if avail <= 0:
                return
            # the speculation already searched from at most here and found its first threshold crossing at or after
            # this position: the scan would find the very same candidate (the metric depends only on the samples)
            spec = self._spec_found
            while spec and spec[0][1] < t_abs:
                spec.pop(0)
            if spec and spec[0][0] <= t_abs:
                _, _, t_c, p1, p2 = spec.pop(0)
                self._chunk = CHUNK_MIN
                self.stats["candidates"] += 1
                self._pending = (t_c, p1, p2)
                self._scan = t_c + 1
                continue
            # the metric is computed lazily, in chunks growing while nothing is found: positions inside a decoded
            # frame are skipped by the scan and never evaluated (most of a stream of back-to-back frames)
            n = min(avail, self._cached_positions(t_abs) or self._chunk)   # what is computed already first
            n, (T, P1, P2), found = self._search(t_abs, n, avail)
            if found is None:
                self._scan = t_abs + n
                self._chunk = min(2 * self._chunk, CHUNK_MAX)
                continue
            self._chunk = CHUNK_MIN
            c, first = found
            if first + det.peak_window > T.size:
                self._scan = t_abs + first      # peak window incomplete: wait for more samples
                return
            self.stats["candidates"] += 1
            self._pending = (t_abs + c, complex(P1[c]), complex(P2[c]))
            self._scan = t_abs + c + 1

    def _search(self, t_abs: int, n: int, avail: int, ahead: bool = False):
        """The first candidate (``det.first_candidate``) in the metric of the ``n`` positions from ``t_abs``, the
        metric extended (up to ``avail`` positions) when the candidate's peak window runs past them: (positions
        searched, (T, P1, P2) of them, candidate or None)."""
        det = self.detector
        metric = self._metric_from(t_abs, n, ahead)
        found = det.first_candidate(metric[0])
        if found is not None and found[1] + det.peak_window > n and n < avail:
            n = min(avail, found[1] + det.peak_window)
            metric = self._metric_from(t_abs, n, ahead)
            found = det.first_candidate(metric[0])
        return n, metric, found

    def _cached_positions(self, t_abs: int) -> int:
        """Number of consecutive positions from ``t_abs`` whose metric is already computed."""
        for t_c, T, _, _ in self._cache or []:
            if t_c <= t_abs < t_c + T.size:
                return t_c + T.size - t_abs
        return 0

    def _metric_from(self, t_abs: int, n: int, ahead: bool = False):
        """Detector metric (T, P1, P2) for the ``n`` positions t_abs .. t_abs + n - 1 (all evaluable). Computed
        positions are kept as ranges of consecutive positions - the scan's and those :meth:`_speculate` computed
        ahead of it - so each is computed once and the scan reads the very values the speculation saw. A scan call
        (``ahead`` False) drops what lies before ``t_abs``."""
        det = self.detector
        ranges = self._cache or []
        if not ahead:
            ranges = [r for r in ranges if r[0] + r[1].size >= t_abs]
        rng = next((r for r in ranges if r[0] <= t_abs <= r[0] + r[1].size), None)
        if rng is None:
            rng = [t_abs, np.zeros(0, np.float32), np.zeros(0, np.complex64), np.zeros(0, np.complex64)]
            ranges.append(rng)
            ranges.sort(key=lambda r: r[0])
        t_c, T, P1, P2 = rng
        lo = 0 if ahead else t_abs - t_c
        t_from = t_c + T.size
        if t_abs + n > t_from:
            i = t_from - self._t0
            new = det.metric(self._buf[i:i + t_abs + n - t_from + det.span - 1])
            rng[1:] = [np.concatenate([a[lo:], b]) for a, b in zip((T, P1, P2), new)]
            rng[0] = t_c + lo
        elif lo:
            rng[1:] = [a[lo:] for a in (T, P1, P2)]
            rng[0] = t_c + lo
        self._cache = ranges
        k = t_abs - rng[0]
        return rng[1][k:k + n], rng[2][k:k + n], rng[3][k:k + n]

    # ------------------------------------------------------------------ per candidate
    def _handle(self, i0: int, p1: complex, p2: complex):
        """Acquire, decode header and payload of the candidate at buffer index ``i0``.

        Returns None (need more samples) or the next scan time. A complete frame is queued in ``self._ready`` for
        :meth:`_decode_ready`; acquisition and header are kept in ``self._acq_cache`` while the payload is still
        arriving.
        """
        cfg, fmt = self.cfg, self.fmt
        t_cand = self._t0 + i0
        cached = self._acq_cache
        if cached is not None and cached[0] == t_cand:
            _, acq, n_pay = cached
            shift = acq.t_start - self._t0 - acq.start       # the buffer was trimmed meanwhile
            acq.start += shift
            acq.ref += shift
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
            hdr, y_hdr = (acq.header, acq.y_hdr) if acq.hdr_done else self._decode_header(acq)   # genie
            plan = None if hdr is None else self._plan(hdr)
            n_pay = None if plan is None else plan[2]
            if n_pay is None:
                self.stats["header_crc_fail" if hdr is None else "header_invalid"] += 1
                self._failed.append(t_acq)
                del self._failed[:-8]
                return t_cand + cfg.cp_len + 1
            self._len_guess = fmt.frame_len(n_pay)
            acq.header, acq.y_hdr, acq.t_start = hdr, y_hdr, self._t0 + acq.start
        end = acq.start + fmt.frame_len(n_pay)
        if end > self._buf.size:
            self._acq_cache = (t_cand, acq, n_pay)
            return None
        self._acq_cache = None
        self._ready.append((acq, n_pay))
        self.stats["frames"] += 1
        return self._t0 + end - cfg.cp_len

    def _plan(self, hdr: FrameHeader) -> tuple[int, int, int] | None:
        """(payload data symbols, coded bits (0 for analog), payload OFDM symbols) announced by a header; None when
        invalid (cached per header shape)."""
        key = (hdr.kind, hdr.modem, hdr.code_rate, hdr.length)
        if key in self._plans:
            return self._plans[key]
        plan = self._make_plan(hdr)
        if len(self._plans) < 1024:
            self._plans[key] = plan
        return plan

    def _make_plan(self, hdr: FrameHeader) -> tuple[int, int, int] | None:
        if hdr.length < 1:
            return None
        if hdr.kind == "analog":
            n_sym, n_bits = -(-hdr.length // 2), 0
        else:
            try:
                n_bits = _codec(hdr.modem, hdr.code_rate).n_coded_bits(hdr.length)
            except ValueError:
                return None
            n_sym = -(-n_bits // _modem(hdr.modem).bits_per_symbol)
        n_pay = self.fmt.n_symbols(n_sym)
        return (n_sym, n_bits, n_pay) if n_pay <= self.max_payload_symbols else None

    def _acquire(self, i0: int, p1: complex, p2: complex) -> _Acq | None:
        """Acquisition of the candidate at buffer index ``i0`` (None: not verified). Candidates are acquired in
        batches (:meth:`_acquire_batch`, headers by :meth:`_decode_headers`): this one together with those that
        would follow it if it is a frame (:meth:`_speculate`); the scan later takes theirs from ``self._spec`` when
        it arrives at the same candidate with the same metric values."""
        if self.genie is not None:
            return self._genie_acquire(i0)
        hit = self._spec.pop(self._t0 + i0, None)
        if hit is not None and hit[0] == p1 and hit[1] == p2:
            acq, t0 = hit[2], hit[3]
            if acq is not None:                 # buffer indices of that time -> now
                acq.start += t0 - self._t0
                acq.ref += t0 - self._t0
            return acq
        # a speculated candidate after this one means the last guess of frame lengths skipped this frame
        irregular = any(t > self._t0 + i0 for t in self._spec)
        cands = [(i0, p1, p2)] + self._speculate(i0, irregular)
        acqs = self._acquire_batch(cands)
        self._decode_headers([a for a in acqs if a is not None])
        self._spec = {self._t0 + c[0]: (c[1], c[2], a, self._t0) for c, a in zip(cands[1:], acqs[1:])}
        return acqs[0]

    def _acquire_batch(self, cands: list[tuple[int, complex, complex]]) -> list[_Acq | None]:
        """Acquisition (see :meth:`_acquire`) of F candidates ``(buffer index, P1, P2)`` at once; each result is
        the one the candidate gets alone (every array below has a leading candidate axis). Verified candidates also
        carry their header symbols' FFT in ``y_hdr`` (the header follows in :meth:`_decode_headers`)."""
        cfg = self.cfg
        n, cp, sl, S = cfg.fft_size, cfg.cp_len, cfg.symbol_len, self.search
        out: list[_Acq | None] = [None] * len(cands)
        seg_len = 2 * n + 2 * S
        ok = [f for f, (i0, _, _) in enumerate(cands)
              if i0 + sl + 2 * cp - S >= 0 and i0 + sl + 2 * cp - S + seg_len <= self._buf.size]
        if not ok:
            return out
        i0s = np.array([cands[f][0] for f in ok])
        eps_b = np.array([cmath.phase(cands[f][2]) for f in ok]) / (2 * np.pi)
        e_a = np.array([cmath.phase(cands[f][1]) for f in ok]) / np.pi
        # hypotheses eps_b + k for the integers k consistent with eps_a (ambiguous by 2) within the search range:
        # k = round(eps_a + 2 j - eps_b) for the j with |eps_a + 2 j| <= max_cfo + 1 (a contiguous, ascending run of
        # j); shorter runs are padded with their last entry (a repeated hypothesis never wins argmax's first maximum)
        jj = np.arange(-self._j_max, self._j_max + 1)
        e_j = e_a[:, None] + 2 * jj[None, :]
        valid = np.abs(e_j) <= self.max_cfo + 1.0
        first = np.argmax(valid, axis=1)
        count = valid.sum(axis=1)
        n_h = int(count.max())
        col = np.minimum(first[:, None] + np.arange(n_h)[None, :], (first + count - 1)[:, None])
        ks = np.round(np.take_along_axis(e_j, col, axis=1) - eps_b[:, None]).astype(np.int64)    # [F, n_h]
        lo = i0s + (sl + 2 * cp - S)
        seg = _rows(self._buf, lo, seg_len)                                            # [F, 2N + 2S]
        e2 = seg.real * seg.real + seg.imag * seg.imag
        pw = np.zeros((len(ok), seg_len + 1))
        np.cumsum(e2, axis=1, out=pw[:, 1:])
        energy = np.maximum(pw[:, 2 * n:2 * n + 2 * S + 1] - pw[:, :2 * S + 1], 1e-30)    # [F, 2S+1]
        # |corr| for CFO hypothesis eps_b + k: removing exp(j 2 pi eps_b t / N) from the segment once changes every
        # correlation only by a per-lag phase (irrelevant for the magnitude); the integer part k is a cached rotated
        # template. All (candidate, hypothesis) correlations c[f, h, tau] = sum_m tmpl_k[m] seg_r[f, tau + m] at once
        # as circular correlations over the segment length (no wrap-around for tau <= 2S): one FFT of the segments,
        # one product with the templates' cached spectra, one inverse FFT
        seg_r = seg * _cis((-2 * np.pi / n) * eps_b[:, None] * self._m_seg[None, :])
        spec = _fft.fft(seg_r, axis=1, overwrite_x=True)
        prod = spec[:, None, :] * self._lts_templates(ks)                              # [F, n_h, 2N + 2S]
        c = _fft.ifft(prod, axis=2, overwrite_x=True)[:, :, :2 * S + 1].transpose(0, 2, 1)  # [F, 2S+1, n_h]
        rho2 = (c.real * c.real + c.imag * c.imag) / energy[:, :, None]               # [F, 2S+1, n_h]
        best = np.argmax(rho2.reshape(len(ok), -1), axis=1)
        k_pk, h_pk = np.divmod(best, n_h)
        rows = np.arange(len(ok))
        rho_max = rho2[rows, k_pk, h_pk]
        e = eps_b + ks[rows, h_pk]
        # earliest significant path within cp/2 before the peak
        rho = rho2[rows, :, h_pk]                                                     # [F, 2S+1]
        tau = np.arange(2 * S + 1)[None, :]
        near = (tau >= (k_pk - cp // 2)[:, None]) & (tau <= k_pk[:, None]) & (rho >= 0.3 * rho_max[:, None])
        start = i0s + (np.argmax(near, axis=1) - S)
        good = (rho_max > self.lts_threshold) & (start >= 0)
        if not good.any():
            return out
        sel = np.flatnonzero(good)
        start, e = start[sel], e[sel]
        # fine CFO: lag-N correlation over the N + cp periodic LTS products (Moose), unwrapped onto hypothesis e
        r = _rows(self._buf, start + (sl + cp), 2 * n + cp)
        eps_f = np.angle((np.conj(r[:, :n + cp]) * r[:, n:]).sum(axis=1)) / (2 * np.pi)
        eps = eps_f + np.round(e - eps_f)
        # channel estimate from the two LTS looks (FFT windows b samples inside the CP); the header symbols go
        # through the same FFT call (same window offset and within-window CFO rotation)
        lts0 = start + sl + 2 * cp - self.backoff
        w = self._buf.take(start[:, None, None] + self._acq_offsets[None, :, :])        # [F, 2 + n_hdr, N]
        w *= _cis(self._phase_n[None, :] * eps[:, None])[:, None, :]
        Y = _fft.fft(w, axis=2, norm="ortho", overwrite_x=True)
        Y[:, 1] *= np.exp(-2j * np.pi * eps).astype(np.complex64)[:, None]
        Yu = Y[:, :2, cfg.used_bins]
        d = Yu[:, 0] - Yu[:, 1]
        sigma2 = (d.real * d.real + d.imag * d.imag).sum(axis=1) / (2 * d.shape[1])
        h_ls = (Yu[:, 0] + Yu[:, 1]) * self._lts_half
        sig = (h_ls.real * h_ls.real + h_ls.imag * h_ls.imag).sum(axis=1) / h_ls.shape[1] - sigma2 / 2
        H, n_taps = self._channel_taps(h_ls, sigma2)
        s2 = np.maximum(sigma2, 1e-12 * np.maximum(sig, 1e-30))
        snr = np.maximum(sig, 1e-12) / s2
        err_var = (s2 / 2 * n_taps / cfg.n_used).astype(np.float32)[:, None] * self._used_mask
        for j, (f, st, ep, s2_j, snr_j, ref) in enumerate(zip(sel.tolist(), start.tolist(), eps.tolist(), s2.tolist(),
                                                              snr.tolist(), lts0.tolist())):
            # reference phase: the first LTS FFT window; symbol windows get exp(-j 2 pi eps (t - lts0) / N)
            out[ok[f]] = _Acq(start=st, eps=ep, H=H[j], sigma2=s2_j, err_var=err_var[j], snr=snr_j, ref=ref,
                              y_hdr=Y[j, 2:])
        return out

    def _channel_taps(self, h_ls: np.ndarray, sigma2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Significant taps of the LS estimates h_ls complex64 [F, n_used] by orthogonal matching pursuit, per frame:
        repeatedly add the tap where the matched filter of the residual, g = F^H r / n_used (noise
        sigma^2/(2 n_used) per tap), is strongest, while its power exceeds tap_threshold x that noise; least squares
        on the kept taps (well conditioned). Returns (H complex64 [F, N] per FFT bin, taps kept int [F]).

        Computed in the tap domain: with g0 = F^H h_ls / n_used (an inverse FFT of h_ls on its bins, read at the tap
        delays) and the Gram matrix A = F^H F, the residual of the LS fit on a tap set S has the matched filter
        g = g0 - A[:, S] A_SS^-1 g0[S], and the fit is H = n_used F_all[:, S] A_SS^-1 g0[S] (the same numbers as
        projecting h_ls, with L-sized products; matrices cached per tap set). The frames still adding taps go
        through one product per step and tap set."""
        n_frames, n_l = h_ls.shape[0], self._F_used.shape[1]
        n = self.cfg.fft_size
        thr = self.tap_threshold * np.asarray(sigma2, dtype=np.float64) / (2 * self.cfg.n_used)
        keep = np.zeros((n_frames, n_l), bool)
        spec = np.zeros((n_frames, n), np.complex64)
        spec[:, self.cfg.used_bins] = h_ls
        g0 = _fft.ifft(spec, axis=1, overwrite_x=True)[:, self._tap_bins] * np.float32(n / self.cfg.n_used)  # [F, L]
        g = g0
        active = np.arange(n_frames)
        for step in range(n_l):         # a few steps: one per significant path
            p = g.real * g.real + g.imag * g.imag
            if step:                    # kept taps have (numerically) no residual; the first tap is always kept
                p[keep[active]] = 0.0
            k = np.argmax(p, axis=1)
            if step:
                go = p[np.arange(active.size), k] > thr[active]
                active, k = active[go], k[go]
                if not active.size:
                    break
            keep[active, k] = True
            g = np.empty((active.size, n_l), np.complex64)
            for rows in self._tap_groups(keep[active]):
                resid, _, sel = self._tap_fit(keep[active[rows[0]]])
                ga = g0[active[rows]]
                g[rows] = ga - np.einsum("fs,ls->fl", ga[:, sel], resid)
        H = np.empty((n_frames, n), np.complex64)
        for rows in self._tap_groups(keep):
            _, fit, sel = self._tap_fit(keep[rows[0]])
            H[rows] = np.einsum("fs,sn->fn", g0[rows][:, sel], fit)
        return H, keep.sum(axis=1)

    @staticmethod
    def _tap_groups(keep: np.ndarray) -> list[list[int]]:
        """Rows of ``keep`` bool [F, L] grouped by equal tap sets (row indices, in order of first appearance)."""
        if (keep == keep[0]).all():
            return [list(range(keep.shape[0]))]
        groups: dict[bytes, list[int]] = {}
        for f, key in enumerate(np.packbits(keep, axis=1)):
            groups.setdefault(key.tobytes(), []).append(f)
        return list(groups.values())

    def _lts_templates(self, ks: np.ndarray) -> np.ndarray:
        """Spectra for the circular correlations of :meth:`_acquire_batch`: conj(FFT) over 2N + 2S samples of the
        normalized LTS pair rotated by k subcarriers (zero-padded), complex64 [..., 2N + 2S], for the integers
        ``ks`` [...]; the table grows to cover the largest |k| asked for."""
        kmax = int(np.abs(ks).max())
        tab = self._template_table
        if tab.shape[0] < 2 * kmax + 1:
            kk = np.arange(-kmax, kmax + 1, dtype=np.float64)
            n2 = self._lts_pair_conj.size
            tmpl = np.zeros((kk.size, self._m_seg.size), np.complex64)
            tmpl[:, :n2] = np.conj(self._lts_pair_conj[None, :] * _cis((-2 * np.pi / self.cfg.fft_size) * kk[:, None]
                                                                       * self._m2n[None, :]))
            tab = np.conj(_fft.fft(tmpl, axis=1)).astype(np.complex64)
            self._template_table = tab
        return tab[ks + (tab.shape[0] // 2)]

    def _decode_headers(self, acqs: list[_Acq]) -> None:
        """Header of F acquired candidates at once (see :meth:`_decode_header`; their header FFTs come from
        :meth:`_acquire_batch`): sets ``header`` (None when the CRC or a field fails) and ``hdr_done`` in place."""
        if not acqs:
            return
        cfg, fmt = self.cfg, self.fmt
        Y = np.stack([a.y_hdr for a in acqs])                                        # [F, n_hdr, N]
        H = np.stack([a.H for a in acqs])
        n_sym = Y.shape[1]
        ph = self._residual_phase(acqs, 0, n_sym)
        # common phase only, smoothed over 3 symbols: at low SNR a per-symbol phase slope from a few pilots costs
        # more than the (sub-sample) timing drift it would remove over a few header symbols
        pb = cfg.pilot_bins
        z = (Y[:, :, pb] * _cis(-ph)[:, :, None]
             * np.conj(fmt.pilot_block(0, n_sym)[None, :, :] * H[:, None, pb])).sum(axis=2)
        Yd = Y[:, :, cfg.data_bins] * _cis(-(np.angle(_sum3(z)) + ph))[:, :, None]
        soft = (Yd * np.conj(H[:, cfg.data_bins])[:, None, :]).real.reshape(len(acqs), -1)
        finite = np.isfinite(soft).all(axis=1)
        hdrs = _golay_headers(fmt, np.where(finite[:, None], soft, 0.0))
        for a, h, fin in zip(acqs, hdrs, finite):
            a.header = h if fin else None
            a.hdr_done = True

    def _speculate(self, i0: int, irregular: bool = False) -> list[tuple[int, complex, complex]]:
        """Candidates that would follow the one at buffer index ``i0`` if it and the next ones are frames as long as
        the last frame received: the first candidate from the earliest position where the scan would resume after
        it (its earliest start + that length - cp), then the same from each candidate found, to the end of the
        buffer. The metric is computed once from that first position, so the scan later reads the very same values
        and gets these candidates when the guess holds (otherwise it acquires on its own: a wrong guess costs time,
        never a result). Once a candidate is found, the following ones are looked for in one batch
        (:meth:`_speculate_batch`) on the guess that they keep the same spacing. ``irregular`` (the last guess
        skipped a frame: lengths vary): resume instead where the shortest possible frame would end, so that no frame
        is skipped (the metric then also covers the frame bodies)."""
        det, fmt = self.detector, self.fmt
        if not self._len_guess:
            return []
        shortest = fmt.frame_len(1) if irregular else self._len_guess
        step = shortest - self.cfg.cp_len - self.search
        need = fmt.preamble_len + fmt.header_len + self.search
        pos = i0 + step                 # buffer index where the search resumes
        chunk = CHUNK_MIN
        out: list[tuple[int, complex, complex]] = []
        found_at: list[tuple[int, int]] = []       # (search start, first crossing) times of each candidate
        period, reach = self._spacing_guess     # as last time, if known: start with a batch
        batches = not irregular
        while len(out) < SPECULATE_MAX:     # the scan loop of _scan_frames, on the guessed frame ends
            if period and batches:
                got = self._speculate_batch(pos, period, reach, step, need, SPECULATE_MAX - len(out), found_at)
                period = 0
                if got:
                    out += got
                    pos = got[-1][0] + step
                    continue
                batches = False                     # irregular spacing: no more batches in this call
            avail = self._buf.size - det.span + 1 - pos
            if avail <= 0:
                break
            m, (T, P1, P2), found = self._search(self._t0 + pos, min(avail, chunk), avail, ahead=True)
            if found is None:
                pos += m
                chunk = min(2 * chunk, CHUNK_MAX)
                continue
            c = found[0]
            if found[1] + det.peak_window > T.size or pos + c + need > self._buf.size:
                break
            out.append((pos + c, complex(P1[c]), complex(P2[c])))
            found_at.append((self._t0 + pos, self._t0 + pos + found[1]))
            pos += c + step
            period, reach = c + step, found[1] + det.peak_window
            self._spacing_guess = (period, reach)
            chunk = CHUNK_MIN
        self._spec_found = [(a, b, self._t0 + c[0], c[1], c[2]) for (a, b), c in zip(found_at, out)]
        return out

    def _speculate_batch(self, pos: int, period: int, reach: int, step: int, need: int, max_n: int,
                         found_at: list[tuple[int, int]]) -> list[tuple[int, complex, complex]]:
        """The next candidates of :meth:`_speculate` from buffer index ``pos`` on, on the guess that they follow each
        other every ``period`` samples: the detector metric of K windows around ``pos + j period`` (``reach``
        positions, as far as the last search had to look, plus cp + search positions of slack each side for timing
        jitter) in one call, then the sequential search on them, as long as
        each resume position falls inside its window and each candidate's peak window ends inside it. Accepted
        windows join the metric cache (the scan reads these very values); the rest is dropped. Returns the
        candidates accepted (possibly none) and appends their (search start, first crossing) times to
        ``found_at``."""
        det = self.detector
        margin = self.cfg.cp_len + self.search
        width = reach + 2 * margin                          # metric positions per window
        n_win = min(max_n, (self._buf.size - det.span + 1 - width - pos + margin) // period + 1)
        if n_win < 2 or pos < margin:
            return []
        starts = pos - margin + period * np.arange(n_win)
        t_starts = self._t0 + starts
        for t_c, T, _, _ in self._cache or []:                   # never shadow metric values computed already
            clash = (t_starts < t_c + T.size) & (t_starts + width > t_c)
            if clash[:n_win].any():
                n_win = int(np.argmax(clash))
        if n_win < 2:
            return []
        starts = starts[:n_win]
        T, P1, P2 = det.metric(_rows(self._buf, starts, width + det.span - 1))
        # first threshold crossing of every window and the peak after it, for all windows at once; a window whose
        # first crossing lies before its resume position is searched on its own (det.first_candidate)
        above = T > det.threshold
        first_all = np.argmax(above, axis=1)
        any_all = above[np.arange(n_win), first_all]
        pw = det.peak_window
        peak_all = first_all + np.argmax(np.take_along_axis(
            T, np.minimum(first_all[:, None] + np.arange(pw)[None, :], width - 1), axis=1), axis=1)
        out: list[tuple[int, complex, complex]] = []
        ranges = self._cache if self._cache is not None else []
        for j, (s, f_j, a_j, p_j) in enumerate(zip(starts.tolist(), first_all.tolist(), any_all.tolist(),
                                                   peak_all.tolist())):
            off = pos - s
            if not 0 <= off < width:
                break
            if a_j and f_j >= off:
                found = (p_j - off, f_j - off)
            else:
                found = det.first_candidate(T[j, off:])
            if found is None or found[1] + pw > width - off or pos + found[0] + need > self._buf.size:
                break
            c = off + found[0]
            out.append((pos + found[0], complex(P1[j, c]), complex(P2[j, c])))
            found_at.append((self._t0 + pos, self._t0 + pos + found[1]))
            ranges.append([self._t0 + pos, T[j, off:], P1[j, off:], P2[j, off:]])
            pos += found[0] + step
        ranges.sort(key=lambda r: r[0])
        self._cache = ranges
        return out

    def _tap_fit(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For a tap set S (bool [L]), cached: (residual map R = A[:, S] A_SS^-1 complex64 [L, |S|], so that
        g = g0 - R g0[S]; fit complex64 [|S|, N] with H = g0[S] @ fit, fit = n_used (F_all[:, S] A_SS^-1)^T; the
        tap indices S int64 [|S|])."""
        key = keep.tobytes()
        fit = self._fit_cache.get(key)
        if fit is None:
            sel = np.flatnonzero(keep)
            inv = np.linalg.inv(self._gram[np.ix_(sel, sel)])
            fit = ((self._gram[:, sel] @ inv).astype(np.complex64),
                   (self.cfg.n_used * (self._F_all[:, sel] @ inv)).T.astype(np.complex64), sel)
            if len(self._fit_cache) < 4096:
                self._fit_cache[key] = fit
        return fit

    def _genie_acquire(self, i0: int) -> _Acq | None:
        g, cfg = self.genie, self.cfg
        starts = np.asarray(g["frame_starts"], dtype=np.int64) - self._t0
        j = int(np.argmin(np.abs(starts - i0)))
        if abs(int(starts[j]) - i0) > cfg.symbol_len:
            return None
        start = int(starts[j])
        if start < 0:
            return None
        k = np.fft.fftfreq(cfg.fft_size, 1.0 / cfg.fft_size)
        H = np.broadcast_to(np.asarray(g.get("channel", 1.0), np.complex64), (cfg.fft_size,)) \
            * np.exp(-2j * np.pi * k * self.backoff / cfg.fft_size)
        sigma2 = float(g["noise_var"])
        eps = float(g.get("cfo_hz", 0.0)) / cfg.subcarrier_spacing
        lts0 = start + cfg.symbol_len + 2 * cfg.cp_len - self.backoff
        # the true channel seen with this receiver's phase reference (the first LTS FFT window)
        H = H * np.exp(2j * np.pi * eps * (lts0 - start) / cfg.fft_size)
        return _Acq(start=start, eps=eps, H=H.astype(np.complex64), sigma2=sigma2,
                    err_var=np.zeros(cfg.fft_size, np.float32),
                    snr=float(np.mean(np.abs(H[cfg.used_bins]) ** 2)) / sigma2, genie=True, ref=lts0)

    def _symbols_fft(self, acq: _Acq, first: int, n_sym: int) -> tuple[np.ndarray, np.ndarray]:
        """FFT of OFDM symbols ``first .. first+n_sym`` (0 = first header symbol), within-window CFO removed:
        (complex64 [n_sym, N], per-symbol residual phase float64 [n_sym] still to be removed = 2 pi eps dt / N)."""
        cfg, fmt = self.cfg, self.fmt
        n, sl = cfg.fft_size, cfg.symbol_len
        base = acq.start + fmt.preamble_len + first * sl
        w = self._buf[base:base + n_sym * sl].reshape(n_sym, sl)[:, cfg.cp_len - self.backoff:
                                                                  cfg.cp_len - self.backoff + n]
        if acq.eps != 0.0:
            w = w * _cis(self._phase_n * acq.eps)[None, :]
            Y = _fft.fft(w, axis=1, norm="ortho", overwrite_x=True)
        else:
            Y = _fft.fft(w, axis=1, norm="ortho")
        starts = base + np.arange(n_sym) * sl + (cfg.cp_len - self.backoff)
        return Y, (2 * np.pi * acq.eps / n) * (starts - acq.ref)

    def _decode_header(self, acq: _Acq):
        """Header fields (or None) and the header FFT (reused for pilot smoothing) of a genie acquisition (the
        others' headers are decoded with their acquisition, in batches: :meth:`_decode_headers`)."""
        cfg = self.cfg
        Y, ph = self._symbols_fft(acq, 0, self.fmt.n_hdr_symbols)
        Yd = Y[:, cfg.data_bins]
        Yd *= _cis(-ph)[:, None]
        soft = (Yd * np.conj(acq.H[cfg.data_bins])[None, :]).real.reshape(-1)
        if not np.all(np.isfinite(soft)):
            return None, None
        return _golay_header(self.fmt, soft), Y

    # ------------------------------------------------------------------ payload, batched over frames
    def _decode_ready(self) -> list[RxFrame]:
        """Demodulate the frames queued by :meth:`_handle` (in stream order). Frames of one shape (same kind,
        modulation, code rate, payload length) go through :meth:`_decode_payloads` together: one FFT, one pilot fit,
        one equalizer and one LLR/decoder call per shape instead of per frame (a few-thousand-sample frame is
        otherwise dominated by numpy's per-call overhead). Each frame's numbers are those it gets alone."""
        ready, self._ready = self._ready, []
        if not ready:
            return []
        groups: dict[tuple, list[int]] = {}
        for i, (acq, n_pay) in enumerate(ready):
            h = acq.header
            groups.setdefault((h.kind, h.modem, h.code_rate, h.length, n_pay), []).append(i)
        out: list[RxFrame | None] = [None] * len(ready)
        for idx in groups.values():
            for i, frame in zip(idx, self._decode_payloads([ready[i][0] for i in idx], ready[idx[0]][1])):
                out[i] = frame
        return out

    def _payload_fft(self, acqs: list[_Acq], first: int, n_sym: int) -> tuple[np.ndarray, np.ndarray]:
        """FFT of OFDM symbols ``first .. first+n_sym`` (0 = first header symbol) of F frames, within-window CFO
        removed: (complex64 [F, n_sym, N], residual phase float64 [F, n_sym] still to be removed)."""
        cfg, fmt = self.cfg, self.fmt
        n, sl = cfg.fft_size, cfg.symbol_len
        off = cfg.cp_len - self.backoff
        base = np.array([acq.start for acq in acqs]) + (fmt.preamble_len + first * sl)
        w = _rows(self._buf, base, n_sym * sl).reshape(len(acqs), n_sym, sl)[:, :, off:off + n]
        eps = np.array([acq.eps for acq in acqs])
        w = w * _cis(self._phase_n[None, :] * eps[:, None])[:, None, :]
        Y = _fft.fft(w, axis=2, norm="ortho", overwrite_x=True)
        return Y, self._residual_phase(acqs, first, n_sym)

    def _decode_payloads(self, acqs: list[_Acq], n_pay: int) -> list[RxFrame]:
        """Equalize and decode F frames with the same header shape (kind, modem, code rate, length): every array
        below carries a leading frame axis F (Y complex64 [F, n_pay, N], H complex64 [F, N], ...)."""
        cfg, fmt, hdr = self.cfg, self.fmt, acqs[0].header
        n_frames, n_hdr = len(acqs), fmt.n_hdr_symbols
        genie = acqs[0].genie
        Y, ph = self._payload_fft(acqs, n_hdr, n_pay)
        H = np.stack([acq.H for acq in acqs])
        Hd = H[:, cfg.data_bins]
        h2 = Hd.real * Hd.real + Hd.imag * Hd.imag                                   # float32 [F, n_data]
        sigma2 = np.array([acq.sigma2 for acq in acqs])
        noise = sigma2.astype(np.float32)[:, None] + np.stack([acq.err_var for acq in acqs])[:, cfg.data_bins]
        Yd = Y[:, :, cfg.data_bins]
        if genie:
            Yd *= _cis(-ph)[:, :, None]
        else:
            w = self.pilot_smoothing
            pb = cfg.pilot_bins
            y_hdr = np.stack([acq.y_hdr for acq in acqs])
            ph_hdr = self._residual_phase(acqs, 0, n_hdr)
            yp = np.concatenate([y_hdr[:, :, pb] * _cis(-ph_hdr)[:, :, None], Y[:, :, pb] * _cis(-ph)[:, :, None]],
                                axis=1)
            cpe, slope = self._pilot_phase(H[:, pb], yp, w)
            cpe, slope = cpe[:, n_hdr:] + ph, slope[:, n_hdr:]
            if np.any(slope):
                Yd *= _cis(-(cpe[:, :, None] + slope[:, :, None] * self._kd32))
            else:                                   # no timing drift: one phase per symbol
                Yd *= _cis(-cpe)[:, :, None]
            hp = H[:, pb]
            hp2 = (hp.real * hp.real + hp.imag * hp.imag).sum(axis=1) / hp.shape[1]
            n_tot = n_hdr + n_pay
            phase_var = (sigma2 / (2 * np.maximum(hp2, 1e-30)))[:, None] \
                * (self._phase_var_shape / max(n_tot / 2, 1.0) + (1.0 / (w * cfg.n_pilots) if w > 1 else 0.0))
            noise = noise + h2 * phase_var
        noise = noise.astype(np.float32)
        n_sym, n_bits, _ = self._plan(hdr)
        h2s = np.maximum(h2, 1e-30).astype(np.float32)
        if hdr.kind == "analog" and self.equalizer == "mmse":
            # symbol power prior estimated from the data (AnalogMapper makes it `power`, 1 by default)
            y2 = (Yd.real * Yd.real + Yd.imag * Yd.imag).sum(axis=1)
            p = (y2 / h2s).sum(axis=1) / (n_pay * cfg.n_data) - (noise / h2s).sum(axis=1) / cfg.n_data
            p = np.maximum(p, 1e-6).astype(np.float32)[:, None]
            den = p * h2s + noise
            X = Yd * (p * np.conj(Hd) / den).astype(np.complex64)[:, None, :]
            nv_k = p * noise / den
        else:
            X = Yd * (1.0 / Hd).astype(np.complex64)[:, None, :]
            nv_k = noise / h2s
            # (above ~10 dB the frame-wide pilot fit is already accurate to ~0.02 rad: skip the extra pass)
            if hdr.kind == "digital" and not genie and self.decision_directed:
                sel = np.array([acq.snr < DD_MAX_SNR for acq in acqs])
                if sel.any():
                    X[sel] = self._dd_phase(X[sel], h2s[sel], _modem(hdr.modem), n_sym)
        X = X.reshape(n_frames, -1)[:, :n_sym]
        nv = np.empty((n_frames, n_pay, cfg.n_data), np.float32)
        nv[...] = nv_k.astype(np.float32)[:, None, :]
        nv = nv.reshape(n_frames, -1)[:, :n_sym]
        values = [None] * n_frames
        nvr = [None] * n_frames
        payload = [None] * n_frames
        crc_ok = [True] * n_frames
        extra = [{} for _ in range(n_frames)]
        if hdr.kind == "analog":
            from phy.analog import AnalogMapper
            # AnalogMapper.from_symbols of every frame in one call; a frame whose noise variances are not finite
            # and >= 0 is a payload error on its own
            good = np.isfinite(nv).all(axis=1) & (nv >= 0).all(axis=1)
            for f in np.flatnonzero(~good).tolist():
                self.stats["payload_error"] += 1
                crc_ok[f] = False
            idx = np.flatnonzero(good)
            if idx.size:
                vals, nvrs = AnalogMapper().from_symbols_batch(
                    X[idx], np.array([acqs[f].header.scale for f in idx.tolist()]), hdr.length, nv[idx])
                for j, f in enumerate(idx.tolist()):
                    values[f], nvr[f] = vals[j], nvrs[j]
        else:
            payload, crc_ok, extra = self._decode_digital(hdr, X, nv, n_bits)
        channel = (H * self._backoff_phase).astype(np.complex64)
        n_samples = fmt.frame_len(n_pay)
        return [RxFrame(t_start=self._t0 + acq.start, seq=acq.header.seq, kind=hdr.kind, values=values[f],
                        noise_var=nvr[f], payload=payload[f], crc_ok=crc_ok[f],
                        snr_db=10 * math.log10(acq.snr), cfo_hz=acq.eps * cfg.subcarrier_spacing,
                        symbols=X[f], symbol_noise_var=nv[f], channel=channel[f], header=acq.header,
                        n_samples=n_samples, noise_power=acq.sigma2, extra=extra[f])
                for f, acq in enumerate(acqs)]

    def _decode_digital(self, hdr: FrameHeader, X: np.ndarray, nv: np.ndarray, n_bits: int
                        ) -> tuple[list, list, list]:
        """LLRs and payload decoding of F digital frames (X complex64 [F, n_sym], nv float32 [F, n_sym]) in one call:
        (payloads, crc_ok, extra dicts) per frame; a frame with bad values (non-finite) is counted as a payload error
        on its own. With ``defer_decode`` coded frames keep their LLRs in the extra dict instead."""
        codec, modem = _codec(hdr.modem, hdr.code_rate), _modem(hdr.modem)
        n_frames = X.shape[0]
        try:
            llr = modem.demodulate_llr(X, nv)[:, :n_bits]
            if self.defer_decode and hdr.code_rate is not None:
                return [None] * n_frames, [False] * n_frames, [{"llr": row} for row in llr]
            data, ok = codec.decode_batch(llr, hdr.length)
            payload, crc_ok = [row.tobytes() for row in data], [bool(v) for v in ok]
        except ValueError:
            if n_frames == 1:
                self.stats["payload_error"] += 1
                return [None], [False], [{}]
            payload, crc_ok, extra = [], [], []
            for f in range(n_frames):
                p, c, e = self._decode_digital(hdr, X[f:f + 1], nv[f:f + 1], n_bits)
                payload += p
                crc_ok += c
                extra += e
            return payload, crc_ok, extra
        self.stats["payload_crc_fail"] += crc_ok.count(False)
        return payload, crc_ok, [{} for _ in range(n_frames)]

    @staticmethod
    def _dd_phase(X: np.ndarray, h2: np.ndarray, modem, n_sym: int) -> np.ndarray:
        """Decision-directed refinement of the common phase (digital payloads): X complex64 [F, n_pay, n_data] after
        pilot correction and ZF, h2 float32 [F, n_data]. Per frame, the phase a + b s (s = OFDM symbol index) is
        fitted to the per-symbol correlations c_s = sum_k |H_k|^2 X conj(slice(X)) over the real data symbols (four
        pilots per symbol leave a common-phase error of ~0.06 rad at 4 dB SNR, which costs QPSK ~0.3 dB; 48 data
        symbols per OFDM symbol do not)."""
        n_frames, n_pay = X.shape[:2]
        flat = X.reshape(n_frames, -1)
        if modem.order <= 4:                         # BPSK/QPSK: the decision is the sign pattern
            dec = np.sign(flat.real) if modem.order == 2 else np.sign(flat.real) + 1j * np.sign(flat.imag)
            dec = dec.astype(np.complex64)
            dec[:, n_sym:] = 0
        else:
            dec = np.zeros_like(flat)
            dec[:, :n_sym] = modem.constellation[modem.demodulate_hard(flat[:, :n_sym])
                                                 .reshape(n_frames, -1, modem.bits_per_symbol)
                                                 @ (1 << np.arange(modem.bits_per_symbol - 1, -1, -1))]
        c = (X * np.conj(dec.reshape(X.shape)) * h2[:, None, :]).sum(axis=2)         # [F, n_pay]
        a = np.angle(c.sum(axis=1))
        ang = np.angle(c * np.exp(-1j * a)[:, None])
        wgt = np.abs(c)
        s_idx = np.arange(n_pay, dtype=np.float64)
        sc = s_idx[None, :] - ((wgt @ s_idx) / np.maximum(wgt.sum(axis=1), 1e-30))[:, None]
        if n_pay > 1:
            b = ((wgt * sc) * ang).sum(axis=1) / np.maximum(((wgt * sc) * sc).sum(axis=1), 1e-30)
        else:
            b = np.zeros(n_frames)
        return X * _cis(-(a[:, None] + b[:, None] * sc))[:, :, None]

    def _residual_phase(self, acqs: list[_Acq], first: int, n_sym: int) -> np.ndarray:
        """The residual CFO phase float64 [F, n_sym] of :meth:`_payload_fft` alone (symbols already transformed)."""
        cfg, fmt = self.cfg, self.fmt
        off = cfg.cp_len - self.backoff
        eps = np.array([acq.eps for acq in acqs])
        rel = np.array([acq.start - acq.ref for acq in acqs])
        starts = rel[:, None] + (fmt.preamble_len + (first + np.arange(n_sym)) * cfg.symbol_len + off)[None, :]
        return (2 * np.pi * eps / cfg.fft_size)[:, None] * starts

    def _pilot_grid(self, n_sym: int) -> tuple:
        """Constants of :meth:`_pilot_phase` for n_sym symbols, cached: (s float64 [n_sym], s - mean(s), sum of its
        squares, s + 1.5 (symbols from the LTS), u = (s + 1.5) k_p [n_sym, n_p], sum of u^2)."""
        grid = self._pilot_grids.get(n_sym)
        if grid is None:
            s_idx = np.arange(n_sym, dtype=np.float64)
            sc = s_idx - s_idx.mean()
            s_lts = s_idx + 1.5
            u = s_lts[:, None] * self._kp[None, :]
            grid = (s_idx, sc, sc @ sc, s_lts, u, float(np.sum(u * u)))
            if len(self._pilot_grids) < 256:
                self._pilot_grids[n_sym] = grid
        return grid

    def _pilot_phase(self, Hp: np.ndarray, Yp: np.ndarray, smooth: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-symbol common phase and phase slope (rad per subcarrier) of F frames from their pilot columns ``Yp``
        complex64 [F, n_sym, n_p] (symbol 0 = first header symbol; residual CFO phase already removed) and pilot
        channels ``Hp`` complex64 [F, n_p]: float64 [F, n_sym] x 2.

        Model: phase(s, k) = a + b s + d (s - s_lts) k - a residual CFO makes the common phase linear in the symbol
        index s; a sampling-clock offset makes the slope across subcarriers grow linearly from zero at the LTS. The
        pilot phases (after removing the mean phase increment per symbol, so they do not wrap) are fitted by least
        squares over the whole frame, averaging the pilot noise over all n_sym * n_p pilots; d is kept only when
        significant (3 sigma). With ``smooth`` >= 3 the residual common phase is
        additionally tracked by a centered moving average over ``smooth`` symbols (for phase noise; costs noise).
        """
        n_frames, n_sym = Yp.shape[:2]
        z = Yp * np.conj(self.fmt.pilot_block(0, n_sym)[None, :, :] * Hp[:, None, :])
        s_idx, sc, scsc, s_lts, u, uu = self._pilot_grid(n_sym)
        if n_sym > 1:
            drift = np.angle((np.conj(z[:, :-1]) * z[:, 1:]).sum(axis=(1, 2)))
        else:
            drift = np.zeros(n_frames)
        z = z * _cis(-drift[:, None] * s_idx)[:, :, None]
        theta0 = np.angle(z.sum(axis=(1, 2)))
        phi = np.angle(z * np.exp(-1j * theta0).astype(np.complex64)[:, None, None])      # [F, n_sym, n_p], small
        kp = self._kp
        # common phase: a + b s (least squares over all pilots of the frame)
        w_s = phi.sum(axis=2) / phi.shape[2]                                  # mean over the pilots
        b = (w_s @ sc) / scsc if n_sym > 1 else np.zeros(n_frames)
        cpe = (w_s.sum(axis=1) / n_sym)[:, None] + b[:, None] * sc[None, :]
        # slope across subcarriers: d (s - s_ref) k, zero at the LTS (where the channel was estimated; 1.5 symbols
        # before the first header symbol), kept only where it is significant (> 3 sigma) - four pilots per symbol
        # cannot afford free per-symbol slopes at low SNR
        resid = phi - cpe[:, :, None]
        d = (resid * u).sum(axis=(1, 2)) / uu
        var_phi = np.square(resid - d[:, None, None] * u).sum(axis=(1, 2)) / resid[0].size
        d = np.where(d * d * uu < 9.0 * var_phi, 0.0, d)
        slope = d[:, None] * s_lts[None, :]
        if smooth > 1 and n_sym > 1:
            res = (z * _cis(-(theta0[:, None, None] + cpe[:, :, None] + slope[:, :, None] * kp))).sum(axis=2)
            c = np.concatenate([np.zeros((n_frames, 1), res.dtype), np.cumsum(res, axis=1)], axis=1)
            h = smooth // 2
            idx = np.arange(n_sym)
            res = c[:, np.minimum(idx + h + 1, n_sym)] - c[:, np.maximum(idx - h, 0)]
            cpe = cpe + np.angle(res)
        return theta0[:, None] + drift[:, None] * s_idx + cpe - slope * self._kp_mean, slope


def decode_frames(frames) -> int:
    """Decode frames returned by receivers made with ``defer_decode=True``: one batched LDPC call
    (:meth:`DigitalCodec.decode_batch`) per payload shape (modulation, code rate, length) over all given frames, e.g.
    the same broadcast frame as received by K devices.

    frames : iterable of :class:`RxFrame` (others, and frames already decoded, are skipped). Each frame with
    ``extra["llr"]`` gets ``payload`` (bytes) and ``crc_ok`` filled in place and its LLRs removed. Returns the number
    of frames decoded. The result per frame is exactly that of decoding it alone.
    """
    groups: dict[tuple, list[RxFrame]] = {}
    for fr in frames:
        if isinstance(fr, RxFrame) and fr.kind == "digital" and "llr" in fr.extra:
            h = fr.header
            groups.setdefault((h.modem, h.code_rate, h.length), []).append(fr)
    for (modem, rate, length), group in groups.items():
        codec = _codec(modem, rate)
        try:
            data, ok = codec.decode_batch(np.stack([fr.extra["llr"] for fr in group]), length)
        except ValueError:       # only one frame's bad LLRs: decode one by one, that frame fails alone
            data, ok = [], []
            for fr in group:
                try:
                    d, o = codec.decode_batch(fr.extra["llr"][None, :], length)
                    data.append(d[0])
                    ok.append(bool(o[0]))
                except ValueError:
                    data.append(None)
                    ok.append(False)
        for fr, d, o in zip(group, data, ok):
            fr.payload = None if d is None else d.tobytes()
            fr.crc_ok = bool(o)
            del fr.extra["llr"]
    return sum(len(g) for g in groups.values())
