"""The simulated air across processes and hosts: the ZeroMQ :class:`ChannelBroker` (its endpoints are
:class:`radio.drivers.zmq.ZmqRadio`).

The broker owns one :class:`radio.sim.air.Air` (the sample clock and every channel impairment — the same engine the
in-process loopback uses, imported, never re-implemented) and serves it over one ROUTER socket. Each endpoint is a
:class:`ZmqRadio` (driver ``"zmq"``, a :class:`radio.base.Radio`) with a DEALER socket: it registers under a name,
learns the sample rate and clock, schedules transmissions with ``tx(samples, at)`` and asks for received samples with
``rx(n, at)``. The samples an endpoint receives are exactly what ``Air.advance`` produces for it, so a run on the
broker reproduces an in-process run with the same seed and the same scheduled bursts.

Learned from srsRAN's ZMQ radio (REQ/REP: the receiver asks the transmitter for samples, so neither runs ahead) and
gr-zeromq (raw sample buffers plus a small header, bind on port 0 in tests); unlike srsRAN's point-to-point links, one
broker superposes any number of transmitters through per-link channels, and unlike gr-zeromq every sample carries an
explicit integer timestamp.

Protocol (JSON header frame + optional raw sample frame, see :mod:`radio.servers.zmq_wire`); requests carry ``seq`` and get
exactly one reply with the same ``seq``:

=========  ==========================================  =====================================================
request    fields                                      reply
=========  ==========================================  =====================================================
hello      name, wire, version, hold, receive,         welcome: session, sample_rate, center_freq, now, pacing
           [timed_tx, tx_latency]
tx         session, n, at (null: after the last tx)    ok: at, now — or error kind "late" (at < now)
rx         session, n, at (null: continue the stream,  samples: t0, n, gap + payload (sent once ``now ≥ at + n``;
           the first time: start at now)               gap > 0: samples lost before t0, realtime overflow)
advance    session, until                              ok: now
time       —                                           ok: now
hb         session                                     hb_ack: now (the endpoint's heartbeat thread)
bye        session                                     ok
=========  ==========================================  =====================================================

Errors come back as ``{"op": "error", "kind": ..., "message": ...}`` (kinds ``late``, ``protocol``, ``session``,
``auth``, ``internal``); a malformed message never stops the broker, it is answered, counted and logged in :attr:`events`.

Pacing
------
``realtime``: the clock follows the wall clock at the sample rate, as hardware's does. Samples are released in steps of
at most ``block_size``; between steps the broker's time is derived from the wall clock (``time`` and every ``welcome``
report it, and ``tx`` deadlines are checked against it, so a burst is late exactly when it would be on a radio). A
continuing ``rx`` (``at`` null) of a reader that fell more than ``buffer_samples`` behind gets the oldest samples
still held, with ``t0`` jumped and the reply's ``gap`` field saying how many were lost (UHD's overflow), not
LateError. The clock starts when the broker starts serving (after the endpoints in ``endpoints`` joined; the air's
first-use set-up is done in the constructor), and endpoints learn its time in ``welcome``, so start-up time never
makes the first bursts late. Per endpoint, ``hello`` may say ``timed_tx: false``
(the endpoint poses as a radio without timestamps whose TX stream is kept fed with zeros, a Pluto: a burst for
``at`` leaves at ``at + tx_latency``, a constant TX->RX latency the endpoint is not told, which timing advance
absorbs; ``at`` null: ``max(now + tx_latency, end of its previous burst)``) and ``tx_latency`` (samples). Endpoints that are slow get LateError or
gaps, like a real radio. ``free``: the clock advances as fast as the slowest endpoint allows, to the
minimum *horizon* of all live endpoints that hold the clock. An endpoint's horizon is the latest time it has declared
itself done with: ``rx(n, at)`` declares ``at + n`` (it wants those samples), ``tx(samples, at)`` declares
``at + len(samples)`` (its transmit stream is in time order, as with a hardware TX stream), ``advance(until)``
declares ``until``. So nobody misses a slot it is still going to use. An endpoint whose heartbeats stop for
``heartbeat_timeout_s`` is reported lost (:attr:`ChannelBroker.events`) and dropped from the minimum; the clock keeps
running and the name may register again (its links in the air are kept).

Speed: sample frames travel without copies (numpy buffers in, ``np.frombuffer`` out), and the air computes samples only
for live receiving endpoints (``Air.set_receiving``): transmit-only, lost and departed endpoints cost no receiver work
(the air's noise is random-access, so an endpoint that comes back receives exactly what it would have anyway).
"""

from __future__ import annotations

import collections
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import zmq

