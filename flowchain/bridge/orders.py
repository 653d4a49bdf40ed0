"""Order execution on the bridge: idempotency by req_id, deadlines, order_check/order_send, reconcile.

The bridge's order thread (which also owns the ROUTER socket) admits requests in the
:class:`IdempotencyLog` and runs :meth:`OrderDesk.execute` for each new one, in arrival order.
After a TIMEOUT retcode, an IPC error or a ``None`` result it never resends: it looks for the
order in positions, pending orders and deals by ``magic`` and ``comment`` and answers
RECONCILED_FILLED, RECONCILED_ABSENT or UNKNOWN.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from flowchain.bridge.terminal import IPC_ERRORS, TerminalLink
from flowchain.wire import AckStatus, OrderRequest, OrderResult, OrderStatus

TRADE_RETCODE_DONE = 10009
TRADE_RETCODE_TIMEOUT = 10012
RECONCILE_WINDOW_S = 600
_new = tuple.__new__
_ABSENT = object()
"""What :meth:`OrderDesk._search` returns when the terminal holds no trace of the order."""


def reconcile_comment(req: OrderRequest) -> str:
    """The comment the order carries in MT5: the request's, or ``fc<req_id hex>`` when empty."""
    return req.comment or f"fc{req.req_id:x}"


class _Entry:
    """One req_id: its result once finished, and the peers waiting for it until then."""

    __slots__ = ("result", "waiters")

    def __init__(self, waiters: list[bytes]) -> None:
        self.result: OrderResult | None = None
        self.waiters = waiters


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

    def admit(self, req_id: int, peer: bytes) -> tuple[AckStatus, OrderResult | None]:
        """Register ``peer``'s request; say whether it is new, pending or done (with its result)."""
        entries = self._entries
        entry = entries.get(req_id)
        if entry is None:
            entries[req_id] = _Entry(waiters=[peer])
            if len(entries) > self._capacity:
                self._evict()
            return AckStatus.QUEUED, None
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
            entry = self._entries[result.req_id] = _Entry([])
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
        Wait before reconciling, so an order still in flight reaches the history.
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

    def _result(self, req: OrderRequest, status: OrderStatus, retcode: int = 0, comment: str = "",
                error: tuple[int, str] | None = None, mt5_ns: int = 0, **fields: Any) -> OrderResult:
        values = dict(deal=0, order=0, volume=0.0, price=0.0, bid=0.0, ask=0.0, request_id=0, retcode_external=0)
        values.update(fields)
        return OrderResult(req.req_id, status, retcode, values["deal"], values["order"], values["volume"],
                           values["price"], values["bid"], values["ask"], comment, values["request_id"],
                           values["retcode_external"], error or (1, "Success"), mt5_ns)

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

    def execute(self, req: OrderRequest) -> OrderResult:
        """Check the deadline and the terminal, then order_check and order_send (never twice).

        A RESEND (a req_id the node sent before, which this bridge does not know) is first
        looked for in the terminal: see :meth:`find_earlier`.
        """
        if req.resend:
            earlier = self.find_earlier(req)
            if earlier is not None:
                return earlier
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
        started = time.perf_counter_ns()
        result = mt5.order_send(request)
        error = mt5.last_error()
        self.sent += 1
        if result is None or result.retcode == TRADE_RETCODE_TIMEOUT or error[0] in IPC_ERRORS:
            if result is None:
                self.link.lost()
            outcome = self.reconcile(req, error)
            return outcome._replace(mt5_ns=time.perf_counter_ns() - started)
        return _new(OrderResult, (req.req_id, OrderStatus.SENT, result.retcode, result.deal, result.order,
                                  result.volume, result.price, result.bid, result.ask, result.comment,
                                  result.request_id, result.retcode_external, error,
                                  time.perf_counter_ns() - started, False))

    def reconcile(self, req: OrderRequest, error: tuple[int, str], attempts: int = 3) -> OrderResult:
        """Find the order by magic and comment after an unanswered send; never resend it."""
        self.reconciled += 1
        for attempt in range(attempts):
            if self.reconcile_delay_s:
                time.sleep(self.reconcile_delay_s * (attempt + 1))
            if not self.link.ensure():
                continue
            found = self._search(req, error)
            if found is None:
                continue
            if found is not _ABSENT:
                return found
            return self._result(req, OrderStatus.RECONCILED_ABSENT, error=error,
                                comment="reconciled: no trade with this magic and comment")
        return self._result(req, OrderStatus.UNKNOWN, error=error,
                            comment="reconciliation impossible: terminal unreachable")

    def find_earlier(self, req: OrderRequest) -> OrderResult | None:
        """For a RESEND of a req_id this bridge does not know (it restarted, or forgot the id):
        the order's RECONCILED_FILLED result when the terminal already holds it, UNKNOWN when
        the terminal cannot be asked (the order must not be sent blind), None to go on."""
        self.resends_checked += 1
        if self.reconcile_delay_s:  # an order still in flight in the terminal reaches the history
            time.sleep(self.reconcile_delay_s)
        ok = (1, "Success")
        found = self._search(req, ok) if self.link.ensure() else None
        if found is None:
            return self._result(req, OrderStatus.UNKNOWN, error=(self.link.last_error, self.link.last_error_message),
                                comment="resend not checked: terminal unreachable; not sent")
        return None if found is _ABSENT else found

    def _search(self, req: OrderRequest, error: tuple[int, str]) -> OrderResult | None:
        """Deals (the last RECONCILE_WINDOW_S), positions and pending orders with the request's
        magic and comment: RECONCILED_FILLED, :data:`_ABSENT`, or None when the terminal failed.
        The request's symbol narrows the search when it is one this bridge trades."""
        comment = reconcile_comment(req)[:31]
        symbol = req.symbol if req.symbol in self.link.symbols else None
        now = self._clock_ns() // 1_000_000_000
        mt5 = self.mt5
        deals = mt5.history_deals_get(now - RECONCILE_WINDOW_S, now + 60)
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
