"""PaperBroker: simulated fills at bid/ask with latency and slippage; positions and PnL.

Latency is simulated in tick time, never slept: an order sent at ``time_msc`` fills on the first
quote at or after ``time_msc + latency_ms``, at that quote's prices. With zero latency it fills at
once at the order's own quote.

PnL and exposure are in the account currency of the broker's
:class:`~flowchain.trading.valuation.Valuation`: each symbol's contract size and profit
currency, converted at the current quotes of the node's symbols. A closed lot's profit is
converted when it closes (and stays so, as a terminal books a deal's profit); an open position
is marked at the last quote (longs at the bid, shorts at the ask) and converted at the current
rates. An order on a symbol that cannot be valued (no spec, no conversion pair, or the pair not
quoted yet) is refused with the reason, never filled.
"""
from __future__ import annotations

from collections import OrderedDict

from flowchain.trading.orders import (
    FILLED,
    PENDING,
    REJECTED,
    TRADE_RETCODE_DONE,
    TRADE_RETCODE_PLACED,
    TRADE_RETCODE_REJECT,
    BrokerReport,
    OrderRequest,
)
from flowchain.trading.valuation import Instrument, Quote, Valuation, ValuationError

_NONE: tuple = ()
_INF = float("inf")


class _Book:
    """One symbol's net position, average price, realized PnL and live quote."""

    __slots__ = ("symbol", "quote", "instrument", "refusal", "contract_size", "conversion",
                 "position", "avg_price", "realized")

    def __init__(self, symbol: str, quote: Quote, instrument: Instrument | None,
                 refusal: str) -> None:
        self.symbol = symbol
        self.quote = quote
        self.instrument = instrument
        """None when the symbol cannot be valued (``refusal`` says why): orders are refused."""
        self.refusal = refusal
        self.contract_size = instrument.contract_size if instrument is not None else 0.0
        self.conversion = instrument.conversion if instrument is not None else None
        """The profit currency's conversion (valuing reads it without the instrument)."""
        self.position = 0.0
        self.avg_price = 0.0
        self.realized = 0.0
        """Closed lots' profit, account currency (converted when they closed)."""


