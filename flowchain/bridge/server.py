"""The bridge process: streams ticks and heartbeats on PUB, serves orders and backfill on ROUTER.

Three threads, synchronous pyzmq (it runs on Windows, where uvloop and zmq.asyncio's default
loop do not work; nothing here needs a POSIX-only call):

- the **stream** thread polls the terminal (``symbol_info_tick`` every ``poll_ms``, then
  ``copy_ticks_range`` on change), publishes new ticks with per-symbol seqs, publishes a
  heartbeat per symbol every ``heartbeat_ms``, and re-initializes the terminal with backoff
  after a disconnect; it alone uses the PUB socket;
- the **socket** thread owns the ROUTER: it decodes requests (counting rejects), ACKs an
  order the moment it arrives, answers backfill from the tick history, and sends RESULTs;
- the **MT5 order** thread runs order_check/order_send/reconciliation for queued requests, so
  a slow ``order_send`` never stalls the tick stream, the ACKs or the backfill.

The two order hand-offs are the round trip's main cost beyond the network, so they are the
cheapest wake-ups pyzmq offers: a pair of ``inproc`` PAIR sockets, each thread blocked inside
libzmq (GIL released) until the other signals. Socket -> MT5 thread: the request object goes
on a deque and one empty frame wakes the thread. MT5 thread -> socket thread: the RESULT frame,
already encoded and stored in the idempotency log, followed by the peers waiting for it, so the
socket thread only forwards bytes (no decode, no lookup). Nothing on this path logs.
"""
from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections import deque
from typing import Any

import numpy as np
import zmq

from flowchain import keys, wire
from flowchain.bridge.config import BridgeConfig
from flowchain.bridge.orders import IdempotencyLog, OrderDesk
from flowchain.bridge.stream import TickPoller
from flowchain.bridge.terminal import TerminalLink
from flowchain.bridge.tick_history import TickHistory
from flowchain.ticks import TICK_DTYPE

log = logging.getLogger("flowchain.bridge")

_STOP_POLL_MS = 100
"""How often the socket and MT5 threads look at the stop flag when idle (traffic wakes them)."""


