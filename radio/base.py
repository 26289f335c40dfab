"""The one Radio interface every device and simulated air in otalab implements.

Time is an integer sample count at the radio's sample rate (``int``, never seconds). A radio's clock starts at an
arbitrary value (0 for the simulated air); convert to seconds only at the edges with ``t / radio.sample_rate``.

Contract
--------
``tx(samples, at=None) -> int``
    Queue ``samples`` (1-D complex64, amplitude ≤ 1 in full-scale units) for transmission starting at sample time ``at``
    (``None``: as soon as possible). Returns the sample time of the first transmitted sample. A time already in the past
    raises :class:`LateError`. Radios without hardware timestamps realise ``at`` on the host and say so in
    :attr:`Radio.capabilities`.
``rx(n, at=None) -> (samples, t0)``
    Receive ``n`` samples (1-D complex64). ``at=None`` continues the stream where the previous ``rx`` ended (the first
    call starts at "now"); ``at`` given starts there, skipping samples in between. Returns the samples and the sample
    time ``t0`` of the first one. Asking for samples that are gone raises :class:`LateError`.
``time_now() -> int``
    The radio's current sample time.
``close()``
    Releases the device; radios are context managers.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


class RadioError(RuntimeError):
    """A radio could not be opened, configured or driven (names the radio and what failed)."""


class LateError(RadioError):
    """A transmission or reception was scheduled at a sample time that has already passed."""

    def __init__(self, what: str, at: int, now: int):
        super().__init__(f"{what} scheduled at sample {at} but the radio is already at sample {now} "
                         f"({now - at} samples late)")
        self.at = at
        self.now = now


@dataclass(frozen=True)
class RadioCapabilities:
    """What a radio can do; experiments adapt to these (e.g. timing advance by timed TX or by sample shifting)."""

    timed_tx: bool              # hardware honours ``tx(at=...)`` to the sample
    timed_rx: bool              # hardware honours ``rx(at=...)`` to the sample
    full_duplex: bool = True    # can transmit and receive at the same time
    simulated: bool = False     # a simulated air, not a physical device
    timing_accuracy_samples: float = 0.0  # documented accuracy of ``at`` when realised on the host


def as_samples(samples, what: str = "samples") -> np.ndarray:
    """Validate and convert to a 1-D complex64 array; raises ValueError naming ``what`` on bad input."""
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of complex samples, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.complexfloating) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{what} must be complex (or real) floating point, got dtype {arr.dtype}")
    arr = arr.astype(np.complex64, copy=False)
    if arr.size and not np.all(np.isfinite(arr.view(np.float32))):
        raise ValueError(f"{what} contains NaN or infinite values")
    return arr


class Radio(abc.ABC):
    """Abstract radio with an integer sample-count clock (see module docstring for the contract)."""

    #: driver name used in configs and reprs ("loopback", "zmq", "pluto", "usrp")
    driver: str = "abstract"

    @property
    @abc.abstractmethod
    def sample_rate(self) -> float:
        """Samples per second."""

    @property
    @abc.abstractmethod
    def center_freq(self) -> float:
        """Carrier frequency in Hz."""

    @property
    @abc.abstractmethod
    def capabilities(self) -> RadioCapabilities:
        """What this radio can do."""

    @property
    def tx_gain(self) -> float:
        """Transmit gain in dB (driver-specific reference)."""
        return 0.0

    @property
    def rx_gain(self) -> float:
        """Receive gain in dB (driver-specific reference)."""
        return 0.0

    @abc.abstractmethod
    def tx(self, samples: np.ndarray, at: int | None = None) -> int:
        """Transmit ``samples`` starting at sample time ``at``; returns the start time. Raises LateError."""

    @abc.abstractmethod
    def rx(self, n: int, at: int | None = None) -> tuple[np.ndarray, int]:
        """Receive ``n`` samples; returns (complex64 samples, time of the first). Raises LateError."""

    @abc.abstractmethod
    def time_now(self) -> int:
        """Current sample time."""

    def close(self) -> None:
        """Release the radio. Idempotent."""

    def settings(self) -> dict:
        """The radio's settings as a flat dict for tables and result files."""
        return {"driver": self.driver, "sample_rate": self.sample_rate, "center_freq": self.center_freq,
                "tx_gain": self.tx_gain, "rx_gain": self.rx_gain}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        s = ", ".join(f"{k}={v!r}" for k, v in self.settings().items() if k != "driver")
        return f"{type(self).__name__}({s})"
