"""BridgeBroker: the trading step's orders to MT5 through the bridge's order protocol.

The TradingEngine's hot path never waits for the network: :meth:`BridgeBroker.send` posts the
request on the order client's DEALER and returns ``pending``; the ACK and RESULT are picked up
by :meth:`BridgeBroker.on_quote`, the polling hook the engine calls on every tick, which
returns the reports of orders completed since.

Identity: an order's req_id is the one its journal gave it (``namespace << 32 | sequence``,
see :class:`flowchain.store.NodeIdentity`), unique across nodes, databases and restarts, and
its MT5 comment is ``fc`` + that req_id in hex (18 characters), so the terminal's deals,
orders and positions of this node start with the node's :attr:`~NodeIdentity.comment_prefix`
and reconciliation by magic + comment finds only this very order. A resend of a req_id (after
a missed deadline, or by :meth:`settle` after a restart) carries the same content and is
answered by the bridge's idempotency log or found in the terminal: it never trades twice.

Positions and PnL are the terminal's: :meth:`sync` (at start, before the first decision) and
an account query every ``sync_every_s`` (posted from the polling hook, answered between
orders) read the positions of this node's magic and comment prefix, net per symbol with their
profit, and the realized profit of its deals since the start of the UTC day, all in the
account currency as MT5 reports them. Fills in between move the position at once; the PnL
follows at the next account state.

Back-pressure: :meth:`capacity` is how many orders may be in flight, from how long the bridge
takes per order (``mt5_ns`` of its RESULTs) and the order deadline; the engine refuses more.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import zmq
from flowchain_bridge import wire
from flowchain_bridge.client import OrderClient

from flowchain.store import NodeIdentity
from flowchain.trading.orders import (
    FILLED,
    NOT_SENT,
    PENDING,
    REJECTED,
    UNKNOWN,
    AccountUnavailableError,
    BrokerReport,
    OrderRequest,
)

ORDER_TYPE_BUY = 0
ORDER_TYPE_SELL = 1
ORDER_FILLING_IOC = 1
FILL_RETCODES = frozenset({10008, 10009, 10010})
"""MT5 retcodes of an executed order: PLACED, DONE, DONE_PARTIAL."""
_LONG_PAST_NS = 1
"""The deadline of a look-up: a request the bridge never had is never executable."""
_MAX_REPLIES_PER_POLL = 256
_MS_PER_DAY = 86_400_000
SYNC_RETRY_S = 0.2
"""How often :meth:`BridgeBroker.sync` asks again while the terminal cannot be read."""
CAPACITY_SHARE = 0.8
"""Share of an order's deadline the orders in flight may fill at the bridge's measured pace."""


class BridgeUnreachableError(ConnectionError):
    """The bridge did not answer at its endpoint in time."""


def order_comment(req_id: int) -> str:
    """The MT5 comment of the order ``req_id``: ``fc`` + 16 hex digits (within MT5's 31)."""
    return f"fc{req_id:016x}"


def report_of(client_order_id: str, result: wire.OrderResult) -> BrokerReport:
    """Map a bridge RESULT to the trading step's report.

    ``SENT`` with a fill retcode and ``RECONCILED_FILLED`` are ``filled``; ``SENT`` with any
    other retcode is ``rejected`` (the retcode says why: requote, reject, market closed ...);
    a request the bridge never sent (expired, invalid, refused by order_check, terminal
    disconnected, overloaded, req_id conflict) is ``rejected``; ``RECONCILED_ABSENT`` (no trade
    exists) is ``not_sent``; ``UNKNOWN`` stays ``unknown`` for a later reconciliation.
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
    return BrokerReport(client_order_id, state, result.price, result.volume, result.retcode, comment,
                        result.deal, result.order)


class _InFlight:
    """An order posted to the bridge whose RESULT has not come yet."""

    __slots__ = ("client_order_id", "request", "resend_at", "reported_unknown")

    def __init__(self, client_order_id: str, request: wire.OrderRequest, resend_at: float) -> None:
        self.client_order_id = client_order_id
        self.request = request
        self.resend_at = resend_at
        self.reported_unknown = False


class BridgeBroker:
    """A :class:`~flowchain.trading.orders.Broker` over the MT5 bridge's order protocol.

    Parameters
    ----------
    client : OrderClient
        The order client connected to the bridge's ROUTER (closed by :meth:`close`).
    identity : NodeIdentity, optional
        The node's identity (its journal's): the comment prefix its account queries match.
        Without one, the broker reads no account state (positions then come from its fills
        only, PnL stays 0).
    deadline_ms : float, optional
        Each order's deadline: past it the bridge does not send it.
    grace_ms : float, optional
        After the deadline, how long a RESULT may still take before the order is reported
        ``unknown`` and its req_id is resent to reconcile it (never a new trade).
    resend_every_ms : float, optional
        Period of those reconciling resends while no answer comes.
    lookup_timeout_s : float, optional
        How long :meth:`settle` (and :meth:`lookup`) wait for the bridge.
    magic : int, optional
        The MT5 magic number of this node's orders.
    deviation : int, optional
        Accepted slippage in points from the quote the decision was made on.
    type_filling : int, optional
        MT5 filling mode (IOC by default).
    sync_every_s : float, optional
        Period of the account queries that refresh positions and PnL from the terminal.
    clock_ms : callable, optional
        Wall-clock ms since the epoch (the trading day of the account queries).

    Raises
    ------
    ValueError
        If a period is not positive.
    """

    wants_quotes = True

    def __init__(self, client: OrderClient, *, identity: NodeIdentity | None = None,
                 deadline_ms: float = 2_000.0, grace_ms: float = 1_000.0,
                 resend_every_ms: float = 1_000.0, lookup_timeout_s: float = 5.0,
                 magic: int = 20_240_601, deviation: int = 20,
                 type_filling: int = ORDER_FILLING_IOC, sync_every_s: float = 1.0,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        if min(deadline_ms, grace_ms, resend_every_ms, lookup_timeout_s, sync_every_s) <= 0:
            raise ValueError(f"BridgeBroker: deadline_ms, grace_ms, resend_every_ms, lookup_timeout_s "
                             f"and sync_every_s must be positive, got {deadline_ms}, {grace_ms}, "
                             f"{resend_every_ms}, {lookup_timeout_s}, {sync_every_s}")
        self.client = client
        self.identity = identity
        self.deadline_ns = int(deadline_ms * 1e6)
        self.grace_s = grace_ms / 1e3
        self.resend_every_s = resend_every_ms / 1e3
        self.lookup_timeout_s = lookup_timeout_s
        self.magic = magic
        self.deviation = deviation
        self.type_filling = type_filling
        self.sync_every_s = sync_every_s
        self._clock_ms = clock_ms
        self._inflight: dict[int, _InFlight] = {}
        self._ids: dict[str, int] = {}
        """Client order id -> req_id of the orders in flight."""
        self._ready: list[BrokerReport] = []
        self._positions: dict[str, float] = {}
        self._unrealized = 0.0
        self._realized = 0.0
        self._next_sync = 0.0
        self._query_out = 0
        """req_id of the account query awaiting its answer (0: none)."""
        self._query_given_up = 0.0
        self.account: wire.AccountState | None = None
        """The latest account state the bridge sent (None before the first)."""
        self.order_ns = 0.0
        """Moving average of the bridge's time per order (its RESULTs' ``mt5_ns``)."""
        self.fills = 0
        self.resends = 0
        """Reconciling resends of a req_id (each answered from the bridge's idempotency log)."""
        self.resends_blocked = 0
        """Reconciling resends deferred because the client's send queue was full."""
        self.stray_replies = 0
        """ACKs/RESULTs for no order in flight (a late duplicate, or another client's id)."""
        self.syncs = 0
        """Account states applied."""

    @classmethod
    def connect(cls, endpoint: str, timeout_s: float = 5.0, *, secret_key: str | None = None,
                server_public_key: str | None = None, allow_remote: bool = False,
                context: zmq.Context | None = None, **options) -> BridgeBroker:
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
    def _wire_request(self, order: OrderRequest, req_id: int, deadline_ns: int) -> wire.OrderRequest:
        return wire.OrderRequest(
            req_id, deadline_ns, order.symbol, ORDER_TYPE_BUY if order.side > 0 else ORDER_TYPE_SELL,
            order.volume, order.price, deviation=self.deviation, magic=self.magic,
            comment=order_comment(req_id), type_filling=self.type_filling)

    def send(self, order: OrderRequest) -> BrokerReport:
        """Post ``order`` to the bridge without waiting; return ``pending``.

        Its req_id is ``order.req_id`` (the journal's); an order without one gets a fresh
        random-prefixed id from the client (it can then be settled only while in flight).

        Raises
        ------
        zmq.Again
            If the client's send queue is full (the engine journals the order ``unknown``).
        wire.FrameError, struct.error
            If a field cannot travel (e.g. a symbol too long).
        """
        req_id = order.req_id or self.client.next_req_id()
        request = self._wire_request(order, req_id, time.time_ns() + self.deadline_ns)
        self.client.post(request)
        self._inflight[req_id] = _InFlight(order.client_order_id, request,
                                           time.monotonic() + self.deadline_ns / 1e9 + self.grace_s)
        self._ids[order.client_order_id] = req_id
        return BrokerReport(order.client_order_id, PENDING, 0.0, order.volume, 0, "sent to the MT5 bridge")

    def on_quote(self, symbol: str, bid: float, ask: float, time_msc: int) -> tuple:
        """Return the reports of orders answered since (maybe empty); refresh the account state
        every ``sync_every_s``.

        Never blocks: it reads only the replies already received. An order whose RESULT is
        overdue is reported ``unknown`` once and its req_id resent (the bridge answers from its
        idempotency log; nothing trades twice) until an answer comes.
        """
        if self.identity is not None:
            now = time.monotonic()
            if now >= self._next_sync:
                self._next_sync = now + self.sync_every_s
                if not self._query_out or now >= self._query_given_up:  # unanswered: ask again
                    self._post_query()
        if not self._inflight and not self._ready and not self._query_out:
            return ()
        self._drain(0)
        if self._inflight:
            self._resend_overdue()
        if not self._ready:
            return ()
        done, self._ready = tuple(self._ready), []
        return done

    def settle(self, order: OrderRequest) -> BrokerReport | None:
        """Ask the bridge what became of a journaled order, by resending it (never a new trade).

        The request carries the order's req_id and content, the RESEND flag and a deadline long
        past: the bridge answers its cached RESULT, or (pending) its RESULT once executed; a
        bridge that no longer knows the req_id (it restarted, or forgot it) finds the order in
        the terminal by magic and comment (RECONCILED_FILLED) and otherwise answers EXPIRED, as
        the order can no longer be sent.

        Returns
        -------
        BrokerReport or None
            The order's report; ``pending`` when the bridge is still executing it after
            ``lookup_timeout_s`` (its RESULT then comes through :meth:`on_quote`); None when
            the bridge never traded it.

        Raises
        ------
        BridgeUnreachableError
            If the bridge did not answer within ``lookup_timeout_s`` (the outcome stays unknown).
        LookupError
            If the bridge refused the look-up as a req_id conflict (another request holds it).
        """
        req_id = order.req_id or self._ids.get(order.client_order_id, 0)
        if not req_id:
            raise LookupError(f"order {order.client_order_id} has no req_id (journaled before order "
                              "identities, or not journaled): look for it in the terminal by hand")
        known = self._inflight.get(req_id)
        request = (known.request if known is not None
                   else self._wire_request(order, req_id, _LONG_PAST_NS))._replace(resend=True)
        self.client.post(request)
        give_up = time.monotonic() + self.lookup_timeout_s
        acked = None
        while (left_ms := int((give_up - time.monotonic()) * 1000)) > 0:
            reply = self.client.receive(left_ms)
            if reply is None:
                continue
            if reply.req_id != req_id or type(reply) is wire.AccountState:
                self._on_reply(reply)
                continue
            if type(reply) is wire.OrderAck:
                acked = reply
                continue
            self._inflight.pop(req_id, None)
            self._ids.pop(order.client_order_id, None)
            if reply.status is wire.OrderStatus.REQ_ID_CONFLICT:
                raise LookupError(f"order {order.client_order_id}: the bridge holds req_id "
                                  f"{req_id:#x} for another request ({reply.comment})")
            if reply.status is wire.OrderStatus.EXPIRED and not reply.replayed:
                return None  # this resend was the first the bridge heard of it: never traded
            report = report_of(order.client_order_id, reply)
            self._account(request, reply, report)
            return report
        if acked is not None and acked.status is wire.AckStatus.DUPLICATE_PENDING:
            if known is None:
                self._inflight[req_id] = _InFlight(order.client_order_id, request,
                                                   time.monotonic() + self.grace_s)
                self._ids[order.client_order_id] = req_id
            return BrokerReport(order.client_order_id, PENDING, comment="the bridge is still executing it")
        raise BridgeUnreachableError(
            f"the MT5 bridge at {self.client.endpoint} did not answer a look-up of order "
            f"{order.client_order_id} within {self.lookup_timeout_s:g} s")

    def lookup(self, client_order_id: str) -> BrokerReport | None:
        """:meth:`settle` an order this broker sent and has not heard the end of.

        Raises
        ------
        LookupError
            If this broker holds no such order in flight (settle journaled orders with
            :meth:`settle`, which carries their req_id and content).
        BridgeUnreachableError
            As :meth:`settle`.
        """
        req_id = self._ids.get(client_order_id)
        flight = self._inflight.get(req_id) if req_id else None
        if flight is None:
            raise LookupError(f"order {client_order_id} is not in flight on this broker; settle it "
                              "from its journal (BridgeBroker.settle)")
        req = flight.request
        order = OrderRequest(client_order_id, req.symbol, 1 if req.type == ORDER_TYPE_BUY else -1,
                             req.volume, req.price, req.price, 0, req_id)
        return self.settle(order)

    def wait_reports(self, timeout_s: float) -> tuple:
        """Wait up to ``timeout_s`` for every order in flight to be answered; return the
        reports that came (the node's shutdown: its journal then holds every outcome)."""
        give_up = time.monotonic() + timeout_s
        while self._inflight and (left_ms := int((give_up - time.monotonic()) * 1000)) > 0:
            self._drain(min(left_ms, 50))
            self._resend_overdue()
        done, self._ready = tuple(self._ready), []
        return done

    def sync(self, timeout_s: float | None = None) -> wire.AccountState:
        """Read this node's positions and day's deals from the terminal now (blocking); return
        the account state applied.

        Raises
        ------
        RuntimeError
            If the broker has no identity to match the terminal's records with.
        BridgeUnreachableError
            If no account state came within ``timeout_s`` (``lookup_timeout_s`` by default).
        AccountUnavailableError
            If the bridge could not read the terminal during all that time (it asks again every
            :data:`SYNC_RETRY_S` meanwhile: a terminal reconnecting is waited for).
        """
        if self.identity is None:
            raise RuntimeError("BridgeBroker.sync needs the node's identity (identity=...)")
        query_id = self._post_query()
        give_up = time.monotonic() + (self.lookup_timeout_s if timeout_s is None else timeout_s)
        unavailable = False
        while (left_ms := int((give_up - time.monotonic()) * 1000)) > 0:
            reply = self.client.receive(left_ms)
            if reply is None:
                continue
            self._on_reply(reply)
            if type(reply) is wire.AccountState and reply.req_id == query_id:
                if reply.status is wire.AccountStatus.OK:
                    return reply
                unavailable = True
                time.sleep(min(SYNC_RETRY_S, max(0.0, give_up - time.monotonic())))
                query_id = self._post_query()
        if unavailable:
            raise AccountUnavailableError(
                f"the MT5 bridge at {self.client.endpoint} could not read the terminal's "
                "positions and deals (terminal not connected?)")
        raise BridgeUnreachableError(
            f"the MT5 bridge at {self.client.endpoint} sent no account state within "
            f"{self.lookup_timeout_s if timeout_s is None else timeout_s:g} s")

    def position(self, symbol: str) -> float:
        """Return the net position of ``symbol`` in lots (the terminal's, plus fills since)."""
        return self._positions.get(symbol, 0.0)

    def positions(self) -> dict[str, float]:
        """Return ``{symbol: net lots}`` of the open positions."""
        return {s: v for s, v in self._positions.items() if v}

    def pnl(self) -> float:
        """Return the terminal's figures for this node: realized profit of the day's deals plus
        the open positions' profit, in the account currency (as of the latest account state)."""
        return self._realized + self._unrealized

    def daily_pnl(self) -> float:
        """Return today's PnL for the daily-loss limit: :meth:`pnl` (the day's deals from the
        terminal, not from zero at each start, and the open positions' profit)."""
        return self._realized + self._unrealized

    def in_flight(self) -> int:
        """Return how many orders await their RESULT."""
        return len(self._inflight)

    def capacity(self) -> int:
        """Return how many orders may be in flight at once: as many as the bridge, at its
        measured pace per order, executes within :data:`CAPACITY_SHARE` of a deadline (1 until
        a RESULT has measured it)."""
        per_order = self.order_ns
        if not per_order:
            return 1
        return max(1, int(self.deadline_ns * CAPACITY_SHARE / per_order))

    def close(self) -> None:
        """Close the order client."""
        self.client.close()

    # ------------------------------------------------------------------ internals
    def _post_query(self) -> int:
        assert self.identity is not None
        query_id = self.client.next_req_id()
        day = self._clock_ms() // _MS_PER_DAY
        try:
            self.client.post_query(wire.AccountQuery(query_id, self.magic, self.identity.comment_prefix,
                                                     day * (_MS_PER_DAY // 1000)))
        except zmq.Again:  # the send queue is full: the next poll asks again
            return 0
        self._query_out = query_id
        self._query_given_up = time.monotonic() + self.lookup_timeout_s
        return query_id

    def _apply(self, state: wire.AccountState) -> None:
        if state.req_id == self._query_out:
            self._query_out = 0
        if state.status is not wire.AccountStatus.OK:
            return
        self.account = state
        self._positions = {row.symbol: row.net_volume for row in state.symbols}
        self._unrealized = sum(row.profit for row in state.symbols)
        self._realized = state.realized
        self.syncs += 1

    def _drain(self, timeout_ms: int) -> None:
        receive = self.client.receive
        for _ in range(_MAX_REPLIES_PER_POLL):
            reply = receive(timeout_ms)
            if reply is None:
                return
            self._on_reply(reply)
            timeout_ms = 0

    def _on_reply(self, reply: wire.OrderAck | wire.OrderResult | wire.AccountState) -> None:
        kind = type(reply)
        if kind is wire.OrderAck:
            if reply.req_id not in self._inflight:
                self.stray_replies += 1
            return
        if kind is wire.AccountState:
            self._apply(reply)
            return
        flight = self._inflight.pop(reply.req_id, None)
        if flight is None:
            self.stray_replies += 1
            return
        self._ids.pop(flight.client_order_id, None)
        report = report_of(flight.client_order_id, reply)
        self._account(flight.request, reply, report)
        self._ready.append(report)

    def _account(self, request: wire.OrderRequest, result: wire.OrderResult,
                 report: BrokerReport) -> None:
        if result.status is wire.OrderStatus.SENT and result.mt5_ns > 0 and not result.replayed:
            self.order_ns += (result.mt5_ns - self.order_ns) * 0.25 if self.order_ns else result.mt5_ns
        if report.state != FILLED or result.volume <= 0:
            return
        qty = result.volume if request.type == ORDER_TYPE_BUY else -result.volume
        self._positions[request.symbol] = round(self._positions.get(request.symbol, 0.0) + qty, 8)
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
                self.client.post(flight.request._replace(resend=True))  # same req_id: never a second trade
            except zmq.Again:  # the send queue is full: the next poll tries again
                self.resends_blocked += 1
            else:
                self.resends += 1
            flight.resend_at = now + self.resend_every_s
