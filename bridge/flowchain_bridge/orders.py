"""Order execution on the bridge: idempotency by req_id, deadlines, order_check/order_send, reconcile.

The bridge's order thread (which also owns the ROUTER socket) admits requests in the
:class:`IdempotencyLog` and runs :meth:`OrderDesk.execute` for each new one, in arrival order.
The log keeps a digest of each request's content with its req_id: a req_id that comes again
with other content is refused (REQ_ID_CONFLICT), never answered with the earlier result.
After a TIMEOUT retcode, an IPC error or a ``None`` result it never resends: it looks for the
order in positions, pending orders and deals by ``magic`` and ``comment`` and answers
RECONCILED_FILLED, RECONCILED_ABSENT or UNKNOWN. Nothing here sleeps: a look-up that must wait
for the terminal's history (a reconciliation, the RESEND of a req_id this bridge does not know)
comes back as a :class:`Recheck` that the order thread runs when it is due, serving other
orders meanwhile.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, NamedTuple

from flowchain_bridge.terminal import IPC_ERRORS, TerminalLink
from flowchain_bridge.wire import (
    AccountQuery,
    AccountState,
    AccountStatus,
    AckStatus,
    OrderRequest,
    OrderResult,
    OrderStatus,
    SymbolExposure,
)

TRADE_RETCODE_DONE = 10009
TRADE_RETCODE_TIMEOUT = 10012
RECONCILE_WINDOW_S = 600
"""Deals searched after an unanswered ``order_send`` (the order was sent just now)."""
RESEND_WINDOW_S = 7 * 86_400
"""Deals searched for a RESEND of a req_id this bridge does not know: the node may have been
down for a weekend, and a deal older than the window would be taken for an order never sent."""
RECONCILE_ATTEMPTS = 3
"""Look-ups after an unanswered ``order_send`` before the outcome is UNKNOWN."""
_new = tuple.__new__
_ABSENT = object()
"""What :meth:`OrderDesk._search` returns when the terminal holds no trace of the order."""


def reconcile_comment(req: OrderRequest) -> str:
    """The comment the order carries in MT5: the request's, or ``fc`` + the req_id in 16 hex digits when empty."""
    return req.comment or f"fc{req.req_id:016x}"


def request_digest(req: OrderRequest) -> int:
    """A digest of what the request asks for: every field but ``req_id``, ``deadline_ns`` and
    the RESEND flag (a resend of the same order may carry another deadline)."""
    return hash(req[2:17])


class Recheck(NamedTuple):
    """An order whose outcome needs the terminal asked again once ``due`` (monotonic seconds)
    has come: ``kind`` is ``"resend"`` (a RESEND of a req_id this bridge does not know) or
    ``"reconcile"`` (after an unanswered ``order_send``, attempt ``attempt``)."""

    due: float
    kind: str
    req: OrderRequest
    error: tuple[int, str]
    attempt: int = 0
    started_ns: int = 0


class _Entry:
    """One req_id: its digest, its result once finished, and the peers waiting for it until then."""

    __slots__ = ("digest", "result", "waiters")

    def __init__(self, waiters: list[bytes], digest: int) -> None:
        self.result: OrderResult | None = None
        self.waiters = waiters
        self.digest = digest


class IdempotencyLog:
    """req_id -> pending or finished request, the most recent ``capacity`` of them (LRU).

    Not locked: one thread (the bridge's order thread, which owns the ROUTER) admits and
    finishes; other threads only read :func:`len`.

    Parameters
    ----------
    capacity
        How many req_ids to remember; the oldest finished ones are forgotten first, and a
        pending one never is.
    """

    def __init__(self, capacity: int = 65_536) -> None:
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._capacity = capacity
        self.conflicts = 0
        """Requests refused because their req_id was known with other content."""

    def admit(self, req_id: int, peer: bytes, digest: int = 0) -> tuple[AckStatus, OrderResult | None]:
        """Register ``peer``'s request; say whether it is new, pending or done (with its result),
        or REQ_ID_CONFLICT when the req_id is known with another ``digest`` (nothing is stored
        for it then, and the earlier request's entry is left as it was)."""
        entries = self._entries
        entry = entries.get(req_id)
        if entry is None:
            entries[req_id] = _Entry([peer], digest)
            if len(entries) > self._capacity:
                self._evict()
            return AckStatus.QUEUED, None
        if entry.digest != digest:
            self.conflicts += 1
            return AckStatus.REQ_ID_CONFLICT, None
        entries.move_to_end(req_id)
        if entry.result is None:
            if peer not in entry.waiters:
                entry.waiters.append(peer)
            return AckStatus.DUPLICATE_PENDING, None
        return AckStatus.DUPLICATE_DONE, entry.result._replace(replayed=True)

    def _evict(self) -> None:
        entries = self._entries
        while len(entries) > self._capacity:
            oldest_id, oldest = next(iter(entries.items()))
            if oldest.result is None:  # never forget a pending request
                entries.move_to_end(oldest_id)
                break
            entries.popitem(last=False)

    def finish(self, result: OrderResult) -> list[bytes]:
        """Store the result; return the peers waiting for it."""
        entry = self._entries.get(result.req_id)
        if entry is None:
            entry = self._entries[result.req_id] = _Entry([], 0)
        entry.result = result
        waiters, entry.waiters = entry.waiters, []
        return waiters

    def __len__(self) -> int:
        return len(self._entries)


