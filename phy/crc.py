"""CRC-16/CCITT-FALSE and CRC-32 (IEEE 802.3), and bit/byte helpers (MSB first).

The CRCs run in C through the standard library (``binascii.crc_hqx``, ``zlib.crc32``); a batch of bit rows is packed
with ``np.packbits`` in one call. Inputs are either byte strings (``bytes``, ``bytearray``, ``memoryview``) or numpy
arrays of bits (0/1 values, MSB first within each byte, length a multiple of 8).

Check values (catalogue of parametrised CRC algorithms): ``crc16(b"123456789") == 0x29B1`` and
``crc32(b"123456789") == 0xCBF43926``.
"""

from __future__ import annotations

import binascii
import zlib

import numpy as np

__all__ = [
    "crc16",
    "crc32",
    "bytes_to_bits",
    "bits_to_bytes",
    "int_to_bits",
    "bits_to_int",
    "CRC16_BITS",
    "CRC32_BITS",
]

CRC16_BITS = 16
CRC32_BITS = 32

BytesLike = bytes | bytearray | memoryview


def bytes_to_bits(data: BytesLike | np.ndarray) -> np.ndarray:
    """Unpack bytes to bits, MSB first.

    Args:
        data: a byte string, or a uint8 array of byte values [..., B].

    Returns:
        uint8[8*B] (or [..., 8*B] for an array input) of 0/1.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8))
    arr = np.asarray(data)
    if arr.dtype != np.uint8:
        raise ValueError(f"data has dtype {arr.dtype}; expected bytes or a uint8 array of byte values")
    return np.unpackbits(arr, axis=-1)


def _check_bits(bits: np.ndarray, name: str = "bits") -> np.ndarray:
    arr = np.asarray(bits)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array of 0/1 values [..., n]; got a scalar")
    if arr.shape[-1] % 8:
        raise ValueError(f"{name} has {arr.shape[-1]} bits on its last axis; expected a multiple of 8")
    if arr.dtype != np.bool_ and arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{name} must hold only 0 and 1; got values in [{arr.min()}, {arr.max()}]")
    return arr.astype(np.uint8, copy=False)


def bits_to_bytes(bits: np.ndarray) -> bytes | np.ndarray:
    """Pack bits (MSB first) into bytes.

    Args:
        bits: 0/1 array [n] or [..., n], n a multiple of 8.

    Returns:
        ``bytes`` of length n/8 for a 1-D input; uint8[..., n/8] for a batch.
    """
    arr = _check_bits(bits)
    packed = np.packbits(arr, axis=-1)
    return packed.tobytes() if arr.ndim == 1 else packed


def int_to_bits(value: int | np.ndarray, width: int) -> np.ndarray:
    """Unsigned integer(s) to ``width`` bits, MSB first: int -> uint8[width]; int array [...] -> uint8[..., width]."""
    if not 1 <= width <= 64:
        raise ValueError(f"width={width} is out of range; expected 1..64")
    if np.any(np.asarray(value) < 0):
        raise ValueError(f"value={value!r} is negative; expected unsigned integers")
    v = np.asarray(value, dtype=np.uint64)
    if width < 64 and np.any(v >> np.uint64(width)):
        raise ValueError(f"value={value!r} does not fit in width={width} bits")
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    return ((v[..., None] >> shifts) & np.uint64(1)).astype(np.uint8)


def bits_to_int(bits: np.ndarray) -> int | np.ndarray:
    """Bits (MSB first) to an unsigned integer: uint8[w] -> int; uint8[..., w] -> uint64[...] (w <= 64)."""
    arr = np.asarray(bits)
    if arr.ndim == 0 or arr.shape[-1] > 64:
        raise ValueError(f"bits has shape {arr.shape}; expected [..., w] with 1 <= w <= 64")
    weights = np.uint64(1) << np.arange(arr.shape[-1] - 1, -1, -1, dtype=np.uint64)
    out = (arr.astype(np.uint64) * weights).sum(axis=-1, dtype=np.uint64)
    return int(out) if arr.ndim == 1 else out


def _rows(data: BytesLike | np.ndarray) -> tuple[list[bytes], tuple[int, ...] | None]:
    """Byte rows to checksum and the batch shape (None for a single message)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return [bytes(data)], None
    arr = _check_bits(data, "data")
    packed = np.packbits(arr, axis=-1)
    if arr.ndim == 1:
        return [packed.tobytes()], None
    flat = packed.reshape(-1, packed.shape[-1])
    return [row.tobytes() for row in flat], arr.shape[:-1]


def crc16(data: BytesLike | np.ndarray) -> int | np.ndarray:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR).

    Args:
        data: bytes, or bits uint8[n] / uint8[..., n] (MSB first, n a multiple of 8).

    Returns:
        int for a single message, int64[...] for a batch of bit rows.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):     # one message: straight to C (frame headers)
        return binascii.crc_hqx(data, 0xFFFF)
    rows, batch = _rows(data)
    values = [binascii.crc_hqx(r, 0xFFFF) for r in rows]
    return values[0] if batch is None else np.array(values, dtype=np.int64).reshape(batch)


def crc32(data: BytesLike | np.ndarray) -> int | np.ndarray:
    """CRC-32 as in IEEE 802.3 / zlib (poly 0x04C11DB7 reflected, init and final XOR 0xFFFFFFFF).

    Args:
        data: bytes, or bits uint8[n] / uint8[..., n] (MSB first, n a multiple of 8).

    Returns:
        int for a single message, int64[...] for a batch of bit rows.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):     # one message: straight to C (frame payloads)
        return zlib.crc32(data) & 0xFFFFFFFF
    rows, batch = _rows(data)
    values = [zlib.crc32(r) & 0xFFFFFFFF for r in rows]
    return values[0] if batch is None else np.array(values, dtype=np.int64).reshape(batch)
