"""The node's order client: a DEALER that sends a request, then waits for its ACK and RESULT.

Resends the *same* req_id, flagged RESEND, when no ACK comes in time, until the request's
deadline; never invents a new req_id for the same order. The bridge's idempotency log makes
that safe, and for a bridge that no longer knows the req_id (it restarted) the RESEND flag makes
it look for the order in the terminal before anything (docs/protocol.md). A reply may come as
one message of two frames, ACK then RESULT: each ``recv`` reads one frame.
Synchronous pyzmq. :meth:`OrderClient.send` blocks (call it from a thread in an asyncio node);
:meth:`OrderClient.post` and :meth:`OrderClient.receive` never block.
"""
from __future__ import annotations

import itertools
import secrets
import time
from collections import OrderedDict
from pathlib import Path

import zmq

from flowchain_bridge import keys, wire

_ACK = int(wire.FrameType.ORDER_ACK)
_RESULT = int(wire.FrameType.ORDER_RESULT)
_ACCOUNT_STATE = int(wire.FrameType.ACCOUNT_STATE)
_RESULT_GRACE_NS = 5_000_000_000
"""How long past the deadline :meth:`OrderClient.send` still waits for the RESULT of an ACKed
order (the bridge may have started it just before the deadline)."""


class OrderTimeout(TimeoutError):
    """No RESULT came before the deadline; the order's outcome is unknown to the node."""


