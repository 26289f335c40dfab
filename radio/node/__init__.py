"""The radio node: one long-lived owner per radio that streams RX continuously and schedules TX ahead of real time.

- :class:`radio.node.ring.SampleRing` — received samples indexed by the radio's sample time, gaps flagged in place.
- :class:`radio.node.clock_map.ClockMap` — the radio's sample time <-> the host's ``time.monotonic()``.
- :class:`radio.node.node.RadioNode` — the in-process API (RX thread, TX thread, lead check, burst outcomes).
- :class:`radio.node.server.NodeServer` / :class:`radio.node.server.NodeClient` — the same API over ZeroMQ for
  experiment code in another process (``otalab node`` runs a node with its server).

See docs/radio-clocks.md.
"""

from radio.node.clock_map import ClockMap
from radio.node.node import RadioNode, TxResult
from radio.node.ring import SampleRing

__all__ = ["ClockMap", "RadioNode", "SampleRing", "TxResult"]
