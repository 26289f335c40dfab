"""Wrappers: a radio seen through something (a shifted clock, a recorder), on one base class.

:class:`RadioWrapper` forwards the whole :class:`radio.base.Radio` contract (sample rate, carrier, capabilities,
gains, ``time_now``/``tx``/``rx``/``close``/``settings``) to the radio it wraps, and any other attribute a driver
offers (``stats``, ``wait_tx_done``, ``emulator``, ...) through ``__getattr__``; a wrapper overrides only what it
changes. :class:`OffsetClockRadio` is the first such wrapper; :class:`radio.recording.RecordingRadio` the second.

OffsetClockRadio: real devices power up at arbitrary times, so their sample counters disagree by an unknown offset.
On the simulated air (one global clock) it gives each device its own clock: ``local = global + offset``. Everything
the wrapped radio reports or accepts is translated; synchronization code sees only local times, as on hardware.
"""

from __future__ import annotations

import numpy as np

from radio.base import Radio, RadioCapabilities, TxStatus


class RadioWrapper(Radio):
    """Base of every radio wrapper: forwards everything to ``inner`` (a :class:`Radio`)."""

    def __init__(self, inner: Radio):
        if not isinstance(inner, Radio):
            raise ValueError(f"inner = {inner!r}: expected a radio.base.Radio to wrap")
        self.inner = inner
        self.driver = inner.driver

    def __getattr__(self, name: str):
        # only called for names the wrapper itself lacks; never forward private names (and avoid recursion while
        # ``inner`` is not set yet, e.g. during unpickling)
        if name.startswith("_") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

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
        return self.inner.time_now()

    def tx(self, samples: np.ndarray, at: int | None = None) -> int:
        return self.inner.tx(samples, at)

    def rx(self, n: int, at: int | None = None) -> tuple[np.ndarray, int]:
        return self.inner.rx(n, at)

    def tx_status(self, at: int, timeout_s: float = 0.0) -> TxStatus:
        return self.inner.tx_status(at, timeout_s)

    def timing_state(self) -> dict | None:
        return self.inner.timing_state()

    def min_lead_samples(self) -> int:
        return self.inner.min_lead_samples()

    @property
    def thread_safe(self) -> bool:
        return self.inner.thread_safe

    def close(self) -> None:
        self.inner.close()

    def settings(self) -> dict:
        return dict(self.inner.settings())


class OffsetClockRadio(RadioWrapper):
    """Wraps ``radio`` so that its clock reads ``radio.time_now() + offset`` (offset: int samples, any sign)."""

    def __init__(self, radio: Radio, offset: int):
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
            raise ValueError(f"offset = {offset!r}: expected an integer number of samples")
        super().__init__(radio)
        self.offset = int(offset)

    def time_now(self) -> int:
        return self.inner.time_now() + self.offset

    def tx(self, samples: np.ndarray, at: int | None = None) -> int:
        return self.inner.tx(samples, None if at is None else at - self.offset) + self.offset

    def rx(self, n: int, at: int | None = None) -> tuple[np.ndarray, int]:
        x, t0 = self.inner.rx(n, None if at is None else at - self.offset)
        return x, t0 + self.offset

    def tx_status(self, at: int, timeout_s: float = 0.0) -> TxStatus:
        st = self.inner.tx_status(at - self.offset, timeout_s)
        return TxStatus(st.at + self.offset, st.state, st.detail)

    def settings(self) -> dict:
        return {**self.inner.settings(), "clock_offset": self.offset}
