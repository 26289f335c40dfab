"""OFDM demodulation of acquired frames: FFT windows gathered from the stream buffer, the within-window CFO rotation
removed, one orthonormal FFT for all symbols of all frames of a batch.

Every FFT window starts ``backoff`` samples inside its cyclic prefix (room for timing error and the channel's
precursor). The CFO ``eps`` (subcarrier spacings) is removed in two parts: inside each window by multiplying sample
``m`` by ``exp(-j 2 pi eps m / N)`` (the same rotation for every window), and across windows as a common phase
``2 pi eps (t_w - ref) / N`` per window (:meth:`OfdmDemodulator.residual_phase`; ``t_w`` the window start, ``ref``
the first LTS window, where the channel was estimated), which the later stages take out together with the pilot
phase.
"""

from __future__ import annotations


import numpy as np

from phy.frame import FrameFormat
from phy.ofdm import OfdmConfig, fftlib
from phy.segments import Segments  # noqa: F401  (re-exported: the stages import it from here)


def cis(phase: np.ndarray) -> np.ndarray:
    """``exp(j phase)`` as complex64 via float32 cos/sin (several times faster than a complex exp).

    Parameters
    ----------
    phase : float ndarray [...]
        Radians.

    Returns
    -------
    complex64 ndarray [...]
    """
    ph = np.asarray(phase, dtype=np.float32)
    out = np.empty(ph.shape, np.complex64)
    np.cos(ph, out=out.real)
    np.sin(ph, out=out.imag)
    return out


