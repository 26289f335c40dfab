"""Random-access preambles (PRACH): Zadoff–Chu sequences, their waveform, and the PS-side detector and delay estimator.

The design follows LTE/NR PRACH, scaled to otalab's numerology. A preamble is one long OFDM symbol: a Zadoff–Chu
sequence of prime length ``n_zc`` placed on ``n_zc`` contiguous subcarriers of an ``fft_size``-point IFFT (centred on DC,
occupying the same band as the data subcarriers), preceded by a cyclic prefix ``cp_len`` that covers the largest
round-trip delay plus the channel's delay spread, and followed by a guard time. Every device uses one (root, cyclic
shift) pair; the cyclic shift ``c`` delays the sequence cyclically by ``c`` samples, so devices on one root are told
apart by where their correlation peak falls (zones of ``n_cs`` samples), and different roots are nearly orthogonal
(cross-correlation 1/sqrt(n_zc)).

Detection at the PS (frequency domain, per root): Y = FFT(window after the CP), correlation c = IFFT(Y · conj(X_u)).
A device on shift ``c`` whose preamble arrives ``tau`` samples after the slot start gives a peak at ``c + tau``. The
noise-only statistic |c[n]|² / E|c|² is Exp(1) distributed, so a threshold ``eta`` on the zone maximum gives a false-alarm
probability per zone ``1 - (1 - exp(-eta))**n_cs`` (solved for eta from the requested rate). The noise level is the
median of the correlation power away from the zones' peaks (it includes other roots' leakage), but never below the
thermal level measured on the FFT bins outside the ZC band (which stays right however many preambles fill the zones).

Fine delay: the maximum-likelihood estimate for one path with unknown complex gain, ``argmax_tau |sum_m Y[m] X*[m]
exp(+j 2 pi m tau / N)|``, refined around the integer peak by two zoom stages and a parabola. Its Cramér–Rao bound is
:func:`delay_crlb_samples`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft

from phy.chest import ml_delay


def largest_prime_at_most(n: int) -> int:
    """Largest prime ≤ n (n ≥ 2)."""
    if n < 2:
        raise ValueError(f"no prime at most {n}")
    for p in range(n, 1, -1):
        if all(p % d for d in range(2, int(math.isqrt(p)) + 1)):
            return p
    raise AssertionError("unreachable")


def zadoff_chu(root: int, n_zc: int) -> np.ndarray:
    """Zadoff–Chu sequence x_u(n) = exp(-j pi u n (n+1) / N_zc), n = 0..N_zc-1 (odd prime N_zc); complex128[n_zc]."""
    if not 0 < root < n_zc or math.gcd(root, n_zc) != 1:
        raise ValueError(f"ZC root must be in 1..{n_zc - 1} and coprime with n_zc={n_zc}, got {root}")
    n = np.arange(n_zc, dtype=np.float64)
    return np.exp(-1j * np.pi * root * n * (n + 1) / n_zc)


@dataclass(frozen=True)
class PrachConfig:
    """PRACH numerology, in samples at the radio's sample rate.

    ``fft_size``: preamble IFFT size (its subcarrier spacing is fs/fft_size); ``n_zc``: ZC length (odd prime ≤
    fft_size); ``cp_len``: cyclic prefix (≥ max round trip + delay spread); ``guard_len``: silence after the preamble
    (≥ max round trip, so the next slot is clean); ``n_cs``: cyclic-shift zone width (≥ max round trip + delay spread +
    ``early_margin``); ``roots``: ZC roots in use; ``early_margin``: samples a preamble may arrive before the slot.
    """

    fft_size: int = 1024
    n_zc: int = 829
    cp_len: int = 704
    guard_len: int = 704
    n_cs: int = 1024
    roots: tuple[int, ...] = (25, 34, 129, 140, 200, 310, 419, 500, 620, 710, 777, 800)
    early_margin: int = 8

    def __post_init__(self):
        if self.fft_size < 16 or self.fft_size & (self.fft_size - 1):
            raise ValueError(f"PRACH fft_size must be a power of two ≥ 16, got {self.fft_size}")
        if self.n_zc > self.fft_size or self.n_zc != largest_prime_at_most(self.n_zc) or self.n_zc < 3:
            raise ValueError(f"PRACH n_zc must be an odd prime ≤ fft_size={self.fft_size}, got {self.n_zc}")
        if not 0 < self.n_cs <= self.fft_size:
            raise ValueError(f"PRACH n_cs must be in 1..fft_size={self.fft_size}, got {self.n_cs}")
        if self.cp_len < 0 or self.guard_len < 0 or self.early_margin < 0:
            raise ValueError("PRACH cp_len, guard_len and early_margin must be ≥ 0")
        if not self.roots:
            raise ValueError("PRACH needs at least one ZC root")
        bad = [r for r in self.roots if not 0 < r < self.n_zc]
        if bad:
            raise ValueError(f"PRACH roots must be in 1..{self.n_zc - 1}, got {bad}")

    @property
    def shifts_per_root(self) -> int:
        """Number of cyclic-shift zones on one root."""
        return self.fft_size // self.n_cs

    @property
    def n_preambles(self) -> int:
        """Distinct (root, shift) preambles available."""
        return self.shifts_per_root * len(self.roots)

    @property
    def slot_len(self) -> int:
        """Samples one PRACH slot occupies on the air (CP + sequence + guard)."""
        return self.cp_len + self.fft_size + self.guard_len

    @property
    def subcarriers(self) -> np.ndarray:
        """Signed subcarrier indices carrying the ZC sequence (contiguous, centred on DC); int64[n_zc]."""
        return np.arange(self.n_zc) - self.n_zc // 2

    def preamble_id(self, index: int) -> tuple[int, int]:
        """Preamble ``index`` -> (root, cyclic shift in samples)."""
        if not 0 <= index < self.n_preambles:
            raise ValueError(f"preamble index must be in 0..{self.n_preambles - 1}, got {index}")
        root = self.roots[index // self.shifts_per_root]
        return root, (index % self.shifts_per_root) * self.n_cs

    @classmethod
    def for_cell(cls, fft_size_data: int, used_fraction: float, sample_rate: float, max_rtt_samples: float,
                 delay_spread_samples: float, oversampling: int = 16, n_roots: int = 12,
                 min_preambles: int = 0) -> "PrachConfig":
        """Size a PRACH for a cell: IFFT ``oversampling`` × the data FFT, ZC on the same used band, CP/guard/zone from
        the largest round trip (2 × cell radius / c × fs) plus the delay spread; at least ``n_roots`` roots, more if
        ``min_preambles`` preambles would not fit."""
        fft_size = fft_size_data * oversampling
        n_zc = largest_prime_at_most(max(3, int(fft_size * used_fraction)))
        need = int(math.ceil(max_rtt_samples + delay_spread_samples)) + 8
        if need > fft_size:
            raise ValueError(f"a PRACH of {fft_size} samples ({oversampling} x the {fft_size_data}-point data FFT) "
                             f"cannot resolve round trips up to {need} samples: raise prach_oversampling to at least "
                             f"{1 << math.ceil(math.log2(need / fft_size_data))} or shrink the cell")
        cp = max(need, fft_size_data // 4)
        n_cs = min(fft_size, max(need + 8, 1))
        n_cs = fft_size // (fft_size // n_cs)  # equal zones
        n_roots = max(n_roots, -(-min_preambles // (fft_size // n_cs)))
        rng = np.random.default_rng(n_zc)
        roots = tuple(sorted(int(r) for r in rng.choice(np.arange(1, n_zc), size=min(n_roots, n_zc - 1),
                                                          replace=False)))
        return cls(fft_size=fft_size, n_zc=n_zc, cp_len=cp, guard_len=cp, n_cs=n_cs, roots=roots)


def delay_crlb_samples(snr_per_subcarrier: float, subcarriers: np.ndarray, fft_size: int) -> float:
    """Cramér–Rao bound on the standard deviation (in samples) of a delay estimate from one OFDM symbol.

    Model: Y[m] = h X[m] exp(-j 2 pi m tau / N) + W[m], |X[m]| = 1, W ~ CN(0, sigma^2), unknown complex h, over the
    subcarriers m. Fisher information for tau with h unknown: J = 2 |h|^2 / sigma^2 · (2 pi / N)^2 · Σ (m − m̄)^2, so
    std(tau) ≥ 1 / sqrt(8 pi^2 · SNR · Σ ((m − m̄)/N)^2) with SNR = |h|^2 / sigma^2 per subcarrier.
    """
    m = np.asarray(subcarriers, dtype=np.float64)
    spread = np.sum((m - m.mean()) ** 2) / fft_size ** 2
    return float(1.0 / math.sqrt(8 * math.pi ** 2 * snr_per_subcarrier * spread))


class PrachWaveform:
    """Generates PRACH preambles for a :class:`PrachConfig`.

    ``preamble(index, advance=0.0)`` returns complex64[cp_len + fft_size]: unit power per ZC subcarrier with the
    orthonormal IFFT (the data OFDM convention), optionally advanced by a fractional number of samples (a phase ramp
    across subcarriers — exact for the cyclic part, used to apply fractional timing advance without a filter).
    """

    def __init__(self, cfg: PrachConfig):
        self.cfg = cfg
        self._bins = np.mod(cfg.subcarriers, cfg.fft_size)
        self._seq = {r: zadoff_chu(r, cfg.n_zc) for r in cfg.roots}

    def frequency_domain(self, index: int) -> np.ndarray:
        """Subcarrier values of preamble ``index`` (cyclic shift included); complex128[n_zc]."""
        root, shift = self.cfg.preamble_id(index)
        m = self.cfg.subcarriers
        return self._seq[root] * np.exp(-2j * np.pi * m * shift / self.cfg.fft_size)

    def preamble(self, index: int, advance: float = 0.0) -> np.ndarray:
        """Time-domain preamble with CP; ``advance`` > 0 shifts it earlier by that many (fractional) samples."""
        cfg = self.cfg
        spec = np.zeros(cfg.fft_size, dtype=np.complex128)
        spec[self._bins] = self.frequency_domain(index) * np.exp(2j * np.pi * cfg.subcarriers * advance / cfg.fft_size)
        body = sfft.ifft(spec, norm="ortho")
        return np.concatenate([body[cfg.fft_size - cfg.cp_len:], body]).astype(np.complex64)


@dataclass
class PrachDetection:
    """One detected preamble: its index, delay after the slot start (fractional samples), received power per
    subcarrier (linear, same units as the data SNR convention), the peak's normalized metric, and collision flag."""

    index: int
    delay: float
    power: float
    metric: float
    collision: bool = False
    peaks: list[float] = field(default_factory=list)


