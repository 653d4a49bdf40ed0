"""TradingEngine: the ``trading_execution`` step: risk checks, journal, broker, trade result."""
from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path

from flowchain.trading.brokers.paper import PaperBroker
from flowchain.trading.context import DecisionContext
from flowchain.trading.decision import (
    STATUS_FAILED,
    STATUS_FILLED,
    STATUS_HOLD,
    STATUS_PENDING,
    STATUS_REJECTED,
    TradeResult,
)
from flowchain.trading.journal import OrderJournal
from flowchain.trading.layout import F_ASK, F_BID, F_TIME_MSC
from flowchain.trading.orders import (
    FILLED,
    FINAL_STATES,
    PENDING,
    UNKNOWN,
    AccountUnavailableError,
    Broker,
    BrokerReport,
    OrderRequest,
)
from flowchain.trading.risk import RiskGuard

_STATUS_OF = {FILLED: STATUS_FILLED, PENDING: STATUS_PENDING}


class SettlementError(RuntimeError):
    """The trading engine could not read the broker's account at start (positions, day's PnL):
    trading on would break the risk limits."""


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
        This node's id when the journal is opened here (by default the database's own).
    target_positions : bool, optional
        Position targeting (the node's default): a buy or sell decision is the position the
        symbol should hold (``side * volume`` lots), and an order goes only when the view
        changes: when the symbol's exposure (filled position plus orders in flight) is flat or
        on the other side; the order is the difference (a flip from +0.1 to -0.1 sells 0.2).
        A decision on the side already held, and a hold, send nothing. False (the default
        here): every buy or sell decision is an order of its volume.
    min_hold_ms : float, optional
        With ``target_positions``: no order for a symbol within this many milliseconds of tick
        time (``time_msc``) after its last order (a cool-down against a view that flickers).

    Raises
    ------
    SettlementError
        If the broker reads its account from the terminal (``sync``) and its bridge did not
        answer at start. A bridge that answers while its terminal cannot be read (not logged
        in, disconnected) is not an error: orders are refused as ``account_unknown`` until the
        broker has read the account.

    Notes
    -----
    On every tick it marks the broker at the tick's quote and journals the fills of orders that
    completed since. On a buy or sell decision it runs the risk checks, journals the order
    (committed) with the decision's votes as its reason, sends it, and journals the broker's
    answer. A broker that raises leaves the order ``unknown`` in the journal: it is never resent;
    :meth:`OrderJournal.reconcile` settles it.

    At start, before the first decision, every order an earlier run left unsettled (``sending``,
    ``pending`` or ``unknown``) is looked up at the broker and settled in the journal; then a
    broker that reads its account from the terminal (``sync``) restores its positions and the
    day's PnL from there; the orders still in flight count in the exposure. So ``max_position``
    and ``max_daily_loss`` hold across restarts. Exposure is the filled position plus every
    order in flight as if it filled; a broker with ``capacity()`` gets no more orders in flight
    than that (refused ``orders_in_flight``). ``ctx.result`` is overwritten on the symbol's next
    tick; ``copy()`` it to keep it.
    """

    def __init__(self, broker: Broker | None = None,
                 journal: OrderJournal | str | Path | None = None,
                 risk: RiskGuard | None = None, node_id: str | None = None, *,
                 target_positions: bool = False, min_hold_ms: float = 0.0) -> None:
        if not (min_hold_ms >= 0.0 and math.isfinite(min_hold_ms)):
            raise ValueError(f"TradingEngine: min_hold_ms must be a finite number >= 0, got "
                             f"{min_hold_ms!r}")
        self.target_positions = bool(target_positions)
        self.min_hold_ms = float(min_hold_ms)
        self._min_hold_msc = int(min_hold_ms)
        self._last_order_msc: dict[str, int] = {}
        """Symbol -> ``time_msc`` of the tick its last order was sent on (for ``min_hold_ms``)."""
        self.unchanged_views = 0
        """Buy or sell decisions that sent nothing because the exposure already holds that view
        (``target_positions``); counted in :attr:`holds` too."""
        self.cooling = 0
        """Changes of view that sent nothing because the symbol's ``min_hold_ms`` had not passed
        since its last order; counted in :attr:`holds` too."""
        self.broker = broker if broker is not None else PaperBroker()
        if journal is None or isinstance(journal, (str, Path)):
            journal = OrderJournal(journal if journal is not None else ":memory:", node_id)
        self.journal = journal
        self.risk = risk if risk is not None else RiskGuard()
        self.outcomes: Counter = Counter()
        """Trade results by status (``hold`` excluded: see :attr:`holds`); an order reported
        ``pending`` moves to its final status when the broker reports it."""
        self.holds = 0
        self.send_errors: Counter = Counter()
        """Broker failures by exception type (the orders are journaled ``unknown``)."""
        self._wants_quotes = bool(getattr(self.broker, "wants_quotes", False))
        self._open: dict[str, tuple[str, int, float, bool]] = {}
        """Orders that may still fill: client order id -> (symbol, side, volume, counted as
        pending in :attr:`outcomes` this run)."""
        self._pending: dict[str, list[float]] = {}
        """Symbol -> [buy lots, sell lots] of the orders in :attr:`_open`."""
        broker = self.broker
        self._capacity = getattr(broker, "capacity", None)
        self._in_flight = getattr(broker, "in_flight", None)
        self._day_pnl = getattr(broker, "daily_pnl", None)
        settle = getattr(broker, "settle", None)
        journal = self.journal
        lookup = broker.lookup if settle is None else (lambda cid: settle(journal.request(cid)))
        self.recovered = journal.reconcile(lookup)
        """What the start-up reconciliation settled."""
        self.account_unknown: str | None = None
        """Why the broker's account (positions, day's PnL) is not known yet; every order is
        refused (``account_unknown``) until the broker has read it."""
        sync = getattr(broker, "sync", None)
        if sync is not None and getattr(broker, "identity", None) is not None:
            try:
                sync()
            except AccountUnavailableError as exc:  # the bridge answers; its terminal does not
                self.account_unknown = str(exc)
            except Exception as exc:
                raise SettlementError(f"the broker's positions and day's PnL could not be read "
                                      f"at start: {exc}") from exc
        for order in journal.open_orders():
            self._track(order.client_order_id, order.symbol, order.side, order.volume, False)

    def _track(self, cid: str, symbol: str, side: int, volume: float, counted: bool) -> None:
        self._open[cid] = (symbol, side, volume, counted)
        pending = self._pending.get(symbol)
        if pending is None:
            pending = self._pending[symbol] = [0.0, 0.0]
        pending[0 if side > 0 else 1] += volume

    def _settled(self, report: BrokerReport) -> None:
        """Journal a later report; an order reaching a final state leaves the exposure."""
        cid = report.client_order_id
        self.journal.record_state(cid, report.state, report)
        if report.state not in FINAL_STATES:
            return
        held = self._open.pop(cid, None)
        if held is None:
            return
        symbol, side, volume, counted = held
        pending = self._pending[symbol]
        i = 0 if side > 0 else 1
        pending[i] = max(0.0, round(pending[i] - volume, 10))
        if counted:
            self.outcomes[STATUS_PENDING] -= 1
            self.outcomes[STATUS_FILLED if report.state == FILLED else STATUS_FAILED] += 1

    def _refuse(self, result: TradeResult, reason: str) -> TradeResult:
        result.status = STATUS_REJECTED
        result.reason = reason
        self.outcomes[STATUS_REJECTED] += 1
        return result

    def in_flight(self) -> dict[str, tuple[float, float]]:
        """Return ``{symbol: (buy lots, sell lots)}`` of the orders that may still fill."""
        return {s: (p[0], p[1]) for s, p in self._pending.items() if p[0] or p[1]}

    def finish(self, timeout_s: float = 5.0) -> int:
        """Wait up to ``timeout_s`` for the RESULTs of the orders in flight and journal them
        (the node calls it at shutdown, so the journal and the summary agree); return how many
        stay unsettled (settled at the next start)."""
        wait = getattr(self.broker, "wait_reports", None)
        if wait is not None and self._open:
            for report in wait(timeout_s):
                self._settled(report)
        return len(self._open)

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
                self._settled(report)
        side = decision.side
        if side == 0:
            return self._hold(result)
        volume = decision.volume
        if self.target_positions:
            symbol = ctx.symbol
            exposure = self.broker.position(symbol)
            pending = self._pending.get(symbol)
            if pending is not None:
                exposure += pending[0] - pending[1]
            if exposure * side > 1e-9:  # already holds this view: nothing to do
                self.unchanged_views += 1
                return self._hold(result)
            last = self._last_order_msc.get(symbol)
            if last is not None and int(ctx.features[F_TIME_MSC]) - last < self._min_hold_msc:
                self.cooling += 1
                return self._hold(result)
            volume = round(volume + abs(exposure), 8)  # the order takes the exposure to target
        return self._order(ctx, result, side, volume)

    def _hold(self, result: TradeResult) -> TradeResult:
        self.holds += 1
        result.status = STATUS_HOLD
        result.reason = ""
        result.side = 0
        result.volume = 0.0
        result.client_order_id = None
        result.price = 0.0
        result.retcode = 0
        return result

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
        if self.account_unknown is not None:
            if getattr(broker, "account", None) is None:
                return self._refuse(result, "account_unknown")
            self.account_unknown = None
        pending = self._pending.get(symbol)
        refusal = self.risk.check(
            side, volume, broker.position(symbol), broker.pnl(), time_msc, ctx.received_ns, now,
            pending_long=pending[0] if pending else 0.0,
            pending_short=pending[1] if pending else 0.0,
            in_flight=self._in_flight() if self._in_flight is not None else len(self._open),
            capacity=self._capacity() if self._capacity is not None else None,
            day_pnl=self._day_pnl() if self._day_pnl is not None else None)
        if refusal is not None:
            return self._refuse(result, refusal)
        cid, req_id = self.journal.next_order_ids()
        order = OrderRequest(cid, symbol, side, volume, bid, ask, time_msc, req_id)
        self.journal.record_sending(order, json.dumps(ctx.decision.reason()))
        self.risk.record_order(now)
        if self.target_positions:
            self._last_order_msc[symbol] = time_msc
        result.client_order_id = order.client_order_id
        try:
            report = broker.send(order)
        except Exception as exc:  # it may or may not have reached the broker: never resend
            self.send_errors[type(exc).__name__] += 1
            self.journal.record_state(order.client_order_id, UNKNOWN,
                                      detail=f"send raised {exc!r}; reconcile before trading on")
            self._track(order.client_order_id, symbol, side, volume, False)
            result.status = STATUS_FAILED
            result.reason = f"send raised {type(exc).__name__}: {exc}"
            self.outcomes[STATUS_FAILED] += 1
            return result
        self.journal.record_state(order.client_order_id, report.state, report)
        if report.state not in FINAL_STATES:
            self._track(order.client_order_id, symbol, side, volume, report.state == PENDING)
        result.status = _STATUS_OF.get(report.state, STATUS_FAILED)
        result.reason = report.comment
        result.price = report.price
        result.retcode = report.retcode
        self.outcomes[result.status] += 1
        return result
