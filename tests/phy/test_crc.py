"""CRC-16/CCITT-FALSE and CRC-32: catalogue check values, error detection, bit/byte helpers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phy.crc import bits_to_bytes, bits_to_int, bytes_to_bits, crc16, crc32, int_to_bits


def _crc16_bitwise(data: bytes) -> int:
    """Reference shift-register CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, MSB first, no final XOR."""
    reg = 0xFFFF
    for byte in data:
        reg ^= byte << 8
        for _ in range(8):
            reg = ((reg << 1) ^ 0x1021) & 0xFFFF if reg & 0x8000 else (reg << 1) & 0xFFFF
    return reg


def test_check_values() -> None:
    """Catalogue check values for the ASCII string "123456789": CRC-16/CCITT-FALSE 0x29B1, CRC-32 0xCBF43926."""
    assert crc16(b"123456789") == 0x29B1
    assert crc32(b"123456789") == 0xCBF43926
    bits = bytes_to_bits(b"123456789")
    assert crc16(bits) == 0x29B1 and crc32(bits) == 0xCBF43926


@settings(max_examples=50, deadline=None)
@given(data=st.binary(min_size=0, max_size=40))
def test_crc16_matches_shift_register(data: bytes) -> None:
    """The library CRC equals the textbook bitwise shift-register definition."""
    assert crc16(data) == _crc16_bitwise(data)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=64), position=st.integers(0, 10**6))
def test_single_bit_errors_are_always_detected(data: bytes, position: int) -> None:
    """A CRC whose generator has more than one term detects every single-bit error (Peterson & Brown 1961)."""
    bits = bytes_to_bits(data)
    flipped = bits.copy()
    flipped[position % bits.size] ^= 1
    assert crc16(flipped) != crc16(bits)
    assert crc32(flipped) != crc32(bits)


def test_batch_of_bit_rows(rng: np.random.Generator) -> None:
    """A [F, n] bit array gives one CRC per row, equal to the per-row result."""
    rows = rng.integers(0, 2, (5, 3, 48), dtype=np.uint8)
    got16, got32 = crc16(rows), crc32(rows)
    assert got16.shape == (5, 3) and got32.shape == (5, 3)
    for idx in np.ndindex(5, 3):
        assert got16[idx] == crc16(bits_to_bytes(rows[idx]))
        assert got32[idx] == crc32(rows[idx])


def test_bit_helpers_roundtrip(rng: np.random.Generator) -> None:
    """MSB-first packing: 0x80 -> 1000 0000; bits -> bytes -> bits and int <-> bits are identities."""
    np.testing.assert_array_equal(bytes_to_bits(b"\x80\x01"), [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    data = rng.integers(0, 256, 100, dtype=np.uint8).tobytes()
    assert bits_to_bytes(bytes_to_bits(data)) == data
    batch = rng.integers(0, 2, (4, 64), dtype=np.uint8)
    np.testing.assert_array_equal(bytes_to_bits(bits_to_bytes(batch)), batch)
    np.testing.assert_array_equal(int_to_bits(0x29B1, 16), bytes_to_bits(b"\x29\xb1"))
    assert bits_to_int(int_to_bits(0xCBF43926, 32)) == 0xCBF43926
    values = np.array([0, 1, 65535])
    np.testing.assert_array_equal(bits_to_int(int_to_bits(values, 16)), values)


def test_bad_inputs_raise_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="data"):
        crc16(np.zeros(12, dtype=np.uint8))
    with pytest.raises(ValueError, match="data"):
        crc32(np.full(8, 3, dtype=np.uint8))
    with pytest.raises(ValueError, match="bits"):
        bits_to_bytes(np.zeros(9, dtype=np.uint8))
    with pytest.raises(ValueError, match="value"):
        int_to_bits(70000, 16)
    with pytest.raises(ValueError, match="width"):
        int_to_bits(1, 0)