class Bridge:
    """The MT5 bridge over ZeroMQ.

    Parameters
    ----------
    mt5
        The ``MetaTrader5`` module, or a :class:`~flowchain.bridge.fake_mt5.FakeMetaTrader5`.
    config
        Endpoints, symbols, credentials, keys and periods.
    context
        A ZeroMQ context to use (a new one by default).

    Raises
    ------
    keys.InsecureEndpointError
        When an endpoint is not loopback and neither keys nor ``allow_remote`` are given.
    """

    def __init__(self, mt5: Any, config: BridgeConfig, context: zmq.Context | None = None) -> None:
        self.config = config
        self.secured = bool(config.secret_key)
        for endpoint in (config.pub_endpoint, config.router_endpoint):
            keys.check_endpoint(endpoint, secured=self.secured, allow_remote=config.allow_remote)
        if self.secured and not config.authorized_dir:
            raise ValueError("a secret_key was given without authorized_dir: the bridge needs the "
                             "folder of node public keys it accepts")
        self.session_id = secrets.randbits(64) or 1
        self.symbols = list(config.symbols)
        self.link = TerminalLink(mt5, self.symbols, login=config.login, password=config.password,
                                 server=config.server, path=config.terminal_path)
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
        self._orders: deque[wire.OrderRequest] = deque()
        self._held_acks: dict[bytes, tuple[int, bytes, bytes]] = {}
        """req_id (8 bytes LE) -> (due monotonic ns, peer, ACK frame); socket thread only."""
        self._ack_hold_ns = int(config.ack_hold_ms * 1e6)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ready = threading.Event()
        self._handoff_endpoint = f"inproc://flowchain-bridge-orders-{id(self)}"
        self.pub_endpoint = ""
        self.router_endpoint = ""
        self._pub = self._router = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Bridge":
        """Bind the sockets and start the threads (see :attr:`ready` for the terminal side).

        Raises
        ------
        zmq.ZMQError
            When an endpoint cannot be bound (address in use, bad address).
        """
        ctx = self._context
        if self.secured:
            self._auth = keys.start_authenticator(ctx, self.config.authorized_dir)
        self._pub = ctx.socket(zmq.PUB)
        self._router = ctx.socket(zmq.ROUTER)
        for sock in (self._pub, self._router):
            sock.setsockopt(zmq.LINGER, 0)
            if self.secured:
                keys.secure_server(sock, self.config.secret_key)
        self._pub.setsockopt(zmq.SNDHWM, 100_000)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._pub.bind(self.config.pub_endpoint)
        self._router.bind(self.config.router_endpoint)
        self.pub_endpoint = self._pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self.router_endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        handoff = ctx.socket(zmq.PAIR)  # the socket thread's end; the MT5 thread connects its own
        handoff.setsockopt(zmq.LINGER, 0)
        handoff.bind(self._handoff_endpoint)
        mt5_end = ctx.socket(zmq.PAIR)
        mt5_end.setsockopt(zmq.LINGER, 0)
        mt5_end.setsockopt(zmq.RCVTIMEO, _STOP_POLL_MS)
        mt5_end.connect(self._handoff_endpoint)
        self._threads = [
            threading.Thread(target=self._stream_loop, name="bridge-stream", daemon=True),
            threading.Thread(target=self._socket_loop, args=(handoff,), name="bridge-sockets", daemon=True),
            threading.Thread(target=self._order_loop, args=(mt5_end,), name="bridge-mt5-orders", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info("bridge session %016x: PUB %s ROUTER %s symbols %s", self.session_id,
                 self.pub_endpoint, self.router_endpoint, self.symbols)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads, close the sockets and shut the terminal link down."""
        self._stop.set()  # the socket and MT5 threads see it within their poll period
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

    def __enter__(self) -> "Bridge":
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
                "orders_reconciled": self.desk.reconciled, "rejects": self.rejects.as_dict(),
                "last_seq": {s: h.last_seq for s, h in zip(self.symbols, self.histories)},
                "state": int(self.link.state)}

    # ------------------------------------------------------------------ stream thread
    def _stream_loop(self) -> None:
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
            if now >= next_hb:
                self._heartbeat(pub, hb_topics)
                next_hb = now + hb_period
            self._stop.wait(poll_s)
        pub.close(0)

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

    # ------------------------------------------------------------------ socket thread
    def _socket_loop(self, handoff: zmq.Socket) -> None:
        router = self._router
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(handoff, zmq.POLLIN)
        recv_router = router.recv_multipart
        recv_handoff = handoff.recv_multipart
        held = self._held_acks
        while not self._stop.is_set():
            # Woken by traffic; the timeout bounds a held ACK's wait, and stop() when idle.
            timeout = _STOP_POLL_MS
            if held:
                due = next(iter(held.values()))[0]
                timeout = max(0, math.ceil((due - time.monotonic_ns()) / 1e6))
            events = dict(poller.poll(timeout))
            if router in events:
                for _ in range(1000):
                    try:
                        parts = recv_router(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._on_request(router, handoff, parts)
            if handoff in events:
                for _ in range(1000):
                    try:
                        req_id, frame, *peers = recv_handoff(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    acks = held.pop(req_id, None)
                    if acks is not None:  # ACK then RESULT, back to back
                        self._send(router, acks[1], acks[2])
                    for peer in peers:
                        self._send(router, peer, frame)
            if held:
                now = time.monotonic_ns()
                while held:
                    req_id, (due, peer, ack) = next(iter(held.items()))
                    if due > now:
                        break
                    del held[req_id]
                    self._send(router, peer, ack)
        router.close(0)
        handoff.close(0)

    def _send(self, router: zmq.Socket, peer: bytes, frame: bytes) -> None:
        try:
            router.send_multipart((peer, frame))
        except zmq.ZMQError as exc:  # the peer went away (ROUTER_MANDATORY): its resend gets the cache
            log.warning("reply to a departed peer dropped: %s", exc)

    def _on_request(self, router: zmq.Socket, handoff: zmq.Socket, parts: list[bytes]) -> None:
        if len(parts) != 2:
            self.rejects.count("length")
            return
        peer, frame = parts
        try:
            ftype = wire.frame_type(frame)
            if ftype is wire.FrameType.ORDER_REQUEST:
                self._on_order(router, handoff, peer, wire.decode_order_request(frame))
            elif ftype is wire.FrameType.BACKFILL_REQUEST:
                self._on_backfill(router, peer, wire.decode_backfill_request(frame))
            else:
                raise wire.FrameError("wrong_type", f"{ftype.name} sent to the bridge's ROUTER")
        except wire.FrameError as err:
            self.rejects.count(err.reason)

    def _on_order(self, router: zmq.Socket, handoff: zmq.Socket, peer: bytes, req: wire.OrderRequest) -> None:
        status, cached = self.idempotency.admit(req.req_id, peer)
        ack = wire.encode_order_ack(wire.OrderAck(req.req_id, status, len(self._orders), time.time_ns()))
        if status is not wire.AckStatus.QUEUED:
            self._send(router, peer, ack)
            if cached is not None:
                self._send(router, peer, wire.encode_order_result(cached))
            return
        self._orders.append(req)
        handoff.send(b"")  # wake the MT5 thread
        if self._ack_hold_ns:
            # Hold the ACK briefly: a RESULT ready by then goes out right behind it, in one
            # wake-up of the node, instead of two messages competing with MT5 for the CPU.
            self._held_acks[req.req_id.to_bytes(8, "little")] = (
                time.monotonic_ns() + self._ack_hold_ns, peer, ack)
        else:
            self._send(router, peer, ack)

    def _on_backfill(self, router: zmq.Socket, peer: bytes, req: wire.BackfillRequest) -> None:
        empty = np.zeros(0, dtype=TICK_DTYPE)
        if req.session_id != self.session_id:
            status, first, records = wire.BackfillStatus.SESSION_MISMATCH, 0, empty
        elif req.symbol_id >= len(self.histories):
            status, first, records = wire.BackfillStatus.UNKNOWN_SYMBOL, 0, empty
        else:
            first, records = self.histories[req.symbol_id].get(req.from_seq, req.to_seq, wire.MAX_BATCH_TICKS)
            status = wire.BackfillStatus.OK if len(records) else wire.BackfillStatus.GONE
        self.backfills_served += 1
        self._send(router, peer, wire.encode_backfill_response(req.req_id, self.session_id, req.symbol_id,
                                                               status, first, records))

    # ------------------------------------------------------------------ MT5 order thread
    def _order_loop(self, handoff: zmq.Socket) -> None:
        orders = self._orders
        while not self._stop.is_set():
            try:
                handoff.recv()  # a wake-up (the requests are on the deque), or Again after RCVTIMEO
                while True:
                    handoff.recv(zmq.NOBLOCK)
            except zmq.Again:
                pass
            while orders and not self._stop.is_set():
                req = orders.popleft()
                try:
                    result = self.desk.execute(req)
                except Exception as exc:  # a terminal bug must not kill the order thread
                    log.exception("order %d failed inside the bridge", req.req_id)
                    result = wire.OrderResult(req.req_id, wire.OrderStatus.UNKNOWN, 0, 0, 0, 0.0, 0.0, 0.0, 0.0,
                                              f"bridge error: {type(exc).__name__}", 0, 0, (-1, str(exc)[:120]))
                frame = wire.encode_order_result(result)
                peers = self.idempotency.finish(result)
                handoff.send_multipart((result.req_id.to_bytes(8, "little"), frame, *peers))
        handoff.close(0)
