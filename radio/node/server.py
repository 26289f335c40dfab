"""The node's local interface over ZeroMQ: :class:`NodeServer` (in the node's process) and :class:`NodeClient`.

Messages use the ZeroMQ air's framing (:mod:`radio.servers.zmq_wire`): a JSON header frame with ``op`` and ``seq``
and, for ``tx`` requests and ``rx`` replies, one frame of fc32 samples (complex64 bytes). One reply per request, same
``seq``; errors come back as ``{"op": "error", "kind": "late"|"radio"|"protocol", "message": ...}``.

=============  ==============================  =============================================================
request        fields                          reply
=============  ==============================  =============================================================
time           —                               ok: now (sample time)
tx             at, n, timeout_s + samples      ok: result (:class:`radio.node.node.TxResult` as a dict)
rx             t0, n, timeout_s                samples: t0, n, gaps ([[start, end], ...]) + samples
wait_until     t, timeout_s                    ok: now
status         —                               ok: status (:meth:`RadioNode.status`)
mapping        —                               ok: clock_map (t_ref, mono_ref, seconds_per_sample, ...)
(extra ops)    what the op's handler reads     what it returns (``NodeServer(..., ops={name: handler})``)
=============  ==============================  =============================================================

``ops`` lets the process that runs a node serve more on the same endpoint without this module knowing what: e.g.
``otalab node --actor device`` adds ``actor`` (lab.experiments.actor_host: a long-lived device actor on this node).
A handler takes ``(header, payload)`` (payload: the raw second frame or None) and returns ``(reply dict, array or
None)``; :meth:`NodeClient.call` is its client side.

The server answers each request on a worker thread (a ``tx`` waits for its burst's outcome, a ``rx`` for its
samples), so one slow request never holds up the others. It binds ``tcp://127.0.0.1:0`` by default (read the port
back from :attr:`NodeServer.endpoint`) or an ``ipc://`` path. ``mono_ref`` is the node host's ``time.monotonic()``:
comparable only on the same host.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import os
import queue
import threading
import time

import numpy as np
import zmq

from radio.base import LateError, RadioError
from radio.node.node import RadioNode, TxResult
from radio.servers.zmq_wire import ProtocolError, decode_samples, field, pack, unpack

_TX_RESULT_FIELDS = frozenset(f.name for f in dataclasses.fields(TxResult))

DEFAULT_BIND = "tcp://127.0.0.1:0"


class NodeServer:
    """Serves ``node`` on ``bind`` from a background thread (``start()``/``stop()``, or ``with``)."""

    def __init__(self, node: RadioNode, bind: str = DEFAULT_BIND, workers: int = 8, ops: dict | None = None):
        self.node = node
        self.ops = dict(ops or {})
        clash = set(self.ops) & {"time", "tx", "rx", "wait_until", "status", "mapping"}
        if clash:
            raise ValueError(f"ops {sorted(clash)}: these names are the node's own requests")
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(bind)
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        # replies come back from the worker threads through a queue and a wake-up pipe: only the serving thread
        # ever touches a ZeroMQ socket of the server (a socket used from two threads corrupts libzmq)
        self._replies: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="NodeServer")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.requests = 0

    def start(self) -> NodeServer:
        """Serve from a background thread; idempotent (``with NodeServer(n).start() as s`` must not serve twice: a
        second serving thread would poll the socket that ``stop()`` closes under it)."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._serve, name=f"NodeServer {self.endpoint}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the sockets (the node stays open). Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._pool.shutdown(wait=True, cancel_futures=True)
        if not self._sock.closed:
            self._sock.close(linger=0)
            self._ctx.term()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def __enter__(self) -> NodeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve in this thread until ``stop()`` from another thread or Ctrl-C."""
        try:
            self._serve()
        except KeyboardInterrupt:
            pass

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        while not self._stop.is_set():
            ready = dict(poller.poll(100))
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            while True:
                try:
                    frames = self._replies.get_nowait()
                except queue.Empty:
                    break
                self._sock.send_multipart(frames)
            if self._sock in ready:
                while self._sock.poll(0):
                    frames = self._sock.recv_multipart()
                    if len(frames) >= 2:
                        self.requests += 1
                        self._pool.submit(self._work, frames[0], frames[1:])

    def _work(self, rid: bytes, frames: list) -> None:
        seq = None
        try:
            header, payload = unpack(frames)
            seq = header.get("seq")
            if header.get("op") == "tx":      # answered when the burst has left, without holding a worker till then
                self._submit(rid, seq, header, payload)
                return
            reply, data = self._handle(header, payload)
            reply["seq"] = seq
        except LateError as exc:
            reply, data = {"op": "error", "seq": seq, "kind": "late", "message": str(exc), "at": exc.at,
                           "now": exc.now}, None
        except (ProtocolError, ValueError) as exc:
            reply, data = {"op": "error", "seq": seq, "kind": "protocol", "message": str(exc)}, None
        except RadioError as exc:
            reply, data = {"op": "error", "seq": seq, "kind": "radio", "message": str(exc)}, None
        self._reply(rid, reply, data)

    def _reply(self, rid: bytes, reply: dict, data=None) -> None:
        """Queue a reply for the serving thread (the only one that touches the socket)."""
        if not self._stop.is_set():
            self._replies.put([rid, *pack(reply, data)])
            try:
                os.write(self._wake_w, b"\0")
            except OSError:          # stopped meanwhile: the reply is dropped with the server
                pass

    def _submit(self, rid: bytes, seq, h: dict, payload) -> None:
        """A 'tx': hand the burst to the node's queue (RadioNode.submit) and reply from its outcome's callback, so
        that the bursts of a phase scheduled ahead at once are all queued at once: with a worker blocked per burst
        until it left, a phase of more bursts than workers had its last ones refused as too late."""
        n = field(h, "n", int, minimum=0)        # a bad request raises: _work replies with the error
        if payload is None:
            raise ProtocolError(f"'tx' of n={n} samples has no payload frame")
        x = np.array(decode_samples(payload, "fc32", n, what="'tx' payload"))
        fut = self.node.submit(x, field(h, "at", int))

        def done(f) -> None:
            try:
                self._reply(rid, {"op": "ok", "seq": seq, "result": f.result().as_dict()})
            except RadioError as exc:
                self._reply(rid, {"op": "error", "seq": seq, "kind": "radio", "message": str(exc)})

        fut.add_done_callback(done)

    def _handle(self, h: dict, payload) -> tuple[dict, np.ndarray | None]:
        node, op = self.node, h["op"]
        timeout = field(h, "timeout_s", float, optional=True)
        if op == "time":
            return {"op": "ok", "now": node.time_now()}, None
        if op == "rx":
            t0, n = field(h, "t0", int), field(h, "n", int, minimum=0)
            x, gaps = node.rx(t0, n, timeout)
            return {"op": "samples", "t0": t0, "n": n, "gaps": [list(g) for g in gaps]}, np.ascontiguousarray(x)
        if op == "wait_until":
            return {"op": "ok", "now": node.wait_until(field(h, "t", int), timeout)}, None
        if op == "status":
            return {"op": "ok", "status": node.status()}, None
        if op == "mapping":
            return {"op": "ok", "clock_map": node.clock.as_dict()}, None
        if op in self.ops:
            return self.ops[op](h, payload)
        raise ProtocolError(f"unknown op {op!r}; expected time, tx, rx, wait_until, status, mapping"
                            + "".join(f", {o}" for o in self.ops))


class NodeClient:
    """Talks to a :class:`NodeServer` at ``address``; every call waits at most ``timeout_s`` (plus the time until
    the samples or the burst it asks about are due) and then raises RadioError naming the request.

    Thread-safe (one socket per calling thread)."""

    def __init__(self, address: str, timeout_s: float = 10.0):
        self.address, self.timeout_s = address, float(timeout_s)
        self._ctx = zmq.Context()
        self._local = threading.local()
        self._socks: list[zmq.Socket] = []
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        st = self.status()
        self.sample_rate = float(st["sample_rate"])
        self.name = st["name"]

    def _sock(self) -> zmq.Socket:
        s = getattr(self._local, "sock", None)
        if s is None:
            s = self._local.sock = self._ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(self.address)
            with self._lock:
                self._socks.append(s)
        return s

    def _request(self, header: dict, payload=None, wait_s: float = 0.0):
        sock, seq = self._sock(), next(self._seq)
        sock.send_multipart(pack({**header, "seq": seq}, payload))
        deadline = time.monotonic() + self.timeout_s + wait_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(int(left * 1000) + 1):
                if time.monotonic() >= deadline:
                    raise RadioError(f"node at {self.address}: no reply to {header['op']!r} within "
                                     f"{self.timeout_s + wait_s:.1f} s")
                continue
            reply, data = unpack(sock.recv_multipart())
            if reply.get("seq") != seq:
                continue
            if reply["op"] == "error":
                if reply.get("kind") == "late":
                    raise LateError(f"node {header['op']}", int(reply["at"]), int(reply["now"]))
                raise RadioError(f"node at {self.address} refused {header['op']!r}: {reply.get('message')}")
            return reply, data

    def time_now(self) -> int:
        """The radio's sample time now (plus one local round trip)."""
        return int(self._request({"op": "time"})[0]["now"])

    def tx(self, samples: np.ndarray, at: int, timeout_s: float | None = None) -> TxResult:
        """Send complex64 ``samples`` at sample time ``at``; returns the burst's :class:`TxResult`."""
        x = np.ascontiguousarray(samples, np.complex64)
        h = {"op": "tx", "at": int(at), "n": int(x.size), "timeout_s": timeout_s}
        wait = (timeout_s or 0.0) + max(0.0, (int(at) + x.size - self.time_now()) / self.sample_rate)
        result = self._request(h, x, wait)[0]["result"]
        # a node of another version may send fields this client does not know: keep the ones it does
        return TxResult(**{k: v for k, v in result.items() if k in _TX_RESULT_FIELDS})

    def rx(self, t0: int, n: int, timeout_s: float | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """complex64[n] at sample times ``[t0, t0 + n)`` and the lost intervals among them."""
        h = {"op": "rx", "t0": int(t0), "n": int(n), "timeout_s": timeout_s}
        wait = (timeout_s or 0.0) + max(0.0, (int(t0) + int(n) - self.time_now()) / self.sample_rate)
        reply, data = self._request(h, None, wait)
        x = np.array(decode_samples(data, "fc32", int(n), what="node rx reply"))
        return x, [tuple(g) for g in reply["gaps"]]

    def wait_until(self, t: int, timeout_s: float | None = None) -> int:
        """Returns once the radio's clock reached sample ``t`` (its time then)."""
        wait = timeout_s if timeout_s is not None else self.timeout_s
        return int(self._request({"op": "wait_until", "t": int(t), "timeout_s": timeout_s}, None, wait)[0]["now"])

    def status(self) -> dict:
        return self._request({"op": "status"})[0]["status"]

    def call(self, op: str, fields: dict | None = None, payload: np.ndarray | None = None,
             wait_s: float = 0.0) -> tuple[dict, np.ndarray | None]:
        """An extra op the server was given (``NodeServer(ops=...)``): ``(reply, payload as a read-only uint8 array
        or None)``; waits ``timeout_s + wait_s`` at most."""
        reply, data = self._request({**(fields or {}), "op": op}, payload, wait_s)
        return reply, (np.frombuffer(data, np.uint8) if data is not None else None)

    def mapping(self) -> dict:
        return self._request({"op": "mapping"})[0]["clock_map"]

    def close(self) -> None:
        with self._lock:
            for s in self._socks:
                s.close(linger=0)
            self._socks.clear()
        self._ctx.term()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
