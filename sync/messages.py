"""Every message of the synchronization procedure, with its encoding: one module, one implementation each.

Two kinds travel between the PS actor (:mod:`sync.ps`) and the device actors (:mod:`sync.device`):

Over the air (bytes in the payload of a phy digital frame, LDPC-coded like the beacon)
    :class:`Beacon` (PS time + counter), :class:`Rar` (random-access response: per detected preamble its absolute TA,
    a msg3 slot or, contention-free, the pilot cover code, and a collision flag), :class:`Msg3` (a device's identity,
    contention-based access), :class:`Msg4` (contention resolution: device → pilot cover code) and the CSI/TA feedback
    (:func:`encode_feedback` / :func:`decode_feedback`, wrapped as :class:`Feedback`). ``to_bytes``/``from_bytes``;
    control frames start with a 4-byte magic (:func:`to_payload`, :func:`parse_payload`), so that a device's receiver
    can tell them apart on one stream. Bad bytes from the air make ``from_bytes`` raise ValueError and ``parse_payload``
    return None: the caller counts and drops them.

Orchestration (the control plane: Python objects in process today, Flower messages later)
    :class:`CellSetup`, :class:`AccessSlot`, :class:`Msg3Window`, :class:`RoundPlan`, :class:`DataRound`,
    :class:`DeviceStats`: plain dataclasses of ints, floats, strings, lists and dicts with ``to_dict``/``from_dict``,
    so a ``flwr`` ``ConfigRecord``/``MetricRecord`` (or JSON) can carry them unchanged. Every time in them is a sample
    count on the PS clock. Over-the-air model updates never travel here.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field

import numpy as np

# ------------------------------------------------------------------------------------------------ over the air
_BEACON = struct.Struct("<4sqI")          # magic, PS sample time of the frame start, counter
_BEACON_MAGIC = b"OTAB"
_RAR = struct.Struct("<HhHB")             # preamble index, TA steps, msg3 slot (or cover code), flags (1 = collision)
_MSG3 = struct.Struct("<HH")              # device id, preamble index
_MSG4 = struct.Struct("<HH")              # device id, cover code
_MAGIC = {b"OTAR": "rar", b"OTA3": "msg3", b"OTA4": "msg4", b"OTAF": "feedback"}
_KIND_MAGIC = {v: k for k, v in _MAGIC.items()}


@dataclass(frozen=True)
class Beacon:
    """Beacon payload: the PS's sample time of the frame start and a counter (wraps at 2³²)."""

    ps_time: int
    counter: int

    def to_bytes(self) -> bytes:
        return _BEACON.pack(_BEACON_MAGIC, int(self.ps_time), int(self.counter) & 0xFFFFFFFF)

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Beacon | None:
        """The beacon in ``data``, or None if it is not one (wrong size or magic)."""
        if data is None or len(data) != _BEACON.size:
            return None
        magic, ps_time, counter = _BEACON.unpack(data)
        return cls(ps_time, counter) if magic == _BEACON_MAGIC else None


@dataclass(frozen=True)
class RarEntry:
    """One detected preamble: ``ta_steps`` absolute TA, ``slot`` the msg3 slot index (contention-based) or the pilot
    cover code (contention-free), ``collision`` True if the PS saw two devices on the preamble (they back off)."""

    preamble: int
    ta_steps: int
    slot: int
    collision: bool = False


@dataclass(frozen=True)
class Rar:
    """Random-access response: one entry per detected preamble (none: a single zero byte on the air)."""

    entries: tuple[RarEntry, ...] = ()
    kind = "rar"

    def to_bytes(self) -> bytes:
        return b"".join(_RAR.pack(e.preamble, e.ta_steps, e.slot, int(e.collision)) for e in self.entries) or b"\0"

    @classmethod
    def from_bytes(cls, data: bytes) -> Rar:
        n = len(data) // _RAR.size
        return cls(tuple(RarEntry(p, s, m, bool(f & 1)) for p, s, m, f in
                         (_RAR.unpack_from(data, i * _RAR.size) for i in range(n))))


