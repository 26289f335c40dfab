"""Message framing and sample wire formats of the ZeroMQ air (:mod:`radio.drivers.zmq`).

A message is a ZeroMQ multipart message of one or two frames::

    frame 0   header: UTF-8 JSON object with at least ``"op"`` (and ``"seq"`` on requests and their replies)
    frame 1   payload (only ``tx`` requests and ``samples`` replies): ``n`` samples in the endpoint's wire format

The broker's ROUTER socket sees the peer's routing id in front of these frames. JSON keeps the header readable and
costs microseconds; the samples travel as raw little-endian buffers, sent and received without copies (numpy arrays
expose the buffer protocol; received frames are wrapped with :func:`numpy.frombuffer`).

Wire formats (negotiated per endpoint at registration):

``fc32``  interleaved float32 I/Q, i.e. numpy ``complex64`` bytes (8 bytes per sample), lossless.
``sc16``  interleaved int16 I/Q, value = round(x · (2**15 − 1)) clipped to ±(2**15 − 1) (4 bytes per sample), so
          |error| ≤ 0.5 / (2**15 − 1) per component for |I|, |Q| ≤ 1 and full-scale clipping beyond.

Header fields are validated here (:func:`unpack`, :func:`decode_samples`); anything malformed raises
:class:`ProtocolError`, which the broker turns into an ``error`` reply instead of crashing.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

#: protocol version carried in ``hello``; the broker rejects other versions with a clear error
PROTOCOL_VERSION = 1

#: wire format name -> bytes per complex sample
WIRE_FORMATS: dict[str, int] = {"fc32": 8, "sc16": 4}

#: full-scale value of sc16 (2**15 - 1, symmetric so that +1 and -1 both map exactly)
SC16_SCALE = float(2 ** 15 - 1)


class ProtocolError(ValueError):
    """A message does not follow the ZeroMQ-air protocol (bad JSON, missing field, wrong payload size, ...)."""


def check_wire(wire: str) -> str:
    """Return ``wire`` if it is a known wire format, else raise ProtocolError naming the allowed ones."""
    if wire not in WIRE_FORMATS:
        raise ProtocolError(f"wire format {wire!r} is not supported; expected one of {', '.join(WIRE_FORMATS)}")
    return wire


def encode_samples(samples: np.ndarray, wire: str) -> np.ndarray:
    """complex64[N] -> a contiguous array whose bytes are the wire representation: the complex64 array itself for
    fc32 (no copy when already contiguous complex64), int16[2N] for sc16 (scaled by 2**15 − 1, rounded, clipped)."""
    check_wire(wire)
    x = np.ascontiguousarray(samples, dtype=np.complex64)
    if wire == "fc32":
        return x
    iq = x.view(np.float32) * np.float32(SC16_SCALE)
    np.clip(iq, -SC16_SCALE, SC16_SCALE, out=iq)
    return np.rint(iq, out=iq).astype(np.int16)


def decode_samples(buffer: Any, wire: str, n: int, what: str = "payload") -> np.ndarray:
    """Wire bytes (any buffer: bytes, memoryview, zmq.Frame.buffer) -> complex64[n].

    fc32 is a zero-copy read-only view of ``buffer``; sc16 allocates. Raises ProtocolError when the buffer does not
    hold exactly ``n`` samples of ``wire`` or (fc32) contains NaN/inf.
    """
    check_wire(wire)
    size = WIRE_FORMATS[wire]
    mv = memoryview(buffer)
    if mv.nbytes != n * size:
        raise ProtocolError(f"{what} has {mv.nbytes} bytes, expected n={n} samples × {size} bytes ({wire}) = "
                            f"{n * size} bytes")
    if wire == "fc32":
        x = np.frombuffer(mv, dtype=np.complex64, count=n)
        if n and not np.isfinite(x.view(np.float32)).all():
            raise ProtocolError(f"{what} contains NaN or infinite samples")
        return x
    iq = np.frombuffer(mv, dtype=np.int16, count=2 * n).astype(np.float32)
    iq *= np.float32(1.0 / SC16_SCALE)
    return iq.view(np.complex64)


def pack(header: dict, payload: np.ndarray | None = None) -> list:
    """Header dict (+ optional wire-encoded array) -> frames for ``send_multipart(..., copy=False)``."""
    frames: list = [json.dumps(header, separators=(",", ":")).encode()]
    if payload is not None:
        frames.append(payload)
    return frames


def unpack(frames: list) -> tuple[dict, Any]:
    """Frames (bytes or zmq.Frame) -> (header dict, payload buffer or None). Raises ProtocolError on malformed input."""
    if not 1 <= len(frames) <= 2:
        raise ProtocolError(f"message has {len(frames)} frames, expected 1 (header) or 2 (header + samples)")
    raw = frames[0].bytes if hasattr(frames[0], "bytes") else bytes(frames[0])
    try:
        header = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError(f"header frame is not UTF-8 JSON (first bytes {raw[:32]!r})") from None
    if not isinstance(header, dict) or not isinstance(header.get("op"), str):
        raise ProtocolError(f"header must be a JSON object with a string 'op', got {str(header)[:80]!r}")
    payload = None
    if len(frames) == 2:
        payload = frames[1].buffer if hasattr(frames[1], "buffer") else frames[1]
    return header, payload


def field(header: dict, key: str, kind: type, *, optional: bool = False, minimum: int | None = None):
    """Read ``header[key]`` as ``kind`` (int, str, float, bool); raises ProtocolError naming the op, key and value."""
    op = header.get("op")
    if key not in header or header[key] is None:
        if optional:
            return None
        raise ProtocolError(f"{op!r} message lacks field {key!r}")
    value = header[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ProtocolError(f"{op!r} field {key!r} = {value!r}: expected {kind.__name__}")
    if minimum is not None and value < minimum:
        raise ProtocolError(f"{op!r} field {key!r} = {value!r}: expected ≥ {minimum}")
    return value
