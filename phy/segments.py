"""Ragged batches: :class:`Segments`, F consecutive segments of one flat axis (frames of different lengths batched
without padding), used by the transmitter (:meth:`phy.frame.FrameBuilder.build_batch`) and the receiver's stages."""

from __future__ import annotations

from functools import cached_property

import numpy as np


class Segments:
    """F consecutive segments of a flat row axis (frames of different lengths batched without padding): frame f owns
    rows ``offsets[f] .. offsets[f] + counts[f] - 1``.

    Parameters
    ----------
    counts : int ndarray [F]
        Rows per frame (each >= 1).

    Attributes
    ----------
    counts, offsets : int64 ndarray [F]
    total : int
        Rows T.
    frame : int64 ndarray [T]
        Frame of each row.
    index : int64 ndarray [T]
        Row index within its frame.
    """

    def __init__(self, counts):
        self.counts = np.asarray(counts, dtype=np.int64)
        self.offsets = np.zeros(self.counts.size, np.int64)
        np.cumsum(self.counts[:-1], out=self.offsets[1:])
        self.total = int(self.counts.sum())

    @cached_property
    def frame(self) -> np.ndarray:
        return np.repeat(np.arange(self.counts.size), self.counts)

    @cached_property
    def index(self) -> np.ndarray:
        return np.arange(self.total) - np.repeat(self.offsets, self.counts)

    @cached_property
    def uniform(self) -> int:
        """Rows per frame when every frame has the same number (>= 1), else 0."""
        k = int(self.counts[0]) if self.counts.size else 0
        return k if k and (self.counts == k).all() else 0

    def rows(self, x: np.ndarray) -> np.ndarray:
        """Per-frame rows ``x`` [F, ...] repeated for each of the frame's rows: [T, ...]."""
        return np.repeat(x, self.counts, axis=0)

    def times(self, x: np.ndarray, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``x * rows(v)`` for ``x`` [T, ...] and per-frame ``v`` [F, ...] (broadcast without repeating ``v`` when
        the frames have one length; the same numbers). ``out`` may be ``x`` (in place)."""
        k = self.uniform
        if not k:
            return np.multiply(x, self.rows(v), out=out)
        res = np.multiply(x.reshape(self.counts.size, k, *x.shape[1:]), v[:, None],
                          out=None if out is None else out.reshape(self.counts.size, k, *x.shape[1:]))
        return res.reshape(x.shape)

    def __len__(self) -> int:
        return self.counts.size

    def sum(self, x: np.ndarray) -> np.ndarray:
        """Per-frame sums over the rows of ``x`` [T, ...] -> [F, ...] (each frame's sum depends on its rows only)."""
        return np.add.reduceat(x, self.offsets, axis=0)

    def last(self) -> np.ndarray:
        """bool [T]: the last row of each frame."""
        out = np.zeros(self.total, bool)
        out[self.offsets + self.counts - 1] = True
        return out

    def positions(self, starts: np.ndarray) -> np.ndarray:
        """Row ``i`` of frame ``f`` placed at ``starts[f] + i``: int64 [T] (``starts`` int [F]; segments of any
        length, 0 included)."""
        return np.asarray(starts, dtype=np.int64)[self.frame] + self.index

    def select(self, frames: np.ndarray) -> tuple[Segments, np.ndarray]:
        """The segments of ``frames`` (int [F'], ascending) and their rows in this layout (int64 [T'])."""
        sub = Segments(self.counts[frames])
        return sub, sub.positions(self.offsets[frames])
