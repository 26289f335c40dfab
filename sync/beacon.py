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
    """Device side: turns received beacons into a PS→local time map and a CFO estimate (see module docstring)."""

    def __init__(self, cfg: OfdmConfig, period: int, history: int = 16, code_rate: float | None = 0.5,
                 modem: str = "qpsk"):
        self.cfg = cfg
        self.period = period
        self.history = history
        self.source = BeaconSource(cfg, code_rate, modem)
        self.obs: list[BeaconObservation] = []
        self.missed = 0
        self.outliers = 0        #: beacons left out of the time map as mistimed (see _inliers)
        self._used = np.asarray(cfg.used_subcarriers, dtype=np.float64)
        self._f_ref: float | None = None

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
        self.obs.append(BeaconObservation(ps_time, counter, float(local), float(cfo), corr, float(frame.snr_db)))
        del self.obs[:-self.history]
        return True

    # ------------------------------------------------------------------ estimates
    @property
    def synced(self) -> bool:
        """At least one beacon seen (time map and CFO defined)."""
        return bool(self.obs)

    def _inliers(self) -> np.ndarray:
        """bool[n]: the observations that agree with the others (a beacon the receiver mistimed — by tens of samples,
        seen on multipath at low SNR — would otherwise bend the time map for every later transmission). The reference
        is the median offset local − PS time; the tolerance allows 4 samples plus ±50 ppm of clock drift."""
        x = np.array([o.ps_time for o in self.obs], dtype=np.float64)
        r = np.array([o.local_time for o in self.obs]) - x
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
        """CFO of the PS as seen by the device (PS carrier − device carrier, Hz).

        One beacon: the fine two-half estimate. Several: the slope of the whole-frame correlation phase, unwrapped
        beacon to beacon with the mean fine estimate as the prediction (mistimed beacons left out)."""
        if not self.obs:
            raise RuntimeError("no beacon received yet: the device has no frequency reference")
        obs = [o for o, k in zip(self.obs, self._inliers()) if k]
        fine = float(np.mean([o.cfo_hz for o in obs]))
        if len(obs) < 2:
            return fine
        fs = self.cfg.sample_rate
        t = np.array([o.local_time for o in obs])
        phase = np.angle([o.corr for o in obs])
        pred = 2 * np.pi * (fine - self._f_ref) / fs * np.diff(t)
        steps = pred + np.angle(np.exp(1j * (np.diff(phase) - pred)))
        unwrapped = np.concatenate([[phase[0]], phase[0] + np.cumsum(steps)])
        slope = np.polyfit(t - t.mean(), unwrapped, 1)[0]
        tracked = float(self._f_ref + slope * fs / (2 * math.pi))
        # an unwrapping slip (low SNR) shows as a jump far beyond the per-beacon estimates' spread: keep those then
        spread = float(np.std([o.cfo_hz for o in obs])) + 0.002 * self.cfg.subcarrier_spacing
        return tracked if abs(tracked - fine) <= 4 * spread else fine
