"""PaperBroker: simulated fills at bid/ask with latency and slippage; positions and PnL.

Latency is simulated in tick time, never slept: an order sent at ``time_msc`` fills on the first
quote at or after ``time_msc + latency_ms``, at that quote's prices. With zero latency it fills at
once at the order's own quote.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

from flowchain.trading.orders import (
    FILLED, PENDING, TRADE_RETCODE_DONE, TRADE_RETCODE_PLACED, BrokerReport, OrderRequest,
)

_NONE: tuple = ()


class _Book:
    """One symbol's net position, average price and last quote."""

    __slots__ = ("position", "avg_price", "realized", "bid", "ask")

    def __init__(self) -> None:
        self.position = 0.0
        self.avg_price = 0.0
        self.realized = 0.0
        self.bid = 0.0
        self.ask = 0.0


class PaperBroker:
    """A netting paper account.

    Parameters
    ----------
    latency_ms : float, optional
        Simulated order latency in tick time (``time_msc``); 0 fills immediately.
    slippage : float, optional
        Price added to a buy's ask and taken from a sell's bid, in price units.
    contract_size : float, optional
        Units per lot (PnL = price difference x lots x contract size).
    remember : int, optional
        How many orders :meth:`lookup` remembers (oldest forgotten first).

    Raises
    ------
    ValueError
        If latency or slippage is negative, or contract size / remember not positive.
    """

    wants_quotes = True

    def __init__(self, latency_ms: float = 0.0, slippage: float = 0.0,
                 contract_size: float = 100_000.0, remember: int = 100_000) -> None:
        if latency_ms < 0 or slippage < 0:
            raise ValueError(f"PaperBroker: latency_ms and slippage must be >= 0, got "
                             f"{latency_ms}, {slippage}")
        if contract_size <= 0 or remember <= 0:
            raise ValueError(f"PaperBroker: contract_size and remember must be positive, got "
                             f"{contract_size}, {remember}")
        self.latency_ms = float(latency_ms)
        self.slippage = float(slippage)
        self.contract_size = float(contract_size)
        self._remember = int(remember)
        self._books: dict[str, _Book] = {}
        self._pending: dict[str, list[tuple[float, OrderRequest]]] = {}
        self._reports: OrderedDict[str, BrokerReport] = OrderedDict()
        self.fills = 0
        """Orders filled so far."""

    def _book(self, symbol: str) -> _Book:
        book = self._books.get(symbol)
        if book is None:
            book = self._books[symbol] = _Book()
        return book

    def _keep(self, report: BrokerReport) -> BrokerReport:
        self._reports[report.client_order_id] = report
        if len(self._reports) > self._remember:
            self._reports.popitem(last=False)
        return report

    def _fill(self, order: OrderRequest, bid: float, ask: float) -> BrokerReport:
        book = self._book(order.symbol)
        price = ask + self.slippage if order.side > 0 else bid - self.slippage
        qty = order.side * order.volume
        pos = book.position
        if pos == 0.0 or (pos > 0) == (qty > 0):
            book.avg_price = (book.avg_price * abs(pos) + price * abs(qty)) / (abs(pos) + abs(qty))
        else:
            closed = min(abs(qty), abs(pos))
            book.realized += closed * (price - book.avg_price) * (1.0 if pos > 0 else -1.0) \
                * self.contract_size
            if abs(qty) > abs(pos):
                book.avg_price = price  # flipped: the rest opens at this price
        book.position = round(pos + qty, 10)
        if book.position == 0.0:
            book.avg_price = 0.0
        self.fills += 1
        return self._keep(BrokerReport(order.client_order_id, FILLED, price, order.volume,
                                       TRADE_RETCODE_DONE, "paper fill"))

    def send(self, order: OrderRequest) -> BrokerReport:
        """Fill ``order`` now (no latency) or queue it for the first quote after the latency."""
        book = self._book(order.symbol)
        book.bid, book.ask = order.bid, order.ask
        if self.latency_ms == 0.0:
            return self._fill(order, order.bid, order.ask)
        due = order.time_msc + self.latency_ms
        self._pending.setdefault(order.symbol, []).append((due, order))
        return self._keep(BrokerReport(order.client_order_id, PENDING, 0.0, order.volume,
                                       TRADE_RETCODE_PLACED, "paper order placed"))

    def on_quote(self, symbol: str, bid: float, ask: float, time_msc: int) -> tuple:
        """Mark ``symbol`` at this quote; fill its due orders; return their reports."""
        book = self._books.get(symbol)
        if book is None:
            book = self._book(symbol)
        book.bid = bid
        book.ask = ask
        queue = self._pending.get(symbol)
        if not queue:
            return _NONE
        done = [order for due, order in queue if due <= time_msc]
        if not done:
            return _NONE
        queue[:] = [(due, order) for due, order in queue if due > time_msc]
        return tuple(self._fill(order, bid, ask) for order in done)

    def lookup(self, client_order_id: str) -> Optional[BrokerReport]:
        """Return the last report of an order this broker received, or None."""
        return self._reports.get(client_order_id)

    def position(self, symbol: str) -> float:
        """Return the net position of ``symbol`` in lots."""
        book = self._books.get(symbol)
        return book.position if book is not None else 0.0

    def avg_price(self, symbol: str) -> float:
        """Return the average open price of ``symbol``'s position (0.0 when flat)."""
        book = self._books.get(symbol)
        return book.avg_price if book is not None else 0.0

    def realized_pnl(self) -> float:
        """Return the PnL of closed lots across symbols."""
        return sum(book.realized for book in self._books.values())

    def unrealized_pnl(self) -> float:
        """Return open positions marked at the last quote (longs at the bid, shorts at the ask)."""
        total = 0.0
        for book in self._books.values():
            if book.position > 0:
                total += (book.bid - book.avg_price) * book.position * self.contract_size
            elif book.position < 0:
                total += (book.ask - book.avg_price) * book.position * self.contract_size
        return total

    def pnl(self) -> float:
        """Return realized plus unrealized PnL."""
        return self.realized_pnl() + self.unrealized_pnl()

    def positions(self) -> dict[str, float]:
        """Return ``{symbol: net lots}`` for open positions."""
        return {s: b.position for s, b in self._books.items() if b.position != 0.0}