from radio.base import LateError, RadioError
from radio.servers.zmq_wire import (PROTOCOL_VERSION, ProtocolError, check_wire, decode_samples,
                            encode_samples, field as wire_field, pack, unpack)
from radio.thread_priority import raise_thread_priority

if TYPE_CHECKING:  # the broker imports radio.sim.air lazily so that configs load without building an air
    from radio.sim.air import Air

log = logging.getLogger(__name__)

#: default broker address (endpoints connect here; the broker binds here unless told otherwise)
DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
#: free pacing: seconds a receiver may wait on a clock held by others before the broker reports a "stalled" event
STALL_REPORT_S = 2.0
_WARNING_EVENTS = ("lost", "missing", "stalled", "protocol_error", "auth_rejected", "overrun", "impersonation",
                   "insecure_bind")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


# --------------------------------------------------------------------------------------------------- configuration
@dataclass
class BrokerConfig:
    """The broker's settings (YAML ``radio.args.broker`` of driver ``zmq``).

    ``endpoints`` are names added to the air at start-up, in this order (so the air's per-endpoint random streams do
    not depend on which process connects first); the clock waits for all of them to register (at most
    ``join_timeout_s`` seconds when set). Others may register at any time. ``secret_key`` (a certificate written by
    ``zmq.auth.create_certificates``) enables CURVE; then only clients whose public key is in one of the
    ``allowed_keys`` files (``.key`` certificates, or directories of them) may connect, and each endpoint name is bound
    to a key: the one ``name_keys`` gives it (name -> certificate file), else the key that first registered it; a
    ``hello`` for that name from another key is refused and reported as an "impersonation" event. Binding an address
    other than loopback/ipc without CURVE logs a warning (and an "insecure_bind" event).
    """

    bind: str = DEFAULT_ADDRESS
    pacing: Literal["free", "realtime"] = "free"
    endpoints: list[str] = field(default_factory=list)
    block_size: int = 65536               # realtime: samples per clock step
    max_advance: int = 2 ** 20            # free: largest single Air.advance
    buffer_samples: int = 2 ** 21         # per receiving endpoint: unread samples kept before the oldest are dropped
    max_lead_samples: int = 2 ** 22       # a tx this far beyond `now` waits for its reply (back-pressure)
    heartbeat_timeout_s: float = 5.0
    join_timeout_s: float | None = None
    secret_key: str | None = None
    allowed_keys: list[str] = field(default_factory=list)
    name_keys: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("block_size", "max_advance", "buffer_samples", "max_lead_samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1 sample, got {getattr(self, name)}")
        if not self.heartbeat_timeout_s > 0:
            raise ValueError(f"heartbeat_timeout_s must be > 0 s, got {self.heartbeat_timeout_s}")
        if self.join_timeout_s is not None and not self.join_timeout_s > 0:
            raise ValueError(f"join_timeout_s must be > 0 s or null, got {self.join_timeout_s}")
        if len(set(self.endpoints)) != len(self.endpoints):
            raise ValueError(f"endpoints must be distinct names, got {self.endpoints}")
        if self.allowed_keys and not self.secret_key:
            raise ValueError("allowed_keys needs secret_key (the broker's CURVE certificate) to take effect")
        if self.name_keys and not self.secret_key:
            raise ValueError("name_keys needs secret_key (the broker's CURVE certificate) to take effect")


@dataclass(frozen=True)
class BrokerEvent:
    """Something the broker wants people to know: kind ("registered", "reconnected", "replaced", "lost", "left",
    "missing", "stalled", "protocol_error", "auth_rejected", "overrun", "started", "stopped"), the endpoint name (or
    "", for "stalled" the endpoints holding the clock), the
    air's sample time, the wall time (``time.time()``) and a human-readable detail."""

    kind: str
    name: str
    sample: int
    wall: float
    detail: str = ""


