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
``tx_status(at, timeout_s=0.0) -> TxStatus``
    Whether the burst scheduled at ``at`` left on time, as far as the radio can tell (a USRP from its async messages,
    a simulated air from its deadline check); the default says ``"unknown"``.

Wall-clock radios (``capabilities.wall_clock``) run on their own clock whether or not anyone reads: ``rx(n)`` blocks
until the samples exist, and a continuing ``rx(n)`` (``at=None``) after the reader fell behind further than the radio
buffers returns the oldest samples still held, with ``t0`` jumped past the lost ones (as UHD's overflow does): the
caller sees the gap as ``t0`` != where the previous read ended, never as a shifted index. ``thread_safe`` radios accept
calls from several threads at once (e.g. a TX thread while an RX thread waits in ``rx``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Literal

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
    wall_clock: bool = False    # the clock runs on its own (hardware, realtime air), not only when someone reads


@dataclass(frozen=True)
class TxStatus:
    """Outcome of one transmitted burst, as far as its radio can tell.

    ``at``: the sample time the burst was scheduled at; ``state``: ``"on_time"`` (left at ``at``), ``"late"`` (left
    later or not at all: the deadline had passed on the device), ``"underflow"`` (the device ran out of samples in the
    middle of it), ``"unknown"`` (this radio cannot tell); ``detail``: a human-readable reason; ``lock_epoch``: for
    a radio whose TX is locked to RX with a constant offset (a streaming Pluto), the lock epoch the burst left in
    (one constant per epoch), else None.
    """

    at: int
    state: Literal["on_time", "late", "underflow", "unknown"] = "unknown"
    detail: str = ""
    lock_epoch: int | None = None

    @property
    def on_time(self) -> bool | None:
        """True/False when known, None for ``"unknown"``."""
        return None if self.state == "unknown" else self.state == "on_time"


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
    #: calls may overlap from several threads (otherwise a caller such as the radio node serialises them)
    thread_safe: bool = False

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

    def tx_status(self, at: int, timeout_s: float = 0.0) -> TxStatus:
        """Whether the burst scheduled at sample time ``at`` left on time; waits at most ``timeout_s`` for the
        device to tell. Default for radios that cannot tell: state ``"unknown"``."""
        return TxStatus(int(at), "unknown", f"{type(self).__name__} does not report burst outcomes")

    def rx_gaps(self) -> list[tuple[int, int]]:
        """``[start, end)`` sample-time intervals that this radio lost and zero-filled in place in what ``rx``
        returned (the index kept, so no jump of ``t0`` shows them), oldest first; a radio node flags them in its
        ring. Default: none (radios that show a loss as a jump of ``t0``)."""
        return []

    def min_lead_samples(self) -> int:
        """How far ahead of ``time_now()`` a ``tx`` must be scheduled to leave on time (e.g. a streaming Pluto: the
        TX buffers queued ahead of its DAC plus its calibrated TX offset). Default 0."""
        return 0

    def timing_state(self) -> dict | None:
        """How this radio's TX is held to its RX clock, JSON-ready, for a node's status (e.g. a streaming Pluto's
        lock epoch, its TX offset calibration and stream counters). Default None: nothing beyond the node's own
        counters."""
        return None

    def rx_arrivals(self) -> tuple[list[tuple[int, float]], float] | None:
        """When the radio's own RX stream knows better than a reader when its samples arrived: ``(stamps,
        delivery_s)``; ``stamps`` are ``(t, mono)`` pairs for the blocks received since the last call, ``t`` the
        sample time just after a block and ``mono`` the host's ``time.monotonic()`` when the radio's RX thread had
        it (e.g. a Pluto's refill returned); ``delivery_s`` the radio's shortest delivery seen (a Pluto: its
        shortest refill), for the record only. A radio node fits its clock map to the stamps as they are and reports
        ``delivery_s`` in its stats (``refill_shortest_s``): subtracting it over-corrected (it holds the request's
        round trip too). Default None: the radio does not stamp (the reader stamps its reads)."""
        return None

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