class PaperBroker:
    """A netting paper account valued in one account currency.

    Parameters
    ----------
    latency_ms : float, optional
        Simulated order latency in tick time (``time_msc``); 0 fills immediately.
    slippage : float, optional
        Price added to a buy's ask and taken from a sell's bid, in price units.
    valuation : Valuation, optional
        Symbol specs, account currency and conversions; by default a USD account with
        :data:`~flowchain.trading.valuation.DEFAULT_CONTRACT_SPECS`.
    remember : int, optional
        How many orders :meth:`lookup` remembers (oldest forgotten first).

    Raises
    ------
    ValueError
        If latency or slippage is negative or not finite, or remember not positive.
    """

    wants_quotes = True

    def __init__(self, latency_ms: float = 0.0, slippage: float = 0.0,
                 valuation: Valuation | None = None, remember: int = 100_000) -> None:
        if not (0 <= latency_ms < _INF and 0 <= slippage < _INF):
            raise ValueError(f"PaperBroker: latency_ms and slippage must be finite and >= 0, got "
                             f"{latency_ms}, {slippage}")
        if remember <= 0:
            raise ValueError(f"PaperBroker: remember must be positive, got {remember}")
        self.latency_ms = float(latency_ms)
        self.slippage = float(slippage)
        self.valuation = valuation if valuation is not None else Valuation()
        self.account_currency = self.valuation.account_currency
        """The currency of :meth:`pnl`, :meth:`realized_pnl`, :meth:`exposure` (``"USD"``)."""
        self._remember = int(remember)
        self._books: dict[str, _Book] = {}
        self._book_list: list[_Book] = []
        self._quotes: dict[str, Quote] = {}
        """Each book's live quote by symbol (the tick path marks it without the book)."""
        self._pending: dict[str, list[tuple[float, OrderRequest]]] = {}
        self._reports: OrderedDict[str, BrokerReport] = OrderedDict()
        self.fills = 0
        """Orders filled so far."""
        self.refusals = 0
        """Orders refused because their symbol could not be valued or had no valid quote."""

    def _book(self, symbol: str) -> _Book:
        book = self._books.get(symbol)
        if book is None:
            try:
                instrument: Instrument | None = self.valuation.instrument(symbol)
                refusal = ""
            except ValuationError as exc:
                instrument, refusal = None, str(exc)
            book = self._books[symbol] = _Book(symbol, self.valuation.quote(symbol), instrument,
                                               refusal)
            self._book_list.append(book)
            self._quotes[symbol] = book.quote
        return book

    def _keep(self, report: BrokerReport) -> BrokerReport:
        self._reports[report.client_order_id] = report
        if len(self._reports) > self._remember:
            self._reports.popitem(last=False)
        return report

    def _refuse(self, order: OrderRequest, why: str) -> BrokerReport:
        self.refusals += 1
        return self._keep(BrokerReport(order.client_order_id, REJECTED, 0.0, order.volume,
                                       TRADE_RETCODE_REJECT, why))

    def _fill(self, book: _Book, order: OrderRequest, bid: float, ask: float) -> BrokerReport:
        price = ask + self.slippage if order.side > 0 else bid - self.slippage
        qty = order.side * order.volume
        pos = book.position
        if pos == 0.0 or (pos > 0) == (qty > 0):
            book.avg_price = (book.avg_price * abs(pos) + price * abs(qty)) / (abs(pos) + abs(qty))
        else:
            closed = min(abs(qty), abs(pos))
            book.realized += book.instrument.profit(closed if pos > 0 else -closed,  # type: ignore[union-attr]
                                                    book.avg_price, price)
            if abs(qty) > abs(pos):
                book.avg_price = price  # flipped: the rest opens at this price
        book.position = round(pos + qty, 10)
        if book.position == 0.0:
            book.avg_price = 0.0
        self.fills += 1
        return self._keep(BrokerReport(order.client_order_id, FILLED, price, order.volume,
                                       TRADE_RETCODE_DONE, "paper fill"))

    def send(self, order: OrderRequest) -> BrokerReport:
        """Fill ``order`` now (no latency) or queue it for the first quote after the latency.

        An order is refused (``rejected``, retcode 10006, the reason as comment) when its quote
        is not a valid one (bid > 0, ask >= bid, finite) or its symbol cannot be valued in the
        account currency yet.
        """
        book = self._book(order.symbol)
        bid, ask = order.bid, order.ask
        if not 0.0 < bid <= ask < 1.8e308:
            return self._refuse(order, f"paper: no valid quote for {order.symbol} (bid {bid!r}, "
                                       f"ask {ask!r})")
        quote = book.quote
        quote.bid = bid
        quote.ask = ask
        instrument = book.instrument
        if instrument is None:
            return self._refuse(order, f"paper: {book.refusal}")
        if not instrument.conversion.ready:
            c = instrument.conversion
            return self._refuse(order, f"paper: cannot value {order.symbol} in "
                                       f"{c.account_currency} yet: no quote of "
                                       f"{' and '.join(c.unquoted())} so far")
        if self.latency_ms == 0.0:
            return self._fill(book, order, bid, ask)
        due = order.time_msc + self.latency_ms
        self._pending.setdefault(order.symbol, []).append((due, order))
        return self._keep(BrokerReport(order.client_order_id, PENDING, 0.0, order.volume,
                                       TRADE_RETCODE_PLACED, "paper order placed"))

    def on_quote(self, symbol: str, bid: float, ask: float, time_msc: int) -> tuple:
        """Mark ``symbol`` at this quote; fill its due orders; return their reports.

        A quote that is not valid (bid <= 0, ask < bid, NaN or infinite) marks nothing and fills
        nothing: the last valid quote stays.
        """
        quote = self._quotes.get(symbol)
        if quote is None:
            quote = self._book(symbol).quote
        if 0.0 < bid <= ask < 1.8e308:  # finite: below the largest double
            quote.bid = bid
            quote.ask = ask
        else:
            return _NONE
        queue = self._pending.get(symbol)
        if not queue:
            return _NONE
        done = [order for due, order in queue if due <= time_msc]
        if not done:
            return _NONE
        queue[:] = [(due, order) for due, order in queue if due > time_msc]
        book = self._books[symbol]
        return tuple(self._fill(book, order, bid, ask) for order in done)

    def lookup(self, client_order_id: str) -> BrokerReport | None:
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
        """Return the PnL of closed lots across symbols, in the account currency."""
        total = 0.0
        for book in self._book_list:
            total += book.realized
        return total

    def unrealized_pnl(self) -> float:
        """Return open positions marked at the last quote (longs at the bid, shorts at the ask),
        converted to the account currency at the current rates."""
        total = 0.0
        for book in self._book_list:
            pos = book.position
            if pos != 0.0:
                quote = book.quote
                amount = ((quote.bid if pos > 0.0 else quote.ask) - book.avg_price) * pos \
                    * book.contract_size
                conversion = book.conversion
                total += amount if conversion.identity else conversion(amount)  # type: ignore[union-attr]
        return total

    def pnl(self) -> float:
        """Return realized plus unrealized PnL, in the account currency.

        The risk guard reads it before every order: one pass over the books, no allocation
        beyond the float returned.
        """
        total = 0.0
        for book in self._book_list:
            total += book.realized
            pos = book.position
            if pos != 0.0:
                quote = book.quote
                amount = ((quote.bid if pos > 0.0 else quote.ask) - book.avg_price) * pos \
                    * book.contract_size
                conversion = book.conversion
                total += amount if conversion.identity else conversion(amount)  # type: ignore[union-attr]
        return total

    def positions(self) -> dict[str, float]:
        """Return ``{symbol: net lots}`` for open positions."""
        return {b.symbol: b.position for b in self._book_list if b.position != 0.0}

    def exposure(self) -> dict[str, float]:
        """Return ``{symbol: signed notional}`` of open positions in the account currency: lots x
        contract size x the last quote's side that would close it, converted."""
        out = {}
        for book in self._book_list:
            pos = book.position
            if pos != 0.0:
                mark = book.quote.bid if pos > 0.0 else book.quote.ask
                out[book.symbol] = book.instrument.notional(pos, mark)  # type: ignore[union-attr]
        return out
