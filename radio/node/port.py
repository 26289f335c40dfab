"""NodePort: a radio node (in process or over its local API) seen as the three calls an actor uses.

The cell's actors (``sync.ps.PsActor``, ``sync.device.DeviceActor``) reach their radio through ``time_now()``,
``tx(samples, at)`` and ``rx(n, at) -> (samples, t0)`` (``sync.device.RadioPort``, a structural protocol: radio does
not import sync). :class:`NodePort` gives them that on a :class:`radio.node.node.RadioNode` (the device actor hosted
inside its node process) or a :class:`radio.node.server.NodeClient` (the PS actor in the ServerApp process):

- ``tx`` checks the node's lead first and raises :class:`radio.base.LateError` when the burst is less than ``lead``
  ahead of the radio clock (nothing is handed over that could only leave late), then hands the burst over and
  returns at once: to a RadioNode by its non-blocking ``submit``, to a NodeClient on a worker thread (its ``tx``
  returns only when the burst has left). An actor schedules a phase's bursts ahead all at once (beacons one period
  apart, the access beacons' ladder seconds later): every one of them must reach the node while it is still ``lead``
  ahead, so none may wait for an earlier one to leave (with 4 workers, the 5th to 7th burst of a phase waited for
  the 1st and the node refused them as too late). Each burst's outcome
  (:class:`radio.node.node.TxResult`) is counted in :attr:`tx_states` (``on_time``, ``late``, ``rejected``, ...);
  :meth:`flush` waits for the outstanding ones.
- ``rx(n, at)`` reads ``[at, at + n)`` from the node's ring (waiting until the samples exist); lost intervals come
  back zero-filled at their exact sample times and are counted in :attr:`gap_samples` (never a shifted index).
"""

from __future__ import annotations

import concurrent.futures
import threading

import numpy as np

from radio.base import LateError, RadioError


class NodePort:
    """``node``: a RadioNode or a NodeClient. ``lead``: the smallest lead in samples (default: the node's own
    ``lead_s`` from its status). ``rx_timeout_s``: how long past the samples' time an ``rx`` waits. ``workers``:
    bursts in flight at once to a NodeClient (each waits for its burst to leave)."""

    def __init__(self, node, *, lead: int | None = None, rx_timeout_s: float = 10.0, workers: int = 64):
        self.node = node
        self.sample_rate = float(node.sample_rate)
        if lead is None:
            lead = int(round(float(node.status()["lead_s"]) * self.sample_rate))
        if lead < 0:
            raise ValueError(f"lead = {lead}: expected >= 0 samples")
        self.lead = int(lead)
        self.rx_timeout_s = float(rx_timeout_s)
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="NodePort tx")
        self._pending: list[concurrent.futures.Future] = []
        self._lock = threading.Lock()
        self.tx_states: dict[str, int] = {}
        self.tx_errors: list[str] = []
        self.gap_samples = 0
        self.gaps = 0

    def time_now(self) -> int:
        """The radio's sample time now."""
        return int(self.node.time_now())

    def tx(self, samples: np.ndarray, at: int | None = None) -> int:
        """Queue ``samples`` (complex64[N]) for sample time ``at``; returns ``at``. LateError when ``at`` is None or
        less than ``lead`` samples ahead of the radio clock."""
        now = self.time_now()
        if at is None or int(at) < now + self.lead:
            raise LateError("node port tx", -1 if at is None else int(at), now + self.lead)
        x = np.ascontiguousarray(samples, np.complex64)
        submit = getattr(self.node, "submit", None)
        fut = submit(x, int(at)) if submit is not None else self._pool.submit(self.node.tx, x, int(at))
        fut.add_done_callback(self._done)
        with self._lock:
            self._pending = [f for f in self._pending if not f.done()] + [fut]
        return int(at)

    def _done(self, fut: concurrent.futures.Future) -> None:
        try:
            res = fut.result()
            state, detail = res.state, res.detail
        except (RadioError, OSError, ValueError) as exc:
            state, detail = "error", str(exc)
        with self._lock:
            self.tx_states[state] = self.tx_states.get(state, 0) + 1
            if state not in ("on_time", "unknown"):
                self.tx_errors.append(f"{state}: {detail}")

    def rx(self, n: int, at: int | None = None) -> tuple[np.ndarray, int]:
        """complex64[n] received at ``[at, at + n)`` (``at`` None: ending now) and ``at``."""
        n = int(n)
        t0 = self.time_now() - n if at is None else int(at)
        x, gaps = self.node.rx(t0, n, self.rx_timeout_s)
        for a, b in gaps:
            self.gaps += 1
            self.gap_samples += int(b) - int(a)
        return x, t0

    def flush(self, timeout_s: float = 30.0) -> dict[str, int]:
        """Wait for every queued burst's outcome; returns :attr:`tx_states`."""
        with self._lock:
            pending = list(self._pending)
        concurrent.futures.wait(pending, timeout=timeout_s)
        with self._lock:
            return dict(self.tx_states)

    def close(self) -> None:
        """Stop the worker threads (queued bursts are still handed over). The node is not closed."""
        self._pool.shutdown(wait=True)