@dataclass(frozen=True)
class Msg3:
    """A device's identity on the PUSCH-like msg3 of contention-based access."""

    device: int
    preamble: int
    kind = "msg3"

    def to_bytes(self) -> bytes:
        return _MSG3.pack(self.device, self.preamble)

    @classmethod
    def from_bytes(cls, data: bytes) -> Msg3:
        if len(data) != _MSG3.size:
            raise ValueError(f"msg3 body of {len(data)} bytes: expected {_MSG3.size}")
        return cls(*_MSG3.unpack(data))

    @staticmethod
    def size() -> int:
        """Bytes of a msg3 frame's payload (magic included), for the PS's slot length."""
        return 4 + _MSG3.size


@dataclass(frozen=True)
class Msg4:
    """Contention resolution: (device, pilot cover code) pairs."""

    entries: tuple[tuple[int, int], ...] = ()
    kind = "msg4"

    def to_bytes(self) -> bytes:
        return b"".join(_MSG4.pack(d, c) for d, c in self.entries) or b"\0"

    @classmethod
    def from_bytes(cls, data: bytes) -> Msg4:
        n = len(data) // _MSG4.size
        return cls(tuple(_MSG4.unpack_from(data, i * _MSG4.size) for i in range(n)))


@dataclass(frozen=True)
class Feedback:
    """CSI/TA feedback after the uplink pilots, for all K devices (see :func:`encode_feedback`): common amplitude,
    taps complex64[K, taps] from delay ``first_delay``, relative TA steps int[K], active bool[K], error variance and
    fractional delay float[K]; ``bits`` per real number of the taps on the air."""

    alpha: float
    taps: np.ndarray
    first_delay: int
    ta_steps: np.ndarray
    active: np.ndarray
    error_var: np.ndarray
    shift: np.ndarray
    bits: int = 12
    kind = "feedback"

    def to_bytes(self) -> bytes:
        return encode_feedback(self.alpha, self.taps, self.first_delay, self.ta_steps, self.active, self.bits,
                               error_var=self.error_var, shift=self.shift)

    @classmethod
    def from_bytes(cls, data: bytes) -> Feedback:
        alpha, taps, first, steps, act, err, shift = decode_feedback(data)
        return cls(alpha, taps, first, steps, act, err, shift, bits=int(data[6]) if len(data) > 6 else 12)


_CONTROL = {"rar": Rar, "msg3": Msg3, "msg4": Msg4, "feedback": Feedback}


def to_payload(msg) -> bytes:
    """A control message as a frame payload: its 4-byte magic, then its bytes."""
    return _KIND_MAGIC[msg.kind] + msg.to_bytes()


def parse_payload(payload: bytes | None):
    """The control message in a received frame's payload (CRC already checked), or None when it is not one or its
    bytes do not decode (bad data from the air: the caller counts and drops it)."""
    if payload is None or len(payload) < 4 or payload[:4] not in _MAGIC:
        return None
    try:
        return _CONTROL[_MAGIC[payload[:4]]].from_bytes(payload[4:])
    except (ValueError, struct.error, IndexError):
        return None


def payload_kind(payload: bytes | None) -> str | None:
    """"rar", "msg3", "msg4", "feedback" for a control payload (by its magic only), else None."""
    if payload is None or len(payload) < 4:
        return None
    return _MAGIC.get(payload[:4])


# ------------------------------------------------------------------------------------- feedback serialization
_HEAD = struct.Struct("<fHBbB")    # alpha, n_devices, bits, first delay, taps
# per device, in device order: TA steps (relative), flags (1 = active), tap scale (half float, rounded up: the taps are
# quantized against the scale that travels), error variance (float: it can be far below a half float's normal range),
# fractional delay (half float: 2.4e-4 sample resolution in ±0.5). Every byte of this frame delays the data burst that
# uses the CSI, and the beacon tracker's clock-rate and CFO errors grow with that delay (docs/sync.md)
_DEV = struct.Struct("<bBefe")


