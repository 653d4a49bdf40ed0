"""The bridge process: streams ticks and heartbeats on PUB, serves orders and backfill on ROUTER.

Two threads, synchronous pyzmq (it runs on Windows, where uvloop and zmq.asyncio's default
loop do not work; nothing here needs a POSIX-only call):

- the **stream** thread polls the terminal (``symbol_info_tick`` every ``poll_ms``, then
  ``copy_ticks_range`` on change), publishes new ticks with per-symbol seqs, publishes a
  heartbeat per symbol every ``heartbeat_ms``, and re-initializes the terminal with backoff
  after a disconnect; it alone uses the PUB socket, and never waits for an order;
- the **order** thread owns the ROUTER *and* is the MT5 order thread. When idle it blocks
  inside libzmq (GIL released) until a request comes; it admits the request (idempotency
  log), runs it (``order_check``/``order_send``/reconciliation, inline) and sends its RESULT;
  then it drains every message that came meanwhile (non-blocking reads until none is left),
  answering backfill requests and duplicate req_ids at once and ACKing each new order at
  once into a local queue, in arrival order; then it runs the next queued order. So an
  order arriving while another runs is ACKed as soon as the one call in progress returns,
  and backfill is answered between orders.

When the ACK leaves (``ack_defer_us``): an order that must wait behind another, or any order
while the terminal is slow, is ACKed the moment it is read, before its ``order_check``. Once
:data:`FAST_STREAK` orders in a row have finished within ``ack_defer_us`` (a terminal
answering in microseconds, such as the fake), an order that runs at once gets its ACK in the
same ZeroMQ message as its RESULT instead (two frames: ACK, RESULT): an early ACK would only
cost the node a second wake-up for a RESULT that is already on its way. One slower order
ends the streak, and so does a terminal that stops answering; ``ack_defer_us=0`` ACKs every
order at once. Either way the node reads the ACK, then the RESULT.

Restart backfill: a node that followed an earlier session sends BACKFILL_SINCE with the time
of its last tick of a symbol; the order thread answers it from the terminal
(``copy_ticks_range``) with the ticks between that tick and where this session's stream began
(:attr:`TickPoller.starts`), so a bridge restart leaves no hole.

Without CurveZMQ keys, orders are executed only when ``allow_unauthenticated_orders`` is set
and every endpoint is loopback; otherwise each is answered at once with an INVALID result
naming the reason (ticks and backfill still flow).

No thread hands an order to another: every cross-thread wake-up costs tens of microseconds on
a small machine, which is the whole budget of a round trip. The ACK is packed into one
preallocated buffer; nothing on this path logs.
"""
from __future__ import annotations

import heapq
import logging
import secrets
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from flowchain_bridge import keys, wire
from flowchain_bridge.config import BridgeConfig
from flowchain_bridge.orders import IdempotencyLog, OrderDesk, Recheck, request_digest
from flowchain_bridge.stream import TickPoller, ticks_between
from flowchain_bridge.terminal import TerminalLink
from flowchain_bridge.tick_history import TickHistory
from flowchain_bridge.ticks import TICK_DTYPE

log = logging.getLogger("flowchain_bridge")

_STOP_POLL_MS = 100
"""How often the idle order thread looks at the stop flag (a request wakes it at once)."""
_DRAIN_MAX = 1000
"""Most messages read in one drain; then one queued order runs, so a flood cannot starve orders."""
FAST_STREAK = 8
"""Orders in a row finished within ``ack_defer_us`` before an ACK may ride with its RESULT."""
_ACK_PACK = wire.ORDER_ACK.pack_into
_ACK_TYPE = int(wire.FrameType.ORDER_ACK)
_ORDER_REQUEST = int(wire.FrameType.ORDER_REQUEST)
_BACKFILL_REQUEST = int(wire.FrameType.BACKFILL_REQUEST)
_ACCOUNT_QUERY = int(wire.FrameType.ACCOUNT_QUERY)
_RECHECK_POLL_MS = 5
"""How often the idle order thread wakes while a :class:`Recheck` waits (instead of sleeping)."""
_BACKFILL_SINCE = int(wire.FrameType.BACKFILL_SINCE)
_COPY_TICKS_ALL = -1  # MetaTrader5.COPY_TICKS_ALL


