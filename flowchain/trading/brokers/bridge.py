"""BridgeBroker: the trading step's orders to MT5 through the bridge's order protocol.

The TradingEngine's hot path never waits for the network: :meth:`BridgeBroker.send` posts the
request on the order client's DEALER and returns ``pending``; the ACK and RESULT are picked up
by :meth:`BridgeBroker.on_quote`, the polling hook the engine calls on every tick, which
returns the reports of orders completed since.

Idempotency: a client order id maps to the protocol's u64 ``req_id`` by a stable hash (the
first 8 bytes, little-endian, of BLAKE2b of the id's UTF-8), the same in every process and
after a restart. Any resend of that req_id, by :meth:`lookup` or after a missed deadline, is
answered by the bridge's idempotency log (the cached RESULT, or the pending one): it never
trades twice. A resend carries the original deadline (or one long past, after a restart), so
a request the bridge never saw is rejected EXPIRED unsent, never executed late.
"""
from __future__ import annotations

import hashlib
import time
from typing import Optional

import zmq

from flowchain import wire
from flowchain.bridge.client import OrderClient
from flowchain.trading.orders import (
    FILLED, NOT_SENT, PENDING, REJECTED, UNKNOWN, BrokerReport, OrderRequest,
)

ORDER_TYPE_BUY = 0
ORDER_TYPE_SELL = 1
ORDER_FILLING_IOC = 1
FILL_RETCODES = frozenset({10008, 10009, 10010})
"""MT5 retcodes of an executed order: PLACED, DONE, DONE_PARTIAL."""
_NEVER_SENT = frozenset({wire.OrderStatus.EXPIRED, wire.OrderStatus.INVALID,
                         wire.OrderStatus.CHECK_FAILED, wire.OrderStatus.DISCONNECTED})
_LONG_PAST_NS = 1
"""The deadline of a lookup whose original deadline is unknown: never executable."""
_MAX_REPLIES_PER_POLL = 256


class BridgeUnreachableError(ConnectionError):
    """The bridge did not answer at its endpoint in time."""


def _order_comment(client_order_id: str) -> str:
    """The MT5 comment of an order: its client order id when that fits MT5's 31 bytes, else
    empty (the bridge then writes ``fc<req_id hex>``)."""
    return client_order_id if len(client_order_id.encode("utf-8")) <= 31 else ""


