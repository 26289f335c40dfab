"""Frame format and :class:`FrameBuilder`: a complete, self-describing OFDM burst.

Frame layout (``N`` = fft_size, ``cp`` = cp_len; every OFDM symbol is ``N + cp`` samples)::

    | SC preamble: cp + N | LTS block: 2cp + 2N | header: n_hdr symbols | payload: n_pay symbols |

* **Schmidl–Cox preamble** - a fixed QPSK PN sequence on the *even* used subcarriers (x sqrt(2), so the symbol carries
  the same power as a fully loaded one) makes the time-domain symbol two identical halves of N/2 samples; the cyclic
  prefix extends that periodicity to the whole ``cp + N`` samples. Used for detection, coarse timing and the
  fractional CFO; the PN resolves nothing by itself - the integer CFO is resolved on the LTS (see ``phy.receiver``).
* **Long training symbol (LTS)** - known BPSK on all used subcarriers, sent twice after a double-length (2cp) cyclic
  prefix, like 802.11's L-LTF. Used for fine timing (cross-correlation), integer CFO, fine CFO (lag-N correlation)
  and the least-squares channel estimate (two looks, averaged, noise variance from their difference).
* **Header** - 96 bits = 80 bits of fields + CRC-16/CCITT, protected by 8 extended-Golay (24,12) codewords (rate 1/2,
  minimum distance 8, decoded soft-ML by correlation with all 4096 codewords), BPSK on the data subcarriers, bits of a
  codeword spread 8 subcarriers apart. Fields (MSB first): kind (1 bit: 0 analog, 1 digital), modulation (3 bits),
  code rate (3 bits), version (1 bit, 0), length (24 bits: real values for analog, bytes for digital), seq (16 bits),
  analog scale (float32, IEEE-754 big-endian).
* **Payload** - data subcarriers carry the payload symbols (analog: :class:`phy.analog.AnalogMapper` pairs; digital:
  :class:`phy.fec.DigitalCodec` bits mapped by :class:`phy.modulation.QamModem`), filled up to whole symbols with
  fixed unit-power QPSK filler.
  Pilot subcarriers carry ``cfg.pilot_values`` times a per-symbol ±1 polarity (a fixed PN over header+payload).

Every used subcarrier has unit average power (orthonormal IFFT), so the per-subcarrier SNR equals 1 / (noise variance
per complex sample) for a unit-gain link.
"""

from __future__ import annotations

import math
import struct
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from phy.crc import crc16, crc32
from phy.ofdm import OfdmConfig, fftlib, grid_to_time

_ifft = fftlib.ifft

#: modulation name <-> 3-bit header code
MODULATIONS = ("bpsk", "qpsk", "16qam", "64qam", "256qam")
#: code rate <-> 3-bit header code (None = uncoded)
CODE_RATES = (None, 1 / 2, 2 / 3, 3 / 4, 5 / 6)
CODE_RATE_NAMES = ("none", "1/2", "2/3", "3/4", "5/6")
HEADER_BITS = 96
MAX_LENGTH = (1 << 24) - 1
MAX_SEQ = (1 << 16) - 1
_PN_SEED = 0x5C0FDA  # fixed: transmitter and receiver must agree
#: the 12 header bytes as (kind/modulation/rate byte << 24 | length, seq, scale, CRC-16), big-endian
_HEADER_STRUCT = struct.Struct(">IHfH")
_HEADER_BODY = struct.Struct(">IHf")
_MOD_INDEX = {m: i for i, m in enumerate(MODULATIONS)}
#: the transmitter builds frames in chunks of about this many grid samples (rows x fft_size), so that its scratch
#: arrays stay in the CPU cache (measured, wifi64 and wide256: 2^15-2^17 best; the whole batch at once ran slower than
#: frame by frame)
TX_CHUNK_SAMPLES = 1 << 16
#: chunks of at most this many rows get their data cells onto the grid by one scatter instead of one slice copy per
#: run of adjacent subcarriers (numpy's per-call cost dominates small chunks, e.g. a single frame)
TX_SCATTER_ROWS = 128
#: per-thread scratch arrays of FrameBuilder._assemble_batch, by (n_data, fft_size)
_SCRATCH = threading.local()