class PrachDetector:
    """PS-side PRACH detector and ML delay estimator (see module docstring).

    ``detect(window)`` takes complex[fft_size] samples starting ``cp_len`` after the slot start (the CP removed) and
    returns one :class:`PrachDetection` per preamble whose zone peak exceeds the false-alarm threshold. A second peak
    in the same zone separated by more than ``collision_separation`` samples and within ``collision_ratio`` of the
    first flags a collision (two devices that picked the same preamble at different distances).
    """

    def __init__(self, cfg: PrachConfig, false_alarm_rate: float = 1e-3, collision_separation: float = 4.0,
                 collision_ratio: float = 0.25):
        if not 0 < false_alarm_rate < 1:
            raise ValueError(f"false_alarm_rate must be in (0, 1), got {false_alarm_rate}")
        self.cfg = cfg
        self.waveform = PrachWaveform(cfg)
        self._bins = np.mod(cfg.subcarriers, cfg.fft_size)
        self._m = cfg.subcarriers.astype(np.float64)
        # Exp(1) statistic, max over a zone of n_cs samples: P_fa(zone) = 1 - (1 - e^-eta)^n_cs. With the noise level
        # estimated from M out-of-band bins (sigma² · Gamma(M, 1/M)), P(|c|²/est > eta) = (1 + eta/M)^-M instead.
        p_sample = 1 - (1 - false_alarm_rate) ** (1.0 / cfg.n_cs)
        self.threshold = -math.log(p_sample)
        self.collision_separation = collision_separation
        self.collision_ratio = collision_ratio
        self._conj = {r: np.conj(zadoff_chu(r, cfg.n_zc)) for r in cfg.roots}
        # bins away from the ZC band (2 bins of margin each side): noise only
        outside = np.ones(cfg.fft_size, bool)
        outside[np.mod(np.arange(-cfg.n_zc // 2 - 2, cfg.n_zc - cfg.n_zc // 2 + 2), cfg.fft_size)] = False
        self._noise_bins = np.flatnonzero(outside)
        if self._noise_bins.size >= 16:
            m = self._noise_bins.size
            self.threshold = m * (p_sample ** (-1.0 / m) - 1)
        #: int[shifts_per_root, n_cs]: correlation indices of each cyclic-shift zone (from ``early_margin`` before it)
        self._zones = (np.arange(cfg.shifts_per_root)[:, None] * cfg.n_cs - cfg.early_margin
                       + np.arange(cfg.n_cs)) % cfg.fft_size

    def correlate(self, window: np.ndarray) -> tuple[dict[int, np.ndarray], np.ndarray]:
        """Per root, the circular correlation c[n] (complex128[fft_size], peak h·n_zc/N for a preamble of gain h),
        and the received ZC subcarriers Y (complex128[n_zc])."""
        cfg = self.cfg
        window = np.asarray(window)
        if window.shape != (cfg.fft_size,):
            raise ValueError(f"PRACH window must have shape ({cfg.fft_size},), got {window.shape}")
        full = sfft.fft(window.astype(np.complex128), norm="ortho")
        y = full[self._bins]
        self._sigma2 = float(np.mean(np.abs(full[self._noise_bins]) ** 2)) if self._noise_bins.size >= 16 else None
        out = {}
        spec = np.zeros(cfg.fft_size, dtype=np.complex128)
        for r, xc in self._conj.items():
            spec[self._bins] = y * xc
            out[r] = sfft.ifft(spec)  # peak value = sum_m Y X* e^{...} / N
        return out, y

    def fine_delay(self, y: np.ndarray, root: int, coarse: float) -> tuple[float, complex]:
        """ML delay refinement around ``coarse`` (samples, shift included); returns (delay, complex gain h)."""
        return ml_delay(y * self._conj[root], self._m, self.cfg.fft_size, coarse)

    def detect(self, window: np.ndarray) -> list[PrachDetection]:
        """Detect preambles in one PRACH window (CP removed); NaN input yields no detections."""
        cfg = self.cfg
        window = np.asarray(window)
        if window.shape != (cfg.fft_size,):
            raise ValueError(f"PRACH window must have shape ({cfg.fft_size},), got {window.shape}")
        if not np.all(np.isfinite(window)):
            return []
        corr, y = self.correlate(window)
        out: list[PrachDetection] = []
        for k, root in enumerate(cfg.roots):
            power = np.abs(corr[root]) ** 2
            # noise + interference per correlation sample: the median of the correlation power away from every
            # zone's peak (median of Exp(s) is s ln 2; other roots leak in at about 1/n_zc), never below the
            # thermal level n_zc sigma² / N² measured on the bins outside the ZC band
            zones = power[self._zones]                                  # [shifts, n_cs]
            peak = self._zones[np.arange(zones.shape[0]), np.argmax(zones, axis=1)]
            mask = np.ones(cfg.fft_size, bool)
            mask[(peak[:, None] + np.arange(-3, 4)) % cfg.fft_size] = False
            noise = float(np.median(power[mask])) / math.log(2) + 1e-30
            if self._sigma2 is not None:
                noise = max(noise, self._sigma2 * cfg.n_zc / cfg.fft_size ** 2)
            metric = zones / noise
            for s in np.flatnonzero(metric.max(axis=1) >= self.threshold):
                s = int(s)
                lo = s * cfg.n_cs - cfg.early_margin
                zone = metric[s]
                j = int(np.argmax(zone))
                coarse = float(lo + j)
                delay, h = self.fine_delay(y, root, coarse)
                delay -= s * cfg.n_cs
                # a second peak in the zone, away from the first, flags two devices on one preamble
                far = np.abs(np.arange(cfg.n_cs) - j) > self.collision_separation + 1
                second = zone[far].max() if far.any() else 0.0
                peaks = [delay]
                collision = bool(second > max(self.threshold, self.collision_ratio * zone[j]))
                if collision:
                    peaks.append(float(lo + int(np.flatnonzero(far)[np.argmax(zone[far])]) - s * cfg.n_cs))
                # E|c|^2 under noise = n_zc sigma^2 / N^2; the estimate of h carries sigma^2 / n_zc of noise power
                sigma2 = noise * cfg.fft_size ** 2 / cfg.n_zc
                sig = max(abs(h) ** 2 - sigma2 / cfg.n_zc, 0.0)
                out.append(PrachDetection(index=k * cfg.shifts_per_root + s, delay=delay, power=sig,
                                          metric=float(zone[j]), collision=collision, peaks=peaks))
        return out
