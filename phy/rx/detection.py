"""Detection: the scan for frame candidates over the stream, with the metric cache it reads from.

The statistic (:class:`phy.detector.SchmidlCoxDetector`: Schmidl–Cox + LTS periodicity, Gamma(2, 1) null) is
evaluated lazily from the scan position (:meth:`~phy.detector.SchmidlCoxDetector.metric_screened`: the exact metric
where a fused screen says it may reach the threshold, 0 elsewhere - the same crossings, peaks and candidates; the
look-ahead windows of :meth:`DetectionScan.windows`, flagged anyway around each expected frame, take the exact
metric directly), in chunks that grow while nothing is found; the first threshold crossing
and the peak within ``peak_window`` after it make a candidate (:meth:`DetectionScan.search`). Once a frame is parsed
the receiver moves the scan to its end, so frame bodies are never searched.

Every metric value depends only on its own samples, so values computed ahead of the scan are the values the scan
would compute: :meth:`DetectionScan.speculate` looks for the candidates that would follow a candidate if the next
frames were as long as the last one received (their windows in one batch when they also keep their spacing,
:meth:`DetectionScan.windows`) and keeps those metric values (:attr:`DetectionScan.ranges`), so the scan later reads
the very same numbers and finds the very same candidates when the guess holds.
"""

from __future__ import annotations

import numpy as np

from phy.detector import SchmidlCoxDetector
from phy.rx.ofdm_demodulation import rows

#: detector metric chunk (positions) after a candidate, and its limit while nothing is found (doubling)
CHUNK_MIN, CHUNK_MAX = 768, 1 << 16
#: most candidates looked for ahead in one batch
SPECULATE_MAX = 64
#: speculate_all guesses that a threshold crossing whose peak is below this share of the current candidate's peak
#: is no frame (crossings inside frame bodies; a wrong guess costs only time: the scan acquires what it meets)
SPECULATE_PEAK_RATIO = 0.25


