"""TradingEngine: the ``trading_execution`` step: risk checks, journal, broker, trade result."""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Optional, Union

from flowchain.trading.brokers.paper import PaperBroker
from flowchain.trading.context import DecisionContext
from flowchain.trading.decision import (
    STATUS_FAILED, STATUS_FILLED, STATUS_HOLD, STATUS_PENDING, STATUS_REJECTED, TradeResult,
)
from flowchain.trading.journal import OrderJournal
from flowchain.trading.layout import F_ASK, F_BID, F_TIME_MSC
from flowchain.trading.orders import FILLED, PENDING, UNKNOWN, Broker, OrderRequest
from flowchain.trading.risk import RiskGuard

_STATUS_OF = {FILLED: STATUS_FILLED, PENDING: STATUS_PENDING}


class TradingEngine:
    """Turn ``ctx.decision`` into an order, safely; return ``ctx.result``.

    Parameters
    ----------
    broker : Broker, optional
        Where orders go; a :class:`PaperBroker` by default.
    journal : OrderJournal or str or Path, optional
        The order journal, or its database path; an in-memory journal by default (no
        durability: the node passes its database path).
    risk : RiskGuard, optional
        The limits; :class:`RiskGuard` defaults when omitted.
    node_id : str, optional
        Prefix of client order ids when the journal is opened here.

    Notes
    -----
    On every tick it marks the broker at the tick's quote and journals the fills of orders that
    completed since. On a buy or sell decision it runs the risk checks, journals the order
    (committed) with the decision's votes as its reason, sends it, and journals the broker's
    answer. A broker that raises leaves the order ``unknown`` in the journal: it is never resent;
    :meth:`OrderJournal.reconcile` settles it. Unresolved orders from an earlier run are
    reconciled when the engine starts. ``ctx.result`` is overwritten on the symbol's next tick;
    ``copy()`` it to keep it.
    """

    def __init__(self, broker: Optional[Broker] = None,
                 journal: Union[OrderJournal, str, Path, None] = None,
                 risk: Optional[RiskGuard] = None, node_id: str = "node") -> None:
        self.broker = broker if broker is not None else PaperBroker()
        if journal is None or isinstance(journal, (str, Path)):
            journal = OrderJournal(journal if journal is not None else ":memory:", node_id)
        self.journal = journal
        self.risk = risk if risk is not None else RiskGuard()
        self.outcomes: Counter = Counter()
        """Trade results by status (``hold`` excluded: see :attr:`holds`)."""
        self.holds = 0
        self.send_errors: Counter = Counter()
        """Broker failures by exception type (the orders are journaled ``unknown``)."""
        self._wants_quotes = bool(getattr(self.broker, "wants_quotes", False))
        self.recovered = self.journal.reconcile(self.broker.lookup)
        """What the start-up reconciliation settled."""

    def __call__(self, ctx: DecisionContext) -> TradeResult:
        """Run the trading step for ``ctx``'s decision; return ``ctx.result``.

        Raises
        ------
        sqlite3.Error
            If the journal cannot be written (nothing is sent then).
        """
        result = ctx.result
        decision = ctx.decision
        if self._wants_quotes:
            features = ctx.features
            done = self.broker.on_quote(ctx.symbol, features[F_BID], features[F_ASK],
                                        int(features[F_TIME_MSC]))
            for report in done:
                self.journal.record_state(report.client_order_id, report.state, report)
        side = decision.side
        if side == 0:
            self.holds += 1
            result.status = STATUS_HOLD
            result.reason = ""
            result.side = 0
            result.volume = 0.0
            result.client_order_id = None
            result.price = 0.0
            result.retcode = 0
            return result
        return self._order(ctx, result, side, decision.volume)

    def _order(self, ctx: DecisionContext, result: TradeResult, side: int,
               volume: float) -> TradeResult:
        features = ctx.features
        symbol = ctx.symbol
        bid = float(features[F_BID])
        ask = float(features[F_ASK])
        time_msc = int(features[F_TIME_MSC])
        broker = self.broker
        result.side = side
        result.volume = volume
        result.price = 0.0
        result.retcode = 0
        result.client_order_id = None
        now = time.monotonic_ns()
        refusal = self.risk.check(side, volume, broker.position(symbol), broker.pnl(), time_msc,
                                  ctx.received_ns, now)
        if refusal is not None:
            result.status = STATUS_REJECTED
            result.reason = refusal
            self.outcomes[STATUS_REJECTED] += 1
            return result
        order = OrderRequest(self.journal.next_client_order_id(), symbol, side, volume, bid, ask,
                             time_msc)
        self.journal.record_sending(order, json.dumps(ctx.decision.reason()))
        self.risk.record_order(now)
        result.client_order_id = order.client_order_id
        try:
            report = broker.send(order)
        except Exception as exc:  # it may or may not have reached the broker: never resend
            self.send_errors[type(exc).__name__] += 1
            self.journal.record_state(order.client_order_id, UNKNOWN,
                                      detail=f"send raised {exc!r}; reconcile before trading on")
            result.status = STATUS_FAILED
            result.reason = f"send raised {type(exc).__name__}: {exc}"
            self.outcomes[STATUS_FAILED] += 1
            return result
        self.journal.record_state(order.client_order_id, report.state, report)
        result.status = _STATUS_OF.get(report.state, STATUS_FAILED)
        result.reason = report.comment
        result.price = report.price
        result.retcode = report.retcode
        self.outcomes[result.status] += 1
        return result
