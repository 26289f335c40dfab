"""Gray-mapped QAM (BPSK ... 256-QAM): mapping, soft LLR demapping and hard decisions.

Conventions (project-wide):

* Constellations have unit average energy, E|s|^2 = 1, so "SNR" = Es/N0 = 1 / noise_var.
* ``noise_var`` is the *complex* noise variance E|n|^2 = N0; each real dimension carries N0/2.
* LLR = log P(b=0 | y) / P(b=1 | y): positive means "bit 0 more likely". (Sionna's decoders use the opposite
  sign; :mod:`phy.fec` converts.)
* Bit layout: symbol ``i`` carries bits ``[m*i, m*(i+1))``; within a symbol the first bit is the label's MSB.
* Labelling follows 3GPP TS 38.211 sec. 5.1: BPSK maps bit 0 -> +1; for square QAM the even-numbered bits of a symbol
  (b0, b2, ...) select the in-phase PAM level and the odd-numbered bits (b1, b3, ...) the quadrature level, each axis a
  binary-reflected Gray code, e.g. 16-QAM: I = (1-2 b0)(2 - (1-2 b2)) / sqrt(10).

Square QAM factorizes into two independent PAM axes, so the demapper works per axis on sqrt(M) levels instead of M
points (for 256-QAM: 2 x 16 distances per symbol instead of 256); BPSK and QPSK use their closed-form LLRs.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

__all__ = ["QamModem", "SUPPORTED_ORDERS", "MODEM_NAMES"]

#: constellation sizes that :class:`QamModem` supports
SUPPORTED_ORDERS: tuple[int, ...] = (2, 4, 16, 64, 256)
#: names accepted by :meth:`QamModem.from_name`, mapped to constellation sizes
MODEM_NAMES: dict[str, int] = {"bpsk": 2, "qpsk": 4, "16qam": 16, "64qam": 64, "256qam": 256}
#: exact demapper: log-likelihoods more than this below the best level are floored before exp() (float32 normal range)
_EXP_FLOOR = np.float32(-80.0)
#: a bit set whose sum of exp() is below this (e^-62) is "saturated": its log-sum is taken from its largest term
_SUM_FLOOR = np.float32(1e-27)


def _pam_levels(p: int) -> np.ndarray:
    """Unnormalized Gray PAM amplitudes indexed by the p-bit axis label (MSB = first bit); float64[2**p].

    3GPP recursion: amp = (1-2c0) * (2^(p-1) - (1-2c1) * (2^(p-2) - ... (1-2c_{p-1}) * 1)).
    """
    labels = np.arange(2**p)
    bits = (labels[:, None] >> np.arange(p - 1, -1, -1)[None, :]) & 1  # [L, p], MSB first
    sign = 1.0 - 2.0 * bits
    acc = np.ones(2**p)
    for j in range(p - 1, 0, -1):
        acc = 2.0 ** (p - j) - sign[:, j] * acc
    return sign[:, 0] * acc


class QamModem:
    """Gray-mapped, unit-energy QAM modem with exact (log-MAP) or max-log LLR demapping.

    Args:
        order: constellation size M, one of 2 (BPSK), 4 (QPSK), 16, 64, 256.

    Attributes:
        order: M.
        bits_per_symbol: m = log2(M).
        constellation: complex64[M], the point for label ``l`` (bits of ``l``, MSB first = first bit of the symbol).

    Example:
        >>> modem = QamModem.from_name("16qam")
        >>> bits = np.random.default_rng(0).integers(0, 2, 4 * 100, dtype=np.uint8)
        >>> y = modem.modulate(bits)                      # complex64[100]
        >>> llr = modem.demodulate_llr(y, noise_var=0.1)  # float32[400], > 0 means bit 0
        >>> bool(np.all((llr < 0) == bits))
        True
    """

    NAMES: ClassVar[dict[str, int]] = MODEM_NAMES

    def __init__(self, order: int) -> None:
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or int(order) not in SUPPORTED_ORDERS:
            raise ValueError(f"order={order!r} is not supported; expected one of {SUPPORTED_ORDERS}")
        self.order = int(order)
        self.bits_per_symbol = int(np.log2(self.order))
        m = self.bits_per_symbol
        if self.order == 2:
            self._axis_bits = 1
            self._norm = 1.0
            self._levels = np.array([1.0, -1.0])  # BPSK: real axis only
            points = self._levels.astype(np.complex128)
        else:
            p = m // 2
            self._axis_bits = p
            self._norm = 1.0 / np.sqrt(2.0 * (self.order - 1) / 3.0)
            self._levels = _pam_levels(p) * self._norm  # float64[L] indexed by axis label
            labels = np.arange(self.order)
            bits = (labels[:, None] >> np.arange(m - 1, -1, -1)[None, :]) & 1  # [M, m]
            weights = 1 << np.arange(p - 1, -1, -1)
            i_label = bits[:, 0::2] @ weights
            q_label = bits[:, 1::2] @ weights
            points = self._levels[i_label] + 1j * self._levels[q_label]
        self.constellation = points.astype(np.complex64)
        # modulator tables: symbol of the label in the top m bits of a byte, complex64 [256]; and, when m divides 8,
        # the 8/m symbols a whole byte carries, complex64 [256, 8/m]
        self._shifted_table = self.constellation[np.arange(256) >> (8 - m)]
        if 8 % m == 0:
            shifts = np.arange(8 - m, -1, -m)
            self._byte_table = np.ascontiguousarray(
                self.constellation[(np.arange(256)[:, None] >> shifts[None, :]) & (self.order - 1)])
        self._prepare_axis_tables()

    @classmethod
    def from_name(cls, name: str) -> "QamModem":
        """Modem from its name: "bpsk", "qpsk", "16qam", "64qam" or "256qam" (case-insensitive)."""
        key = str(name).strip().lower().replace("-", "")
        if key not in MODEM_NAMES:
            raise ValueError(f"modem name={name!r} is unknown; expected one of {sorted(MODEM_NAMES)}")
        return cls(MODEM_NAMES[key])

    @property
    def name(self) -> str:
        """The modem's name as accepted by :meth:`from_name`."""
        return {v: k for k, v in MODEM_NAMES.items()}[self.order]

    def __repr__(self) -> str:
        return f"QamModem(order={self.order})  # {self.name}, {self.bits_per_symbol} bits/symbol"

    # ------------------------------------------------------------------ tables
    def _prepare_axis_tables(self) -> None:
        """Per-axis tables used by the demappers.

        ``_mask0_t`` / ``_mask1_t``: float32[p, L], 1 where axis label l has bit j equal to 0 / 1.
        ``_sorted_levels``: axis amplitudes ascending, ``_sorted_bits``: their label bits, uint8[L, p].
        """
        p = self._axis_bits
        labels = np.arange(2**p)
        bits = ((labels[:, None] >> np.arange(p - 1, -1, -1)[None, :]) & 1).astype(np.uint8)  # [L, p]
        self._mask0_t = np.ascontiguousarray((bits == 0).T, dtype=np.float32)  # [p, L]
        self._mask1_t = np.ascontiguousarray((bits == 1).T, dtype=np.float32)
        order = np.argsort(self._levels)
        self._sorted_levels = self._levels[order]
        self._sorted_bits = bits[order]
        self._step = float(self._sorted_levels[1] - self._sorted_levels[0])
        # Half-cell table: for each interval of width step/2 (boundaries at the levels and the decision thresholds),
        # the nearest level, the nearest level with bit j flipped (a far sentinel when none), and 1 - 2 * bits of the
        # nearest level: float32[2L, 1 + 2p].
        n_levels = order.size
        far = 1e3
        table = np.empty((2 * n_levels, 1 + 2 * p), dtype=np.float32)
        for h in range(2 * n_levels):
            i = h // 2
            centre = self._sorted_levels[0] + (h - 0.5) * self._step / 2  # a point inside half-cell h
            table[h, 0] = self._sorted_levels[i]
            for j in range(p):
                flipped = np.flatnonzero(self._sorted_bits[:, j] != self._sorted_bits[i, j])
                cand = self._sorted_levels[flipped]
                table[h, 1 + j] = cand[np.argmin(np.abs(cand - centre))] if cand.size else far
                table[h, 1 + p + j] = 1.0 - 2.0 * self._sorted_bits[i, j]
        self._half_table = table

    # ------------------------------------------------------------------ mapping
    def modulate(self, bits: np.ndarray) -> np.ndarray:
        """Map bits to symbols.

        Args:
            bits: uint8/bool/int array [..., m*n] of 0/1 values; the last axis length must be a multiple of m.

        Returns:
            complex64[..., n].
        """
        b = np.asarray(bits)
        m = self.bits_per_symbol
        if b.ndim == 0 or b.shape[-1] % m:
            raise ValueError(
                f"bits has shape {b.shape}; expected a last axis whose length is a multiple of "
                f"bits_per_symbol={m} ({self.name})"
            )
        if b.dtype != np.bool_ and b.size and (b.max() > 1 or (b.dtype.kind != "u" and b.min() < 0)):
            raise ValueError(f"bits must hold only 0 and 1; got values in [{b.min()}, {b.max()}]")
        if b.dtype.kind not in "bu" or b.dtype.itemsize != 1:
            b = b.astype(np.uint8)
        n = b.shape[-1] // m
        if 8 % m == 0 and b.shape[-1] % 8 == 0:
            # whole bytes: one packbits and one row gather from the byte -> 8/m symbols table
            packed = np.packbits(b, axis=-1)
            return self._byte_table.take(packed, axis=0).reshape(*b.shape[:-1], n)
        # m bits per label: packbits pads each group to a byte (label << (8 - m))
        labels = np.packbits(b.reshape(*b.shape[:-1], n, m), axis=-1)[..., 0]
        return self._shifted_table.take(labels)

    def modulate_bytes(self, data: bytes, n_bits: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Map the bits of ``data`` (MSB of each byte first), zero-padded to ``n_bits`` bits, to symbols; the same
        as ``modulate(concatenate([unpackbits(data), zeros]))``.

        Args:
            data: bytes (or a uint8 array [B]).
            n_bits: total bits, a multiple of m and >= 8 B (default: 8 B rounded up to a multiple of m).
            out: optional complex64 [n_bits / m], C-contiguous, to write the symbols into (the transmitter maps
                straight into its cell buffer).

        Returns:
            complex64[n_bits / m] (``out`` when given).
        """
        byts = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) \
            else np.asarray(data, dtype=np.uint8).reshape(-1)
        m = self.bits_per_symbol
        n_data = 8 * byts.size
        if n_bits is None:
            n_bits = m * -(-n_data // m)
        if isinstance(n_bits, bool) or int(n_bits) != n_bits or n_bits < n_data or n_bits % m:
            raise ValueError(f"n_bits={n_bits!r}: expected a multiple of bits_per_symbol={m} that is >= "
                             f"{n_data} (the bits of data)")
        n_bits = int(n_bits)
        if out is None:
            out = np.empty(n_bits // m, np.complex64)
        elif out.shape != (n_bits // m,) or out.dtype != np.complex64 or not out.flags.c_contiguous:
            raise ValueError(f"out has shape {out.shape} and dtype {out.dtype}: expected a C-contiguous complex64 "
                             f"array of shape ({n_bits // m},)")
        if 8 % m:
            bits = np.zeros(n_bits, np.uint8)
            bits[:n_data] = np.unpackbits(byts)
            out[:] = self.modulate(bits)
            return out
        k = n_data // m
        self._byte_table.take(byts, axis=0, out=out[:k].reshape(byts.size, 8 // m))
        out[k:] = self._shifted_table[0]
        return out

    def modulate_byte_rows(self, data: np.ndarray) -> np.ndarray:
        """Map G byte strings of one length at once (MSB of each byte first): ``data`` uint8 [G, B] -> complex64
        [G, 8 B / m], row g equal to ``modulate_bytes(data[g])``; for modulations whose m divides 8 (BPSK, QPSK,
        16-QAM, 256-QAM), whose symbols never straddle bytes. One table gather (the transmitter maps a chunk's frames
        of one shape with it)."""
        byts = np.asarray(data)
        m = self.bits_per_symbol
        if 8 % m:
            raise ValueError(f"modulate_byte_rows: {self.name} has {m} bits per symbol; expected 1, 2, 4 or 8 "
                             "(symbols that straddle bytes need modulate_bytes)")
        if byts.ndim != 2 or byts.dtype != np.uint8:
            raise ValueError(f"data is {byts.dtype} of shape {byts.shape}: expected uint8 [G, B]")
        return self._byte_table.take(byts, axis=0).reshape(byts.shape[0], byts.shape[1] * (8 // m))

    # ------------------------------------------------------------------ demapping
    def demodulate_llr(self, y: np.ndarray, noise_var: float | np.ndarray, method: str = "exact") -> np.ndarray:
        """Soft-demap received symbols to bit LLRs, log P(b=0|y) / P(b=1|y), for an AWGN observation y = s + n.

        Args:
            y: complex array [..., n] of received (equalized) symbols.
            noise_var: complex noise variance E|n|^2 (> 0), a float or an array broadcastable to ``y``
                (e.g. per-symbol variances after equalization).
            method: "exact" (log-MAP via log-sum-exp) or "maxlog" (max-log approximation). BPSK and QPSK LLRs are
                linear in y, so both methods coincide there.

        Returns:
            float32[..., m*n] LLRs; bits of symbol i at [m*i, m*(i+1)).
        """
        if method not in ("exact", "maxlog"):
            raise ValueError(f"method={method!r} is unknown; expected 'exact' or 'maxlog'")
        y, inv = self._checked(y, noise_var)
        m = self.bits_per_symbol
        out_shape = (*y.shape[:-1], y.shape[-1] * m)
        if self.order == 2:
            # LLR = log p(y|+1)/p(y|-1) with per-real-axis variance N0/2: 4 Re(y) / N0
            return (4.0 * y.real * inv).astype(np.float32, copy=False).reshape(out_shape)
        if self.order == 4:
            # amplitude a = 1/sqrt(2) per axis: LLR = 4 a y / N0 = 2 sqrt(2) y / N0
            out = np.empty((*y.shape, 2), dtype=np.float32)
            c = np.float32(2.0 * np.sqrt(2.0)) * inv
            np.multiply(y.real, c, out=out[..., 0])
            np.multiply(y.imag, c, out=out[..., 1])
            return out.reshape(out_shape)
        out = np.empty((*y.shape, m), dtype=np.float32)
        out[..., 0::2] = self._axis_llr(y.real, inv, method)
        out[..., 1::2] = self._axis_llr(y.imag, inv, method)
        return out.reshape(out_shape)

    def llr_negative(self, y: np.ndarray, noise_var: float | np.ndarray) -> np.ndarray:
        """``demodulate_llr(y, noise_var) < 0`` (exact log-MAP): the bitwise MAP hard decisions, e.g. of uncoded
        payloads, computed faster.

        On an axis of L levels each log-sum-exp over the L/2 levels of one bit value lies between its largest term and
        that plus log(L/2), so the exact LLR and its max-log approximation differ by at most log(L/2): where
        |max-log| > log(L/2) + 1 both have its sign, and only the other values go through the exact demapper.

        Args:
            y, noise_var: as :meth:`demodulate_llr` (and the same ``ValueError``).

        Returns:
            bool[..., m*n] (True: bit 1 more likely).
        """
        if self.order <= 4:
            return self.demodulate_llr(y, noise_var) < 0
        y, inv = self._checked(y, noise_var)
        m, p = self.bits_per_symbol, self._axis_bits
        margin = np.float32(np.log(self._levels.size / 2) + 1.0)
        invf = np.ascontiguousarray(inv, dtype=np.float32).reshape(-1)
        out = np.empty((*y.shape, m), dtype=bool)
        step, first, last = np.float32(self._step), np.float32(self._sorted_levels[0]), self._levels.size - 2
        for axis, r in ((0, y.real), (1, y.imag)):
            rf = np.ascontiguousarray(r).reshape(-1)
            neg = self._nearest_and_opposite(rf)[2] < 0          # max-log signs: the nearest level's bits [N, p]
            # the least reliable bit's |max-log LLR| is ((r - a)^2 - (r - l)^2) / N0 = 2 step |r - t| / N0 (l the
            # nearest level, a its neighbour across the nearest decision threshold t, Gray labels): the symbols with
            # some |max-log| <= margin are those with 2 step |r - t| / N0 <= margin (tested with 1 % slack, which only
            # sends a few more symbols through the exact demapper)
            t = np.clip(np.floor((rf - first) / step), 0, last) * step + (first + step / 2)
            dist = np.abs(rf - t)
            dist *= invf
            near = np.flatnonzero(dist <= np.float32(1.01) * margin / (2 * step))
            if near.size:
                neg[near] = self._axis_llr(rf[near], invf[near], "exact") < 0
            out[..., axis::2] = neg.reshape(*y.shape, p)
        return out.reshape(*y.shape[:-1], y.shape[-1] * m)

    def _checked(self, y, noise_var) -> tuple[np.ndarray, np.ndarray]:
        """(y complex64 [..., n], 1 / noise_var float32 broadcast to y), or ValueError (see :meth:`demodulate_llr`)."""
        y = np.asarray(y)
        if y.ndim == 0:
            raise ValueError("y must have at least one axis [..., n]; got a scalar")
        with np.errstate(over="ignore", invalid="ignore"):      # a finite sum rules out NaN/inf cheaply
            finite = bool(np.isfinite(y.sum())) or bool(np.all(np.isfinite(y)))
        if not finite:
            raise ValueError(f"y contains {int(np.sum(~np.isfinite(y)))} non-finite values (NaN/inf); expected finite")
        nv = np.asarray(noise_var, dtype=np.float32)
        if nv.size and not (nv.min() > 0 and nv.max() < np.inf):                # NaN fails the first test
            raise ValueError(f"noise_var must be finite and > 0; got min {nv.min()!r}")
        try:
            inv = np.broadcast_to(1.0 / nv, y.shape)
        except ValueError:
            raise ValueError(f"noise_var shape {nv.shape} does not broadcast to y shape {y.shape}") from None
        return y.astype(np.complex64, copy=False), inv

    def _axis_llr(self, r: np.ndarray, inv: np.ndarray, method: str) -> np.ndarray:
        """LLRs of one PAM axis. r: float32[...], inv = 1/N0 broadcast to r. Returns float32[..., p].

        Per-axis likelihood exp(-(r - a)^2 / N0) (real noise variance N0/2).

        max-log: the best bit-0 and bit-1 levels are the nearest level and the nearest level with that bit flipped,
        both found by slicing and a table lookup (no search over all levels).
        exact: log-sum-exp over all L levels, level-major ([L, N]) with one shared shift, the per-bit sums as one small
        matrix product. Where the far set's sum underflows float32 (|LLR| > ~70, high SNR) its log-sum is replaced by
        its largest term (max-log on that set only; error <= log(L/2) on an LLR of magnitude > 70).
        """
        shape = r.shape
        rf = r.reshape(-1)
        invf = np.ascontiguousarray(inv, dtype=np.float32).reshape(-1)
        if method == "maxlog":
            near, opp, sign = self._nearest_and_opposite(rf)  # [N], [N, p], [N, p] (+1: the nearest has bit 0)
            near_metric = -np.square(rf - near) * invf  # [N]
            opp_metric = -np.square(rf[:, None] - opp) * invf[:, None]  # [N, p]
            return ((near_metric[:, None] - opp_metric) * sign).reshape(*shape, self._axis_bits)
        levels = self._levels.astype(np.float32)
        metric = rf[None, :] - levels[:, None]  # [L, N]
        np.square(metric, out=metric)
        np.multiply(metric, -invf[None, :], out=metric)
        mx = metric.max(axis=0)
        np.subtract(metric, mx[None, :], out=metric)
        np.maximum(metric, _EXP_FLOOR, out=metric)  # keep exp() out of float32 denormals (slow, and noise anyway)
        np.exp(metric, out=metric)
        s0 = self._mask0_t @ metric  # [p, N]
        s1 = self._mask1_t @ metric
        saturated = (s0 < _SUM_FLOOR) | (s1 < _SUM_FLOOR)
        np.log(s0, out=s0)
        np.log(s1, out=s1)
        llr = s0 - s1
        cols = np.flatnonzero(saturated.any(axis=0))
        if cols.size:
            # the far set's sum holds only floored terms: keep the near set's exact log-sum and take the far set's
            # largest term (max-log on that set only). Dense when most columns saturate (high SNR).
            sel = slice(None) if cols.size > rf.size // 4 else cols
            _, opp, sign = self._nearest_and_opposite(rf[sel])  # [C, p]
            opp_metric = np.square(rf[sel, None] - opp)
            opp_metric *= -invf[sel, None]
            own_lse = np.maximum(s0[:, sel], s1[:, sel]).T + mx[sel, None]  # s0/s1 hold the logs now
            fallback = ((own_lse - opp_metric) * sign).T  # [p, C]
            llr[:, sel] = np.where(saturated[:, sel], fallback, llr[:, sel])
        return np.ascontiguousarray(llr.T).reshape(*shape, self._axis_bits)

    def _nearest_and_opposite(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest PAM level to r, and for each bit the nearest level whose bit differs.

        Both are constant on half-cells of width step/2 (boundaries at levels and decision thresholds), so one row
        gather from a precomputed [2L, 2p+1] table gives all of them.
        r: float32[N]. Returns (nearest float32[N], opposite float32[N, p], sign float32[N, p] = 1 - 2 * nearest bits).
        """
        half = np.float32(self._step / 2)
        h = np.floor((r - np.float32(self._sorted_levels[0]) + half) / half)
        h = np.clip(np.nan_to_num(h), 0, self._half_table.shape[0] - 1).astype(np.intp)
        row = np.take(self._half_table, h, axis=0)  # [N, 2p+1]
        p = self._axis_bits
        return row[:, 0], row[:, 1 : p + 1], row[:, p + 1 :]

    def demodulate_hard(self, y: np.ndarray) -> np.ndarray:
        """Hard decisions: bits of the nearest constellation point (per-axis slicing).

        Args:
            y: complex array [..., n].

        Returns:
            uint8[..., m*n].
        """
        y = np.asarray(y)
        if y.ndim == 0:
            raise ValueError("y must have at least one axis [..., n]; got a scalar")
        m = self.bits_per_symbol
        out_shape = (*y.shape[:-1], y.shape[-1] * m)
        if self.order == 2:
            return (y.real < 0).astype(np.uint8).reshape(out_shape)
        out = np.empty((*y.shape, m), dtype=np.uint8)
        out[..., 0::2] = self._slice_axis(y.real)
        out[..., 1::2] = self._slice_axis(y.imag)
        return out.reshape(out_shape)

    def _slice_axis(self, r: np.ndarray) -> np.ndarray:
        """Bits of the nearest PAM level: uint8[..., p]. NaN inputs decide the lowest level."""
        n_levels = self._sorted_levels.size
        idx = np.rint((np.nan_to_num(r) - self._sorted_levels[0]) / self._step)
        idx = np.clip(idx, 0, n_levels - 1).astype(np.intp)
        return self._sorted_bits[idx]