def req_id_of(client_order_id: str) -> int:
    """Return the protocol req_id of a client order id (stable across processes and restarts)."""
    digest = hashlib.blake2b(client_order_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def report_of(client_order_id: str, result: wire.OrderResult) -> BrokerReport:
    """Map a bridge RESULT to the trading step's report.

    ``SENT`` with a fill retcode and ``RECONCILED_FILLED`` are ``filled``; ``SENT`` with any
    other retcode is ``rejected`` (the retcode says why: requote, reject, market closed ...);
    a request the bridge never sent (expired, invalid, refused by order_check, terminal
    disconnected) is ``rejected``; ``RECONCILED_ABSENT`` (no trade exists) is ``not_sent``;
    ``UNKNOWN`` stays ``unknown`` for a later reconciliation.
    """
    status = result.status
    if status is wire.OrderStatus.SENT and result.retcode in FILL_RETCODES or \
            status is wire.OrderStatus.RECONCILED_FILLED:
        state = FILLED
    elif status is wire.OrderStatus.RECONCILED_ABSENT:
        state = NOT_SENT
    elif status is wire.OrderStatus.UNKNOWN:
        state = UNKNOWN
    else:  # SENT with a refusal retcode, or never sent
        state = REJECTED
    comment = result.comment if status is wire.OrderStatus.SENT else f"{status.name.lower()}: {result.comment}"
    return BrokerReport(client_order_id, state, result.price, result.volume, result.retcode, comment)


class _InFlight:
    """An order posted to the bridge whose RESULT has not come yet."""

    __slots__ = ("client_order_id", "request", "resend_at", "reported_unknown")

    def __init__(self, client_order_id: str, request: wire.OrderRequest, resend_at: float) -> None:
        self.client_order_id = client_order_id
        self.request = request
        self.resend_at = resend_at
        self.reported_unknown = False


class _Book:
    __slots__ = ("position", "avg_price", "realized", "bid", "ask")

    def __init__(self) -> None:
        self.position = self.avg_price = self.realized = self.bid = self.ask = 0.0


class BridgeBroker:
    """A :class:`~flowchain.trading.orders.Broker` over the MT5 bridge's order protocol.

    Parameters
    ----------
    client : OrderClient
        The order client connected to the bridge's ROUTER (closed by :meth:`close`).
    deadline_ms : float, optional
        Each order's deadline: past it the bridge does not send it.
    grace_ms : float, optional
        After the deadline, how long a RESULT may still take before the order is reported
        ``unknown`` and its req_id is resent to reconcile it (never a new trade).
    resend_every_ms : float, optional
        Period of those reconciling resends while no answer comes.
    lookup_timeout_s : float, optional
        How long :meth:`lookup` waits for the bridge.
    magic : int, optional
        The MT5 magic number of this node's orders.
    deviation : int, optional
        Accepted slippage in points from the quote the decision was made on.
    type_filling : int, optional
        MT5 filling mode (IOC by default).
    contract_size : float, optional
        Units per lot for the PnL.

    Raises
    ------
    ValueError
        If a period is not positive.
    """

    wants_quotes = True

    def __init__(self, client: OrderClient, *, deadline_ms: float = 2_000.0, grace_ms: float = 1_000.0,
                 resend_every_ms: float = 1_000.0, lookup_timeout_s: float = 2.0, magic: int = 20_240_601,
                 deviation: int = 20, type_filling: int = ORDER_FILLING_IOC,
                 contract_size: float = 100_000.0) -> None:
        if min(deadline_ms, grace_ms, resend_every_ms, lookup_timeout_s, contract_size) <= 0:
            raise ValueError(f"BridgeBroker: deadline_ms, grace_ms, resend_every_ms, lookup_timeout_s "
                             f"and contract_size must be positive, got {deadline_ms}, {grace_ms}, "
                             f"{resend_every_ms}, {lookup_timeout_s}, {contract_size}")
        self.client = client
        self.deadline_ns = int(deadline_ms * 1e6)
        self.grace_s = grace_ms / 1e3
        self.resend_every_s = resend_every_ms / 1e3
        self.lookup_timeout_s = lookup_timeout_s
        self.magic = magic
        self.deviation = deviation
        self.type_filling = type_filling
        self.contract_size = contract_size
        self._inflight: dict[int, _InFlight] = {}
        self._ready: list[BrokerReport] = []
        self._books: dict[str, _Book] = {}
        self.fills = 0
        self.resends = 0
        """Reconciling resends of a req_id (each answered from the bridge's idempotency log)."""
        self.resends_blocked = 0
        """Reconciling resends deferred because the client's send queue was full."""
        self.stray_replies = 0
        """ACKs/RESULTs for no order in flight (a late duplicate, or another client's id)."""

    @classmethod
    def connect(cls, endpoint: str, timeout_s: float = 5.0, *, secret_key: Optional[str] = None,
                server_public_key: Optional[str] = None, allow_remote: bool = False,
                context: Optional[zmq.Context] = None, **options) -> "BridgeBroker":
        """Connect to the bridge at ``endpoint`` and check that it answers; return the broker.

        The check is a request that cannot trade: a fresh req_id whose deadline is long past,
        which the bridge ACKs and answers EXPIRED without calling MT5.

        Raises
        ------
        BridgeUnreachableError
            If the bridge did not answer within ``timeout_s`` (it names the endpoint).
        keys.InsecureEndpointError
            For a non-loopback endpoint without keys or ``allow_remote``.
        """
        client = OrderClient(endpoint, secret_key=secret_key, server_public_key=server_public_key,
                             allow_remote=allow_remote, context=context)
        try:
            probe = wire.OrderRequest(client.next_req_id(), _LONG_PAST_NS, "PROBE", ORDER_TYPE_BUY, 0.01)
            client.post(probe)
            give_up = time.monotonic() + timeout_s
            while (left_ms := int((give_up - time.monotonic()) * 1000)) > 0:
                reply = client.receive(left_ms)
                if reply is not None and reply.req_id == probe.req_id:
                    return cls(client, **options)
        except BaseException:
            client.close()
            raise
        client.close()
        raise BridgeUnreachableError(
            f"the MT5 bridge at {endpoint} did not answer within {timeout_s:g} s: start it there "
            f"(`flowchain bridge`, or `flowchain bridge --fake` to test), or point the node's "
            f"broker endpoint at the address it binds")

    # ------------------------------------------------------------------ Broker protocol
    def send(self, order: OrderRequest) -> BrokerReport:
        """Post ``order`` to the bridge without waiting; return ``pending``.

        Raises
        ------
        zmq.Again
            If the client's send queue is full (the engine journals the order ``unknown``).
        wire.FrameError, struct.error
            If a field cannot travel (e.g. a symbol too long).
        """
        req_id = req_id_of(order.client_order_id)
        comment = _order_comment(order.client_order_id)
        request = wire.OrderRequest(
            req_id, time.time_ns() + self.deadline_ns, order.symbol,
            ORDER_TYPE_BUY if order.side > 0 else ORDER_TYPE_SELL, order.volume, order.price,
            deviation=self.deviation, magic=self.magic, comment=comment, type_filling=self.type_filling)
        self.client.post(request)
        self._inflight[req_id] = _InFlight(order.client_order_id, request,
                                           time.monotonic() + self.deadline_ns / 1e9 + self.grace_s)
        book = self._book(order.symbol)
        book.bid, book.ask = order.bid, order.ask
        return BrokerReport(order.client_order_id, PENDING, 0.0, order.volume, 0, "sent to the MT5 bridge")

    def on_quote(self, symbol: str, bid: float, ask: float, time_msc: int) -> tuple:
        """Mark ``symbol`` at this quote; return the reports of orders answered since (maybe empty).

        Never blocks: it reads only the replies already received. An order whose RESULT is
        overdue is reported ``unknown`` once and its req_id resent (the bridge answers from its
        idempotency log; nothing trades twice) until an answer comes.
        """
        book = self._books.get(symbol)
        if book is None:
            book = self._book(symbol)
        book.bid = bid
        book.ask = ask
        if not self._inflight and not self._ready:
            return ()
        self._drain(0)
        self._resend_overdue()
        if not self._ready:
            return ()
        done, self._ready = tuple(self._ready), []
        return done

    def lookup(self, client_order_id: str) -> Optional[BrokerReport]:
        """Ask the bridge what became of an order, by resending its req_id (never a new trade).

        Returns
        -------
        BrokerReport or None
            The bridge's cached RESULT as a report; ``pending`` if the bridge is still
            executing it; None when the order was never traded (the bridge answers EXPIRED:
            the resend's deadline is long past, so it is not executed now). The lookup is a
            RESEND: a bridge that no longer knows the req_id (it restarted, or forgot it past
            ``idempotency_size``) finds the order in the terminal by magic and comment (the
            client order id) and reports it RECONCILED_FILLED; only when the terminal holds no
            trace of it (deals of the last 10 minutes, positions, pending orders) is it EXPIRED.

        Raises
        ------
        BridgeUnreachableError
            If the bridge did not answer within ``lookup_timeout_s`` (the outcome stays unknown).
        """
        req_id = req_id_of(client_order_id)
        known = self._inflight.get(req_id)
        # A RESEND: a bridge that does not know the req_id (it restarted since) looks for the
        # order in the terminal by magic and comment before answering; the lookup's own request
        # carries the comment the order was sent with, and a deadline long past.
        request = (known.request if known is not None else wire.OrderRequest(
            req_id, _LONG_PAST_NS, "LOOKUP", ORDER_TYPE_BUY, 0.01, magic=self.magic,
            comment=_order_comment(client_order_id)))._replace(resend=True)
        self.client.post(request)
        give_up = time.monotonic() + self.lookup_timeout_s
        acked = None
        while (left_ms := int((give_up - time.monotonic()) * 1000)) > 0:
            reply = self.client.receive(left_ms)
            if reply is None:
                continue
            if reply.req_id != req_id:
                self._on_reply(reply)
                continue
            if type(reply) is wire.OrderAck:
                acked = reply
                continue
            self._inflight.pop(req_id, None)
            if reply.status is wire.OrderStatus.EXPIRED and not reply.replayed:
                return None  # this resend was the first the bridge heard of it: never traded
            report = report_of(client_order_id, reply)
            self._account(known.request if known else None, reply, report)
            return report
        if acked is not None and acked.status is wire.AckStatus.DUPLICATE_PENDING:
            if known is None:
                self._inflight[req_id] = _InFlight(client_order_id, request, time.monotonic() + self.grace_s)
            return BrokerReport(client_order_id, PENDING, comment="the bridge is still executing it")
        raise BridgeUnreachableError(
            f"the MT5 bridge at {self.client.endpoint} did not answer a lookup of order "
            f"{client_order_id} within {self.lookup_timeout_s:g} s")

    def position(self, symbol: str) -> float:
        """Return the net position of ``symbol`` in lots from this broker's fills."""
        book = self._books.get(symbol)
        return book.position if book is not None else 0.0

    def pnl(self) -> float:
        """Return realized plus unrealized PnL of this broker's fills, marked at the last quotes."""
        total = 0.0
        for book in self._books.values():
            total += book.realized
            if book.position > 0:
                total += (book.bid - book.avg_price) * book.position * self.contract_size
            elif book.position < 0:
                total += (book.ask - book.avg_price) * book.position * self.contract_size
        return total

    def in_flight(self) -> int:
        """Return how many orders await their RESULT."""
        return len(self._inflight)

    def close(self) -> None:
        """Close the order client."""
        self.client.close()

    # ------------------------------------------------------------------ internals
    def _book(self, symbol: str) -> _Book:
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = _Book()
        return book

    def _drain(self, timeout_ms: int) -> None:
        receive = self.client.receive
        for _ in range(_MAX_REPLIES_PER_POLL):
            reply = receive(timeout_ms)
            if reply is None:
                return
            self._on_reply(reply)
            timeout_ms = 0

    def _on_reply(self, reply: wire.OrderAck | wire.OrderResult) -> None:
        if type(reply) is wire.OrderAck:
            if reply.req_id not in self._inflight:
                self.stray_replies += 1
            return
        flight = self._inflight.pop(reply.req_id, None)
        if flight is None:
            self.stray_replies += 1
            return
        report = report_of(flight.client_order_id, reply)
        self._account(flight.request, reply, report)
        self._ready.append(report)

    def _account(self, request: Optional[wire.OrderRequest], result: wire.OrderResult,
                 report: BrokerReport) -> None:
        if report.state != FILLED or request is None or result.volume <= 0:
            return
        book = self._book(request.symbol)
        qty = result.volume if request.type == ORDER_TYPE_BUY else -result.volume
        price, pos = result.price, book.position
        if pos == 0.0 or (pos > 0) == (qty > 0):
            book.avg_price = (book.avg_price * abs(pos) + price * abs(qty)) / (abs(pos) + abs(qty))
        else:
            closed = min(abs(qty), abs(pos))
            book.realized += closed * (price - book.avg_price) * (1.0 if pos > 0 else -1.0) * self.contract_size
            if abs(qty) > abs(pos):
                book.avg_price = price
        book.position = round(pos + qty, 10)
        if book.position == 0.0:
            book.avg_price = 0.0
        self.fills += 1

    def _resend_overdue(self) -> None:
        now = time.monotonic()
        for flight in self._inflight.values():
            if now < flight.resend_at:
                continue
            if not flight.reported_unknown:
                flight.reported_unknown = True
                self._ready.append(BrokerReport(
                    flight.client_order_id, UNKNOWN, 0.0, flight.request.volume, 0,
                    "no RESULT from the bridge by the deadline; reconciling by resending its req_id"))
            try:
                self.client.post(flight.request)  # same req_id and deadline: never a second trade
            except zmq.Again:  # the send queue is full: the next poll tries again
                self.resends_blocked += 1
            else:
                self.resends += 1
            flight.resend_at = now + self.resend_every_s
