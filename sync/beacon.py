"""Downlink beacon: the PS's periodic timing and frequency reference, and the device-side tracker.

The beacon is an ordinary phy digital frame (BPSK, rate-1/2 LDPC) whose payload carries the PS's sample time of the
frame start and a beacon counter. A device runs phy's streaming receiver on its samples; for every beacon it

- takes the frame start (integer, from the receiver) plus the fractional part from the ML delay of the receiver's
  channel estimate → the beacon's arrival time on the device's clock;
- re-synthesizes the beacon (it now knows the payload) and correlates it with the received samples: the two halves of
  the frame give a fine CFO estimate (ML, ~frame-length baseline), and the phase of the whole-frame correlation,
  tracked from beacon to beacon, gives the CFO to a small fraction of a subcarrier spacing.

Between beacons it holds a least-squares line local_time = a + b · ps_time (b − 1 is the sampling-clock offset) and
the CFO estimate; it counts the beacons it missed (the PS's schedule is known from the period).

The CFO estimate (:attr:`BeaconTracker.cfo_hz`, with its standard deviation :attr:`BeaconTracker.cfo_std_hz`) is a
Kalman filter over the beacons on the state (carrier phase at the last beacon, CFO), fed with both measurements of each
beacon, whose variances follow from the beacon's length L, its energy E (Σ|x|², 0.80 L for wifi64: unit power per
used subcarrier) and its SNR (per subcarrier, the receiver's estimate):

- the two-half estimate ``Δφ fs / (2π L/2)``, variance ``2 fs² / (4π² (L/2)² E SNR)`` Hz²;
- the whole-frame correlation phase, variance ``1 / (2 E SNR)`` rad², used only where it can be unwrapped: where the
  predicted phase's standard deviation (state uncertainty carried over the gap, plus the measurement's) is below
  :data:`MAX_STEP_STD` (π/5: a wrong unwrap is then a > 5σ event), and where the phase falls within
  :data:`GATE_SIGMAS` deviations of that prediction (on multipath at low SNR the copy's fractional delay can jump
  between paths from one beacon to the next, and the phase with it; believed, such a step made CFOs kHz wrong).
  Elsewhere the phase is re-acquired and the CFO's information kept: across seconds between the beacons of a cell's
  rounds, an estimate good to 0.05 Hz cannot tell 1 Hz apart. (The unwrap before this filter predicted every step
  from the two-half estimates and slipped whole cycles there, each slip bending the CFO by about 1/Δt: ±1 Hz on an
  air with no CFO at all.)

On a frequency-selective channel the phases also scatter beyond ``1 / (2 E SNR)``: the copy's fractional delay jitters
from beacon to beacon and an unbalanced channel turns that into phase (seen: ±0.07 rad where the model said 0.005, 10
dB, TDL-A). So the filter runs twice: the second pass scales the phase variance by the first pass's innovations'
spread (robustly: their median), when they scatter more than 3x what the model allows; with the model's own variance such
phases were gated out and the CFO left to the two-half estimates (errors of 30–100 Hz).

Process noise, for oscillators that wander: ``linewidth_hz`` (Wiener phase noise, the air's
``phase_noise_linewidth_hz``: phase variance 2π·linewidth·Δt) and ``cfo_walk`` (Hz²/s: a random walk of the CFO).
Both 0 by default (the simulated airs); with them the filter stops unwrapping across gaps it cannot bridge and
forgets old phases at the rate the oscillators do. With none and a steady beacon train the filter is the weighted
least-squares fit of the phase line (with the two-half estimates as prior), i.e. at its bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from phy.frame import FrameBuilder
from phy.ofdm import OfdmConfig
from phy.receiver import RxFrame
from sync.messages import Beacon
from sync.precomp import fractional_delay
from phy.chest import ml_delay

#: largest standard deviation (rad) of a predicted beacon phase that is still unwrapped against the prediction
MAX_STEP_STD = math.pi / 5
#: a beacon phase further from its prediction (in predicted deviations) is not used for the CFO but re-acquired: on a
#: frequency-selective channel at low SNR the fractional timing the copy is delayed by can jump between paths from one
#: beacon to the next, and the correlation phase with it (seen: steps of ~2.8 rad every 100 µs, 10 dB, TDL-A)
GATE_SIGMAS = 5.0
#: the phase variance is scaled by the innovations' spread (robust: their median |z| / 0.6745, the median absolute value
#: of a standard normal) when at least MIN_PHASE_STEPS phases could be unwrapped and they scatter more than MIN_SCALE
#: times the model's deviation (3 innovations of the model's own scatter exceed 3x with probability ~0.5 %)
MIN_PHASE_STEPS = 3
MIN_SCALE = 3.0
MEDIAN_ABS_NORMAL = 0.6745
#: SNR floor (dB) for the variance model: a receiver's SNR estimate of a frame it decoded is not trusted below it
MIN_SNR_DB = -10.0

def beacon_payload(ps_time: int, counter: int) -> bytes:
    """Payload of beacon ``counter`` sent at PS sample time ``ps_time`` (:class:`sync.messages.Beacon`)."""
    return Beacon(int(ps_time), int(counter)).to_bytes()


def parse_beacon(payload: bytes | None) -> tuple[int, int] | None:
    """(ps_time, counter) of a beacon payload, or None if it is not a beacon."""
    b = Beacon.from_bytes(payload)
    return None if b is None else (b.ps_time, b.counter)


class BeaconSource:
    """PS side: the beacon waveform for a given PS time and counter (complex64[len]); ``modem`` with LDPC
    ``code_rate`` (None: uncoded, for high SNR and fast simulation)."""

    def __init__(self, cfg: OfdmConfig, code_rate: float | None = 0.5, modem: str = "qpsk"):
        self.builder = FrameBuilder(cfg)
        self.code_rate, self.modem = code_rate, modem
        self.length = self.builder.frame_len(n_bytes=len(beacon_payload(0, 0)), modem=modem, code_rate=code_rate)
        #: Σ|x|² of a beacon (every beacon's: the same preamble, header and pilots, unit-modulus payload symbols)
        self.energy = float(np.sum(np.abs(self.waveform(0, 0)) ** 2))

    def waveform(self, ps_time: int, counter: int) -> np.ndarray:
        return self.builder.build_digital(beacon_payload(ps_time, counter), seq=counter & 0xFFFF,
                                          modem=self.modem, code_rate=self.code_rate)


@dataclass
class BeaconObservation:
    """One beacon as a device saw it: PS time, local arrival time (fractional samples), CFO estimates, phase."""

    ps_time: int
    counter: int
    local_time: float
    cfo_hz: float
    corr: complex
    snr_db: float


class BeaconTracker:
    """Device side: turns received beacons into a PS→local time map and a CFO estimate (see module docstring).

    ``history``: beacons the time map is fitted to (the clock drifts: recent ones); ``cfo_history``: beacons the CFO
    filter runs over, longer, so that the closely spaced access beacons its precision climbs from stay in it for the
    whole of a cell's run (a filter that starts from a beacon seconds after the one before cannot unwrap its way up)."""

    def __init__(self, cfg: OfdmConfig, period: int, history: int = 16, code_rate: float | None = 0.5,
                 modem: str = "qpsk", *, linewidth_hz: float = 0.0, cfo_walk: float = 0.0, cfo_history: int = 256):
        if not (linewidth_hz >= 0 and cfo_walk >= 0):
            raise ValueError(f"linewidth_hz and cfo_walk must be >= 0, got {linewidth_hz} and {cfo_walk}")
        self.cfg = cfg
        self.linewidth_hz, self.cfo_walk = float(linewidth_hz), float(cfo_walk)
        self.period = period
        self.history = history
        self.cfo_history = int(cfo_history)
        self.source = BeaconSource(cfg, code_rate, modem)
        self._seen: list[BeaconObservation] = []        # the last max(history, cfo_history) beacons
        self.missed = 0
        self.outliers = 0        #: beacons left out of the time map as mistimed (see _inliers)
        self._used = np.asarray(cfg.used_subcarriers, dtype=np.float64)
        self._f_ref: float | None = None
        self._cfo_cache: tuple | None = None

    # ------------------------------------------------------------------ observing
    def observe(self, frame: RxFrame, stream: np.ndarray, stream_t0: int) -> bool:
        """Take a received frame (with the device's stream segment that contains it, first sample at local time
        ``stream_t0``). Returns True if it was a valid beacon."""
        parsed = parse_beacon(frame.payload if frame.crc_ok else None)
        if parsed is None:
            return False
        ps_time, counter = parsed
        cfg = self.cfg
        # fractional timing from the channel estimate's phase slope (window at the CP end of the LTS), searched within
        # a sample of the receiver's first-path timing so that a strong later path cannot pull it (and, as the
        # channel or noise changes, make it jump between paths)
        h = np.asarray(frame.channel)[cfg.used_bins]
        frac, _ = ml_delay(h, self._used, cfg.fft_size, 0.0, span=1.0)
        local = frame.t_start + frac
        # the copy to correlate with is best delayed by the overall (single-path ML) delay of the channel
        frac_fit, _ = ml_delay(h, self._used, cfg.fft_size, 0.0, span=cfg.cp_len / 2)
        # the known frame, delayed by the fractional timing, so that the correlation phase does not move with it (a
        # frequency-selective channel turns a drifting fractional delay into a drifting phase otherwise)
        ref = fractional_delay(self.source.waveform(ps_time, counter), frac_fit)[:-1] if frac_fit else \
            self.source.waveform(ps_time, counter)
        i0 = frame.t_start - stream_t0
        seg = stream[i0:i0 + ref.size]
        if i0 < 0 or seg.size != ref.size:
            return False
        # fine CFO from the two halves of the known frame (after removing the receiver's coarse estimate)
        n_abs = np.arange(ref.size, dtype=np.float64) + frame.t_start
        rot = np.exp(-2j * np.pi * frame.cfo_hz / cfg.sample_rate * n_abs)
        z = seg * rot * np.conj(ref)
        half = ref.size // 2
        c1, c2 = z[:half].sum(), z[half:2 * half].sum()
        cfo = frame.cfo_hz + np.angle(c2 * np.conj(c1)) / (2 * np.pi * half) * cfg.sample_rate
        if self._f_ref is None:
            self._f_ref = float(cfo)
        corr = complex(np.sum(seg * np.conj(ref) * np.exp(-2j * np.pi * self._f_ref / cfg.sample_rate * n_abs)))
        if self.obs:
            gap = round((ps_time - self.obs[-1].ps_time) / self.period) - 1
            self.missed += max(gap, 0)
        self._seen.append(BeaconObservation(ps_time, counter, float(local), float(cfo), corr, float(frame.snr_db)))
        del self._seen[:-max(self.history, self.cfo_history)]
        return True

    @property
    def obs(self) -> list[BeaconObservation]:
        """The time map's beacons: the last ``history``."""
        return self._seen[-self.history:]

    @property
    def cfo_obs(self) -> list[BeaconObservation]:
        """The CFO filter's beacons: the last ``cfo_history``."""
        return self._seen[-self.cfo_history:]

    # ------------------------------------------------------------------ estimates
    @property
    def synced(self) -> bool:
        """At least one beacon seen (time map and CFO defined)."""
        return bool(self.obs)

    def _inliers(self, obs: list[BeaconObservation] | None = None) -> np.ndarray:
        """bool[n]: the observations that agree with the others (a beacon the receiver mistimed — by tens of samples,
        seen on multipath at low SNR — would otherwise bend the time map for every later transmission). The reference
        is the median offset local − PS time; the tolerance allows 4 samples plus ±50 ppm of clock drift."""
        obs = self.obs if obs is None else obs
        x = np.array([o.ps_time for o in obs], dtype=np.float64)
        r = np.array([o.local_time for o in obs]) - x
        if r.size < 3:
            return np.ones(r.size, bool)
        i = int(np.argsort(r)[r.size // 2])
        return np.abs(r - r[i]) <= 4.0 + 50e-6 * np.abs(x - x[i])

    def _fit(self) -> tuple[np.ndarray, np.ndarray]:
        keep = self._inliers()
        self.outliers = int((~keep).sum())
        x = np.array([o.ps_time for o in self.obs], dtype=np.float64)[keep]
        y = np.array([o.local_time for o in self.obs])[keep]
        return x, y

    def ps_to_local(self, ps_time: float) -> float:
        """The device-clock time at which the PS's ``ps_time`` is seen (includes the downlink delay)."""
        if not self.obs:
            raise RuntimeError("no beacon received yet: the device has no timing reference")
        x, y = self._fit()
        if x.size < 3:
            return float(y[-1] + (ps_time - x[-1]))
        xm, ym = x.mean(), y.mean()
        slope = np.sum((x - xm) * (y - ym)) / np.sum((x - xm) ** 2)
        return float(ym + slope * (ps_time - xm))

    @property
    def sco_ppm(self) -> float:
        """Estimated sampling-clock offset of the device relative to the PS (ppm), 0 before three beacons."""
        x, y = self._fit() if self.obs else (np.zeros(0), np.zeros(0))
        if x.size < 3:
            return 0.0
        return float((np.polyfit(x - x.mean(), y - y.mean(), 1)[0] - 1) * 1e6)

    @property
    def cfo_hz(self) -> float:
        """CFO of the PS as seen by the device (PS carrier − device carrier, Hz): the Kalman filter of the module
        docstring over the beacons kept (mistimed ones left out)."""
        return self._cfo()[0]

    @property
    def cfo_std_hz(self) -> float:
        """Standard deviation (Hz) of :attr:`cfo_hz` from the beacons' lengths and SNRs (module docstring)."""
        return self._cfo()[1]

    def _cfo(self) -> tuple[float, float]:
        if not self.obs:
            raise RuntimeError("no beacon received yet: the device has no frequency reference")
        obs = self.cfo_obs
        key = (len(obs), obs[0].local_time, obs[-1].local_time)
        if self._cfo_cache is None or self._cfo_cache[0] != key:
            self._cfo_cache = (key, self._estimate_cfo([o for o, k in zip(obs, self._inliers(obs)) if k]))
        return self._cfo_cache[1]

    def _estimate_cfo(self, obs: list[BeaconObservation]) -> tuple[float, float]:
        """(CFO, its standard deviation) from ``obs`` in time order: the Kalman filter of the module docstring, run
        again with the phase variance scaled up where the phases scatter more than the model says."""
        f, std, z = self._filter(obs, 1.0)
        if len(z) >= MIN_PHASE_STEPS:
            scale = float(np.median(np.abs(z))) / MEDIAN_ABS_NORMAL
            if scale > MIN_SCALE:
                f, std, _ = self._filter(obs, scale ** 2)
        return f, std

    def _filter(self, obs: list[BeaconObservation], inflate: float) -> tuple[float, float, list[float]]:
        """One pass of the filter with the phase variance times ``inflate``: (CFO, deviation, the normalized
        innovations of every phase the prediction could unwrap, used or gated out)."""
        fs, energy, half = self.cfg.sample_rate, self.source.energy, self.source.length // 2
        snr = 10.0 ** (np.maximum([o.snr_db for o in obs], MIN_SNR_DB) / 10.0)
        var_phase = inflate / (2.0 * energy * snr)                      # rad^2
        var_fine = fs ** 2 / (2 * math.pi ** 2 * half ** 2 * energy * snr)   # Hz^2
        t = np.array([o.local_time for o in obs]) / fs                  # s
        phase = np.angle([o.corr for o in obs])                         # after removing _f_ref (observe)
        # state: [carrier phase at the last beacon (rad), CFO - _f_ref (Hz)]; covariance p
        x = np.array([phase[0], obs[0].cfo_hz - self._f_ref])
        p = np.diag([var_phase[0], var_fine[0]])
        normalized: list[float] = []
        for i in range(1, len(obs)):
            dt = t[i] - t[i - 1]
            f = np.array([[1.0, 2 * math.pi * dt], [0.0, 1.0]])
            q = np.array([[2 * math.pi * self.linewidth_hz * dt + (2 * math.pi) ** 2 * self.cfo_walk * dt ** 3 / 3,
                           2 * math.pi * self.cfo_walk * dt ** 2 / 2],
                          [2 * math.pi * self.cfo_walk * dt ** 2 / 2, self.cfo_walk * dt]])
            x, p = f @ x, f @ p @ f.T + q
            x, p = _update(x, p, np.array([0.0, 1.0]), obs[i].cfo_hz - self._f_ref, var_fine[i])
            innovation, spread = _wrap(phase[i] - x[0]), math.sqrt(p[0, 0] + var_phase[i])
            if spread <= MAX_STEP_STD:
                normalized.append(innovation / spread)
            if spread <= MAX_STEP_STD and abs(innovation) <= GATE_SIGMAS * spread:
                x, p = _update(x, p, np.array([1.0, 0.0]), x[0] + innovation, var_phase[i])
            else:    # cannot unwrap across this gap, or the phase is not what the model allows: re-acquire it
                x[0] = phase[i]
                p[0, 0], p[0, 1], p[1, 0] = var_phase[i], 0.0, 0.0
        return float(self._f_ref + x[1]), math.sqrt(float(p[1, 1])), normalized


def _wrap(a: float) -> float:
    """``a`` wrapped into (−π, π]."""
    return float(np.angle(np.exp(1j * a)))


def _update(x: np.ndarray, p: np.ndarray, h: np.ndarray, z: float, r: float) -> tuple[np.ndarray, np.ndarray]:
    """Kalman update of state ``x`` (covariance ``p``) with a scalar measurement ``z = h·x + noise`` of variance r."""
    ph = p @ h
    gain = ph / (h @ ph + r)
    return x + gain * (z - h @ x), p - np.outer(gain, ph)