def code_rate_index(code_rate) -> int:
    """Header code of ``code_rate`` (None, 0.5, 2/3, 3/4, 5/6 or their "a/b"/"none" names); raises ValueError."""
    if code_rate is None:
        return 0
    if isinstance(code_rate, str):
        name = code_rate.strip().lower()
        if name in CODE_RATE_NAMES:
            return CODE_RATE_NAMES.index(name)
        try:
            code_rate = float(name)
        except ValueError:
            raise ValueError(f"code_rate = {code_rate!r}: expected one of {', '.join(CODE_RATE_NAMES)}") from None
    if code_rate is None:
        return 0
    for i, r in enumerate(CODE_RATES[1:], start=1):
        if abs(float(code_rate) - r) < 1e-3:
            return i
    raise ValueError(f"code_rate = {code_rate!r}: expected one of {', '.join(CODE_RATE_NAMES)} (or None)")


def modulation_index(modem: str) -> int:
    """Header code of a modulation name; raises ValueError naming the allowed names."""
    i = _MOD_INDEX.get(modem) if isinstance(modem, str) else None
    if i is not None:
        return i
    key = str(modem).strip().lower().replace("-", "")
    if key not in MODULATIONS:
        raise ValueError(f"modem = {modem!r}: expected one of {', '.join(MODULATIONS)}")
    return MODULATIONS.index(key)


# ----------------------------------------------------------------------------------------- Golay (24,12)
@lru_cache(maxsize=1)
def golay_codebook() -> tuple[np.ndarray, np.ndarray]:
    """Extended Golay (24,12) code: (codewords uint8 [4096, 24], ±1 float32 [24, 4096] for soft correlation).

    Row ``i`` encodes the 12 info bits of ``i`` (MSB first): the cyclic (23,12) code with generator
    g(x) = x^11 + x^10 + x^6 + x^5 + x^4 + x^2 + 1, plus an overall parity bit (minimum distance 8).
    """
    g = np.array([1, 0, 1, 0, 1, 1, 1, 0, 0, 0, 1, 1], dtype=np.int64)  # coefficients x^0..x^11
    gen = np.zeros((12, 23), dtype=np.int64)
    for i in range(12):
        gen[i, i:i + 12] = g
    info = (np.arange(4096)[:, None] >> np.arange(11, -1, -1)[None, :]) & 1
    cw = (info @ gen) % 2
    cw = np.concatenate([cw, cw.sum(axis=1, keepdims=True) % 2], axis=1).astype(np.uint8)
    return cw, np.ascontiguousarray((1.0 - 2.0 * cw).T.astype(np.float32))


@lru_cache(maxsize=1)
def _golay_pm_rows() -> np.ndarray:
    """±1 codewords (bit 0 -> +1) as rows: float32 [4096, 24]."""
    return np.ascontiguousarray(golay_codebook()[1].T)


def golay_encode(bits: np.ndarray) -> np.ndarray:
    """uint8 [12 k] -> uint8 [24 k] (codeword c occupies bits [24c, 24c+24))."""
    blocks = np.asarray(bits, dtype=np.int64).reshape(-1, 12)
    idx = blocks @ (1 << np.arange(11, -1, -1))
    return golay_codebook()[0][idx].reshape(-1)


def golay_decode_soft(soft: np.ndarray) -> np.ndarray:
    """Soft-ML decoding: ``soft`` float [24 k] (positive = bit 0, e.g. LLRs) -> uint8 info bits [12 k]."""
    _, pm = golay_codebook()
    best = np.argmax(np.asarray(soft, dtype=np.float32).reshape(-1, 24) @ pm, axis=1)
    return ((best[:, None] >> np.arange(11, -1, -1)[None, :]) & 1).astype(np.uint8).reshape(-1)


# ---------------------------------------------------------------------------------------------- header
def header_bytes(digital: bool, modulation: int, code_rate: int, length: int, seq: int, scale: float) -> bytes:
    """The 12 header bytes from the field codes (:func:`modulation_index`, :func:`code_rate_index`; length 0 ..
    2^24-1, seq 0 .. 2^16-1): kind/modulation/rate byte and length (4 bytes), seq (2), scale (float32, 4), CRC-16 of
    those 10 (2), big-endian."""
    body = _HEADER_BODY.pack((((digital << 7) | (modulation << 4) | (code_rate << 1)) << 24) | length, seq, scale)
    return body + crc16(body).to_bytes(2, "big")


