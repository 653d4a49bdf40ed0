"""The node's order client: a DEALER that sends a request, then waits for its ACK and RESULT.

Resends the *same* req_id when no ACK comes in time (the bridge's idempotency log makes that
safe), until the request's deadline; never invents a new req_id for the same order.
Synchronous pyzmq: call it from a thread (``loop.run_in_executor``) in an asyncio node.
"""
from __future__ import annotations

import itertools
import secrets
import time
from pathlib import Path

import zmq

from flowchain import keys, wire


class OrderTimeout(TimeoutError):
    """No RESULT came before the deadline; the order's outcome is unknown to the node."""


class OrderClient:
    """Send orders to a bridge's ROUTER and collect ACK then RESULT.

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

    Raises
    ------
    keys.InsecureEndpointError
        For a non-loopback endpoint without keys or ``allow_remote``.
    """

    def __init__(self, endpoint: str, *, secret_key: Path | str | None = None,
                 server_public_key: Path | str | None = None, allow_remote: bool = False,
                 context: zmq.Context | None = None) -> None:
        keys.check_endpoint(endpoint, secured=bool(secret_key), allow_remote=allow_remote)
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        if secret_key:
            if not server_public_key:
                raise ValueError("secret_key given without server_public_key (the bridge's .key file)")
            keys.secure_client(self._socket, secret_key, server_public_key)
        self._socket.connect(endpoint)
        self._ids = itertools.count(secrets.randbits(48) << 14)
        self.rejects = wire.RejectCounts()
        self.acks: dict[int, wire.OrderAck] = {}
        self.resends = 0

    def next_req_id(self) -> int:
        """A fresh req_id (random high bits per client, then counting)."""
        return next(self._ids)

    def send(self, request: wire.OrderRequest, ack_timeout_s: float = 0.5) -> wire.OrderResult:
        """Send ``request`` and return its RESULT, resending the same req_id while unanswered.

        Raises
        ------
        OrderTimeout
            When the deadline passes without a RESULT (the outcome is then unknown: reconcile
            by resending the same req_id later, which returns the cached RESULT).
        """
        frame = wire.encode_order_request(request)
        self._socket.send(frame)
        acked = False
        last_send = time.monotonic()
        while True:
            remaining_s = (request.deadline_ns - time.time_ns()) / 1e9
            if remaining_s <= 0 and not acked:
                raise OrderTimeout(f"order {request.req_id}: no ACK before its deadline")
            wait_s = min(ack_timeout_s, max(remaining_s, 0.0)) if not acked else max(remaining_s, 0.0) + 5.0
            if self._socket.poll(int(max(wait_s, 0.001) * 1000), zmq.POLLIN):
                reply = self._socket.recv()
                try:
                    ftype = wire.frame_type(reply)
                    if ftype is wire.FrameType.ORDER_ACK:
                        ack = wire.decode_order_ack(reply)
                        if ack.req_id == request.req_id:
                            acked = True
                            self.acks[ack.req_id] = ack
                    elif ftype is wire.FrameType.ORDER_RESULT:
                        result = wire.decode_order_result(reply)
                        if result.req_id == request.req_id:
                            return result
                    else:
                        raise wire.FrameError("wrong_type", f"{ftype.name} on the order socket")
                except wire.FrameError as err:
                    self.rejects.count(err.reason)
                continue
            if acked:
                raise OrderTimeout(f"order {request.req_id}: ACKed but no RESULT in time")
            if time.monotonic() - last_send >= ack_timeout_s:
                self._socket.send(frame)  # same req_id: the bridge never trades it twice
                self.resends += 1
                last_send = time.monotonic()

    def close(self) -> None:
        """Close the socket (and the context when it is ours)."""
        self._socket.close(0)
        if self._own_context:
            self._context.term()

    def __enter__(self) -> "OrderClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
