"""Where a Pluto's RX arrival stamps are taken (radio.drivers.pluto_stream): when libiio's refill returned the block,
not after pyadi-iio and the driver converted it. Fake libiio/pyadi-iio objects, so the order of events is known
exactly: no timing tolerance is needed (the real emulator's numbers: docs/pluto.md, "The node's clock map")."""

from __future__ import annotations

import gc
import time
import weakref

import numpy as np
import pytest

from radio.drivers.pluto_stream import USB2_BULK_BYTES_PER_S, PlutoStream, usb2_transfer_floor_s

BLOCK = 2000


class _Dev:
    """An ADC/DAC core whose status register never shows an overflow or underflow."""

    def reg_read(self, address):
        return 0

    def reg_write(self, address, value):
        pass


class _Buffer:
    """libiio 0.x's iio.Buffer as pyadi-iio uses it: ``refill()`` waits for the next block."""

    def __init__(self, log):
        self.log = log

    def refill(self):
        time.sleep(0.002)                    # the device completes the block and the link delivers it
        self.log.append(time.monotonic())    # (inside refill: before it returns)


class _Sdr:
    """pyadi-iio's Pluto as PlutoStream drives it: ``rx()`` makes ``_rxbuf`` at its first call, refills it, then
    spends ``convert_s`` converting; ``tx()`` is paced like a DAC queue. ``refills``: host time inside each refill;
    ``converting``: host time each ``rx()`` started converting (after the refill returned)."""

    def __init__(self, convert_s: float = 0.003, libiio_buffer: bool = True):
        self._rxadc = self._txdac = _Dev()
        self._rxbuf = None
        self.refills: list[float] = []
        self.converting: list[float] = []
        self.returned: list[float] = []
        self.convert_s, self.libiio_buffer = convert_s, libiio_buffer

    def rx(self):
        if self.libiio_buffer:
            if self._rxbuf is None:
                self._rxbuf = _Buffer(self.refills)
            self._rxbuf.refill()
        else:                                # libiio 1.x: pyadi-iio streams blocks, no refill to stamp
            time.sleep(0.002)
            self.refills.append(time.monotonic())
        self.converting.append(time.monotonic())
        time.sleep(self.convert_s)
        self.returned.append(time.monotonic())
        return np.zeros(BLOCK, np.complex128)

    def tx(self, words):
        time.sleep(0.002)


def _stamps(sdr: _Sdr, seconds: float = 0.15, link_floor_s: float = 0.0) -> list[tuple[int, float]]:
    stream = PlutoStream(sdr, 1e6, lambda raw: np.asarray(raw, np.complex64), tx_block=1000, kernel_buffers=4,
                         ring_samples=1 << 16, link_floor_s=link_floor_s)
    try:
        stream.arrivals()
        time.sleep(seconds)
        stamps, _ = stream.arrivals()
    finally:
        stream.close()
    return stamps


def test_each_arrival_is_stamped_when_libiio_refill_returned_before_the_conversion():
    """Block k (RX count BLOCK * (k+1) after it) is stamped after its refill finished and before pyadi-iio began
    converting it: the stamp says when the block reached the host, not when the host was done with it."""
    sdr = _Sdr(convert_s=0.003)
    stamps = _stamps(sdr)
    assert len(stamps) >= 5
    for end, mono in stamps:
        k = end // BLOCK - 1
        assert end % BLOCK == 0
        assert sdr.refills[k] <= mono <= sdr.converting[k], (k, sdr.refills[k], mono, sdr.converting[k])
        assert mono < sdr.returned[k]


def test_without_a_libiio_buffer_the_stamp_is_the_return_of_rx():
    """pyadi-iio on libiio 1.x has no ``_rxbuf`` to wrap: each block is stamped when ``rx()`` returned (the old,
    later stamp), never earlier than that."""
    sdr = _Sdr(libiio_buffer=False)
    stamps = _stamps(sdr)
    assert len(stamps) >= 5
    for end, mono in stamps:
        assert mono >= sdr.returned[end // BLOCK - 1]


def test_the_stamping_refill_keeps_no_reference_cycle_to_the_buffer():
    """pyadi-iio drops its buffer (``rx_destroy_buffer``) before the context: freed at once by reference counting,
    not left to the cycle collector, which may free it after its context (a libiio crash pyadi-iio works around)."""
    sdr = _Sdr()
    _stamps(sdr, 0.02)
    assert "refill" in vars(sdr._rxbuf)                 # (it was wrapped)
    gone = weakref.ref(sdr._rxbuf)
    gc.disable()
    try:
        sdr._rxbuf = None
        assert gone() is None
    finally:
        gc.enable()


def test_a_known_link_floor_is_taken_off_every_stamp_exactly():
    """``link_floor_s`` (a real Pluto: one RX buffer's transfer at USB 2.0's bulk limit) is subtracted from each
    refill stamp, no more: the stamp then lies that far before the refill's return, never after the conversion."""
    floor = 0.0015
    sdr = _Sdr(convert_s=0.003)
    stamps = _stamps(sdr, link_floor_s=floor)
    assert len(stamps) >= 5
    for end, mono in stamps:
        k = end // BLOCK - 1
        assert sdr.refills[k] <= mono + floor <= sdr.converting[k]
    with pytest.raises(ValueError, match="link_floor_s"):
        PlutoStream(_Sdr(), 1e6, lambda raw: raw, tx_block=1000, kernel_buffers=4, link_floor_s=-1e-3)


def test_usb2_floor_is_the_buffer_bytes_at_the_bulk_payload_limit():
    """USB 2.0 high speed moves at most 13 bulk packets of 512 bytes per 125 µs microframe (53.248 MB/s): an RX buffer
    of n samples (4 bytes each: I and Q int16) takes at least 4 n / 53.248e6 s."""
    assert USB2_BULK_BYTES_PER_S == 53_248_000
    assert usb2_transfer_floor_s(8192) == pytest.approx(32768 / 53.248e6, rel=1e-12)      # 0.615 ms
    assert usb2_transfer_floor_s(16384) == pytest.approx(1.2308e-3, rel=1e-4)
    assert usb2_transfer_floor_s(0) == 0.0
    with pytest.raises(ValueError, match="samples"):
        usb2_transfer_floor_s(-1)