def check_symbols(symbols: list[str]) -> None:
    """Refuse symbol names that cannot be streamed (before anything starts).

    Raises
    ------
    ValueError
        Naming the symbol: empty, over 32 UTF-8 bytes, holding NUL, or listed twice.
    """
    if not symbols:
        raise ValueError("no symbol to stream: pass at least one with -s/--symbol")
    for symbol in symbols:
        try:
            wire.tick_topic(symbol)
        except wire.FrameError:
            raise ValueError(f"symbol {symbol!r} cannot be streamed: a symbol is 1..{wire.MAX_SYMBOL_BYTES} "
                             "UTF-8 bytes without NUL") from None
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"a symbol is listed twice in {symbols}")


class Bridge:
    """The MT5 bridge over ZeroMQ.

    Parameters
    ----------
    mt5
        The ``MetaTrader5`` module, or a :class:`~flowchain_bridge.fake_mt5.FakeMetaTrader5`.
    config
        Endpoints, symbols, credentials, keys and periods.
    context
        A ZeroMQ context to use (a new one by default).

    Raises
    ------
    keys.InsecureEndpointError
        When an endpoint is not loopback and neither keys nor ``allow_remote`` are given.
    ValueError
        When a symbol cannot be streamed (empty, too long, twice) or a setting is inconsistent.
    """

    def __init__(self, mt5: Any, config: BridgeConfig, context: zmq.Context | None = None) -> None:
        check_symbols(list(config.symbols))
        if config.connect_attempts < 0:
            raise ValueError(f"connect_attempts {config.connect_attempts}: must be >= 0 (0 retries for ever)")
        self.config = config
        self.secured = bool(config.secret_key)
        for endpoint in (config.pub_endpoint, config.router_endpoint):
            keys.check_endpoint(endpoint, secured=self.secured, allow_remote=config.allow_remote)
        if self.secured and not config.authorized_dir:
            raise ValueError("a secret_key was given without authorized_dir: the bridge needs the "
                             "folder of node public keys it accepts")
        if self.secured:  # key files checked now, before any socket exists
            try:
                keys.load_pair(config.secret_key)
            except OSError as exc:
                raise ValueError(f"secret_key {config.secret_key}: cannot read it "
                                 f"({exc.strerror or exc}); `flowchain keys generate DIR` writes "
                                 "DIR/bridge.key_secret") from None
            if not Path(config.authorized_dir).is_dir():
                raise ValueError(f"authorized_dir {config.authorized_dir}: no such folder; "
                                 "`flowchain keys generate DIR` creates DIR/authorized with the "
                                 "node's public key in it")
        self.session_id = secrets.randbits(64) or 1
        self.symbols = list(config.symbols)
        self._symbol_ids = {symbol: i for i, symbol in enumerate(self.symbols)}
        self.link = TerminalLink(mt5, self.symbols, login=config.login, password=config.password,
                                 server=config.server, path=config.terminal_path,
                                 max_attempts=config.connect_attempts)
        self.orders_refusal = self._orders_refusal(config)
        """Why orders are refused (no keys and not allowed, or not loopback), else ``""``."""
        self.orders_refused = 0
        self.failure: str | None = None
        """Why the bridge stopped on its own (the terminal refused, a thread failed), else None."""
        self.failed = threading.Event()
        self.poller = TickPoller(mt5, self.symbols)
        self.histories = [TickHistory(config.history_ticks) for _ in self.symbols]
        self.desk = OrderDesk(self.link, config.reconcile_delay_s)
        self.idempotency = IdempotencyLog(config.idempotency_size)
        self.rejects = wire.RejectCounts()
        self.ticks_published = 0
        self.heartbeats_published = 0
        self.backfills_served = 0
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._auth = None
        self.replies_dropped = 0
        """ACKs/RESULTs/backfill answers not delivered because their peer had gone."""
        self._queue: deque[tuple[wire.OrderRequest, bytes | None]] = deque()
        """Admitted orders waiting for the order thread, in arrival order, each with the peer
        whose ACK rides with its RESULT (None when it was ACKed at once). Order thread only."""
        self._ack_defer_ns = int(config.ack_defer_us * 1000)
        self._fast_streak = 0
        self.acks_deferred = 0
        """ACKs sent in the same message as their RESULT (see ``ack_defer_us``)."""
        self._ack_buffer = bytearray(wire.ORDER_ACK.size)
        self._rechecks: list[tuple[float, int, Recheck]] = []
        """Look-ups waiting for the terminal's history (a heap by due time). Order thread only."""
        self._recheck_seq = 0
        self._rcvtimeo = _STOP_POLL_MS
        self.overloaded = 0
        """Orders refused at once (OVERLOADED): those ahead would take them past their deadline."""
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ready = threading.Event()
        self.pub_endpoint = ""
        self.router_endpoint = ""
        self._pub = self._router = None

    def _orders_refusal(self, config: BridgeConfig) -> str:
        if self.secured:
            return ""
        if not config.allow_unauthenticated_orders:
            return ("no CurveZMQ keys: give the bridge keys, or allow local orders with "
                    "--allow-unauthenticated-orders")
        for endpoint in (config.pub_endpoint, config.router_endpoint):
            if not keys.is_loopback(endpoint):
                return (f"{endpoint} is not loopback: orders from other hosts need CurveZMQ keys")
        return ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Bridge:
        """Bind the sockets and start the threads (see :attr:`ready` for the terminal side).

        Raises
        ------
        zmq.ZMQError
            When an endpoint cannot be bound (address in use, bad address).
        RuntimeError
            When this bridge was started already (a bridge runs once; make a new one).
        """
        if self._threads:
            raise RuntimeError(f"bridge session {self.session_id:016x} was started already")
        ctx = self._context
        if self.secured:
            self._auth = keys.start_authenticator(ctx, self.config.authorized_dir)
        self._pub = ctx.socket(zmq.PUB)
        self._router = ctx.socket(zmq.ROUTER)
        for sock in (self._pub, self._router):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_REQUEST_BYTES)
            if self.secured:
                keys.secure_server(sock, self.config.secret_key)
        self._pub.setsockopt(zmq.SNDHWM, 100_000)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.RCVTIMEO, _STOP_POLL_MS)
        try:
            for sock, endpoint in ((self._pub, self.config.pub_endpoint),
                                   (self._router, self.config.router_endpoint)):
                try:
                    sock.bind(endpoint)
                except zmq.ZMQError as exc:
                    raise zmq.ZMQError(exc.errno, f"cannot bind {endpoint}: {exc.strerror}") \
                        from None
        except zmq.ZMQError:  # nothing was started: leave nothing open behind
            for sock in (self._pub, self._router):
                sock.close(0)
            if self._auth is not None:
                self._auth.stop()
                self._auth = None
            raise
        self.pub_endpoint = self._pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.router_endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._threads = [
            threading.Thread(target=self._stream_loop, name="bridge-stream", daemon=True),
            threading.Thread(target=self._order_loop, name="bridge-orders", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info("bridge session %016x: PUB %s ROUTER %s symbols %s%s", self.session_id,
                 self.pub_endpoint, self.router_endpoint, ", ".join(self.symbols),
                 " (Curve)" if self.secured else "")
        if self.orders_refusal:
            log.warning("unauthenticated orders will be refused: %s", self.orders_refusal)
        return self

    def _fail(self, reason: str) -> None:
        """Stop on our own: the threads end, :attr:`failed` is set (the CLI exits non-zero)."""
        if self.failure is None:
            self.failure = reason
        self._stop.set()
        self.failed.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads, close the sockets and shut the terminal link down."""
        self._stop.set()  # the order thread sees it within _STOP_POLL_MS (or after its current order)
        for thread in self._threads:
            thread.join(timeout)
        if self._auth is not None:
            self._auth.stop()
        if self._own_context:
            self._context.term()
        try:
            self.link.mt5.shutdown()
        except Exception:  # the terminal may already be gone; shutting down must not raise
            log.debug("mt5.shutdown failed during stop", exc_info=True)

    def __enter__(self) -> Bridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ready(self) -> bool:
        """The stream is connected and positioned at the terminal's latest ticks."""
        return self._ready.is_set()

    def stats(self) -> dict[str, Any]:
        """Counters for operators and tests."""
        return {"session_id": self.session_id, "ticks_published": self.ticks_published,
                "heartbeats_published": self.heartbeats_published, "backfills_served": self.backfills_served,
                "reconnects": self.link.reconnects, "orders_sent": self.desk.sent,
                "orders_reconciled": self.desk.reconciled, "resends_checked": self.desk.resends_checked,
                "orders_queued": len(self._queue), "rechecks_waiting": len(self._rechecks),
                "req_id_conflicts": self.idempotency.conflicts, "orders_overloaded": self.overloaded,
                "account_queries": self.desk.account_queries,
                "acks_deferred": self.acks_deferred,
                "replies_dropped": self.replies_dropped, "rejects": self.rejects.as_dict(),
                "orders_refused": self.orders_refused,
                "last_seq": {s: h.last_seq for s, h in zip(self.symbols, self.histories, strict=False)},
                "state": int(self.link.state), "terminal": self.link.status,
                "last_error": [self.link.last_error, self.link.last_error_message],
                "failure": self.failure}

    # ------------------------------------------------------------------ stream thread
    def _stream_loop(self) -> None:
        try:
            self._stream()
        except Exception as exc:  # never a dead stream thread under a bridge that runs on
            log.exception("the stream thread failed")
            self._fail(f"the stream thread failed: {type(exc).__name__}: {exc}")
        finally:
            self._pub.close(0)

    def _stream(self) -> None:
        pub = self._pub
        topics = [wire.tick_topic(s) for s in self.symbols]
        hb_topics = [wire.heartbeat_topic(s) for s in self.symbols]
        poll_s = self.config.poll_ms / 1000.0
        hb_period = self.config.heartbeat_ms / 1000.0
        next_hb = 0.0
        positioned = [False] * len(self.symbols)
        last_refresh = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if self.link.ensure():
                if now - last_refresh > hb_period:
                    self.link.refresh()
                    last_refresh = now
                for sid in range(len(self.symbols)):
                    if not self.link.initialized:
                        break
                    if not positioned[sid]:
                        positioned[sid] = self.poller.start_at_now(sid)
                        if not positioned[sid]:
                            self.link.lost()
                        continue
                    fresh = self.poller.poll(sid)
                    if fresh is None:
                        self.link.lost()
                        break
                    if len(fresh):
                        self._publish(pub, sid, topics[sid], fresh)
                if all(positioned):
                    self._ready.set()
            elif self.link.fatal is not None:
                self._heartbeat(pub, hb_topics)  # the nodes hear the state once more
                self._fail(self.link.fatal)
                return
            if now >= next_hb:
                self._heartbeat(pub, hb_topics)
                next_hb = now + hb_period
            self._stop.wait(poll_s)

    def _publish(self, pub: zmq.Socket, sid: int, topic: bytes, fresh: np.ndarray) -> None:
        history = self.histories[sid]
        first = history.append(fresh)
        if len(fresh) == 1:
            frame = wire.encode_tick(self.session_id, first, sid, fresh.tobytes())
            pub.send_multipart((topic, frame), copy=False)
        else:
            for start in range(0, len(fresh), wire.MAX_BATCH_TICKS):
                chunk = fresh[start:start + wire.MAX_BATCH_TICKS]
                pub.send_multipart((topic, wire.encode_batch(self.session_id, first + start, sid, chunk)))
        self.ticks_published += len(fresh)

    def _heartbeat(self, pub: zmq.Socket, hb_topics: list[bytes]) -> None:
        state = self.link.state
        now_ns = time.time_ns()
        for sid, topic in enumerate(hb_topics):
            frame = wire.encode_heartbeat(self.session_id, sid, self.histories[sid].last_seq, state,
                                          interval_ms=self.config.heartbeat_ms,
                                          last_error=self.link.last_error, reconnects=self.link.reconnects,
                                          bridge_time_ns=now_ns)
            pub.send_multipart((topic, frame))
        self.heartbeats_published += 1

    # ------------------------------------------------------------------ order thread (ROUTER)
    def _order_loop(self) -> None:
        """Own the ROUTER and run the orders: read one (admit, ACK unless it rides with the RESULT),
        execute it, drain what came meanwhile, execute the next queued one, ..."""
        router = self._router
        recv = router.recv
        queue = self._queue
        stop = self._stop
        try:
            self._serve_orders(router, recv, queue, stop)
        except Exception as exc:  # the ROUTER must not die silently under a running bridge
            log.exception("the order thread failed")
            self._fail(f"the order thread failed: {type(exc).__name__}: {exc}")
        finally:
            router.close(0)

    def _serve_orders(self, router: zmq.Socket, recv: Any, queue: deque, stop: threading.Event) -> None:
        rechecks = self._rechecks
        while not stop.is_set():
            if rechecks and rechecks[0][0] <= time.monotonic():
                self._recheck(heapq.heappop(rechecks)[2])
                self._drain()
                continue
            if not queue:
                wanted = _RECHECK_POLL_MS if rechecks else _STOP_POLL_MS
                if wanted != self._rcvtimeo:  # a waiting look-up: wake often enough to run it
                    router.setsockopt(zmq.RCVTIMEO, wanted)
                    self._rcvtimeo = wanted
                try:  # idle: block inside libzmq (GIL released) until a request or RCVTIMEO
                    peer = recv()
                except zmq.Again:
                    continue
                self._on_message(peer)  # an order is ACKed and queued, anything else answered
                if not queue:
                    continue
            self._execute(queue.popleft())
            # What came in meanwhile (or in the same burst) is ACKed now, after the RESULT has
            # left: the drain's readiness check costs a system call, kept off the round trip.
            self._drain()

    def _drain(self) -> None:
        """Handle every message already waiting on the ROUTER (at most ``_DRAIN_MAX``), never blocking."""
        router = self._router
        recv = router.recv
        events = router.getsockopt
        for _ in range(_DRAIN_MAX):
            if not events(zmq.EVENTS) & zmq.POLLIN:
                return
            try:
                peer = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._on_message(peer)

    def _on_message(self, peer: bytes) -> None:
        """Read the rest of a ROUTER message whose first frame (the peer id) was ``peer``."""
        router = self._router
        # A ROUTER message is the peer id and then at least one frame: the body. It comes as a
        # zmq.Frame, whose ``more`` says whether a frame follows without a getsockopt call.
        body = router.recv(copy=False)
        if body.more:  # more than one body frame: not ours
            while router.getsockopt(zmq.RCVMORE):
                router.recv()
            self.rejects.count("length")
            return
        frame = body.bytes
        try:  # dispatch on the type byte; the decoders check the rest
            kind = frame[1] if len(frame) > 1 else -1
            if kind == _ORDER_REQUEST:
                self._on_order(peer, wire.decode_order_request(frame))
            elif kind == _BACKFILL_REQUEST:
                self._on_backfill(peer, wire.decode_backfill_request(frame))
            elif kind == _BACKFILL_SINCE:
                self._on_backfill_since(peer, wire.decode_backfill_since(frame))
            elif kind == _ACCOUNT_QUERY:
                state = self.desk.account_state(wire.decode_account_query(frame))
                self._send(peer, wire.encode_account_state(state))
            else:
                raise wire.FrameError("wrong_type", f"{wire.frame_type(frame).name} sent to the bridge's ROUTER")
        except wire.FrameError as err:
            self.rejects.count(err.reason)

    def _send(self, peer: bytes, frame: bytes | bytearray, last: bytes | None = None) -> None:
        router = self._router
        try:
            router.send(peer, zmq.SNDMORE)
            if last is None:
                router.send(frame)
            else:
                router.send(frame, zmq.SNDMORE)
                router.send(last)
        except zmq.ZMQError as exc:  # the peer went away (ROUTER_MANDATORY): its resend gets the cache
            self.replies_dropped += 1
            log.warning("reply to a departed peer dropped: %s", exc)

    def _on_order(self, peer: bytes, req: wire.OrderRequest) -> None:
        if self.orders_refusal:
            self._refuse(peer, req)
            return
        status, cached = self.idempotency.admit(req.req_id, peer, request_digest(req))
        queue = self._queue
        if status is wire.AckStatus.QUEUED:
            per_order = self.desk.order_ns  # back-pressure (checked inline: the usual order fits)
            if per_order and (now_ns := time.time_ns()) + (len(queue) + 1) * per_order > req.deadline_ns \
                    and not req.resend:
                refused = self.desk.overloaded(req, len(queue), now_ns)
                if refused is not None:  # answered at once, never sent
                    self.overloaded += 1
                    self.idempotency.finish(refused)
                    self._send(peer, self._packed_ack(status, req.req_id), wire.encode_order_result(refused))
                    return
            if not queue and self._fast_streak >= FAST_STREAK:
                queue.append((req, peer))  # runs next on a fast terminal: the ACK rides with the RESULT
                return
        self._ack(peer, status, req.req_id)
        if status is wire.AckStatus.QUEUED:
            queue.append((req, None))
        elif status is wire.AckStatus.REQ_ID_CONFLICT:  # another order holds this req_id: refuse this one
            refusal = self.desk.refuse(req, wire.OrderStatus.REQ_ID_CONFLICT,
                                       "req_id conflict: this req_id holds another request; not sent")
            self._send(peer, wire.encode_order_result(refusal))
        elif cached is not None:
            self._send(peer, wire.encode_order_result(cached))

    def _refuse(self, peer: bytes, req: wire.OrderRequest) -> None:
        """Answer an order this bridge may not execute: ACK and an INVALID RESULT, never sent."""
        self.orders_refused += 1
        result = wire.OrderResult(req.req_id, wire.OrderStatus.INVALID, 0, 0, 0, 0.0, 0.0, 0.0, 0.0,
                                  "unauthenticated orders refused", 0, 0, (-1, self.orders_refusal[:128]))
        self._send(peer, self._packed_ack(wire.AckStatus.QUEUED, req.req_id), wire.encode_order_result(result))

    def _ack(self, peer: bytes, status: wire.AckStatus, req_id: int) -> None:
        self._send(peer, self._packed_ack(status, req_id))

    def _packed_ack(self, status: wire.AckStatus, req_id: int) -> bytearray:
        """The ACK in the one preallocated buffer (a send copies it: the buffer is free again)."""
        _ACK_PACK(self._ack_buffer, 0, wire.PROTOCOL_VERSION, _ACK_TYPE, status, 0, len(self._queue),
                  req_id, time.time_ns())
        return self._ack_buffer

    def _on_backfill(self, peer: bytes, req: wire.BackfillRequest) -> None:
        empty = np.zeros(0, dtype=TICK_DTYPE)
        if req.session_id != self.session_id:
            status, first, records = wire.BackfillStatus.SESSION_MISMATCH, 0, empty
        elif req.symbol_id >= len(self.histories):
            status, first, records = wire.BackfillStatus.UNKNOWN_SYMBOL, 0, empty
        else:
            first, records = self.histories[req.symbol_id].get(req.from_seq, req.to_seq, wire.MAX_BATCH_TICKS)
            status = wire.BackfillStatus.OK if len(records) else wire.BackfillStatus.GONE
        self.backfills_served += 1
        self._send(peer, wire.encode_backfill_response(req.req_id, self.session_id, req.symbol_id,
                                                       status, first, records))

    def _on_backfill_since(self, peer: bytes, req: wire.BackfillSince) -> None:
        """Serve a restart backfill from the terminal: the ticks after the node's last one, up
        to where this session's stream began (at most MAX_BATCH_TICKS; the node asks again)."""
        empty = np.zeros(0, dtype=TICK_DTYPE)
        records = empty
        if req.session_id != self.session_id:
            status = wire.BackfillStatus.SESSION_MISMATCH
        elif req.symbol not in self._symbol_ids:
            status = wire.BackfillStatus.UNKNOWN_SYMBOL
        elif self.poller.starts[self._symbol_ids[req.symbol]] is None or not self.link.initialized:
            status = wire.BackfillStatus.NOT_READY
        else:
            upto = self.poller.starts[self._symbol_ids[req.symbol]]
            status = wire.BackfillStatus.OK
            if (req.after_time_msc, req.seen_at_time) < upto:
                found = self.link.mt5.copy_ticks_range(req.symbol, req.after_time_msc // 1000,
                                                       upto[0] // 1000 + 1, _COPY_TICKS_ALL)
                if found is None:
                    status = wire.BackfillStatus.TERMINAL_ERROR
                else:
                    records = ticks_between(found, (req.after_time_msc, req.seen_at_time), upto)
                    records = records[:wire.MAX_BATCH_TICKS]
        self.backfills_served += 1
        self._send(peer, wire.encode_backfill_response(req.req_id, self.session_id,
                                                       self._symbol_ids.get(req.symbol, 0xFFFF),
                                                       status, 0, records))

    def _execute(self, entry: tuple[wire.OrderRequest, bytes | None]) -> None:
        """Run one admitted order through the desk and send its RESULT to every waiting peer
        (after its ACK, when that was deferred)."""
        req, ack_peer = entry
        started = time.perf_counter_ns()
        try:
            result = self.desk.execute(req)
        except Exception as exc:  # a terminal bug must not kill the order thread
            log.exception("order %d failed inside the bridge", req.req_id)
            result = self._bridge_error(req, exc)
        if time.perf_counter_ns() - started <= self._ack_defer_ns:
            self._fast_streak += 1
        else:
            self._fast_streak = 0
        if type(result) is Recheck:
            self._defer(result, ack_peer)
            return
        self._answer(result, ack_peer)

    @staticmethod
    def _bridge_error(req: wire.OrderRequest, exc: Exception) -> wire.OrderResult:
        return wire.OrderResult(req.req_id, wire.OrderStatus.UNKNOWN, 0, 0, 0, 0.0, 0.0, 0.0, 0.0,
                                f"bridge error: {type(exc).__name__}", 0, 0, (-1, str(exc)[:120]))

    def _defer(self, pending: Recheck, ack_peer: bytes | None) -> None:
        """Keep a look-up for when it is due (never slept on); its ACK goes now if it was held."""
        if ack_peer is not None:
            self._ack(ack_peer, wire.AckStatus.QUEUED, pending.req.req_id)
        self._recheck_seq += 1
        heapq.heappush(self._rechecks, (pending.due, self._recheck_seq, pending))

    def _recheck(self, pending: Recheck) -> None:
        """Run a due look-up; answer its order, or keep the next look-up for later."""
        try:
            result = self.desk.recheck(pending)
        except Exception as exc:  # a terminal bug must not kill the order thread
            log.exception("order %d failed inside the bridge", pending.req.req_id)
            result = self._bridge_error(pending.req, exc)
        if type(result) is Recheck:
            self._defer(result, None)
        else:
            self._answer(result, None)

    def _answer(self, result: wire.OrderResult, ack_peer: bytes | None) -> None:
        """Send ``result`` to every peer waiting for its req_id (with the held ACK, if any)."""
        req_id = result.req_id
        frame = wire.encode_order_result(result)
        for peer in self.idempotency.finish(result):
            if peer == ack_peer:  # one message of two frames, ACK then RESULT: one wake-up for the node
                self.acks_deferred += 1
                self._send(peer, self._packed_ack(wire.AckStatus.QUEUED, req_id), frame)
            else:
                self._send(peer, frame)
