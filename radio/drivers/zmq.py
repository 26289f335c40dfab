"""Driver ``zmq``: :class:`ZmqRadio`, a radio endpoint on the ZeroMQ air (:class:`radio.servers.zmq_broker.ChannelBroker`).

The protocol, pacing and the broker's behaviour are described in :mod:`radio.servers.zmq_broker`; the wire format in
:mod:`radio.servers.zmq_wire`.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import zmq

from radio.base import LateError, Radio, RadioCapabilities, RadioError, TxStatus, as_samples
from radio.servers.zmq_broker import DEFAULT_ADDRESS, BrokerConfig, load_keypair
from radio.servers.zmq_wire import (PROTOCOL_VERSION, ProtocolError, check_wire, decode_samples,
                                    encode_samples, pack, unpack)

log = logging.getLogger(__name__)


@dataclass
class ZmqArgs:
    """Driver ``zmq`` settings (YAML ``radio.args``): where the broker is, this endpoint's name and wire format,
    timeouts and CURVE key files; ``broker`` holds the settings ``otalab air`` uses to run the broker itself.

    ``hold_clock=False`` makes an endpoint that never holds the free-running clock back (it behaves like a real radio
    that may miss slots). ``receive=False`` marks a transmit-only endpoint (no receive buffer, and the air computes no
    samples for it).
    ``server_key`` is the broker's public certificate, ``client_key`` this endpoint's secret certificate.
    ``timed_tx=False`` poses as a radio without timestamps whose TX stream is kept fed with zeros (a Pluto): a burst
    for ``at`` leaves at ``at + tx_latency_samples``, a constant TX->RX latency (see the broker's docstring).
    """

    address: str = DEFAULT_ADDRESS
    name: str = "radio0"
    wire: Literal["fc32", "sc16"] = "fc32"
    timeout_s: float = 10.0
    heartbeat_s: float = 0.5
    wait_timeout_s: float = 120.0
    hold_clock: bool = True
    receive: bool = True
    server_key: str | None = None
    client_key: str | None = None
    timed_tx: bool = True
    tx_latency_samples: int = 0
    broker: BrokerConfig = field(default_factory=BrokerConfig)

    def __post_init__(self):
        if not self.name or "\n" in self.name:
            raise ValueError(f"name must be a non-empty single-line string, got {self.name!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 s, got {self.timeout_s}")
        if not self.heartbeat_s > 0:
            raise ValueError(f"heartbeat_s must be > 0 s, got {self.heartbeat_s}")
        if not self.wait_timeout_s > 0:
            raise ValueError(f"wait_timeout_s must be > 0 s, got {self.wait_timeout_s}")
        if self.tx_latency_samples < 0:
            raise ValueError(f"tx_latency_samples must be >= 0, got {self.tx_latency_samples}")
        if (self.server_key is None) != (self.client_key is None):
            raise ValueError("CURVE needs both server_key (broker public certificate) and client_key "
                             f"(this endpoint's secret certificate), got server_key={self.server_key!r}, "
                             f"client_key={self.client_key!r}")


# --------------------------------------------------------------------------------------------------- endpoint
class ZmqRadio(Radio):
    """A radio endpoint on a :class:`ChannelBroker` (driver ``"zmq"``).

    ``ZmqRadio(address, name, wire="fc32", timeout_s=10, heartbeat_s=0.5, hold_clock=True, receive=True,
    server_key=None, client_key=None, sample_rate=None, center_freq=None)`` connects and registers; the sample rate
    and carrier come from the broker (passing them checks that they agree). A background thread sends heartbeats on
    its own socket so that the broker knows the process is alive while it computes; calls that wait for the air
    (``rx`` in free pacing, back-pressured ``tx``) wait as long as the broker answers heartbeats and fail after
    ``timeout_s`` of broker silence. Samples are complex64; ``rx`` returns a writable array (no extra copy).

    Thread-safe: each calling thread gets its own DEALER socket on the same session, so a TX thread is never blocked
    by an RX thread waiting for samples. In realtime pacing a continuing ``rx`` after an overflow returns ``t0``
    jumped past the lost samples; :attr:`overflows` and :attr:`lost_samples` count them.
    """

    driver = "zmq"
    thread_safe = True

    def __init__(self, address: str = DEFAULT_ADDRESS, name: str = "radio0", *, wire: str = "fc32",
                 timeout_s: float = 10.0, heartbeat_s: float = 0.5, wait_timeout_s: float = 120.0,
                 hold_clock: bool = True, receive: bool = True,
                 server_key: str | None = None, client_key: str | None = None,
                 sample_rate: float | None = None, center_freq: float | None = None, timed_tx: bool = True,
                 tx_latency_samples: int = 0):
        check_wire(wire)
        self.timed_tx, self.tx_latency_samples = bool(timed_tx), int(tx_latency_samples)
        self.overflows = 0
        self.lost_samples = 0
        self._sent: collections.OrderedDict[int, int] = collections.OrderedDict()   # asked at -> actual start
        self._local = threading.local()
        self._sockets: list[zmq.Socket] = []
        self._sockets_lock = threading.Lock()
        self._seqs = itertools.count(1)
        self.address, self.name, self.wire = address, name, wire
        self.timeout_s, self.heartbeat_s = float(timeout_s), float(heartbeat_s)
        self.wait_timeout_s = float(wait_timeout_s)
        self.hold_clock, self.receive = bool(hold_clock), bool(receive)
        self._closed = False
        self._session = ""
        self._keys = None
        if server_key or client_key:
            if not (server_key and client_key):
                raise RadioError(f"ZmqRadio {name!r}: CURVE needs both server_key and client_key")
            server_public, _ = load_keypair(server_key, "server_key", need_secret=False)
            public, secret = load_keypair(client_key, "client_key", need_secret=True)
            self._keys = (server_public, public, secret)
        self._ctx = zmq.Context()
        self._broker_seen = time.monotonic()
        self._hb_stop = threading.Event()
        self._hb_thread: threading.Thread | None = None
        try:
            welcome = self._hello()
        except BaseException:
            self._shutdown()
            raise
        self._session = welcome["session"]
        self._sample_rate = float(welcome["sample_rate"])
        self._center_freq = float(welcome["center_freq"])
        self.pacing = welcome.get("pacing", "free")
        for what, mine, theirs in (("sample_rate", sample_rate, self._sample_rate),
                                   ("center_freq", center_freq, self._center_freq)):
            if mine is not None and abs(float(mine) - theirs) > 1e-6 * max(1.0, abs(theirs)):
                self.close()
                raise RadioError(f"ZmqRadio {name!r}: configured {what}={mine} but the broker at {address} runs "
                                 f"at {what}={theirs}")
        self._hb_thread = threading.Thread(target=self._heartbeat, name=f"ZmqRadio {name} heartbeat", daemon=True)
        self._hb_thread.start()

    @classmethod
    def from_args(cls, args: ZmqArgs, sample_rate: float | None = None,
                  center_freq: float | None = None) -> ZmqRadio:
        """Open from YAML ``radio.args`` (:class:`ZmqArgs`); rate/carrier, when given, must match the broker's."""
        return cls(args.address, args.name, wire=args.wire, timeout_s=args.timeout_s, heartbeat_s=args.heartbeat_s,
                   wait_timeout_s=args.wait_timeout_s,
                   hold_clock=args.hold_clock, receive=args.receive, server_key=args.server_key,
                   client_key=args.client_key, sample_rate=sample_rate, center_freq=center_freq,
                   timed_tx=args.timed_tx, tx_latency_samples=args.tx_latency_samples)

    # ----------------------------------------------------------------------------------------------- Radio API
    @property
    def sample_rate(self) -> float:
        return self._sample_rate

    @property
    def center_freq(self) -> float:
        return self._center_freq

    @property
    def capabilities(self) -> RadioCapabilities:
        realtime = self.pacing == "realtime"
        return RadioCapabilities(timed_tx=self.timed_tx, timed_rx=True, full_duplex=True, simulated=True,
                                 wall_clock=realtime,
                                 timing_accuracy_samples=0.0)

    @property
    def _sock(self) -> zmq.Socket:
        """This thread's DEALER socket (created on first use)."""
        sock = getattr(self._local, "sock", None)
        if sock is None:
            if self._closed:
                raise RadioError(f"ZmqRadio {self.name!r} is closed")
            sock = self._local.sock = self._socket()
        return sock

    def tx(self, samples: np.ndarray, at: int | None = None) -> int:
        """Schedule complex64[N] samples at sample time ``at`` (None: right after this endpoint's previous
        transmission, or now). Returns the start time; LateError if ``at`` has passed on the broker. Without timed TX
        (``timed_tx=False``, a Pluto with its TX stream kept fed) the burst leaves ``tx_latency_samples`` after ``at``
        (the returned start time says when; real radios do not know this constant, timing advance absorbs it)."""
        x = as_samples(samples, f"ZmqRadio {self.name!r} tx samples")
        at = _as_time(at, "tx at")
        reply, _ = self._request({"op": "tx", "n": int(x.size), "at": at}, encode_samples(x, self.wire), wait=True)
        start = int(reply["at"])
        if at is not None:
            self._sent[at] = start
            while len(self._sent) > 4096:
                self._sent.popitem(last=False)
        return start

    def tx_status(self, at: int, timeout_s: float = 0.0) -> TxStatus:
        """The broker checked the deadline against its wall-derived clock when it accepted the burst, and the air
        superposes it to the sample at the start it returned: on time when that start is ``at`` (within
        ``tx_latency_samples``, the stream's constant latency, for an endpoint without timed TX)."""
        start = self._sent.get(int(at))
        if start is None:
            return super().tx_status(at, timeout_s)
        err = start - int(at) - (0 if self.timed_tx else self.tx_latency_samples)
        if abs(err) <= self.capabilities.timing_accuracy_samples:
            return TxStatus(int(at), "on_time", f"left at sample {start}")
        return TxStatus(int(at), "late", f"left at sample {start}, {err} samples after {at}")

    def rx(self, n: int, at: int | None = None) -> tuple[np.ndarray, int]:
        """Receive complex64[n] starting at ``at`` (None: continue the stream). Returns (samples, t0)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"ZmqRadio {self.name!r} rx n = {n!r}: expected an integer sample count >= 0")
        at = _as_time(at, "rx at")
        reply, payload = self._request({"op": "rx", "n": int(n), "at": at}, wait=True)
        gap = int(reply.get("gap") or 0)
        if gap and at is None:
            self.overflows += 1
            self.lost_samples += gap
        if payload is None:
            raise RadioError(f"ZmqRadio {self.name!r}: broker reply to rx carried no samples")
        try:
            samples = decode_samples(payload, self.wire, int(n), what="rx reply")
        except ProtocolError as exc:
            raise RadioError(f"ZmqRadio {self.name!r}: {exc}") from None
        return samples, int(reply["t0"])

    def time_now(self) -> int:
        """The broker's sample clock (realtime pacing: derived from its wall clock, finer than its blocks)."""
        return int(self._request({"op": "time"})[0]["now"])

    def advance(self, until: int) -> int:
        """Declare that this endpoint has nothing more to transmit or receive before sample ``until`` (free pacing:
        the clock may run there without waiting for it). Returns the broker's current time."""
        until = _as_time(until, "advance until")
        return int(self._request({"op": "advance", "until": until})[0]["now"])

    def close(self) -> None:
        """Leave the air (the broker drops this endpoint from its clock at once) and release the sockets."""
        if self._closed:
            return
        if self._session:
            try:
                self._request({"op": "bye"}, timeout=min(self.timeout_s, 1.0))
            except RadioError:
                pass
        self._shutdown()

    def settings(self) -> dict:
        return {**super().settings(), "address": self.address, "name": self.name, "wire": self.wire}

    # ----------------------------------------------------------------------------------------------- internals
    def _socket(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IDENTITY, f"{self.name}/{uuid.uuid4().hex[:8]}".encode())
        if self._keys is not None:
            server_public, public, secret = self._keys
            sock.curve_serverkey = server_public
            sock.curve_publickey = public
            sock.curve_secretkey = secret
        sock.connect(self.address)
        with self._sockets_lock:
            self._sockets.append(sock)
        return sock

    def _hello(self) -> dict:
        monitor = self._sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                                | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        try:
            header = {"op": "hello", "name": self.name, "wire": self.wire, "version": PROTOCOL_VERSION,
                      "hold": self.hold_clock, "receive": self.receive, "timed_tx": self.timed_tx,
                      "tx_latency": self.tx_latency_samples}
            return self._request(header, timeout=self.timeout_s, monitor=monitor)[0]
        finally:
            self._sock.disable_monitor()
            monitor.close(linger=0)

    def _request(self, header: dict, payload=None, *, wait: bool = False, timeout: float | None = None,
                 monitor: zmq.Socket | None = None) -> tuple[dict, object]:
        """Send one request and return (reply header, payload buffer). ``wait``: the broker may hold the reply
        (free pacing); keep waiting while it answers heartbeats. Errors become LateError / RadioError."""
        if self._closed:
            raise RadioError(f"ZmqRadio {self.name!r} is closed")
        seq = next(self._seqs)
        header = {**header, "seq": seq}
        if self._session:
            header["session"] = self._session
        sock = self._sock
        sock.send_multipart(pack(header, payload), copy=False)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if monitor is not None:
            poller.register(monitor, zmq.POLLIN)
        timeout = self.timeout_s if timeout is None else timeout
        start = time.monotonic()
        while True:
            slice_ms = int(1000 * min(self.heartbeat_s, timeout))
            ready = dict(poller.poll(max(1, slice_ms)))
            if monitor is not None and monitor in ready:
                from zmq.utils.monitor import recv_monitor_message
                ev = recv_monitor_message(monitor)
                advice = ("check server_key/client_key and the broker's allowed_keys" if self._keys is not None
                          else "the broker probably requires CURVE: set server_key and client_key")
                raise RadioError(f"ZmqRadio {self.name!r}: the broker at {self.address} rejected the connection "
                                 f"(handshake failed: {zmq.Event(ev['event']).name}, value {ev['value']}); {advice}")
            if sock in ready:
                frames = sock.recv_multipart(copy=False)
                try:
                    reply, data = unpack(frames)
                except ProtocolError as exc:
                    raise RadioError(f"ZmqRadio {self.name!r}: malformed reply from broker: {exc}") from None
                if reply.get("seq") != seq:
                    continue  # a stale reply to a request that timed out earlier
                if reply["op"] == "error":
                    if reply.get("kind") == "late":
                        exc = LateError(reply.get("what", header["op"]), int(reply["at"]), int(reply["now"]))
                        raise exc
                    raise RadioError(f"ZmqRadio {self.name!r}: broker at {self.address} refused {header['op']!r}: "
                                     f"{reply.get('message')}")
                return reply, data
            wall = time.monotonic()
            if wait and self._hb_thread is not None:
                if wall - self._broker_seen > timeout:
                    raise RadioError(f"ZmqRadio {self.name!r}: broker at {self.address} stopped answering "
                                     f"heartbeats for {wall - self._broker_seen:.1f} s during {header['op']!r}")
                if wall - start > self.wait_timeout_s:
                    raise RadioError(f"ZmqRadio {self.name!r}: {header['op']!r} of {header.get('n', '?')} samples at "
                                     f"{header.get('at')} waited {wall - start:.1f} s for the air's clock (the broker "
                                     f"is alive but the clock is held by another endpoint: see the broker's "
                                     f"'stalled' events; wait_timeout_s = {self.wait_timeout_s:g})")
            elif wall - start > timeout:
                hint = " (CURVE keys?)" if self._keys is not None else ""
                raise RadioError(f"ZmqRadio {self.name!r}: no reply from broker at {self.address} to "
                                 f"{header['op']!r} within {timeout} s{hint}")

    def _heartbeat(self) -> None:
        """Background thread: send ``hb`` every ``heartbeat_s`` on its own socket and note each ``hb_ack`` in
        ``_broker_seen`` (what waiting calls check); wakes every 0.1 s at most to notice ``close()``."""
        sock = self._socket()
        seq, next_send = 0, 0.0
        try:
            while not self._hb_stop.is_set():
                now = time.monotonic()
                if now >= next_send:
                    seq += 1
                    next_send = now + self.heartbeat_s
                    try:
                        sock.send_multipart(pack({"op": "hb", "seq": seq, "session": self._session}), zmq.NOBLOCK)
                    except zmq.Again:
                        pass
                if sock.poll(int(1000 * min(0.1, max(0.0, next_send - time.monotonic()))) + 1):
                    while sock.poll(0):
                        try:
                            reply, _ = unpack(sock.recv_multipart())
                        except ProtocolError:
                            continue
                        if reply.get("op") == "hb_ack":
                            self._broker_seen = time.monotonic()
        except zmq.ZMQError:  # the context is going away: the radio is shutting down
            log.debug("heartbeat thread of %s ended", self.name, exc_info=True)
        finally:
            sock.close(linger=0)

    def _shutdown(self) -> None:
        self._closed = True
        self._hb_stop.set()
        if self._hb_thread is not None:
            self._hb_thread.join(timeout=5)
        with self._sockets_lock:
            for sock in self._sockets:
                sock.close(linger=0)
            self._sockets.clear()
        self._ctx.term()


def _as_time(at, what: str) -> int | None:
    if at is None:
        return None
    if isinstance(at, bool) or not isinstance(at, (int, np.integer)):
        raise ValueError(f"{what} = {at!r}: expected an integer sample time or None")
    return int(at)
