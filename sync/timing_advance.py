"""Timing-advance commands: quantization to the LTE/NR step, the device's closed loop, and the alignment timer.

The LTE timing-advance granularity is 16·Ts with Ts = 1/(15 kHz · 2048): 16/2048 of an OFDM symbol's useful part.
otalab keeps that *fraction of the symbol* when the numerology changes, so on an ``fft_size``-point OFDM the step is
``16 · fft_size / 2048`` samples (0.5 sample for the 64-point preset; 2 samples for 256). NR divides the LTE step by
2^mu for subcarrier-spacing index mu (TS 38.213 §4.2: 16·64·Tc/2^mu), selectable with ``nr_mu``. A TA command carries
an integer number of steps; an absolute command (from random access) sets the advance, a relative one (closed loop)
adds to it, as in LTE's RAR (11 bits) and MAC CE (6 bits, offset 31).

Where TA is applied: :func:`advanced_start` turns a slot on the device's clock into the integer sample the burst is
handed to the radio at and the fractional delay the burst itself carries (:mod:`sync.device` uses it for every
uplink transmission: PRACH without advance, msg3 with the RAR's, pilots and data with the loop's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def ta_step_samples(fft_size: int, nr_mu: int | None = None) -> float:
    """TA granularity in samples: 16·fft_size/2048 (LTE), divided by 2**nr_mu for NR numerology ``nr_mu`` (0..4)."""
    if fft_size <= 0:
        raise ValueError(f"fft_size must be > 0, got {fft_size}")
    step = 16.0 * fft_size / 2048.0
    if nr_mu is not None:
        if nr_mu not in (0, 1, 2, 3, 4):
            raise ValueError(f"NR numerology mu must be one of 0..4, got {nr_mu}")
        step /= 2 ** nr_mu
    return step


@dataclass(frozen=True)
class TimingAdvanceCommand:
    """A TA command for one device: ``steps`` of ``step`` samples; absolute (RAR) or relative (closed-loop update)."""

    device: int
    steps: int
    step: float
    absolute: bool = True

    @property
    def samples(self) -> float:
        """The advance (absolute) or its change (relative), in samples."""
        return self.steps * self.step


def quantize_ta(delay_samples: float, step: float, absolute: bool = True, max_steps: int | None = None) -> int:
    """Round a measured delay (absolute round trip, or timing error for a relative update) to TA steps.

    Absolute commands are clipped at 0 (a device cannot transmit later than its downlink timing) and at ``max_steps``
    (LTE: 1282 for the 11-bit RAR field); relative commands are clipped to ±``max_steps`` (LTE MAC CE: ±31).
    """
    if step <= 0:
        raise ValueError(f"TA step must be > 0 samples, got {step}")
    n = int(round(delay_samples / step))
    if absolute:
        n = max(n, 0)
        return n if max_steps is None else min(n, max_steps)
    return n if max_steps is None else max(-max_steps, min(n, max_steps))


class TimingAdvanceLoop:
    """Device-side TA state: applies commands and runs the time-alignment timer.

    ``advance`` is the current advance in samples. ``apply(cmd, now)`` updates it and restarts the timer;
    ``aligned(now)`` is False once ``timer`` samples passed without a command — the device must then go back to
    random access (LTE's timeAlignmentTimer).
    """

    def __init__(self, step: float, timer: int):
        if timer <= 0:
            raise ValueError(f"time-alignment timer must be > 0 samples, got {timer}")
        self.step = step
        self.timer = timer
        self.advance = 0.0
        self._last: int | None = None

    def apply(self, cmd: TimingAdvanceCommand, now: int) -> None:
        """Apply a TA command received at sample time ``now``."""
        self.advance = cmd.samples if cmd.absolute else self.advance + cmd.samples
        self._last = now

    def aligned(self, now: int) -> bool:
        """True while the device holds a valid timing advance."""
        return self._last is not None and now - self._last <= self.timer

    def reset(self) -> None:
        """Drop the advance (timer expired or access restarted)."""
        self.advance = 0.0
        self._last = None


def advanced_start(local_slot: float, advance: float) -> tuple[int, float]:
    """Apply a timing advance to a transmission whose slot starts at ``local_slot`` on the device's clock (fractional
    samples): the burst starts ``advance`` samples earlier. Returns (integer sample time for the radio's ``tx(at=)``,
    fractional delay in [0, 1) samples the burst must carry): ``local_slot − advance = start + frac``."""
    local = local_slot - advance
    start = int(math.floor(local))
    return start, local - start