def feedback_size(devices: int, taps: int, bits: int) -> int:
    """Largest feedback payload in bytes (control magic included), every tap kept: what a downlink frame must hold."""
    return 4 + _HEAD.size + devices * (_DEV.size + (taps + 7) // 8 + (2 * taps * bits + 7) // 8)


def _half(x: float) -> float:
    """``x`` clipped to the finite range of a half float (65504), so that packing never overflows."""
    return float(np.clip(x, -65504.0, 65504.0))


def _half_scale(x: float) -> float:
    """The smallest half float ≥ ``x`` > 0 (at least the smallest positive one): a tap scale that travels exactly."""
    h = np.float16(_half(x))
    if float(h) < x:
        h = np.nextafter(h, np.float16(np.inf))
    return float(max(h, np.float16(6e-8)))


def _pack(q: np.ndarray, bits: int) -> bytes:
    """Signed integers (|q| < 2**(bits-1)) → a big-endian bit string of ``bits`` bits each."""
    u = (q.astype(np.int64) + (1 << (bits - 1))).astype(np.uint32)
    b = (u[:, None] >> np.arange(bits - 1, -1, -1, dtype=np.uint32)) & 1
    return np.packbits(b.astype(np.uint8).reshape(-1)).tobytes()


def _unpack(data: bytes, count: int, bits: int) -> np.ndarray:
    b = np.unpackbits(np.frombuffer(data, np.uint8))[:count * bits].reshape(count, bits).astype(np.int64)
    return (b << np.arange(bits - 1, -1, -1)).sum(axis=1) - (1 << (bits - 1))


def encode_feedback(alpha: float, taps: np.ndarray, first_delay: int, ta_steps: np.ndarray, active: np.ndarray,
                    bits: int, error_var: np.ndarray | None = None, shift: np.ndarray | None = None) -> bytes:
    """Serialize the common amplitude, per-device TA updates, active flags and delay-domain channels
    (complex[K, taps] plus a fractional delay ``shift`` float[K]; ``bits`` per real number with a per-device scale,
    bit-packed) and the estimates' error variances (float[K], for the regularized inverse) for one downlink frame."""
    if not 2 <= bits <= 16:
        raise ValueError(f"feedback bits must be in 2..16, got {bits}")
    taps = np.asarray(taps)
    k, n_taps = taps.shape
    levels = 2 ** (bits - 1) - 1
    out = [_HEAD.pack(alpha, k, bits, int(first_delay), n_taps)]
    taps = np.nan_to_num(taps, nan=0.0, posinf=0.0, neginf=0.0)
    for i in range(k):
        kept = taps[i] != 0                     # only the significant taps travel: a bit mask, then their values
        iq = np.stack([taps[i][kept].real, taps[i][kept].imag], axis=-1).reshape(-1)
        scale = _half_scale(float(np.max(np.abs(iq)))) if iq.size and np.max(np.abs(iq)) > 0 else 1.0
        q = np.clip(np.round(iq / scale * levels), -levels, levels)
        err = 0.0 if error_var is None else float(error_var[i])
        sh = 0.0 if shift is None else float(shift[i])
        out.append(_DEV.pack(int(np.clip(ta_steps[i], -127, 127)), int(bool(active[i])), scale, err, _half(sh)))
        out.append(np.packbits(kept.astype(np.uint8)).tobytes())
        out.append(_pack(q, bits) if q.size else b"")
    return b"".join(out)


def decode_feedback(data: bytes) -> tuple[float, np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_feedback`: (alpha, taps complex64[K, taps], first_delay, ta_steps int[K],
    active bool[K], error_var float[K], shift float[K]). Raises ValueError on a payload of the wrong size."""
    if len(data) < _HEAD.size:
        raise ValueError(f"feedback payload of {len(data)} bytes is shorter than its header ({_HEAD.size})")
    alpha, k, bits, first_delay, n_taps = _HEAD.unpack_from(data, 0)
    if not 2 <= bits <= 16:
        raise ValueError(f"feedback payload says {bits} bits per value: expected 2..16")
    levels = 2 ** (bits - 1) - 1
    mask_len = (n_taps + 7) // 8
    taps = np.zeros((k, n_taps), np.complex64)
    ta = np.empty(k, int)
    act = np.empty(k, bool)
    err = np.empty(k, np.float32)
    shift = np.empty(k, np.float32)
    off = _HEAD.size
    for i in range(k):
        if len(data) < off + _DEV.size + mask_len:
            raise ValueError(f"feedback payload of {len(data)} bytes ends inside device {i} of {k}")
        ta[i], flags, scale, err[i], shift[i] = _DEV.unpack_from(data, off)
        act[i] = bool(flags & 1)
        kept = np.unpackbits(np.frombuffer(data, np.uint8, mask_len, off + _DEV.size))[:n_taps].astype(bool)
        n_val = 2 * int(kept.sum())
        size = (n_val * bits + 7) // 8
        off += _DEV.size + mask_len
        if len(data) < off + size:
            raise ValueError(f"feedback payload of {len(data)} bytes ends inside device {i}'s taps")
        q = _unpack(data[off:off + size], n_val, bits).astype(np.float32) / levels * scale
        taps[i, kept] = q[0::2] + 1j * q[1::2]
        off += size
    if off != len(data):
        raise ValueError(f"feedback payload has {len(data)} bytes: expected {off} for {k} devices")
    return float(alpha), taps, int(first_delay), ta, act, err, shift


# ------------------------------------------------------------------------------------------- orchestration
class _Plain:
    """to_dict/from_dict for dataclasses of plain types (int, float, str, bool, None, lists and str-keyed dicts)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}; expected some of {sorted(names)}")
        return cls(**{k: v for k, v in d.items()})


@dataclass(frozen=True)
class CellSetup(_Plain):
    """What every actor of a cell must agree on before access (both sides derive the PRACH numerology, guards and
    pilot codes from it with :class:`sync.layout.CellLayout`): ``devices`` K, ``sample_rate`` of the radios (Hz),
    ``n_pilot_symbols`` per refresh, ``data_symbols`` per round, ``max_delay_spread`` in samples, ``contention_free``
    access."""

    devices: int
    sample_rate: float
    n_pilot_symbols: int
    data_symbols: int
    max_delay_spread: int
    contention_free: bool


@dataclass(frozen=True)
class AccessSlot(_Plain):
    """The PRACH slot at PS time ``at`` (the PS announces it with the beacon schedule)."""

    at: int


@dataclass(frozen=True)
class Msg3Window(_Plain):
    """Contention-based access: msg3 slot j starts at PS time ``at + j * slot_len``."""

    at: int
    slot_len: int


@dataclass(frozen=True)
class RoundPlan(_Plain):
    """The channel refresh of round ``round`` on the PS clock: uplink pilots at ``pilots_at`` (None: this round reuses
    the last CSI), ``n_pilot_symbols`` of them, and the planned feedback time ``feedback_at`` (its earliest start:
    the pilots' end + guard + the PS's turnaround). The data slot follows in :class:`DataRound`, once the feedback's
    length is known."""

    round: int
    pilots_at: int | None = None
    n_pilot_symbols: int = 0
    feedback_at: int | None = None


@dataclass(frozen=True)
class DataRound(_Plain):
    """The PS's instruction for a round's data burst: the slot (PS time), the A-DSGD projection ``seed`` and the
    ``power_scale`` the learning layer applied (carried for the device's bookkeeping; both unused by the PHY)."""

    round: int
    slot: int
    seed: int | None = None
    power_scale: float = 1.0


@dataclass
class DeviceStats(_Plain):
    """What a device reports back after a round: its state, whether it sent, the device-clock start of that burst,
    late transmissions and bad control frames it dropped so far, and why it stayed silent (None if it sent)."""

    device: int
    round: int
    state: str
    sent: bool
    tx_local: float | None = None
    late: int = 0
    bad_frames: int = 0
    silent_reason: str | None = None
    tx_samples: dict = field(default_factory=dict)