class OrderDesk:
    """Turns an :class:`OrderRequest` into an :class:`OrderResult` through the terminal.

    Parameters
    ----------
    link
        The terminal link (its ``mt5`` and connection state).
    reconcile_delay_s
        Wait before reconciling, so an order still in flight reaches the history. The desk never
        sleeps it: it returns a :class:`Recheck` due then.
    clock_ns
        Wall-clock ns, compared with request deadlines.
    """

    def __init__(self, link: TerminalLink, reconcile_delay_s: float = 0.5,
                 clock_ns: Any = time.time_ns) -> None:
        self.link = link
        self.mt5 = link.mt5
        self.reconcile_delay_s = reconcile_delay_s
        self._clock_ns = clock_ns
        self.sent = 0
        self.reconciled = 0
        self.resends_checked = 0
        """RESEND requests for unknown req_ids looked for in the terminal first."""
        self.account_queries = 0
        self.order_ns = 0.0
        """Moving average of how long one ``order_send`` takes, ns: the bridge's back-pressure
        estimate (0 until an order was sent)."""

    def _result(self, req: OrderRequest, status: OrderStatus, retcode: int = 0, comment: str = "",
                error: tuple[int, str] | None = None, mt5_ns: int = 0, **fields: Any) -> OrderResult:
        values = dict(deal=0, order=0, volume=0.0, price=0.0, bid=0.0, ask=0.0, request_id=0, retcode_external=0)
        values.update(fields)
        return OrderResult(req.req_id, status, retcode, values["deal"], values["order"], values["volume"],
                           values["price"], values["bid"], values["ask"], comment, values["request_id"],
                           values["retcode_external"], error or (1, "Success"), mt5_ns)

    def refuse(self, req: OrderRequest, status: OrderStatus, comment: str) -> OrderResult:
        """A RESULT of ``status`` for a request answered without the terminal (never sent)."""
        return self._result(req, status, comment=comment[:64])

    def to_mt5(self, req: OrderRequest) -> dict[str, Any]:
        """The ``order_send`` request dict for ``req``."""
        request = {"action": req.action, "symbol": req.symbol, "volume": req.volume, "type": req.type,
                   "price": req.price, "sl": req.sl, "tp": req.tp, "deviation": req.deviation,
                   "magic": req.magic, "comment": reconcile_comment(req), "type_filling": req.type_filling,
                   "type_time": req.type_time}
        if req.position:
            request["position"] = req.position
        if req.stoplimit:
            request["stoplimit"] = req.stoplimit
        if req.expiration:
            request["expiration"] = req.expiration
        return request

    def overloaded(self, req: OrderRequest, ahead: int, now_ns: int) -> OrderResult | None:
        """The OVERLOADED refusal of ``req`` when the ``ahead`` orders queued before it, then
        itself, would take it past its deadline at :attr:`order_ns` each; None when it fits
        (or nothing was measured yet). The order thread makes the same comparison inline."""
        per_order = self.order_ns
        if not per_order or now_ns + (ahead + 1) * per_order <= req.deadline_ns:
            return None
        return self._result(req, OrderStatus.OVERLOADED, comment=(
            f"overloaded: {ahead} orders ahead at ~{per_order / 1e6:.0f} ms each would pass "
            f"its deadline")[:64])

    def execute(self, req: OrderRequest) -> OrderResult | Recheck:
        """Check the deadline and the terminal, then order_check and order_send (never twice).

        A RESEND (a req_id the node sent before, which this bridge does not know) is first
        looked for in the terminal: see :meth:`find_earlier`; with a ``reconcile_delay_s`` that
        look-up is returned as a :class:`Recheck` due after it, and so is the reconciliation of
        an unanswered ``order_send`` (see :meth:`recheck`).
        """
        if req.resend:
            if self.reconcile_delay_s:  # an order still in flight in the terminal reaches the history
                return Recheck(time.monotonic() + self.reconcile_delay_s, "resend", req, (1, "Success"))
            earlier = self.find_earlier(req)
            if earlier is not None:
                return earlier
        return self.send(req)

    def send(self, req: OrderRequest) -> OrderResult | Recheck:
        """Deadline, symbol, terminal, ``order_check``, ``order_send``; a Recheck (or, without a
        ``reconcile_delay_s``, the reconciled outcome) after an unanswered send."""
        if self._clock_ns() > req.deadline_ns:
            return self._result(req, OrderStatus.EXPIRED, comment="deadline passed before sending")
        if req.symbol not in self.link.symbols:
            return self._result(req, OrderStatus.INVALID,
                                comment=f"symbol {req.symbol} is not one this bridge streams"[:64])
        link = self.link
        if not (link.initialized or link.ensure()) or not link.connected:
            return self._result(req, OrderStatus.DISCONNECTED, comment="terminal not connected",
                                error=(link.last_error, link.last_error_message))
        mt5 = self.mt5
        request = self.to_mt5(req)
        check = mt5.order_check(request)
        if check is None or check.retcode not in (0, TRADE_RETCODE_DONE):
            error = mt5.last_error()
            if check is None:
                self.link.lost()
            return self._result(req, OrderStatus.CHECK_FAILED, check.retcode if check else 0,
                                check.comment if check else "order_check failed", error)
        if self._clock_ns() > req.deadline_ns:
            return self._result(req, OrderStatus.EXPIRED, comment="deadline passed during order_check")
        sent = time.perf_counter_ns()
        result = mt5.order_send(request)
        error = mt5.last_error()
        done = time.perf_counter_ns()
        self.sent += 1
        self.order_ns += ((done - sent) - self.order_ns) * 0.25 if self.order_ns else done - sent
        if result is None or result.retcode == TRADE_RETCODE_TIMEOUT or error[0] in IPC_ERRORS:
            if result is None:
                self.link.lost()
            self.reconciled += 1
            pending = Recheck(time.monotonic() + self.reconcile_delay_s, "reconcile", req, error, 0, sent)
            return self.recheck(pending) if not self.reconcile_delay_s else pending
        return _new(OrderResult, (req.req_id, OrderStatus.SENT, result.retcode, result.deal, result.order,
                                  result.volume, result.price, result.bid, result.ask, result.comment,
                                  result.request_id, result.retcode_external, error, done - sent, False))

    def recheck(self, pending: Recheck) -> OrderResult | Recheck:
        """Ask the terminal about a :class:`Recheck` now: its outcome, or the next Recheck.

        A RESEND found in the terminal is RECONCILED_FILLED; one the terminal cannot be asked
        about is UNKNOWN (never sent blind); one with no trace is handled as new (:meth:`send`,
        so past its deadline it is EXPIRED). A reconciliation answers RECONCILED_FILLED or
        RECONCILED_ABSENT, or tries again later (``reconcile_delay_s`` times the attempt) and
        answers UNKNOWN after :data:`RECONCILE_ATTEMPTS`.
        """
        req = pending.req
        if pending.kind == "resend":
            earlier = self.find_earlier(req)
            return earlier if earlier is not None else self.send(req)
        attempt = pending.attempt
        while True:
            found = self._search(req, pending.error) if self.link.ensure() else None
            if found is _ABSENT:
                outcome = self._result(req, OrderStatus.RECONCILED_ABSENT, error=pending.error,
                                       comment="reconciled: no trade with this magic and comment")
                break
            if found is not None:
                outcome = found
                break
            attempt += 1
            if attempt >= RECONCILE_ATTEMPTS:
                outcome = self._result(req, OrderStatus.UNKNOWN, error=pending.error,
                                       comment="reconciliation impossible: terminal unreachable")
                break
            if self.reconcile_delay_s:
                return pending._replace(due=time.monotonic() + self.reconcile_delay_s * (attempt + 1),
                                        attempt=attempt)
        if pending.started_ns:
            outcome = outcome._replace(mt5_ns=time.perf_counter_ns() - pending.started_ns)
        return outcome

    def find_earlier(self, req: OrderRequest) -> OrderResult | None:
        """For a RESEND of a req_id this bridge does not know (it restarted, or forgot the id):
        the order's RECONCILED_FILLED result when the terminal already holds it, UNKNOWN when
        the terminal cannot be asked (the order must not be sent blind), None to go on."""
        self.resends_checked += 1
        ok = (1, "Success")
        found = self._search(req, ok, RESEND_WINDOW_S) if self.link.ensure() else None
        if found is None:
            return self._result(req, OrderStatus.UNKNOWN, error=(self.link.last_error, self.link.last_error_message),
                                comment="resend not checked: terminal unreachable; not sent")
        return None if found is _ABSENT else found

    def account_state(self, query: AccountQuery) -> AccountState:
        """The terminal's open positions (net per symbol, with their profit) and the realized
        profit of the deals since ``query.since_s``, of the orders with the query's magic whose
        comment starts with its prefix; UNAVAILABLE when the terminal cannot be asked."""
        self.account_queries += 1
        link = self.link
        now_ns = self._clock_ns()
        unavailable = AccountState(query.req_id, AccountStatus.UNAVAILABLE, query.since_s, 0, 0.0, now_ns)
        if not (link.initialized or link.ensure()):
            return unavailable
        mt5 = self.mt5
        positions = mt5.positions_get()
        deals = mt5.history_deals_get(query.since_s, now_ns // 1_000_000_000 + 60)
        if positions is None or deals is None:
            link.lost()
            return unavailable
        magic, prefix = query.magic, query.comment_prefix
        realized = 0.0
        count = 0
        for deal in deals:
            if deal.magic == magic and deal.comment.startswith(prefix):
                realized += deal.profit + deal.commission + deal.swap + deal.fee
                count += 1
        rows: dict[str, list] = {}
        for pos in positions:
            if pos.magic != magic or not pos.comment.startswith(prefix):
                continue
            row = rows.setdefault(pos.symbol, [0.0, 0.0, 0.0, 0])
            if pos.type == 0:  # POSITION_TYPE_BUY
                row[0] += pos.volume
            else:
                row[1] += pos.volume
            row[2] += pos.profit + pos.swap
            row[3] += 1
        symbols = tuple(SymbolExposure(sym, round(long_ - short, 8), round(long_, 8), round(short, 8),
                                       round(profit, 2), n)
                        for sym, (long_, short, profit, n) in sorted(rows.items()))
        return AccountState(query.req_id, AccountStatus.OK, query.since_s, count, round(realized, 2),
                            now_ns, symbols)

    def _search(self, req: OrderRequest, error: tuple[int, str],
                window_s: int = RECONCILE_WINDOW_S) -> OrderResult | None:
        """Deals (the last ``window_s``), positions and pending orders with the request's
        magic and comment: RECONCILED_FILLED, :data:`_ABSENT`, or None when the terminal failed.
        The request's symbol narrows the search when it is one this bridge trades."""
        comment = reconcile_comment(req)[:31]
        symbol = req.symbol if req.symbol in self.link.symbols else None
        now = self._clock_ns() // 1_000_000_000
        mt5 = self.mt5
        deals = mt5.history_deals_get(now - window_s, now + 60)
        positions = mt5.positions_get(symbol=symbol) if symbol else mt5.positions_get()
        orders = mt5.orders_get(symbol=symbol) if symbol else mt5.orders_get()
        if deals is None or positions is None or orders is None:
            self.link.lost()
            return None
        mine = [d for d in deals if d.magic == req.magic and d.comment == comment
                and (symbol is None or d.symbol == symbol)]
        if mine:
            deal = mine[-1]
            return self._result(req, OrderStatus.RECONCILED_FILLED, TRADE_RETCODE_DONE,
                                "reconciled: deal found", error, deal=deal.ticket, order=deal.order,
                                volume=deal.volume, price=deal.price)
        held = [p for p in positions if p.magic == req.magic and p.comment == comment]
        held += [o for o in orders if o.magic == req.magic and o.comment == comment]
        if held:
            rec = held[-1]
            return self._result(req, OrderStatus.RECONCILED_FILLED, TRADE_RETCODE_DONE,
                                "reconciled: position/order found", error, order=rec.ticket,
                                volume=getattr(rec, "volume", 0.0) or getattr(rec, "volume_initial", 0.0),
                                price=rec.price_open)
        return _ABSENT
