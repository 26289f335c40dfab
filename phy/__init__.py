"""otalab's physical layer: numpy DSP only (no I/O, no clocks).

Public API (imported lazily on first attribute access, so ``import phy`` is cheap and never imports torch; the LDPC
classes in :mod:`phy.fec` load sionna/torch only when used):

* OFDM numerology: :class:`OfdmConfig`, :class:`OfdmSection`, :func:`grid_to_time`, :func:`time_to_grid`
* frames: :class:`FrameBuilder` (``build_batch`` of :class:`FrameRequest`), :class:`FrameHeader`, :class:`FrameFormat`
* reception: :class:`Receiver`, :class:`RxFrame`, :class:`SchmidlCoxDetector`, :func:`cfo_crlb_hz`; the receiver's
  stages, one per module, in :mod:`phy.rx`
* modulation / analog / coding: :class:`QamModem`, :class:`AnalogMapper`, :class:`LdpcCode`, :class:`DigitalCodec`,
  :func:`crc16`, :func:`crc32`, :func:`bytes_to_bits`, :func:`bits_to_bytes`
* theory: :func:`ber_qam_awgn`, :func:`q_function`, ...  (module :mod:`phy.theory`)
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "OfdmConfig": "ofdm", "OfdmSection": "ofdm", "grid_to_time": "ofdm", "time_to_grid": "ofdm",
    "FrameBuilder": "frame", "FrameHeader": "frame", "FrameFormat": "frame", "FrameRequest": "frame",
    "Receiver": "receiver", "RxFrame": "receiver", "cfo_crlb_hz": "receiver",
    "SchmidlCoxDetector": "detector",
    "QamModem": "modulation", "AnalogMapper": "analog",
    "LdpcCode": "fec", "DigitalCodec": "fec",
    "crc16": "crc", "crc32": "crc", "bytes_to_bits": "crc", "bits_to_bytes": "crc",
    "ber_qam_awgn": "theory", "q_function": "theory", "crlb_cfo": "theory",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'phy' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"phy.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
