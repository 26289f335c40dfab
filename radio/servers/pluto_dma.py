"""Pieces of the emulated Pluto's hardware model that are not protocol: the free-running device clock and the DDS.

* :class:`DeviceClock`: the AD9363's sample counter against the host's monotonic clock,
  ``t(m) = epoch + floor((m − m0) · rate · (1 + ppm·1e-6))`` samples at monotonic time ``m`` (s). ``epoch`` is the
  count at ``m0`` (a device powered on at an arbitrary moment), ``ppm`` its crystal's error against the host.
* :func:`dds_words`: the AXI DDS core (``cf-ad9361-dds-core-lpc``) of a Pluto makes two tones per converter:
  ``I[t] = Σ_k scale_k · 2**15 · sin(2π f_k t / fs + phase_k · π/180000)`` over the I tones (``TX1_I_F1``,
  ``TX1_I_F2``) and the same for Q, with ``t`` the absolute DAC sample index (the phase accumulators run freely),
  ``scale`` 0..1 (1: full scale), ``phase`` in millidegrees, ``raw`` 1 = the tone is on. pyadi-iio's
  ``dds_single_tone(f, s)`` sets ``I_F1`` to phase 90000 and ``Q_F1`` to phase 0 with the same f and s, which gives
  ``s · 2**15 · exp(j 2π f t / fs)``: a tone at +f.

Why written here: this is the emulator's own hardware model (DESIGN: the project's core test path for the Pluto).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

#: DDS full scale in DAC words (scale 1.0)
DDS_FULL_SCALE = 2 ** 15
DDS_TONES = ("TX1_I_F1", "TX1_I_F2", "TX1_Q_F1", "TX1_Q_F2")


class DeviceClock:
    """A free-running sample counter: ``now()`` = ``epoch + floor((monotonic − m0) · rate · (1 + ppm·1e-6))``."""

    def __init__(self, rate: float, epoch: int = 0, ppm: float = 0.0, m0: float | None = None):
        if not rate > 0:
            raise ValueError(f"rate must be > 0 S/s, got {rate}")
        if not -1000 <= ppm <= 1000:
            raise ValueError(f"ppm must be within ±1000, got {ppm}")
        self.rate = float(rate)
        self.epoch = int(epoch)
        self.ppm = float(ppm)
        self.m0 = time.monotonic() if m0 is None else float(m0)
        self._scale = self.rate * (1.0 + self.ppm * 1e-6)

    def now(self, mono: float | None = None) -> int:
        """The device's sample count at monotonic time ``mono`` (default: now)."""
        m = time.monotonic() if mono is None else mono
        return self.epoch + math.floor((m - self.m0) * self._scale)

    def mono_at(self, t: int) -> float:
        """Monotonic time (s) at which the counter reaches ``t``."""
        return self.m0 + (t - self.epoch) / self._scale

    def retune(self, rate: float) -> None:
        """A new sample rate from now on; the count continues from its current value."""
        m = time.monotonic()
        self.epoch, self.m0, self.rate = self.now(m), m, float(rate)
        self._scale = self.rate * (1.0 + self.ppm * 1e-6)


@dataclass
class DdsTone:
    """One DDS tone's attributes (as the driver stores them)."""

    frequency: int = 9279985
    scale: float = 0.25
    phase: int = 0
    raw: int = 1


def dds_words(tones: dict[str, DdsTone], t0: int, n: int, rate: float) -> np.ndarray:
    """complex64 [n] DAC words (integer valued, clipped to int16) the DDS outputs at sample times t0..t0+n-1."""
    t = np.arange(t0, t0 + n, dtype=np.float64)
    out = np.zeros((n, 2), dtype=np.float64)
    for name, tone in tones.items():
        if not tone.raw or tone.scale == 0.0:
            continue
        col = 0 if "_I_" in name else 1
        # exact phase for large t: reduce f·t modulo fs in integers before going to radians
        cycles = np.mod(np.int64(tone.frequency) * (t.astype(np.int64) % int(round(rate))), int(round(rate))) / rate
        out[:, col] += tone.scale * DDS_FULL_SCALE * np.sin(2 * np.pi * cycles + tone.phase * np.pi / 180000.0)
    np.rint(out, out=out)
    np.clip(out, -32768, 32767, out=out)
    return out.astype(np.float32).view(np.complex64).ravel()