class OrderClient:
    """Send orders to a bridge's ROUTER and collect ACK then RESULT.

    Two ways to use it: :meth:`send` blocks until the RESULT (scripts, tests, benchmarks);
    :meth:`post` plus :meth:`receive` never block (a node's hot path: post the request, then
    pick up ACKs and RESULTs whenever it polls).

    Parameters
    ----------
    endpoint
        The bridge's ROUTER endpoint.
    secret_key, server_public_key
        The node's ``.key_secret`` and the bridge's public ``.key``: Curve on.
    allow_remote
        Connect outside loopback without keys.
    context
        A ZeroMQ context (a new one by default).
    acks_kept
        How many of the latest ACKs :attr:`acks` keeps (oldest forgotten first).

    Raises
    ------
    keys.InsecureEndpointError
        For a non-loopback endpoint without keys or ``allow_remote``.
    """

    def __init__(self, endpoint: str, *, secret_key: Path | str | None = None,
                 server_public_key: Path | str | None = None, allow_remote: bool = False,
                 context: zmq.Context | None = None, acks_kept: int = 1024) -> None:
        keys.check_endpoint(endpoint, secured=bool(secret_key), allow_remote=allow_remote)
        self.endpoint = endpoint
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE_BYTES)
        if secret_key:
            if not server_public_key:
                raise ValueError("secret_key given without server_public_key (the bridge's .key file)")
            keys.secure_client(self._socket, secret_key, server_public_key)
        self._socket.connect(endpoint)
        self._rcvtimeo = -1
        self._ids = itertools.count(secrets.randbits(48) << 14)
        self.rejects = wire.RejectCounts()
        self.acks: OrderedDict[int, wire.OrderAck] = OrderedDict()
        """The latest ACKs by req_id (at most ``acks_kept``)."""
        self._acks_kept = acks_kept
        self.resends = 0
        self.stray = 0
        """Replies for another req_id than the one :meth:`send` waited for (dropped, counted)."""

    def next_req_id(self) -> int:
        """A fresh req_id (random high bits per client, then counting)."""
        return next(self._ids)

    # ------------------------------------------------------------------ non-blocking
    def post(self, request: wire.OrderRequest) -> None:
        """Queue ``request`` for the bridge without waiting (ZeroMQ sends it in the background).

        Raises
        ------
        zmq.Again
            When the socket's send queue is full (the bridge has not read for a long while).
        wire.FrameError, struct.error
            When a field cannot travel (a symbol too long, a number out of range).
        """
        self._socket.send(wire.encode_order_request(request), zmq.NOBLOCK)

    def post_query(self, query: wire.AccountQuery) -> None:
        """Queue an account query for the bridge without waiting; its :class:`wire.AccountState`
        comes back through :meth:`receive`, after the RESULTs of the orders the bridge finished
        before it (one socket, one order thread: the state includes exactly those).

        Raises
        ------
        zmq.Again
            When the socket's send queue is full.
        """
        self._socket.send(wire.encode_account_query(query), zmq.NOBLOCK)

    def receive(self, timeout_ms: int = 0) -> wire.OrderAck | wire.OrderResult | wire.AccountState | None:
        """Return the next ACK, RESULT or account state, waiting at most ``timeout_ms`` (0: not
        at all; -1: forever).

        ACKs are also kept in :attr:`acks`. A malformed reply is counted in :attr:`rejects` and
        skipped; None when nothing valid came in time.
        """
        sock = self._socket
        if timeout_ms == 0 and not sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            return None  # the polling hook's usual case, without raising zmq.Again
        if timeout_ms != self._rcvtimeo:
            sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
            self._rcvtimeo = timeout_ms
        while True:
            try:
                reply = sock.recv()
            except zmq.Again:
                return None
            try:  # dispatch on the type byte; the decoders check the rest
                kind = reply[1] if len(reply) > 1 else -1
                if kind == _RESULT:
                    return wire.decode_order_result(reply)
                if kind == _ACK:
                    ack = wire.decode_order_ack(reply)
                    self._keep_ack(ack)
                    return ack
                if kind == _ACCOUNT_STATE:
                    return wire.decode_account_state(reply)
                raise wire.FrameError("wrong_type", f"{wire.frame_type(reply).name} on the order socket")
            except wire.FrameError as err:
                self.rejects.count(err.reason)

    def _keep_ack(self, ack: wire.OrderAck) -> None:
        acks = self.acks
        acks[ack.req_id] = ack
        if len(acks) > self._acks_kept:
            acks.popitem(last=False)

    # ------------------------------------------------------------------ blocking
    def send(self, request: wire.OrderRequest, ack_timeout_s: float = 0.5) -> wire.OrderResult:
        """Send ``request`` and return its RESULT, resending the same req_id while unanswered.

        Raises
        ------
        OrderTimeout
            When the deadline passes without a RESULT (the outcome is then unknown: reconcile
            by resending the same req_id later, which returns the cached RESULT).
        zmq.Again
            When the socket's send queue is full.
        """
        self.post(request)
        req_id = request.req_id
        deadline_ns = request.deadline_ns
        # The same wait for every receive (RCVTIMEO is set again only when a deadline is near).
        wait_ms = max(1, int(ack_timeout_s * 1000))
        acked = False
        last_send = time.monotonic()
        while True:
            timeout_ms = wait_ms
            if not acked:
                remaining_ms = (deadline_ns - time.time_ns()) // 1_000_000
                if remaining_ms <= 0:
                    raise OrderTimeout(f"order {req_id}: no ACK from {self.endpoint} before its deadline")
                timeout_ms = min(wait_ms, remaining_ms)
            reply = self.receive(timeout_ms)
            if reply is not None:
                if reply.req_id != req_id or type(reply) is wire.AccountState:
                    self.stray += 1
                elif type(reply) is wire.OrderResult:
                    return reply
                else:
                    acked = True
                continue
            if acked:
                if time.time_ns() > deadline_ns + _RESULT_GRACE_NS:
                    raise OrderTimeout(f"order {req_id}: ACKed by {self.endpoint} but no RESULT in time")
                continue
            if time.monotonic() - last_send >= ack_timeout_s:
                self.post(request._replace(resend=True))  # same req_id: never traded twice
                self.resends += 1
                last_send = time.monotonic()

    def close(self) -> None:
        """Close the socket (and the context when it is ours)."""
        self._socket.close(0)
        if self._own_context:
            self._context.term()

    def __enter__(self) -> OrderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