def rows(x: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``x[starts[i]:starts[i] + width]`` for every i as a new array [len(starts), width].

    One gather of whole rows from a strided view; every row must lie inside ``x`` (the view's row count enforces it).

    Parameters
    ----------
    x : ndarray [M]
    starts : int ndarray [F]
    width : int

    Returns
    -------
    ndarray [F, width], dtype of ``x``
    """
    view = np.lib.stride_tricks.as_strided(x, shape=(max(x.size - width + 1, 0), width),
                                           strides=(x.strides[0], x.strides[0]), writeable=False)
    return view[starts]


def row_sum(x: np.ndarray) -> np.ndarray:
    """``x.sum(axis=1)`` for rows of up to 8 elements (e.g. the pilots of an OFDM symbol) as a few whole-column adds, in
    numpy's summation order (the same numbers), several times faster than numpy's reduction over a short axis.

    Parameters
    ----------
    x : float or complex ndarray [T, n]

    Returns
    -------
    ndarray [T], dtype of ``x``
    """
    n = x.shape[1]
    if n > 8 or n == 0:
        return x.sum(axis=1)
    col = [x[:, j] for j in range(n)]
    if np.iscomplexobj(x) and n == 8:        # numpy sums complex rows as 2n floats, 8 accumulators
        return ((col[0] + col[4]) + (col[1] + col[5])) + ((col[2] + col[6]) + (col[3] + col[7]))
    if np.iscomplexobj(x) and n >= 4:
        out, rest = (col[0] + col[1]) + (col[2] + col[3]), col[4:]
    elif n == 8:
        return ((col[0] + col[1]) + (col[2] + col[3])) + ((col[4] + col[5]) + (col[6] + col[7]))
    else:
        out, rest = (col[0] + col[1] if n > 1 else col[0].copy()), col[2:]
    for v in rest:
        out += v
    return out


class OfdmDemodulator:
    """FFT of the LTS looks, header and payload symbols of F frames (see the module docstring).

    Parameters
    ----------
    cfg : OfdmConfig
    fmt : FrameFormat
    backoff : int
        FFT windows start this many samples inside the CP (1 <= backoff <= cp).
    """

    def __init__(self, cfg: OfdmConfig, fmt: FrameFormat, backoff: int):
        self.cfg, self.fmt, self.backoff = cfg, fmt, backoff
        n, cp = cfg.fft_size, cfg.cp_len
        self._phase_n = (-2 * np.pi / n) * np.arange(n, dtype=np.float64)
        # buffer offsets, from a frame start, of the two LTS FFT windows and the header symbols' FFT windows
        hdr_win = fmt.preamble_len + np.arange(fmt.n_hdr_symbols)[:, None] * cfg.symbol_len \
            + (cp - backoff) + np.arange(n)[None, :]
        self._acq_offsets = np.concatenate([cfg.symbol_len + 2 * cp - backoff + np.arange(2 * n).reshape(2, n),
                                            hdr_win]).astype(np.int64)                # [2 + n_hdr, N]
        #: buffer offset, from a frame start, of the first LTS FFT window (the phase reference)
        self.lts_offset = cfg.symbol_len + 2 * cp - backoff

    def preamble(self, buf: np.ndarray, start: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """FFT of the two LTS looks and the header symbols.

        Parameters
        ----------
        buf : complex64 ndarray [M]
        start : int ndarray [F]
            Frame starts, buffer indices.
        eps : float ndarray [F]
            CFOs, subcarrier spacings.

        Returns
        -------
        complex64 ndarray [F, 2 + n_hdr_symbols, N]
            Rows 0, 1: the LTS looks, both with the phase of the first (reference) window; rows 2..: the header
            symbols, whose residual phase (:meth:`residual_phase`) is still to be removed.
        """
        w = buf.take(start[:, None, None] + self._acq_offsets[None, :, :])              # [F, 2 + n_hdr, N]
        w *= cis(self._phase_n[None, :] * eps[:, None])[:, None, :]
        Y = fftlib.fft(w, axis=2, norm="ortho", overwrite_x=True)
        Y[:, 1] *= np.exp(-2j * np.pi * eps).astype(np.complex64)[:, None]
        return Y

    def symbol_rows(self, buf: np.ndarray, start: np.ndarray, eps: np.ndarray, ref: np.ndarray, first: int,
                    seg: Segments) -> tuple[np.ndarray, np.ndarray]:
        """FFT of symbols ``first .. first + counts[f] - 1`` (0 = first header symbol) of F frames of different
        lengths, as rows of one array, within-window CFO removed, and their residual phase.

        Parameters
        ----------
        buf : complex64 ndarray [M]
        start, ref : int ndarray [F]
            Frame starts and phase references (first LTS window), buffer indices.
        eps : float ndarray [F]
            CFOs, subcarrier spacings.
        first : int
        seg : Segments
            Symbols per frame (``seg.counts``).

        Returns
        -------
        Y : complex64 ndarray [T, N]
            Row ``seg.offsets[f] + s``: symbol ``first + s`` of frame f.
        ph : float64 ndarray [T]
            Residual phase ``2 pi eps (t_w - ref) / N`` still in each row, radians.
        """
        cfg = self.cfg
        n, sl, off = cfg.fft_size, cfg.symbol_len, cfg.cp_len - self.backoff
        rot = cis(self._phase_n[None, :] * eps[:, None])                             # [F, N]
        k = seg.uniform
        if k:                                   # one length: the windows' times and phases as [F, k]
            t_w = (start + (self.fmt.preamble_len + first * sl + off))[:, None] + sl * np.arange(k)[None, :]
            w = rows(buf, t_w.reshape(-1), n)
            ph = self.residual_phase(start, ref, eps, first, k).reshape(-1)
        else:
            rel_t = self.fmt.preamble_len + (first + seg.index) * sl + off
            w = rows(buf, seg.rows(start) + rel_t, n)
            ph = seg.rows(2 * np.pi * eps / cfg.fft_size) * (seg.rows(start - ref) + rel_t)
        seg.times(w, rot, out=w)
        return fftlib.fft(w, axis=1, norm="ortho", overwrite_x=True), ph

    def symbols_one(self, buf: np.ndarray, start: int, eps: float, ref: int, first: int, n_sym: int
                    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`symbols` of one frame with its residual phase: (complex64 [n_sym, N], float64 [n_sym] radians)."""
        cfg, fmt = self.cfg, self.fmt
        n, sl = cfg.fft_size, cfg.symbol_len
        base = start + fmt.preamble_len + first * sl
        w = buf[base:base + n_sym * sl].reshape(n_sym, sl)[:, cfg.cp_len - self.backoff:
                                                          cfg.cp_len - self.backoff + n]
        if eps != 0.0:
            w = w * cis(self._phase_n * eps)[None, :]
            Y = fftlib.fft(w, axis=1, norm="ortho", overwrite_x=True)
        else:
            Y = fftlib.fft(w, axis=1, norm="ortho")
        starts = base + np.arange(n_sym) * sl + (cfg.cp_len - self.backoff)
        return Y, (2 * np.pi * eps / n) * (starts - ref)

    def residual_phase(self, start: np.ndarray, ref: np.ndarray, eps: np.ndarray, first: int, n_sym: int
                       ) -> np.ndarray:
        """Common phase ``2 pi eps (t_w - ref) / N`` of symbols ``first .. first + n_sym - 1`` still to be removed
        after :meth:`symbols`.

        Parameters
        ----------
        start, ref : int ndarray [F]
            Frame starts and phase references (first LTS window), buffer indices.
        eps : float ndarray [F]
            CFOs, subcarrier spacings.
        first, n_sym : int

        Returns
        -------
        float64 ndarray [F, n_sym]
            Radians.
        """
        cfg = self.cfg
        off = cfg.cp_len - self.backoff
        rel = start - ref
        starts = rel[:, None] + (self.fmt.preamble_len + (first + np.arange(n_sym)) * cfg.symbol_len + off)[None, :]
        return (2 * np.pi * eps / cfg.fft_size)[:, None] * starts
