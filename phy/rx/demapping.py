"""Demapping and decoding: equalized symbols of F frames of one payload shape -> payloads, and the frames out
(:class:`RxFrame`).

* **Digital**: per-bit LLRs of the unbiased symbol estimates with their error variances
  (:meth:`phy.modulation.QamModem.demodulate_llr`, exact max-log-free LLRs), then :meth:`phy.fec.DigitalCodec.decode_batch`
  (optional 5G LDPC, CRC-32) - one call per payload shape. With ``defer_decode`` LDPC-coded frames keep their LLRs for
  :func:`decode_frames`, which batches the LDPC decoding over frames from any number of receivers.
* **Analog**: :meth:`phy.analog.AnalogMapper.from_symbols_batch` unpairs the complex symbols into real values with
  per-value noise variances.

Bad values (non-finite LLRs or noise variances) make a payload error of that frame alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from phy.frame import FrameFormat, FrameHeader, codec_for, modem_for


@dataclass
class RxFrame:
    """One received frame.

    Attributes
    ----------
    t_start : int
        Sample time of the frame's first sample (start of the Schmidl–Cox CP).
    seq : int
        Sequence number from the header.
    kind : str
        "analog" | "digital".
    values, noise_var : float32 ndarray [L] or None
        Analog: estimates and per-real-value noise variance; else None.
    payload : bytes or None
        Digital payload (None for analog, or undecoded with ``defer_decode``).
    crc_ok : bool
        Digital: CRC-32 of the payload; analog: True (the header CRC passed).
    snr_db : float
        Estimated per-subcarrier SNR (from the LTS), dB.
    cfo_hz : float
        Estimated carrier frequency offset, Hz.
    symbols : complex64 ndarray [n_payload_symbols]
        Equalized data symbols.
    symbol_noise_var : float32 ndarray [n_payload_symbols]
        Per-symbol noise (error) variance.
    channel : complex64 ndarray [fft_size]
        Estimated channel per FFT bin (FFT window at the CP end).
    header : FrameHeader
        All decoded header fields.
    n_samples : int
        Frame length in samples.
    noise_power : float
        Estimated noise variance per complex sample.
    extra : dict
        ``"llr"``: float32 [n_coded_bits] coded-bit LLRs of a deferred LDPC frame.
    """

    t_start: int
    seq: int
    kind: str
    values: np.ndarray | None
    noise_var: np.ndarray | None
    payload: bytes | None
    crc_ok: bool
    snr_db: float
    cfo_hz: float
    symbols: np.ndarray
    symbol_noise_var: np.ndarray
    channel: np.ndarray
    header: FrameHeader
    n_samples: int
    noise_power: float
    extra: dict = field(default_factory=dict)


class PayloadDecoder:
    """Payload plans and decoding for one frame format.

    Parameters
    ----------
    fmt : FrameFormat
    max_payload_symbols : int
        Headers announcing longer payloads (OFDM symbols) are invalid.
    defer_decode : bool
        LDPC-coded frames are returned undecoded with their LLRs (see :func:`decode_frames`).
    """

    def __init__(self, fmt: FrameFormat, max_payload_symbols: int, defer_decode: bool = False):
        self.fmt = fmt
        self.max_payload_symbols = int(max_payload_symbols)
        self.defer_decode = bool(defer_decode)
        self._plans: dict[tuple, tuple[int, int, int] | None] = {}

    def plan(self, hdr: FrameHeader) -> tuple[int, int, int] | None:
        """What a header announces: (payload data symbols, coded bits (0 for analog), payload OFDM symbols), or None
        when invalid (cached per header shape)."""
        key = (hdr.kind, hdr.modem, hdr.code_rate, hdr.length)
        if key in self._plans:
            return self._plans[key]
        plan = self._make_plan(hdr)
        if len(self._plans) < 1024:
            self._plans[key] = plan
        return plan

    def _make_plan(self, hdr: FrameHeader) -> tuple[int, int, int] | None:
        if hdr.length < 1:
            return None
        if hdr.kind == "analog":
            n_sym, n_bits = -(-hdr.length // 2), 0
        else:
            try:
                n_bits = codec_for(hdr.modem, hdr.code_rate).n_coded_bits(hdr.length)
            except ValueError:
                return None
            n_sym = -(-n_bits // modem_for(hdr.modem).bits_per_symbol)
        n_pay = self.fmt.n_symbols(n_sym)
        return (n_sym, n_bits, n_pay) if n_pay <= self.max_payload_symbols else None

    def digital(self, hdr: FrameHeader, X: np.ndarray, nv: np.ndarray, n_bits: int, stats: dict
                ) -> tuple[list, list, list]:
        """LLRs and decoding of F digital frames of one shape in one call.

        Parameters
        ----------
        hdr : FrameHeader
            Their common shape (modulation, code rate, length).
        X : complex64 ndarray [F, n_sym]
            Equalized data symbols.
        nv : float32 ndarray [F, n_sym]
            Their error variances.
        n_bits : int
            Coded bits per frame.
        stats : dict
            Receiver counters (``payload_error``, ``payload_crc_fail`` are incremented).

        Returns
        -------
        payloads : list of bytes or None
        crc_ok : list of bool
        extra : list of dict
            ``{"llr": float32 [n_bits]}`` for deferred frames.
        """
        codec, modem = codec_for(hdr.modem, hdr.code_rate), modem_for(hdr.modem)
        n_frames = X.shape[0]
        try:
            llr = modem.demodulate_llr(X, nv)[:, :n_bits]
            if self.defer_decode and hdr.code_rate is not None:
                return [None] * n_frames, [False] * n_frames, [{"llr": row} for row in llr]
            data, ok = codec.decode_batch(llr, hdr.length)
            payload, crc_ok = [row.tobytes() for row in data], [bool(v) for v in ok]
        except ValueError:
            if n_frames == 1:
                stats["payload_error"] += 1
                return [None], [False], [{}]
            payload, crc_ok, extra = [], [], []
            for f in range(n_frames):
                p, c, e = self.digital(hdr, X[f:f + 1], nv[f:f + 1], n_bits, stats)
                payload += p
                crc_ok += c
                extra += e
            return payload, crc_ok, extra
        stats["payload_crc_fail"] += crc_ok.count(False)
        return payload, crc_ok, [{} for _ in range(n_frames)]

    @staticmethod
    def analog(X: np.ndarray, nv: np.ndarray, scales: np.ndarray, length: int, stats: dict
               ) -> tuple[list, list, list]:
        """Real values of F analog frames of one length in one call.

        Parameters
        ----------
        X : complex64 ndarray [F, n_sym]
            Equalized symbols.
        nv : float32 ndarray [F, n_sym]
            Their error variances.
        scales : float ndarray [F]
            The headers' analog scales.
        length : int
            Real values per frame.
        stats : dict
            Receiver counters (``payload_error`` counts frames with non-finite or negative variances).

        Returns
        -------
        values : list of float32 ndarray [length] or None
        noise_var : list of float32 ndarray [length] or None
        ok : list of bool
        """
        from phy.analog import AnalogMapper
        n_frames = X.shape[0]
        values, nvr, ok = [None] * n_frames, [None] * n_frames, [True] * n_frames
        good = np.isfinite(nv).all(axis=1) & (nv >= 0).all(axis=1)
        for f in np.flatnonzero(~good).tolist():
            stats["payload_error"] += 1
            ok[f] = False
        idx = np.flatnonzero(good)
        if idx.size:
            vals, nvrs = AnalogMapper().from_symbols_batch(X[idx], scales[idx], length, nv[idx])
            for j, f in enumerate(idx.tolist()):
                values[f], nvr[f] = vals[j], nvrs[j]
        return values, nvr, ok


def decode_frames(frames) -> int:
    """Decode frames returned by receivers made with ``defer_decode=True``.

    One batched LDPC call (:meth:`DigitalCodec.decode_batch`) per payload shape (modulation, code rate, length) over
    all given frames, e.g. the same broadcast frame as received by K devices. The result per frame is exactly that of
    decoding it alone.

    Parameters
    ----------
    frames : iterable of RxFrame
        Others, and frames already decoded, are skipped. Each frame with ``extra["llr"]`` gets ``payload`` (bytes)
        and ``crc_ok`` filled in place and its LLRs removed.

    Returns
    -------
    int
        The number of frames decoded.
    """
    groups: dict[tuple, list[RxFrame]] = {}
    for fr in frames:
        if isinstance(fr, RxFrame) and fr.kind == "digital" and "llr" in fr.extra:
            h = fr.header
            groups.setdefault((h.modem, h.code_rate, h.length), []).append(fr)
    for (modem, rate, length), group in groups.items():
        codec = codec_for(modem, rate)
        try:
            data, ok = codec.decode_batch(np.stack([fr.extra["llr"] for fr in group]), length)
        except ValueError:       # only one frame's bad LLRs: decode one by one, that frame fails alone
            data, ok = [], []
            for fr in group:
                try:
                    d, o = codec.decode_batch(fr.extra["llr"][None, :], length)
                    data.append(d[0])
                    ok.append(bool(o[0]))
                except ValueError:
                    data.append(None)
                    ok.append(False)
        for fr, d, o in zip(group, data, ok):
            fr.payload = None if d is None else d.tobytes()
            fr.crc_ok = bool(o)
            del fr.extra["llr"]
    return sum(len(g) for g in groups.values())
