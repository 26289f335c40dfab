"""Demapping and decoding: equalized symbols of F frames of any kinds and lengths -> payloads, and the frames out
(:class:`RxFrame`).

* **Digital**: per-bit LLRs of the unbiased symbol estimates with their error variances
  (:meth:`phy.modulation.QamModem.demodulate_llr`, exact log-MAP), one call per modulation for all its frames, then
  :meth:`phy.fec.DigitalCodec.decode_batch` (optional 5G LDPC, CRC-32), one call per payload length. With
  ``defer_decode`` LDPC-coded frames keep their LLRs for :func:`decode_frames`, which batches the LDPC decoding over
  frames from any number of receivers.
* **Analog**: :meth:`phy.analog.AnalogMapper.from_symbols_batch` unpairs the complex symbols into real values with
  per-value noise variances.

Bad values (non-finite LLRs or noise variances) make a payload error of that frame alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from phy.crc import crc32
from phy.frame import FrameFormat, FrameHeader, codec_for, modem_for
from phy.rx.ofdm_demodulation import Segments


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

    def decode(self, hdrs: list[FrameHeader], X: np.ndarray, nv: np.ndarray, seg: Segments, n_cells: np.ndarray,
               stats: dict) -> tuple[list, ...]:
        """Demap and decode F equalized frames of any kinds and lengths: one LLR call per modulation
        (:meth:`digital`), analog frames through :meth:`analog`.

        Parameters
        ----------
        hdrs : list of FrameHeader [F]
        X : complex64 ndarray [T, n_data]
            Equalized payload OFDM symbols, frame after frame (layout ``seg``).
        nv : float32 ndarray [F, n_data]
            Error variance per data subcarrier and frame.
        seg : Segments
            Payload OFDM symbols per frame.
        n_cells : int ndarray [F]
            Data symbols per frame (the rest of its last OFDM symbol is filler).
        stats : dict
            Receiver counters.

        Returns
        -------
        symbols, symbol_nv : lists of complex64 / float32 ndarray [n_cells[f]]
        values, noise_var : lists (analog frames; None elsewhere)
        payload, crc_ok, extra : lists (digital frames; None, True, {} elsewhere)
        """
        n_frames, nd = len(hdrs), X.shape[1]
        k = seg.uniform
        if k and (n_cells == n_cells[0]).all():     # one shape: frames are rows, their cells a column range
            n = int(n_cells[0])
            x_rows = X.reshape(n_frames, k * nd)[:, :n]
            nv_rows = np.broadcast_to(nv[:, None, :], (n_frames, k, nd)).reshape(n_frames, k * nd)[:, :n]
        else:
            Xf, nvf = X.reshape(-1), seg.rows(nv).reshape(-1)
            cut = [slice(o * nd, o * nd + n) for o, n in zip(seg.offsets.tolist(), n_cells.tolist())]
        values, nvr = [None] * n_frames, [None] * n_frames
        payload, crc_ok, extra = [None] * n_frames, [True] * n_frames, [{} for _ in range(n_frames)]
        symbols, symbol_nv = [None] * n_frames, [None] * n_frames
        groups: dict[str, list[int]] = {}
        for f, h in enumerate(hdrs):
            groups.setdefault("analog" if h.kind == "analog" else h.modem, []).append(f)
        for key, idx in groups.items():
            part = Segments(n_cells[idx])
            if k and (n_cells == n_cells[0]).all():
                sel = slice(None) if len(idx) == n_frames else idx
                xg, nvg = x_rows[sel].reshape(-1), nv_rows[sel].reshape(-1)
            else:
                xg = np.concatenate([Xf[cut[f]] for f in idx])
                nvg = np.concatenate([nvf[cut[f]] for f in idx])
            for f, o, n in zip(idx, part.offsets.tolist(), part.counts.tolist()):
                symbols[f], symbol_nv[f] = xg[o:o + n], nvg[o:o + n]
            args = ([hdrs[f] for f in idx], xg, nvg, part.offsets, stats)
            if key == "analog":
                for f, v, n, ok in zip(idx, *self.analog(*args)):
                    values[f], nvr[f], crc_ok[f] = v, n, ok
            else:
                for f, p, ok, e in zip(idx, *self.digital(*args)):
                    payload[f], crc_ok[f], extra[f] = p, ok, e
        return symbols, symbol_nv, values, nvr, payload, crc_ok, extra

    def digital(self, hdrs: list[FrameHeader], X: np.ndarray, nv: np.ndarray, offsets: np.ndarray, stats: dict
                ) -> tuple[list, list, list]:
        """LLRs and decoding of F digital frames of one modulation (any code rates and lengths).

        Parameters
        ----------
        hdrs : list of FrameHeader [F]
            Their headers (same modulation).
        X : complex64 ndarray [C]
            Equalized data symbols of all frames, frame f from ``offsets[f]`` (``plan(hdrs[f])[0]`` symbols).
        nv : float32 ndarray [C]
            Their error variances.
        offsets : int ndarray [F]
        stats : dict
            Receiver counters (``payload_error``, ``payload_crc_fail`` are incremented).

        Returns
        -------
        payloads : list of bytes or None
        crc_ok : list of bool
        extra : list of dict
            ``{"llr": float32 [n_coded_bits]}`` for deferred frames.
        """
        modem = modem_for(hdrs[0].modem)
        bps = modem.bits_per_symbol
        n_frames = len(hdrs)
        payload, crc_ok, extra = [None] * n_frames, [False] * n_frames, [{} for _ in range(n_frames)]
        h0 = hdrs[0]
        if all(h.code_rate is None for h in hdrs):
            return self.uncoded(hdrs, X, nv, offsets, stats)
        try:
            llr = modem.demodulate_llr(X, nv)                    # one call for every frame
        except ValueError:
            llr = None
        if llr is not None and h0.code_rate is not None and not self.defer_decode \
                and all(h.code_rate == h0.code_rate and h.length == h0.length for h in hdrs):
            n_sym, n_bits, _ = self.plan(h0)            # one shape: the frames are equal rows of the LLRs
            try:
                data, ok = codec_for(h0.modem, h0.code_rate).decode_batch(
                    llr.reshape(n_frames, n_sym * bps)[:, :n_bits], h0.length)
                crc_ok = [bool(v) for v in ok]
                stats["payload_crc_fail"] += crc_ok.count(False)
                return [row.tobytes() for row in data], crc_ok, extra
            except ValueError:
                pass
        groups: dict[tuple, list[int]] = {}
        rows: list = [None] * n_frames
        uncoded: list[int] = []
        for f, (h, o) in enumerate(zip(hdrs, offsets.tolist())):
            n_sym, n_bits, _ = self.plan(h)
            if llr is None:                     # some frame's values are bad: each frame on its own
                try:
                    rows[f] = modem.demodulate_llr(X[o:o + n_sym], nv[o:o + n_sym])[:n_bits]
                except ValueError:
                    stats["payload_error"] += 1
                    continue
            else:
                rows[f] = llr[o * bps:o * bps + n_bits]
            if h.code_rate is None:
                uncoded.append(f)
            elif self.defer_decode:
                extra[f] = {"llr": rows[f].copy()}
            else:
                groups.setdefault((h.code_rate, h.length), []).append(f)
        if uncoded:
            hard = llr < 0 if llr is not None and np.isfinite(llr.sum()) else None
            for f in uncoded:
                if hard is None and not np.isfinite(rows[f]).all():
                    stats["payload_error"] += 1           # the decoder refuses non-finite LLRs
                    continue
                o, p = int(offsets[f]) * bps, hdrs[f].length
                bits = hard[o:o + 8 * (p + 4)] if hard is not None else rows[f][:8 * (p + 4)] < 0
                payload[f], crc_ok[f] = self.check(p, np.packbits(bits), stats)
        for (rate, length), idx in groups.items():
            codec = codec_for(hdrs[idx[0]].modem, rate)
            try:
                data, ok = codec.decode_batch(np.stack([rows[f] for f in idx]), length)
                res = [(d.tobytes(), bool(o)) for d, o in zip(data, ok)]
            except ValueError:
                res = []
                for f in idx:
                    try:
                        d, o = codec.decode_batch(rows[f][None, :], length)
                        res.append((d[0].tobytes(), bool(o[0])))
                    except ValueError:
                        stats["payload_error"] += 1
                        res.append(None)
            for f, r in zip(idx, res):
                if r is not None:
                    payload[f], crc_ok[f] = r
            stats["payload_crc_fail"] += sum(1 for r in res if r is not None and not r[1])
        return payload, crc_ok, extra

    def uncoded(self, hdrs: list[FrameHeader], X: np.ndarray, nv: np.ndarray, offsets: np.ndarray, stats: dict
                ) -> tuple[list, list, list]:
        """:meth:`digital` for F uncoded frames of one modulation (any lengths): the signs of the exact LLRs of all
        symbols at once (:meth:`phy.modulation.QamModem.llr_negative`), then per frame its bytes and CRC-32 (what
        :meth:`phy.fec.DigitalCodec.decode_batch` does for one length, without a call per length). Frames whose LLRs
        would not be finite (the decoder refuses them) are payload errors."""
        modem = modem_for(hdrs[0].modem)
        bps = modem.bits_per_symbol
        n_frames = len(hdrs)
        payload, crc_ok, extra = [None] * n_frames, [False] * n_frames, [{} for _ in range(n_frames)]
        plans = [self.plan(h) for h in hdrs]
        hard = None
        with np.errstate(all="ignore"):
            # |LLR| <= (|y| + largest amplitude)^2 / noise_var: far inside float32 here, so every LLR is finite
            if X.size and nv.min() > 0 and (float(np.abs(np.ascontiguousarray(X).view(X.real.dtype)).max()) + 2.0) \
                    ** 2 < 1e30 * float(nv.min()):
                try:
                    hard = modem.llr_negative(X, nv)
                except ValueError:
                    pass
        p = hdrs[0].length
        if hard is not None and all(h.length == p for h in hdrs) and offsets[0] == 0 \
                and X.size == n_frames * plans[0][0] and (np.diff(offsets) == plans[0][0]).all():
            # one length, back to back: the frames are rows, one packbits
            data = np.packbits(hard.reshape(n_frames, -1)[:, :8 * (p + 4)], axis=1)
            for f, row in enumerate(data):
                payload[f], crc_ok[f] = self.check(p, row, stats)
            return payload, crc_ok, extra
        for f, (h, o, (n_sym, n_bits, _)) in enumerate(zip(hdrs, offsets.tolist(), plans)):
            if hard is not None:
                bits = hard[o * bps:o * bps + n_bits]
            else:                               # some frame's values are bad: each frame on its own
                try:
                    llr = modem.demodulate_llr(X[o:o + n_sym], nv[o:o + n_sym])[:n_bits]
                except ValueError:
                    llr = None
                if llr is None or not np.isfinite(llr).all():
                    stats["payload_error"] += 1
                    continue
                bits = llr < 0
            payload[f], crc_ok[f] = self.check(h.length, np.packbits(bits[:8 * (h.length + 4)]), stats)
        return payload, crc_ok, extra

    @staticmethod
    def check(length: int, data: np.ndarray, stats: dict) -> tuple[bytes, bool]:
        """Payload bytes and CRC-32 check of an uncoded frame of ``length`` bytes from its packed hard decisions
        (uint8 [length + 4]: the payload, then its CRC-32 big-endian); failures are counted in
        ``stats["payload_crc_fail"]``."""
        p = length
        payload = data[:p].tobytes()
        ok = crc32(payload) == int.from_bytes(data[p:].tobytes(), "big")
        stats["payload_crc_fail"] += not ok
        return payload, ok

    @staticmethod
    def analog(hdrs: list[FrameHeader], X: np.ndarray, nv: np.ndarray, offsets: np.ndarray, stats: dict
               ) -> tuple[list, list, list]:
        """Real values of F analog frames (any lengths), all in one pass (:meth:`phy.analog.AnalogMapper.unpair`).

        Parameters
        ----------
        hdrs : list of FrameHeader [F]
        X : complex64 ndarray [C]
            Equalized symbols of all frames, frame f from ``offsets[f]`` (``ceil(length / 2)`` symbols).
        nv : float32 ndarray [C]
            Their error variances.
        offsets : int ndarray [F]
        stats : dict
            Receiver counters (``payload_error`` counts frames with non-finite or negative variances).

        Returns
        -------
        values : list of float32 ndarray [length] or None
        noise_var : list of float32 ndarray [length] or None
        ok : list of bool
        """
        from phy.analog import AnalogMapper
        n_frames = len(hdrs)
        values, nvr, ok = [None] * n_frames, [None] * n_frames, [True] * n_frames
        for f, h in enumerate(hdrs):
            o, n = int(offsets[f]), -(-h.length // 2)
            v = nv[o:o + n]
            if not (np.isfinite(v).all() and (v >= 0).all()):
                stats["payload_error"] += 1
                ok[f] = False
        if any(ok):
            # every frame's values in one pass over all symbols (frames of any lengths), then per frame its slice
            scale = np.ones(X.size)
            for f, h in enumerate(hdrs):
                scale[int(offsets[f]):int(offsets[f]) + -(-h.length // 2)] = h.scale
            with np.errstate(invalid="ignore"):
                x_all, nv_all = AnalogMapper.unpair(X, scale, np.where(np.isfinite(nv), nv, 0))
            for f, h in enumerate(hdrs):
                if ok[f]:
                    o = 2 * int(offsets[f])
                    values[f], nvr[f] = x_all[o:o + h.length], nv_all[o:o + h.length]
        return values, nvr, ok


def frames_out(hdrs: list[FrameHeader], decoded: tuple[list, ...], **per_frame: list) -> list[RxFrame]:
    """The :class:`RxFrame` of each of F frames from their headers, :meth:`PayloadDecoder.decode`'s lists and the
    other fields as lists [F] (``t_start``, ``snr_db``, ``cfo_hz``, ``channel``, ``n_samples``, ``noise_power``)."""
    symbols, symbol_nv, values, nvr, payload, crc_ok, extra = decoded
    cols = [per_frame[k] for k in ("t_start", "snr_db", "cfo_hz", "channel", "n_samples", "noise_power")]
    return [RxFrame(t_start=t, seq=h.seq, kind=h.kind, values=values[f], noise_var=nvr[f], payload=payload[f],
                    crc_ok=crc_ok[f], snr_db=snr, cfo_hz=cfo, symbols=symbols[f], symbol_noise_var=symbol_nv[f],
                    channel=ch, header=h, n_samples=n_s, noise_power=p, extra=extra[f])
            for f, (h, t, snr, cfo, ch, n_s, p) in enumerate(zip(hdrs, *cols))]


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