@dataclass(frozen=True)
class FrameHeader:
    """The decoded header fields."""

    kind: str          # "analog" | "digital"
    modem: str         # modulation name (digital); "bpsk" placeholder for analog
    code_rate: float | None
    length: int        # analog: number of real values; digital: payload bytes
    seq: int
    scale: float       # analog scale from AnalogMapper (1.0 for digital)

    def to_bytes(self) -> bytes:
        """The 12 header bytes (fields + CRC-16, big-endian): :meth:`to_bits` packed MSB first."""
        if not 0 <= self.length <= MAX_LENGTH:
            raise ValueError(f"length = {self.length!r}: expected 0 .. {MAX_LENGTH}")
        return header_bytes(self.kind == "digital", modulation_index(self.modem), code_rate_index(self.code_rate),
                            self.length, self.seq, self.scale)

    def to_bits(self) -> np.ndarray:
        """96 header bits (fields + CRC-16), uint8."""
        return np.unpackbits(np.frombuffer(self.to_bytes(), dtype=np.uint8))

    @classmethod
    def from_bits(cls, bits: np.ndarray) -> "FrameHeader | None":
        """Parse 96 bits; None if the CRC fails or a field is invalid."""
        return cls.from_bytes(np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> FrameHeader | None:
        """Parse the 12 header bytes (:meth:`to_bytes`); None if the CRC fails or a field is invalid."""
        if len(data) != 12:
            return None
        word, seq, scale, crc = _HEADER_STRUCT.unpack(data)       # (b0 << 24 | length), seq, scale, CRC-16
        if crc16(data[:10]) != crc:
            return None
        b0 = word >> 24
        mod, rate = (b0 >> 4) & 7, (b0 >> 1) & 7
        if mod >= len(MODULATIONS) or rate >= len(CODE_RATES) or b0 & 1:
            return None
        if not math.isfinite(scale) or scale <= 0:
            return None
        return cls(kind="digital" if b0 >> 7 else "analog", modem=MODULATIONS[mod], code_rate=CODE_RATES[rate],
                   length=word & 0xFFFFFF, seq=seq, scale=scale)


# ------------------------------------------------------------------------------------------ frame format
class FrameFormat:
    """Everything transmitter and receiver must agree on for one :class:`OfdmConfig` (sequences, sizes, layout).

    Attributes (all read-only arrays): ``sc_grid``/``lts_grid`` complex64 [N] (FFT-bin order), ``sc_time`` complex64
    [cp + N], ``lts_time`` complex64 [2cp + 2N], ``pilot_polarity`` float32 [127], header interleaver, sizes.
    """

    def __init__(self, cfg: OfdmConfig, header_repeat: int = 1):
        if isinstance(header_repeat, bool) or not isinstance(header_repeat, (int, np.integer)) \
                or not 1 <= header_repeat <= 8:
            raise ValueError(f"header_repeat = {header_repeat!r}: expected an integer 1 .. 8")
        self.cfg = cfg
        self.header_repeat = int(header_repeat)
        n, cp = cfg.fft_size, cfg.cp_len
        rng = np.random.default_rng(_PN_SEED)
        used = np.asarray(cfg.used_subcarriers)
        even = used[used % 2 == 0]
        qpsk = np.exp(1j * np.pi / 4 * (2 * rng.integers(0, 4, even.size) + 1))
        self.sc_grid = np.zeros(n, np.complex64)
        self.sc_grid[even % n] = np.sqrt(used.size / even.size) * qpsk
        self.lts_grid = np.zeros(n, np.complex64)
        self.lts_grid[cfg.used_bins] = 1.0 - 2.0 * rng.integers(0, 2, cfg.n_used)
        self.sc_time = grid_to_time(cfg, self.sc_grid[None, :])
        t = grid_to_time(cfg, self.lts_grid[None, :], cp_len=0)
        self.lts_symbol = t                                   # one LTS symbol, N samples
        self.lts_time = np.concatenate([t[n - 2 * cp:], t, t]).astype(np.complex64)
        self.pilot_polarity = (1.0 - 2.0 * rng.integers(0, 2, 127)).astype(np.float32)
        # unit-power QPSK filler for the unused tail of the last payload symbol (keeps every subcarrier at unit power)
        self._pilots = np.zeros((0, cfg.n_pilots), np.complex64)
        self._grid = np.zeros((0, cfg.fft_size), np.complex64)
        self.pad_symbols = np.exp(1j * np.pi / 4 * (2 * rng.integers(0, 4, cfg.n_data) + 1)).astype(np.complex64)
        # header: 8 Golay codewords, bit j of codeword c at position 8 j + c; with header_repeat R > 1 the 192 coded
        # bits are sent R times, copy r in slots 192 r + ((8 j + c + 24 r) mod 192) (shifted by 24 slots = half the
        # wifi64 band, for frequency diversity), and the receiver adds the copies' soft values (+10 log10 R dB)
        self.n_hdr_coded = 2 * HEADER_BITS * self.header_repeat
        self.n_hdr_symbols = -(-self.n_hdr_coded // cfg.n_data)
        self.hdr_perm = (np.arange(24)[None, :] * 8 + np.arange(8)[:, None]).reshape(-1)  # codeword bit -> slot
        r = np.arange(self.header_repeat)[:, None]
        self.hdr_perms = 2 * HEADER_BITS * r + (self.hdr_perm[None, :] + 24 * r) % (2 * HEADER_BITS)   # [R, 192]
        # slot -> coded bit (codeword order) it carries, 192 for the +1 filler after the last copy
        self.header_slot_source = np.full(self.n_hdr_symbols * cfg.n_data, 2 * HEADER_BITS, np.int64)
        self.header_slot_source[self.hdr_perms] = np.arange(2 * HEADER_BITS)[None, :]
        self.preamble_len = cfg.symbol_len + 2 * cp + 2 * n
        self.header_len = self.n_hdr_symbols * cfg.symbol_len
        self.preamble = np.concatenate([self.sc_time, self.lts_time]).astype(np.complex64)   # [preamble_len]
        self.preamble.flags.writeable = False
        self._data_index = np.zeros(0, np.int64)
        # (first data cell, first FFT bin, length) of each run of data subcarriers on adjacent bins: the cells of a
        # symbol go onto the grid as a few slice copies
        bins = cfg.data_bins
        cut = np.flatnonzero(np.diff(bins) != 1) + 1
        first = np.concatenate([[0], cut])
        self.data_runs = tuple((int(c), int(bins[c]), int(e - c)) for c, e in zip(first, np.append(cut, bins.size)))

    def pilot_block(self, first_symbol: int, n_sym: int) -> np.ndarray:
        """Pilot values with polarity for symbols ``first_symbol ..`` (0 = first header symbol): complex64
        [n_sym, n_pilots] (a read-only view of a cached table)."""
        end = first_symbol + n_sym
        if end > self._pilots.shape[0]:
            rows = max(end, 2 * self._pilots.shape[0])
            pol = self.pilot_polarity[np.arange(rows) % self.pilot_polarity.size]
            self._pilots = (pol[:, None] * self.cfg.pilot_array[None, :]).astype(np.complex64)
            self._pilots.flags.writeable = False
        return self._pilots[first_symbol:end]

    def pilot_grid(self, n_sym: int) -> np.ndarray:
        """The grid of symbols 0..n_sym-1 with only the pilots in place, zeros elsewhere: complex64 [n_sym, N] (a
        read-only view of a cached table)."""
        if n_sym > self._grid.shape[0]:
            rows = max(n_sym, 2 * self._grid.shape[0])
            g = np.zeros((rows, self.cfg.fft_size), np.complex64)
            g[:, self.cfg.pilot_bins] = self.pilot_block(0, rows)
            g.flags.writeable = False
            self._grid = g
        return self._grid[:n_sym]

    def grid_template(self, n_sym: int) -> np.ndarray:
        """A fresh grid complex64 [n_sym, N] with the pilots of symbols 0..n_sym-1 in place, zeros elsewhere."""
        return self.pilot_grid(n_sym).copy()

    def data_index(self, n_sym: int) -> np.ndarray:
        """Flat indices of the data cells of a grid [n_sym, N] (symbol-major, data subcarriers in their order):
        int64 [n_sym * n_data] (a read-only view of a cached table)."""
        size = n_sym * self.cfg.n_data
        if size > self._data_index.size:
            rows = max(n_sym, 2 * (self._data_index.size // self.cfg.n_data))
            idx = (np.arange(rows, dtype=np.int64)[:, None] * self.cfg.fft_size + self.cfg.data_bins[None, :])
            idx = idx.reshape(-1)
            idx.flags.writeable = False
            self._data_index = idx
        return self._data_index[:size]

    def header_symbols(self, header: FrameHeader) -> np.ndarray:
        """BPSK header symbols on the data subcarriers: float32 [n_hdr_symbols * n_data]."""
        return self.header_cells([header])[0]

    def header_cells(self, headers) -> np.ndarray:
        """BPSK header symbols of F headers: float32 [F, n_hdr_symbols * n_data].

        The 96 bits of a header as 8 Golay information words of 12 bits (MSB first) -> their +-1 codewords
        [F, 192] -> the slots of the header symbols (``header_repeat`` copies, +1 filler after the last).
        """
        return self.header_cells_from_bytes(b"".join([h.to_bytes() for h in headers]))

    def header_cells_from_bytes(self, data: bytes) -> np.ndarray:
        """:meth:`header_cells` of F headers given as their 12 F bytes (:meth:`FrameHeader.to_bytes`, concatenated):
        float32 [F, n_hdr_symbols * n_data]."""
        raw = np.frombuffer(data, np.uint8).reshape(-1, 4, 3)
        hi, mid, lo = raw[..., 0].astype(np.intp), raw[..., 1].astype(np.intp), raw[..., 2]
        words = np.empty(raw.shape[:2] + (2,), np.intp)      # 3 bytes = 2 words of 12 bits, MSB first
        words[..., 0] = (hi << 4) | (mid >> 4)
        words[..., 1] = ((mid & 15) << 8) | lo
        coded = np.ones((raw.shape[0], 2 * HEADER_BITS + 1), np.float32)
        coded[:, :-1] = _golay_pm_rows()[words.reshape(-1)].reshape(raw.shape[0], -1)
        return coded.take(self.header_slot_source, axis=1)

    def combine_header_soft(self, soft: np.ndarray) -> np.ndarray:
        """Soft values of the header's 192 coded bits in codeword order (codeword c's bit j at 24 c + j): float
        [..., n_hdr_symbols * n_data] -> [..., 192], the ``header_repeat`` copies added."""
        return soft[..., self.hdr_perms].sum(axis=-2)

    def decode_header(self, soft: np.ndarray) -> FrameHeader | None:
        """``soft`` float [n_hdr_symbols * n_data] (positive = bit 0) -> header or None (CRC/field failure)."""
        bits = golay_decode_soft(self.combine_header_soft(soft))
        return FrameHeader.from_bits(bits)

    def n_symbols(self, n_payload_symbols: int) -> int:
        """OFDM payload symbols needed for ``n_payload_symbols`` data symbols."""
        return -(-int(n_payload_symbols) // self.cfg.n_data)

    def frame_len(self, n_payload_ofdm_symbols: int) -> int:
        """Total frame length in samples for a payload of that many OFDM symbols."""
        return self.preamble_len + self.header_len + n_payload_ofdm_symbols * self.cfg.symbol_len


@lru_cache(maxsize=16)
def frame_format(cfg: OfdmConfig, header_repeat: int = 1) -> FrameFormat:
    """Cached :class:`FrameFormat` for ``cfg`` (and ``header_repeat``)."""
    return FrameFormat(cfg, header_repeat)


@lru_cache(maxsize=32)
def codec_for(modem: str, code_rate):
    """Cached :class:`phy.fec.DigitalCodec` for a modulation name and code rate (None: uncoded)."""
    from phy.fec import DigitalCodec
    return DigitalCodec(modem, code_rate)


@lru_cache(maxsize=8)
def modem_for(name: str):
    """Cached :class:`phy.modulation.QamModem` for a modulation name ("bpsk", "qpsk", "16qam", ...)."""
    from phy.modulation import QamModem
    return QamModem.from_name(name)




@dataclass(frozen=True)
class FrameRequest:
    """One frame for :meth:`FrameBuilder.build_batch`: what :meth:`FrameBuilder.build_analog` or
    :meth:`FrameBuilder.build_digital` would take (validated when the batch is built). Make one with
    :meth:`analog` or :meth:`digital`."""

    kind: str                        # "analog" | "digital"
    data: object                     # analog: real values [L]; digital: payload bytes
    seq: int
    modem: str = "qpsk"              # digital only
    code_rate: float | str | None = 0.5   # digital only (None = uncoded)
    power: float = 1.0               # analog only: mean power per data subcarrier

    @classmethod
    def analog(cls, values, seq: int, power: float = 1.0) -> "FrameRequest":
        """An analog frame of ``values`` float [L]."""
        return cls("analog", values, seq, power=power)

    @classmethod
    def digital(cls, payload: bytes, seq: int, modem: str = "qpsk", code_rate: float | str | None = 0.5
                ) -> "FrameRequest":
        """A digital frame of ``payload`` bytes."""
        return cls("digital", payload, seq, modem=modem, code_rate=code_rate)

    def __post_init__(self):
        if self.kind not in ("analog", "digital"):
            raise ValueError(f"kind = {self.kind!r}: expected 'analog' or 'digital'")


class FrameBuilder:
    """Builds complete frames (complex64 sample vectors) for ``cfg``; see the module docstring for the layout.

    Example::

        fb = FrameBuilder(OfdmConfig.preset("wifi64"))
        x = fb.build_digital(b"hello", seq=1, modem="qpsk", code_rate=None)   # complex64 [fb.frame_len(...)]
    """

    def __init__(self, cfg: OfdmConfig, header_repeat: int = 1):
        if not isinstance(cfg, OfdmConfig):
            raise TypeError(f"cfg must be an OfdmConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.fmt = frame_format(cfg, header_repeat)

    # ------------------------------------------------------------------ planning
    def frame_len(self, *, n_values: int | None = None, n_bytes: int | None = None, modem: str = "qpsk",
                  code_rate: float | None = 0.5) -> int:
        """Samples of an analog frame of ``n_values`` reals, or a digital frame of ``n_bytes`` payload bytes."""
        if (n_values is None) == (n_bytes is None):
            raise ValueError("frame_len: give exactly one of n_values (analog) or n_bytes (digital)")
        if n_values is not None:
            n_sym = -(-int(n_values) // 2)
        else:
            bits = codec_for(MODULATIONS[modulation_index(modem)], CODE_RATES[code_rate_index(code_rate)]) \
                .n_coded_bits(int(n_bytes))
            m = modem_for(MODULATIONS[modulation_index(modem)]).bits_per_symbol
            n_sym = -(-bits // m)
        return self.fmt.frame_len(self.fmt.n_symbols(n_sym))

    # ------------------------------------------------------------------ building
    def build_analog(self, values, seq: int, power: float = 1.0) -> np.ndarray:
        """Analog frame: ``values`` float [L] (1 <= L <= 2^24-1, finite) carried as complex pairs with mean power
        ``power`` per data subcarrier. Returns complex64 [frame_len(n_values=L)]."""
        return self._assemble_batch([self._analog_parts(values, seq, power)])[0]

    def build_digital(self, payload: bytes, seq: int, modem: str = "qpsk", code_rate: float | None = 0.5
                      ) -> np.ndarray:
        """Digital frame: ``payload`` bytes (1 .. 2^24-1) with CRC-32 and optional LDPC (``code_rate`` None = uncoded),
        mapped with ``modem``. Returns complex64 [frame_len(n_bytes=len(payload), ...)]."""
        return self._assemble_batch([self._digital_parts(payload, seq, modem, code_rate)])[0]

    def build_batch(self, requests, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Many frames at once, back to back: the transmitter's fast path (one symbol mapping per modulation, one
        IFFT over all OFDM symbols, one CP insertion; no per-frame numpy work beyond the payload mapping of analog,
        LDPC-coded and 64-QAM frames).

        Parameters
        ----------
        requests : sequence of :class:`FrameRequest`
            The frames, in order (any mix of kinds, lengths and modulations); at least one.
        out : complex64 ndarray [>= total samples], optional
            C-contiguous buffer to write the frames into (e.g. reused by a streaming transmitter); ``samples`` is
            then a view of its beginning.

        Returns
        -------
        samples : complex64 [sum of frame lengths]
            The frames concatenated; frame ``i`` is ``samples[bounds[i]:bounds[i + 1]]`` and equals, sample for
            sample, what :meth:`build_analog` / :meth:`build_digital` return for that request.
        bounds : int64 [F + 1]
            Frame boundaries in ``samples`` (``bounds[0] = 0``).
        """
        requests = list(requests)
        if not requests:
            raise ValueError("requests is empty: expected at least one FrameRequest")
        parts = []
        for i, r in enumerate(requests):
            if not isinstance(r, FrameRequest):
                raise TypeError(f"requests[{i}] is a {type(r).__name__}: expected a FrameRequest")
            parts.append(self._analog_parts(r.data, r.seq, r.power) if r.kind == "analog"
                         else self._digital_parts(r.data, r.seq, r.modem, r.code_rate))
        return self._assemble_batch(parts, concatenated=True, out=out)

    def _analog_parts(self, values, seq, power) -> tuple:
        """(header, payload symbols complex64 [n]) of an analog frame; raises ValueError on bad input."""
        from phy.analog import AnalogMapper
        x = np.asarray(values, dtype=np.float32).reshape(-1)          # the values are carried as float32
        if x.size == 0 or x.size > MAX_LENGTH:
            raise ValueError(f"values has {x.size} entries: expected 1 .. {MAX_LENGTH}")
        if not np.isfinite(x).all():
            if not np.isfinite(np.asarray(values, dtype=np.float64)).all():
                raise ValueError("values contains NaN or infinite entries: expected finite reals")
            raise ValueError(f"values has a magnitude up to {np.max(np.abs(np.asarray(values, np.float64))):g}: "
                             "expected finite float32 values (|x| < 3.4e38)")
        seq = self._check_seq(seq)
        s, scale = AnalogMapper(power).map_finite(x)
        return "bpsk", s, header_bytes(False, 0, 0, int(x.size), seq, float(np.float32(scale)))

    def _digital_parts(self, payload, seq, modem, code_rate) -> tuple:
        """(header, payload symbols) of a digital frame: symbols are complex64 [n], or, for uncoded modulations of
        1, 2, 4 or 8 bits per symbol, the payload + CRC-32 bytes (mapped later, all frames of a modulation in one
        call); raises TypeError/ValueError on bad input."""
        if type(payload) is not bytes:
            if not isinstance(payload, (bytes, bytearray, memoryview)):
                raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
            payload = bytes(payload)
        if not 1 <= len(payload) <= MAX_LENGTH:
            raise ValueError(f"payload has {len(payload)} bytes: expected 1 .. {MAX_LENGTH}")
        seq = self._check_seq(seq)
        mi, ri = modulation_index(modem), code_rate_index(code_rate)
        mname, rate = MODULATIONS[mi], CODE_RATES[ri]
        hdr = header_bytes(True, mi, ri, len(payload), seq, 1.0)
        mod = modem_for(mname)
        if rate is None:
            # uncoded: the coded bits are the payload and its CRC-32 (big-endian) bits, zero-padded to whole symbols
            # (phy.fec.DigitalCodec's layout), mapped byte-wise without unpacking them
            data = payload + crc32(payload).to_bytes(4, "big")
            if 8 % mod.bits_per_symbol == 0:
                return mname, data, hdr
            return mname, mod.modulate_bytes(data, codec_for(mname, rate).n_coded_bits(len(payload))), hdr
        bits = codec_for(mname, rate).encode(payload)
        m = mod.bits_per_symbol
        pad = (-bits.size) % m
        if pad:
            bits = np.concatenate([bits, np.zeros(pad, np.uint8)])
        return mname, mod.modulate(bits), hdr

    @staticmethod
    def _check_seq(seq) -> int:
        if isinstance(seq, bool) or not isinstance(seq, (int, np.integer)) or not 0 <= seq <= MAX_SEQ:
            raise ValueError(f"seq = {seq!r}: expected an integer 0 .. {MAX_SEQ}")
        return int(seq)

    def _assemble(self, hdr: FrameHeader, payload_symbols: np.ndarray) -> np.ndarray:
        """One frame from its header and payload symbols complex64 [n]: complex64 [frame_len]."""
        return self._assemble_batch([(hdr.modem, np.asarray(payload_symbols, np.complex64), hdr.to_bytes())])[0]

    def _assemble_batch(self, parts: list, concatenated: bool = False, out: np.ndarray | None = None):
        """Frames from (modulation name, payload, header bytes) triples (see :meth:`_digital_parts`): a list of complex64 frames, or, with
        ``concatenated``, (samples, bounds) as :meth:`build_batch` returns them (written into ``out`` if given).

        A frame is 3 preamble rows (``preamble_len = 3 symbol_len``) then ``n_hdr + n_pay`` OFDM symbols of
        ``symbol_len`` samples, so the frames are one output array [R, symbol_len]. It is made in chunks of frames of
        about :data:`TX_CHUNK_SAMPLES` grid samples, in two scratch arrays that stay in the CPU cache: the data cells
        [rows, n_data] (header rows in one copy; per frame the payload mapped or copied in place and the filler) and
        the grid [rows, N] (per frame the pilot template; then the data cells in runs of adjacent subcarriers); one
        IFFT per chunk writes straight into the output rows after the cyclic prefix, the prefixes are copied for the
        whole chunk, and the preamble rows (transformed as whatever the scratch held) are overwritten by the
        preamble. The IFFT is numpy's pocketfft, the same numbers as scipy.fft's.
        """
        cfg, fmt = self.cfg, self.fmt
        nd, n, cp, sl = cfg.n_data, cfg.fft_size, cfg.cp_len, cfg.symbol_len
        n_hdr, pre = fmt.n_hdr_symbols, 3
        f_count = len(parts)
        n_sym = [0] * f_count                                # payload data symbols per frame
        for i, (mname, src, _) in enumerate(parts):
            n_sym[i] = 8 * len(src) // modem_for(mname).bits_per_symbol if isinstance(src, bytes) else src.size
        n_rows = [pre + n_hdr + -(-k // nd) for k in n_sym]  # output rows per frame
        # frames of one shape (uncoded bytes: modulation and length; symbols: their number) are mapped together
        shape = [(m, len(src)) if isinstance(src, bytes) else (None, k) for (m, src, _), k in zip(parts, n_sym)]
        first = [0] * (f_count + 1)                          # first output row of each frame (and the total)
        for i, r in enumerate(n_rows):
            first[i + 1] = first[i] + r
        total = first[-1]
        if out is None:
            out = np.empty((total, sl), np.complex64)
        else:
            if not isinstance(out, np.ndarray) or out.dtype != np.complex64 or out.ndim != 1 \
                    or not out.flags.c_contiguous or out.size < total * sl:
                raise ValueError(f"out is {getattr(out, 'dtype', type(out).__name__)} "
                                 f"{getattr(out, 'shape', '')}: expected a C-contiguous complex64 vector of at "
                                 f"least {total * sl} samples")
            out = out[:total * sl].reshape(total, sl)
        slots = fmt.header_cells_from_bytes(b"".join([p[2] for p in parts])).reshape(f_count, n_hdr, nd)
        template = fmt.pilot_grid(max(n_rows) - pre)
        preamble = fmt.preamble.reshape(pre, sl)
        pad = fmt.pad_symbols
        chunk_rows = max(1, TX_CHUNK_SAMPLES // n)
        first_a, hdr_rows, pre_rows = np.asarray(first, np.int64), np.arange(n_hdr), np.arange(pre)
        f0 = 0
        while f0 < f_count:                                  # chunk [f0, f1): whole frames, >= 1
            f1 = f0 + 1
            while f1 < f_count and first[f1 + 1] - first[f0] <= chunk_rows:
                f1 += 1
            r0, rows = first[f0], first[f1] - first[f0]
            cells, grid = self._scratch(rows)
            flat = cells.reshape(-1)
            if f1 - f0 == 1:                                 # one frame (single-frame builds): slices, not index arrays
                cells[pre:pre + n_hdr] = slots[f0]
            else:
                cells[(first_a[f0:f1, None] - r0 + pre + hdr_rows).reshape(-1)] = slots[f0:f1].reshape(-1, nd)
            i = f0
            while i < f1:                                    # runs [i, j) of frames of one shape
                j = i + 1
                while j < f1 and shape[j] == shape[i]:
                    j += 1
                k, rr = n_sym[i], n_rows[i]
                b = first[i] - r0                            # first row of frame i in the chunk
                if j - i > 1:                                # [G, rows, ...] views of the run: one copy each
                    g = j - i
                    grid[b:b + g * rr].reshape(g, rr, n)[:, pre:] = template[:rr - pre]
                    pay = cells[b:b + g * rr].reshape(g, rr, nd)[:, pre + n_hdr:].reshape(g, -1)
                    if shape[i][0] is not None:              # uncoded bytes of one modulation: one gather
                        src = np.frombuffer(b"".join([parts[t][1] for t in range(i, j)]), np.uint8)
                        pay[:, :k] = modem_for(shape[i][0]).modulate_byte_rows(src.reshape(g, -1))
                    else:
                        for t in range(i, j):
                            pay[t - i, :k] = parts[t][1]
                    if k % nd:
                        pay[:, k:] = pad[:nd - k % nd]
                else:
                    mname, src, _ = parts[i]
                    a = (b + pre + n_hdr) * nd
                    if isinstance(src, bytes):
                        modem_for(mname).modulate_bytes(src, out=flat[a:a + k])
                    else:
                        flat[a:a + k] = src
                    if k % nd:
                        flat[a + k:a + k + nd - k % nd] = pad[:nd - k % nd]
                    grid[b + pre:b + rr] = template[:rr - pre]
                i = j
            if rows <= TX_SCATTER_ROWS:                      # a few rows: one scatter beats a copy per run
                grid.reshape(-1)[fmt.data_index(rows)] = cells.reshape(-1)
            else:
                for c0, b0, length in fmt.data_runs:
                    grid[:, b0:b0 + length] = cells[:, c0:c0 + length]
            o = out[r0:r0 + rows]
            np.fft.ifft(grid, axis=1, norm="ortho", out=o[:, cp:])
            o[:, :cp] = o[:, n:]
            if f1 - f0 == 1:
                out[r0:r0 + pre] = preamble
            else:
                out[first_a[f0:f1, None] + pre_rows] = preamble
            f0 = f1
        samples = out.reshape(-1)
        bounds = np.asarray(first, np.int64) * sl
        if concatenated:
            return samples, bounds
        return [samples[bounds[i]:bounds[i + 1]] for i in range(f_count)]

    def _scratch(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """This thread's scratch for this numerology (cells complex64 [rows, n_data], grid complex64 [rows, N]),
        grown as needed. Every body row is fully rewritten per use; the preamble rows keep older contents, which
        are always finite (only finite values are ever written), so their IFFT is harmless and then overwritten."""
        key = (self.cfg.n_data, self.cfg.fft_size)
        store = _SCRATCH.__dict__
        cells, grid = store.get(key, (None, None))
        if cells is None or cells.shape[0] < rows:
            cells = np.zeros((rows, key[0]), np.complex64)
            grid = np.zeros((rows, key[1]), np.complex64)
            store[key] = (cells, grid)
        return cells[:rows], grid[:rows]