class DetectionScan:
    """The detector metric of a stream, computed lazily and cached as ranges of consecutive positions.

    Parameters
    ----------
    detector : SchmidlCoxDetector

    Positions are absolute sample times; the buffer ``buf`` complex64 [M] whose first sample is at time ``t0`` is
    passed to every call (the receiver owns it).

    Attributes
    ----------
    ranges : list of [int, float32 ndarray, complex64 ndarray, complex64 ndarray]
        ``[time of the first position, T, P1, P2]`` of each range computed, sorted by time.
    chunk : int
        Positions computed by the scan's next step.
    found : list of (int, int, int, complex, complex)
        Candidates :meth:`speculate` found, in stream order: (search start, first crossing, candidate) times, P1, P2.
    spacing : (int, int)
        (candidate spacing, search reach) the last speculation found.
    """

    def __init__(self, detector: SchmidlCoxDetector):
        self.det = detector
        self.reset()

    def reset(self) -> None:
        """Forget every computed value (a new stream)."""
        self.ranges: list | None = None
        self.chunk = CHUNK_MIN
        self.found: list[tuple[int, int, int, complex, complex]] = []
        self.spacing = (0, 0)

    def drop(self) -> None:
        """Forget the cache and the speculated candidates (the stream jumped), keep the spacing guess."""
        self.ranges = None
        self.found = []

    def cached_positions(self, t_abs: int) -> int:
        """Number of consecutive positions from ``t_abs`` whose metric is already computed."""
        for t_c, T, _, _ in self.ranges or []:
            if t_c <= t_abs < t_c + T.size:
                return t_c + T.size - t_abs
        return 0

    def metric_from(self, buf: np.ndarray, t0: int, t_abs: int, n: int, ahead: bool = False):
        """Metric (T float32 [n], P1 complex64 [n], P2 complex64 [n]) of the ``n`` positions ``t_abs .. t_abs + n - 1``
        (all evaluable in ``buf``). Each position is computed once; a scan call (``ahead`` False) drops what lies
        before ``t_abs``."""
        det = self.det
        ranges = self.ranges or []
        if not ahead:
            ranges = [r for r in ranges if r[0] + r[1].size >= t_abs]
        rng = next((r for r in ranges if r[0] <= t_abs <= r[0] + r[1].size), None)
        if rng is None:
            rng = [t_abs, np.zeros(0, np.float32), np.zeros(0, np.complex64), np.zeros(0, np.complex64)]
            ranges.append(rng)
            ranges.sort(key=lambda r: r[0])
        t_c, T, P1, P2 = rng
        lo = 0 if ahead else t_abs - t_c
        t_from = t_c + T.size
        if t_abs + n > t_from:
            i = t_from - t0
            new = det.metric_screened(buf[i:i + t_abs + n - t_from + det.span - 1])
            if lo >= T.size:                # nothing kept (the scan's usual step): no copy
                rng[1:] = list(new)
            else:
                rng[1:] = [np.concatenate([a[lo:], b]) for a, b in zip((T, P1, P2), new)]
            rng[0] = t_c + lo
        elif lo:
            rng[1:] = [a[lo:] for a in (T, P1, P2)]
            rng[0] = t_c + lo
        self.ranges = ranges
        k = t_abs - rng[0]
        return rng[1][k:k + n], rng[2][k:k + n], rng[3][k:k + n]

    def search(self, buf: np.ndarray, t0: int, t_abs: int, n: int, avail: int, ahead: bool = False):
        """The first candidate (``detector.first_candidate``) in the metric of the ``n`` positions from ``t_abs``, the
        metric extended (up to ``avail`` positions) when the candidate's peak window runs past them.

        Returns
        -------
        n : int
            Positions searched.
        metric : (T, P1, P2)
            Their metric.
        found : (int, int) or None
            (peak, first crossing) relative to ``t_abs``.
        """
        det = self.det
        metric = self.metric_from(buf, t0, t_abs, n, ahead)
        found = det.first_candidate(metric[0])
        if found is not None and found[1] + det.peak_window > n and n < avail:
            n = min(avail, found[1] + det.peak_window)
            metric = self.metric_from(buf, t0, t_abs, n, ahead)
            found = det.first_candidate(metric[0])
        return n, metric, found

    def speculate(self, buf: np.ndarray, t0: int, i0: int, step: int, need: int, batches: bool
                  ) -> list[tuple[int, complex, complex]]:
        """Candidates that would follow the one at buffer index ``i0`` if the scan resumed ``step`` samples after
        each candidate (the receiver's guess of the frame length), to the end of the buffer.

        The metric is computed once from each search position, so the scan later reads the very same values. Once a
        candidate is found, the following ones are looked for in one batch (:meth:`windows`) on the guess that they
        keep the same spacing (``batches``). Sets :attr:`found`.

        Parameters
        ----------
        buf : complex64 ndarray [M]
        t0 : int
            Time of ``buf[0]``.
        i0 : int
            Buffer index of the candidate.
        step : int
            Samples from a candidate to where the scan would resume.
        need : int
            Samples after a candidate that acquisition needs.
        batches : bool
            Try batches of equally spaced windows.

        Returns
        -------
        list of (int, complex, complex)
            (buffer index, P1, P2) of each candidate, in stream order.
        """
        det = self.det
        pos = i0 + step                 # buffer index where the search resumes
        chunk = CHUNK_MIN
        out: list[tuple[int, complex, complex]] = []
        found_at: list[tuple[int, int]] = []       # (search start, first crossing) times of each candidate
        period, reach = self.spacing    # as last time, if known: start with a batch
        while len(out) < SPECULATE_MAX:     # the scan loop, on the guessed frame ends
            if period and batches:
                got = self.windows(buf, t0, pos, period, reach, step, need, SPECULATE_MAX - len(out), found_at)
                period = 0
                if got:
                    out += got
                    pos = got[-1][0] + step
                    continue
                batches = False                     # irregular spacing: no more batches in this call
            avail = buf.size - det.span + 1 - pos
            if avail <= 0:
                break
            m, (T, P1, P2), found = self.search(buf, t0, t0 + pos, min(avail, chunk), avail, ahead=True)
            if found is None:
                pos += m
                chunk = min(2 * chunk, CHUNK_MAX)
                continue
            c = found[0]
            if found[1] + det.peak_window > T.size or pos + c + need > buf.size:
                break
            out.append((pos + c, complex(P1[c]), complex(P2[c])))
            found_at.append((t0 + pos, t0 + pos + found[1]))
            pos += c + step
            period, reach = c + step, found[1] + det.peak_window
            self.spacing = (period, reach)
            chunk = CHUNK_MIN
        self.found = [(a, b, t0 + c[0], c[1], c[2]) for (a, b), c in zip(found_at, out)]
        return out

    def speculate_all(self, buf: np.ndarray, t0: int, i0: int, step: int, need: int
                      ) -> list[tuple[int, complex, complex]]:
        """:meth:`speculate` for streams whose frames vary in length: the metric of every position from ``i0 + step``
        to the end of the buffer in one call (``step`` is where the shortest possible frame would let the scan
        resume, so no frame is skipped), then the sequential search on its threshold crossings (the candidates
        inside frame bodies are never asked for by the scan). Crossings whose peak is below
        ``SPECULATE_PEAK_RATIO`` times the candidate's at ``i0`` are guessed to be no frame and passed over (the scan
        still acquires any it meets). Sets :attr:`found`; returns (buffer index, P1, P2) of each candidate in stream
        order."""
        det = self.det
        pos = i0 + step
        out: list[tuple[int, complex, complex]] = []
        found_at: list[tuple[int, int]] = []
        avail = buf.size - det.span + 1 - pos
        if avail > 0:
            T, P1, P2 = self.metric_from(buf, t0, t0 + i0, avail + step, ahead=True)
            t_min = SPECULATE_PEAK_RATIO * float(T[0])
            T, P1, P2 = T[step:], P1[step:], P2[step:]
            above = np.flatnonzero(T > det.threshold)       # threshold crossings, relative to pos
            pw, p = det.peak_window, 0
            # the crossings whose peak (the largest T within pw from them) reaches t_min, all at once
            strong = np.flatnonzero(T >= t_min)
            j = np.searchsorted(strong, above)
            likely = np.flatnonzero((j < strong.size) & (strong[np.minimum(j, strong.size - 1)] < above + pw)) \
                if strong.size else np.zeros(0, np.int64)
            while len(out) < SPECULATE_MAX:
                k = int(np.searchsorted(above, p))          # the first crossing from p
                q = int(np.searchsorted(likely, k))
                if q == likely.size:
                    break
                k1 = int(likely[q])                         # the first likely frame among the crossings from p
                first = int(above[k1])
                if first + pw > T.size:
                    break
                c = first + int(np.argmax(T[first:first + pw]))
                if pos + c + need > buf.size:
                    break
                # the scan searching from a finds this crossing first (no crossing between a and it)
                a = p if k1 == k else int(above[k1 - 1]) + 1
                out.append((pos + c, complex(P1[c]), complex(P2[c])))
                found_at.append((t0 + pos + a, t0 + pos + first))
                p = c + step
        self.found = [(a, b, t0 + c[0], c[1], c[2]) for (a, b), c in zip(found_at, out)]
        return out

    def windows(self, buf: np.ndarray, t0: int, pos: int, period: int, reach: int, step: int, need: int, max_n: int,
                found_at: list[tuple[int, int]]) -> list[tuple[int, complex, complex]]:
        """The next candidates of :meth:`speculate` from buffer index ``pos`` on, on the guess that they follow each
        other every ``period`` samples: the metric of K windows around ``pos + j period`` (``reach`` positions, as
        far as the last search had to look, plus cp + search positions of slack each side for timing jitter) in one
        call, then the sequential search on them, as long as each resume position falls inside its window and each
        candidate's peak window ends inside it. Accepted windows join :attr:`ranges` (the scan reads these very
        values); the rest is dropped. Returns the candidates accepted (possibly none) and appends their (search
        start, first crossing) times to ``found_at``."""
        det = self.det
        margin = 2 * det.cfg.cp_len
        width = reach + 2 * margin                          # metric positions per window
        n_win = min(max_n, (buf.size - det.span + 1 - width - pos + margin) // period + 1)
        if n_win < 2 or pos < margin:
            return []
        starts = pos - margin + period * np.arange(n_win)
        t_starts = t0 + starts
        for t_c, T, _, _ in self.ranges or []:                   # never shadow metric values computed already
            clash = (t_starts < t_c + T.size) & (t_starts + width > t_c)
            if clash[:n_win].any():
                n_win = int(np.argmax(clash))
        if n_win < 2:
            return []
        starts = starts[:n_win]
        T, P1, P2 = det.metric(rows(buf, starts, width + det.span - 1))
        # first threshold crossing of every window and the peak after it, for all windows at once; a window whose
        # first crossing lies before its resume position is searched on its own (det.first_candidate)
        above = T > det.threshold
        first_all = np.argmax(above, axis=1)
        any_all = above[np.arange(n_win), first_all]
        pw = det.peak_window
        peak_all = first_all + np.argmax(np.take_along_axis(
            T, np.minimum(first_all[:, None] + np.arange(pw)[None, :], width - 1), axis=1), axis=1)
        out: list[tuple[int, complex, complex]] = []
        ranges = self.ranges if self.ranges is not None else []
        for j, (s, f_j, a_j, p_j) in enumerate(zip(starts.tolist(), first_all.tolist(), any_all.tolist(),
                                                   peak_all.tolist())):
            off = pos - s
            if not 0 <= off < width:
                break
            if a_j and f_j >= off:
                found = (p_j - off, f_j - off)
            else:
                found = det.first_candidate(T[j, off:])
            if found is None or found[1] + pw > width - off or pos + found[0] + need > buf.size:
                break
            c = off + found[0]
            out.append((pos + found[0], complex(P1[j, c]), complex(P2[j, c])))
            found_at.append((t0 + pos, t0 + pos + found[1]))
            ranges.append([t0 + pos, T[j, off:], P1[j, off:], P2[j, off:]])
            pos += found[0] + step
        ranges.sort(key=lambda r: r[0])
        self.ranges = ranges
        return out
