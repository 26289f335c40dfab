"""A radio seen through its own free-running clock: an unknown sample-count offset from a reference radio's clock.

Real devices power up at arbitrary times, so their sample counters disagree by an unknown offset. On the simulated
air (one global clock) this wrapper gives each device its own clock: ``local = global + offset``. Everything the
wrapped radio reports or accepts is translated; synchronization code sees only local times, as it would on hardware.
"""

from __future__ import annotations

import numpy as np

from radio.base import Radio, RadioCapabilities


class OffsetClockRadio(Radio):
    """Wraps ``radio`` so that its clock reads ``radio.time_now() + offset`` (offset: int samples, any sign)."""

    def __init__(self, radio: Radio, offset: int):
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
            raise ValueError(f"offset = {offset!r}: expected an integer number of samples")
        self.inner = radio
        self.offset = int(offset)
        self.driver = radio.driver

    @property
    def sample_rate(self) -> float:
        return self.inner.sample_rate

    @property
    def center_freq(self) -> float:
        return self.inner.center_freq

    @property
    def capabilities(self) -> RadioCapabilities:
        return self.inner.capabilities

    @property
    def tx_gain(self) -> float:
        return self.inner.tx_gain

    @property
    def rx_gain(self) -> float:
        return self.inner.rx_gain

    def time_now(self) -> int:
        return self.inner.time_now() + self.offset

    def tx(self, samples: np.ndarray, at: int | None = None) -> int:
        return self.inner.tx(samples, None if at is None else at - self.offset) + self.offset

    def rx(self, n: int, at: int | None = None) -> tuple[np.ndarray, int]:
        x, t0 = self.inner.rx(n, None if at is None else at - self.offset)
        return x, t0 + self.offset

    def close(self) -> None:
        self.inner.close()

    def settings(self) -> dict:
        return {**self.inner.settings(), "clock_offset": self.offset}