# --------------------------------------------------------------------------------------------------- CURVE helpers
def load_keypair(path: str | Path, what: str, need_secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) keys of a CURVE certificate file (secret None for a public-only file); RadioError naming
    ``what`` when the file is missing or holds no secret where one is needed."""
    import zmq.auth
    p = Path(path)
    if not p.is_file():
        raise RadioError(f"{what} {str(p)!r}: certificate file not found")
    public, secret = zmq.auth.load_certificate(p)
    if need_secret and secret is None:
        raise RadioError(f"{what} {str(p)!r} holds no secret key (use the '.key_secret' file)")
    return public, secret


def _allowed_public_keys(paths: list[str]) -> set[bytes]:
    import zmq.auth
    keys: set[bytes] = set()
    for path in paths:
        p = Path(path)
        if p.is_dir():
            keys.update(zmq.auth.load_certificates(p).keys())
        elif p.is_file():
            keys.add(zmq.auth.load_certificate(p)[0])
        else:
            raise RadioError(f"allowed_keys entry {path!r}: no such certificate file or directory")
    return keys


class _KeyList:
    """ZAP credentials provider: allow exactly the listed client public keys; report rejections to the broker."""

    def __init__(self, keys: set[bytes], on_reject):
        self.keys = keys
        self.on_reject = on_reject

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.keys
        if not ok:
            self.on_reject(key)
        return ok


# --------------------------------------------------------------------------------------------------- broker
class _Endpoint:
    """Broker-side state of one named endpoint."""

    def __init__(self, name: str, now: int, state: str):
        self.name = name
        self.state = state                 # "expected" | "live" | "lost" | "left"
        self.session = ""
        self.wire = "fc32"
        self.hold = True
        self.receive = True
        self.timed_tx = True
        self.tx_latency = 0
        self.last_seen = time.monotonic()
        self.reset(now)

    def reset(self, now: int) -> None:
        self.horizon = now                 # free pacing: the clock may run up to here for this endpoint
        self.read_ptr: int | None = None   # next sample of a continuing rx stream (None: no rx yet, start at now)
        self.tx_end = now                  # end of the last transmission (tx at=None continues here)
        self.chunks: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        self.buf_start = now               # oldest sample still buffered
        self.buffered = 0
        self.pending_rx: list[tuple[bytes, int, int, int]] = []   # (routing id, seq, at, n)
        self.pending_tx: list[tuple[bytes, int, int]] = []        # (routing id, seq, at): deferred replies

    @property
    def holds(self) -> bool:
        return self.hold and self.state in ("expected", "live")

    def store(self, t0: int, samples: np.ndarray, limit: int) -> None:
        """Append samples received from t0 on; drop the oldest beyond ``limit`` (never any a pending rx asked for)."""
        if not self.receive or self.state != "live":
            return
        self.chunks.append((t0, samples))
        self.buffered += samples.size
        self.trim(min([t0 + samples.size - limit, *(at for _, _, at, _ in self.pending_rx)]))

    def trim(self, start: int) -> None:
        """Forget samples before ``start``."""
        while self.chunks and start > self.buf_start:
            t0, arr = self.chunks[0]
            end = t0 + arr.size
            if end <= start:
                self.chunks.popleft()
                self.buffered -= arr.size
                self.buf_start = end
            else:
                cut = start - t0
                self.chunks[0] = (start, arr[cut:])
                self.buffered -= cut
                self.buf_start = start
        self.buf_start = max(self.buf_start, start)

    def extract(self, at: int, n: int) -> np.ndarray:
        """complex64[n] received from ``at`` (all of it buffered); no copy when one chunk holds it."""
        self.trim(at)
        if n == 0:
            return np.zeros(0, np.complex64)
        parts, need, t = [], n, at
        for t0, arr in self.chunks:
            if need == 0:
                break
            off = t - t0
            take = arr[off:off + need]
            parts.append(take)
            need -= take.size
            t += take.size
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class ChannelBroker:
    """Serves one :class:`radio.sim.air.Air` to :class:`ZmqRadio` endpoints over ZeroMQ (see the module docstring).

    ``ChannelBroker(air, config, bind=None)``: ``air`` is an ``Air`` (its default link, link overrides and noise
    apply to every endpoint added; ``config.endpoints`` not yet in it are added in order at once, others when they
    register), ``bind`` overrides ``config.bind`` (``"tcp://127.0.0.1:0"`` picks a free port: read it back from
    :attr:`endpoint` / :attr:`port`).

    Run it in a thread (``start()``/``stop()`` or ``with broker:``) or in the foreground (``serve_forever()``).
    """

    def __init__(self, air: Air, config: BrokerConfig | None = None, *, bind: str | None = None,
                 context: zmq.Context | None = None):
        self.air = air
        self.config = config or BrokerConfig()
        self.sample_rate = float(air.sample_rate)
        self.center_freq = float(air.center_freq)
        self._events: list[BrokerEvent] = []
        self._endpoints: dict[str, _Endpoint] = {}
        self._sessions: dict[str, _Endpoint] = {}
        self._stop = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()          # guards _events and the _endpoints dict for readers in other threads
        self._close_lock = threading.Lock()
        self._created = time.monotonic()
        self._rt_start: tuple[float, int] | None = None   # realtime: (wall, sample) when the clock started
        self._name_keys: dict[str, bytes] = {}             # CURVE: endpoint name -> the z85 public key it is bound to
        self._peer_key: bytes | None = None                # CURVE: z85 public key of the message being handled
        self._lags: collections.deque[float] = collections.deque(maxlen=100_000)
        self._stall: tuple[int, float, bool] | None = None   # (clock, since, reported)
        self.stats = collections.Counter()
        known = set(self._air_names())
        for name in self.config.endpoints:
            if name not in known:
                self.air.add_endpoint(name)
            self._endpoints[name] = _Endpoint(name, self.air.now, "expected")

        self._own_context = context is None
        self._ctx = context or zmq.Context()
        self._auth = None
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self._sock.setsockopt(zmq.SNDHWM, 1000)
        self._sock.setsockopt(zmq.RCVHWM, 1000)
        try:
            if self.config.secret_key:
                self._setup_curve()
            self._sock.bind(bind or self.config.bind)
        except (zmq.ZMQError, RadioError, OSError, ValueError) as exc:
            self._close_sockets()
            raise RadioError(f"ChannelBroker: cannot bind {bind or self.config.bind!r}: {exc}") from None
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if not self.config.secret_key and not _is_local(self.endpoint):
            self._event("insecure_bind", "", f"bound {self.endpoint} (not loopback) without CURVE: anyone who can "
                                             f"reach it may register any endpoint name; set secret_key/allowed_keys")
        if self.config.pacing == "realtime":   # first-use set-up of the air (noise generators, FFT plans) now, not
            self.air.advance(0)                # when the clock is already running

    # ----------------------------------------------------------------------------------------------- properties
    @classmethod
    def from_config(cls, cfg, bind: str | None = None) -> ChannelBroker:
        """Build from a :class:`lab.config.LabConfig`-like object (``.radio``, ``.air``, ``.radio_args``: ZmqArgs)."""
        from radio.drivers.zmq import ZmqArgs  # noqa: PLC0415  (the driver's config holds the broker's)
        from radio.sim.air import Air
        air = Air.from_config(cfg.air, cfg.radio.sample_rate, cfg.radio.center_freq)
        args = cfg.radio_args
        if not isinstance(args, ZmqArgs):
            raise RadioError(f"ChannelBroker.from_config needs radio.driver 'zmq' (radio.args: ZmqArgs), "
                             f"got {type(args).__name__}")
        return cls(air, args.broker, bind=bind)

    @property
    def port(self) -> int:
        """The bound TCP port (useful after binding port 0)."""
        return int(self.endpoint.rsplit(":", 1)[1])

    @property
    def now(self) -> int:
        """The air's sample clock."""
        return int(self.air.now)

    def wall_now(self) -> int:
        """The sample time now: realtime pacing derives it from the wall clock (finer than the released blocks;
        never before :attr:`now`); free pacing: :attr:`now`."""
        start = self._rt_start
        if self.config.pacing != "realtime" or start is None:
            return self.now
        return max(self.now, start[1] + int((time.monotonic() - start[0]) * self.sample_rate))

    def wall_anchor(self) -> tuple[float, int] | None:
        """Realtime: (``time.monotonic()``, sample) at which the clock started (None before it started)."""
        return self._rt_start

    @property
    def events(self) -> list[BrokerEvent]:
        """A copy of everything that happened so far (registrations, losses, protocol errors, ...)."""
        with self._lock:
            return list(self._events)

    def endpoints(self) -> dict[str, dict]:
        """Snapshot: name -> {state, wire, horizon, hold, receive, buffered}."""
        with self._lock:
            return {n: {"state": e.state, "wire": e.wire, "horizon": e.horizon, "hold": e.hold,
                        "receive": e.receive, "buffered": e.buffered} for n, e in self._endpoints.items()}

    def pacing_error(self) -> dict:
        """Realtime pacing: how late each clock step made its samples available relative to the ideal wall time
        ``t / sample_rate`` (µs; mean, p50, p99, max) and the achieved rate as a fraction of the sample rate."""
        now, wall_now = self.now, time.monotonic()           # read together, before the slower statistics
        lags = np.asarray(self._lags, dtype=float)
        out = {"steps": int(lags.size), "pacing": self.config.pacing}
        if lags.size and self._rt_start is not None:
            wall = wall_now - self._rt_start[0]
            out.update({"lag_us_mean": float(lags.mean() * 1e6), "lag_us_p50": float(np.percentile(lags, 50) * 1e6),
                        "lag_us_p99": float(np.percentile(lags, 99) * 1e6), "lag_us_max": float(lags.max() * 1e6),
                        "rate_ratio": (now - self._rt_start[1]) / (wall * self.sample_rate) if wall > 0 else 0.0})
        return out

    # ----------------------------------------------------------------------------------------------- running
    def start(self) -> ChannelBroker:
        """Serve in a background thread; returns self."""
        if self._thread is not None:
            raise RadioError("ChannelBroker is already running")
        self._thread = threading.Thread(target=self._serve, name=f"ChannelBroker {self.endpoint}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (the background thread, or a ``serve_forever`` in another thread) and release the sockets.
        Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
            self._thread = None
        self._done.wait(timeout=10)
        self._close_sockets()

    def serve_forever(self) -> None:
        """Serve in this thread until ``stop()`` (from another thread) or Ctrl-C."""
        try:
            self._serve()
        except KeyboardInterrupt:
            pass
        finally:
            self._close_sockets()

    def __enter__(self) -> ChannelBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (f"ChannelBroker(endpoint={self.endpoint!r}, pacing={self.config.pacing!r}, now={self.now}, "
                f"endpoints={list(self._endpoints)})")

    # ----------------------------------------------------------------------------------------------- internals
    def _air_names(self) -> list[str]:
        names = getattr(self.air, "endpoints", None)
        if callable(names):
            names = names()
        return list(names or [])

    def _event(self, kind: str, name: str = "", detail: str = "") -> None:
        ev = BrokerEvent(kind, name, self.now, time.time(), detail)
        with self._lock:
            self._events.append(ev)
        level = logging.WARNING if kind in _WARNING_EVENTS else logging.INFO
        log.log(level, "%s%s at sample %d%s", kind, f" {name}" if name else "", ev.sample,
                f": {detail}" if detail else "")

    def _setup_curve(self) -> None:
        from zmq.auth.thread import ThreadAuthenticator
        public, secret = load_keypair(self.config.secret_key, "broker secret_key", need_secret=True)
        keys = _allowed_public_keys(self.config.allowed_keys)
        self._auth = ThreadAuthenticator(self._ctx)
        self._auth.start()
        self._auth.configure_curve_callback(
            domain="*", credentials_provider=_KeyList(
                keys, lambda key: self._event("auth_rejected", "", f"client public key {key.decode()} not allowed")))
        self._sock.curve_secretkey = secret
        self._sock.curve_publickey = public
        self._sock.curve_server = True
        for name, path in self.config.name_keys.items():
            self._name_keys[name] = load_keypair(path, f"name_keys[{name!r}]", need_secret=False)[0]

    def _close_sockets(self) -> None:
        with self._close_lock:
            if self._sock is not None and not self._sock.closed:
                self._sock.close(linger=0)
            if self._auth is not None:
                self._auth.stop()
                self._auth = None
            if self._own_context and not self._ctx.closed:
                self._ctx.term()

    def _serve(self) -> None:
        self._done.clear()
        priority = ""
        if self.config.pacing == "realtime":   # the air runs on the wall clock: above the host's other work
            priority = f", thread {raise_thread_priority()}"
        self._event("started", "", f"{self.endpoint} pacing={self.config.pacing}{priority}")
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        busy = False
        try:
            while not self._stop.is_set():
                events = poller.poll(0 if busy else self._poll_timeout_ms())
                if events:
                    for _ in range(256):
                        try:
                            frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._handle(frames)
                self._check_liveness()
                busy = self._step_clock()
        finally:
            self._event("stopped", "", f"after {self.now} samples")
            self._done.set()

    def _poll_timeout_ms(self) -> int:
        if self.config.pacing == "realtime" and self._rt_start is not None:
            first = self._first_rx_due()
            release = self.now + self.config.block_size if first is None else min(first, self.now
                                                                                   + self.config.block_size)
            due = self._rt_start[0] + (release - self._rt_start[1]) / self.sample_rate
            return max(0, min(50, int((due - time.monotonic()) * 1000)))
        return 50

    # ---- messages
    def _reply(self, rid: bytes, header: dict, payload: np.ndarray | None = None) -> None:
        try:
            self._sock.send_multipart([rid, *pack(header, payload)], copy=False)
        except zmq.ZMQError as exc:  # peer gone: nothing to answer
            log.debug("reply to %r failed: %s", rid, exc)

    def _error(self, rid: bytes, seq, kind: str, message: str, **extra) -> None:
        self.stats[f"error_{kind}"] += 1
        self._reply(rid, {"op": "error", "seq": seq, "kind": kind, "message": message, **extra})

    def _handle(self, frames: list) -> None:
        if len(frames) < 2:
            return  # an empty routing envelope: nothing to answer
        rid = frames[0].bytes
        seq = None
        self._peer_key = None
        if self.config.secret_key:
            try:
                self._peer_key = frames[1].get("User-Id").encode()
            except (zmq.ZMQError, AttributeError):
                self._peer_key = None
        try:
            header, payload = unpack(frames[1:])
            seq = header.get("seq")
            op = header["op"]
            handler = getattr(self, f"_op_{op}", None)
            if handler is None:
                raise ProtocolError(f"unknown op {op!r}; expected one of hello, tx, rx, advance, time, hb, bye")
            if op not in ("tx",) and payload is not None:
                raise ProtocolError(f"{op!r} message carries a payload frame; only 'tx' does")
            handler(rid, seq, header, payload)
        except LateError as exc:
            self.stats["late"] += 1
            self._error(rid, seq, "late", str(exc), at=exc.at, now=exc.now, what=getattr(exc, "what", "request"))
        except ProtocolError as exc:
            self._event("protocol_error", "", str(exc))
            self._error(rid, seq, "protocol", str(exc))
        except _SessionError as exc:
            self._error(rid, seq, "session", str(exc))
        except Exception as exc:  # never let one message stop the air
            log.exception("broker: internal error handling a message")
            self._event("protocol_error", "", f"internal error: {exc!r}")
            self._error(rid, seq, "internal", f"internal error in broker: {exc!r}")

    def _update_receiving(self, ep: _Endpoint) -> None:
        """Let the air compute samples for ``ep`` only while it is a live (or expected) receiving endpoint."""
        self.air.set_receiving(ep.name, ep.receive and ep.state in ("live", "expected"))

    def _session(self, header: dict) -> _Endpoint:
        session = wire_field(header, "session", str)
        ep = self._sessions.get(session)
        if ep is None:
            raise _SessionError(f"unknown session {session!r} (replaced by a newer registration of the same name, "
                                f"or never registered): send 'hello' again")
        ep.last_seen = time.monotonic()
        if ep.state == "lost":  # it was only silent, not dead
            ep.state = "live"
            ep.reset(self.now)
            self._update_receiving(ep)
            self._event("reconnected", ep.name, "heard again after being reported lost")
        return ep

    def _op_hello(self, rid, seq, header, payload) -> None:
        name = wire_field(header, "name", str)
        version = wire_field(header, "version", int)
        if version != PROTOCOL_VERSION:
            raise ProtocolError(f"protocol version {version} not supported; this broker speaks {PROTOCOL_VERSION}")
        wire = check_wire(wire_field(header, "wire", str))
        hold = wire_field(header, "hold", bool, optional=True)
        receive = wire_field(header, "receive", bool, optional=True)
        timed_tx = wire_field(header, "timed_tx", bool, optional=True)
        tx_latency = wire_field(header, "tx_latency", int, optional=True, minimum=0)
        if not name.strip():
            raise ProtocolError("'hello' field 'name' must be a non-empty string")
        if self.config.secret_key:
            bound = self._name_keys.get(name)
            key = self._peer_key
            if key is None or (bound is not None and bound != key):
                who = key.decode() if key else "an unknown key"
                self._event("impersonation", name, f"client key {who} tried to register {name!r}, which is bound "
                                                   f"to key {bound.decode() if bound else '?'}: refused")
                self._error(rid, seq, "auth", f"endpoint name {name!r} is bound to another CURVE key; refused")
                return
            self._name_keys[name] = key
        ep = self._endpoints.get(name)
        if ep is None:
            if name not in self._air_names():
                self.air.add_endpoint(name)
            ep = _Endpoint(name, self.now, "live")
            with self._lock:
                self._endpoints[name] = ep
            kind = "registered"
        else:
            kind = {"expected": "registered", "live": "replaced", "lost": "reconnected",
                    "left": "reconnected"}[ep.state]
            self._sessions.pop(ep.session, None)
            ep.state = "live"
            ep.reset(self.now)
        ep.wire, ep.hold = wire, True if hold is None else hold
        ep.receive = True if receive is None else receive
        ep.timed_tx = True if timed_tx is None else timed_tx
        ep.tx_latency = int(tx_latency or 0)
        ep.session = secrets.token_hex(8)
        ep.last_seen = time.monotonic()
        self._update_receiving(ep)
        self._sessions[ep.session] = ep
        self._event(kind, name, f"wire={wire} hold={ep.hold} receive={ep.receive} timed_tx={ep.timed_tx}")
        self._reply(rid, {"op": "welcome", "seq": seq, "session": ep.session, "sample_rate": self.sample_rate,
                          "center_freq": self.center_freq, "now": self.wall_now(), "pacing": self.config.pacing,
                          "heartbeat_timeout_s": self.config.heartbeat_timeout_s})

    def _op_tx(self, rid, seq, header, payload) -> None:
        ep = self._session(header)
        n = wire_field(header, "n", int, minimum=0)
        at = wire_field(header, "at", int, optional=True)
        if payload is None:
            raise ProtocolError(f"'tx' of n={n} samples has no payload frame")
        samples = decode_samples(payload, ep.wire, n, what=f"'tx' payload from {ep.name!r}")
        now = self.wall_now()
        if not ep.timed_tx:   # no timestamps: a TX stream kept fed with zeros, so TX index k leaves tx_latency
            if at is None:    # samples after RX index k (a constant the radio does not know)
                start = max(now + ep.tx_latency, ep.tx_end)
            else:
                if at < now:
                    raise late_error(f"tx of {n} samples from {ep.name!r} (TX stream already past it)", at, now)
                start = at + ep.tx_latency
        else:
            start = max(now, ep.tx_end) if at is None else at
        if start < now:
            raise late_error(f"tx of {n} samples from {ep.name!r}", start, now)
        if n:
            self.air.schedule(ep.name, samples, start)
        self.stats["tx_samples"] += n
        ep.tx_end = start + n
        ep.horizon = max(ep.horizon, start + n)
        if start > self.now + self.config.max_lead_samples:
            ep.pending_tx.append((rid, seq, start))
        else:
            self._reply(rid, {"op": "ok", "seq": seq, "at": start, "now": self.now})

    def _op_rx(self, rid, seq, header, payload) -> None:
        ep = self._session(header)
        n = wire_field(header, "n", int, minimum=0)
        at = wire_field(header, "at", int, optional=True)
        if not ep.receive:
            raise ProtocolError(f"endpoint {ep.name!r} registered with receive=false cannot 'rx'")
        if n > self.config.buffer_samples:
            raise ProtocolError(f"'rx' of n={n} samples exceeds the broker's buffer_samples="
                                f"{self.config.buffer_samples}; ask in smaller blocks")
        start = (self.wall_now() if ep.read_ptr is None else ep.read_ptr) if at is None else at
        if at is None and start < ep.buf_start and self.config.pacing == "realtime":
            start = ep.buf_start   # overflow: the oldest samples still held, t0 jumped (the reply says the gap)
        if start < ep.buf_start:
            raise late_error(f"rx of {n} samples by {ep.name!r} (oldest buffered sample {ep.buf_start})", start,
                        self.now)
        ep.horizon = max(ep.horizon, start + n)
        ep.pending_rx.append((rid, seq, start, n))
        self._serve_rx(ep)

    def _op_advance(self, rid, seq, header, payload) -> None:
        ep = self._session(header)
        until = wire_field(header, "until", int)
        ep.horizon = max(ep.horizon, until)
        ep.tx_end = max(ep.tx_end, until)
        self._reply(rid, {"op": "ok", "seq": seq, "now": self.now, "horizon": ep.horizon})

    def _op_time(self, rid, seq, header, payload) -> None:
        self._reply(rid, {"op": "ok", "seq": seq, "now": self.wall_now()})

    def _op_hb(self, rid, seq, header, payload) -> None:
        self._session(header)
        self._reply(rid, {"op": "hb_ack", "seq": seq, "now": self.now})

    def _op_bye(self, rid, seq, header, payload) -> None:
        ep = self._session(header)
        self._sessions.pop(ep.session, None)
        ep.state = "left"
        ep.reset(self.now)
        self._update_receiving(ep)
        self._event("left", ep.name)
        self._reply(rid, {"op": "ok", "seq": seq, "now": self.now})

    # ---- clock
    def _serve_rx(self, ep: _Endpoint) -> None:
        now = self.now
        keep = []
        for rid, seq, at, n in ep.pending_rx:
            if at + n > now:
                keep.append((rid, seq, at, n))
                continue
            if at < ep.buf_start:
                exc = late_error(f"rx of {n} samples by {ep.name!r} (samples dropped; oldest buffered {ep.buf_start})",
                            at, now)
                self._error(rid, seq, "late", str(exc), at=at, now=now, what=exc.what)
                continue
            gap = 0 if ep.read_ptr is None else max(0, at - ep.read_ptr)
            samples = ep.extract(at, n)
            ep.read_ptr = at + n
            ep.trim(at + n)
            self.stats["rx_samples"] += n
            if gap:
                self.stats["rx_gap_samples"] += gap
            self._reply(rid, {"op": "samples", "seq": seq, "t0": at, "n": n, "now": now, "gap": gap},
                        encode_samples(samples, ep.wire))
        ep.pending_rx = keep

    def _advance(self, n: int) -> None:
        t0 = self.now
        out = self.air.advance(n)
        limit = self.config.buffer_samples
        for ep in self._endpoints.values():
            if ep.state == "live" and ep.receive:
                samples = out.get(ep.name)
                if samples is not None:
                    ep.store(t0, samples, limit)
        now = self.now
        for ep in self._endpoints.values():
            if ep.pending_rx:
                self._serve_rx(ep)
            if ep.pending_tx:
                due = [p for p in ep.pending_tx if p[2] <= now + self.config.max_lead_samples]
                for rid, seq, at in due:
                    self._reply(rid, {"op": "ok", "seq": seq, "at": at, "now": now})
                ep.pending_tx = [p for p in ep.pending_tx if p[2] > now + self.config.max_lead_samples]

    def _waiting_for_join(self) -> bool:
        expected = [e for e in self._endpoints.values() if e.state == "expected"]
        if not expected:
            return False
        timeout = self.config.join_timeout_s
        if timeout is not None and time.monotonic() - self._created > timeout:
            for e in expected:
                e.state = "lost"
                self._update_receiving(e)
                self._event("missing", e.name, f"did not register within join_timeout_s={timeout}")
            return False
        return True

    def _step_clock(self) -> bool:
        """Advance the air if pacing allows; returns True when more work is immediately due."""
        if self._waiting_for_join():
            return False
        if self.config.pacing == "realtime":
            return self._step_realtime()
        now = self.now
        holders = [e.horizon for e in self._endpoints.values() if e.holds]
        if holders:
            target = min(holders)
        else:  # nobody holds the clock: serve pending requests of non-holding endpoints, then idle
            target = max((at + n for e in self._endpoints.values() for _, _, at, n in e.pending_rx), default=now)
        if target <= now:
            self._check_stall(now)
            return False
        self._advance(min(target - now, self.config.max_advance))
        return self.now < target

    def _check_stall(self, now: int) -> None:
        """Free pacing: report once when receivers have waited ``STALL_REPORT_S`` for a clock held by others (e.g.
        one thread driving two endpoints and blocking on one of them)."""
        waiting = sorted(e.name for e in self._endpoints.values() if any(at + n > now for _, _, at, n in e.pending_rx))
        if not waiting:
            self._stall = None
            return
        if self._stall is None or self._stall[0] != now:
            self._stall = (now, time.monotonic(), False)
            return
        if not self._stall[2] and time.monotonic() - self._stall[1] > STALL_REPORT_S:
            held_by = sorted(e.name for e in self._endpoints.values() if e.holds and e.horizon <= now)
            self._event("stalled", ", ".join(held_by),
                        f"clock held at sample {now} by {', '.join(held_by)} (their horizon); "
                        f"{', '.join(waiting)} wait for later samples. An endpoint driven from the same thread as "
                        f"a waiting one cannot move: give it its own thread, call advance(), or hold_clock=false")
            self._stall = (now, self._stall[1], True)

    def _step_realtime(self) -> bool:
        wall = time.monotonic()
        if self._rt_start is None:
            self._rt_start = (wall, self.now)
        t_wall, t_sample = self._rt_start
        target = t_sample + int((wall - t_wall) * self.sample_rate)
        block = self.config.block_size
        behind = target - self.now
        due = self._first_rx_due()
        if behind <= 0 or (behind < block and (due is None or due > target)):
            return False   # release a block, or earlier when a reader's samples exist (as fine as a radio's)
        step = behind
        if step > self.config.max_advance:
            self._event("overrun", "", f"clock {behind} samples behind the wall clock")
            step = max(block, self.config.max_advance)
        self._advance(step)
        ideal = t_wall + (self.now - t_sample) / self.sample_rate
        self._lags.append(time.monotonic() - ideal)
        return target - self.now >= block

    def _first_rx_due(self) -> int | None:
        """The earliest sample time at which a pending rx can be answered (None: none pending)."""
        return min((at + n for e in self._endpoints.values() for _, _, at, n in e.pending_rx), default=None)

    def _check_liveness(self) -> None:
        wall = time.monotonic()
        timeout = self.config.heartbeat_timeout_s
        for ep in self._endpoints.values():
            if ep.state == "live" and wall - ep.last_seen > timeout:
                ep.state = "lost"
                self._update_receiving(ep)
                for rid, seq, at, n in ep.pending_rx:
                    self._error(rid, seq, "session", f"endpoint {ep.name!r} was reported lost")
                ep.reset(self.now)
                self._event("lost", ep.name, f"no message for {wall - ep.last_seen:.2f} s "
                                             f"(heartbeat_timeout_s={timeout})")


def _is_local(endpoint: str) -> bool:
    """True for ipc/inproc endpoints and TCP endpoints bound to a loopback address."""
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0]
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


class _SessionError(Exception):
    """A request named a session the broker does not know."""


def late_error(what: str, at: int, now: int) -> LateError:
    """A LateError for ``what`` scheduled at ``at`` when the clock is at ``now`` (``.what`` says which request)."""
    exc = LateError(what, at, now)
    exc.what = what
    return exc
