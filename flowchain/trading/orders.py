"""What the trading step sends a broker and what the broker reports back."""
from __future__ import annotations

from typing import Protocol

# Journal / broker order states.
SENDING = "sending"
"""Journaled, about to go (or gone) to the broker; no result yet."""
PENDING = "pending"
"""The broker accepted it; the fill comes later."""
FILLED = "filled"
REJECTED = "rejected"
"""The broker refused it (``retcode`` and ``comment`` say why)."""
UNKNOWN = "unknown"
"""Sending failed in a way that leaves it unknown whether the broker got it: reconcile, never resend."""
NOT_SENT = "not_sent"
"""Reconciliation found that the broker never received it (it is not resent)."""
FINAL_STATES = (FILLED, REJECTED, NOT_SENT)
OPEN_STATES = (SENDING, PENDING, UNKNOWN)
"""States whose outcome is not settled: such an order may still fill (it counts as exposure)."""

TRADE_RETCODE_DONE = 10009
TRADE_RETCODE_PLACED = 10008
TRADE_RETCODE_REJECT = 10006


class AccountUnavailableError(ConnectionError):
    """A broker's venue answered but could not read the account (positions and deals): the
    MT5 terminal behind the bridge is not logged in or not connected."""


class OrderRequest:
    """One market order as the trading step hands it to a broker.

    Attributes
    ----------
    client_order_id : str
        The idempotency key (journaled before sending).
    symbol : str
    side : int
        +1 buy, -1 sell.
    volume : float
        Lots.
    bid, ask : float
        The quote the decision was made on.
    time_msc : int
        The tick's ``time_msc``.
    req_id : int
        The order's u64 idempotency key on the wire (the journal's ``namespace << 32 | seq``,
        unique across nodes, databases and restarts); 0 when the caller has none.
    """

    __slots__ = ("client_order_id", "symbol", "side", "volume", "bid", "ask", "time_msc", "req_id")

    def __init__(self, client_order_id: str, symbol: str, side: int, volume: float, bid: float,
                 ask: float, time_msc: int, req_id: int = 0) -> None:
        self.client_order_id = client_order_id
        self.symbol = symbol
        self.side = side
        self.volume = volume
        self.bid = bid
        self.ask = ask
        self.time_msc = time_msc
        self.req_id = req_id

    @property
    def price(self) -> float:
        """The side's reference price: the ask for a buy, the bid for a sell."""
        return self.ask if self.side > 0 else self.bid

    def __repr__(self) -> str:
        return (f"OrderRequest({self.client_order_id} {self.symbol} "
                f"{'buy' if self.side > 0 else 'sell'} {self.volume:g} @ {self.price:g})")


class BrokerReport:
    """A broker's answer about one order: its state, fill and return code, and the terminal's
    ``deal`` and ``order`` tickets when it has them (0 otherwise)."""

    __slots__ = ("client_order_id", "state", "price", "volume", "retcode", "comment", "deal",
                 "order")

    def __init__(self, client_order_id: str, state: str, price: float = 0.0, volume: float = 0.0,
                 retcode: int = 0, comment: str = "", deal: int = 0, order: int = 0) -> None:
        self.client_order_id = client_order_id
        self.state = state
        self.price = price
        self.volume = volume
        self.retcode = retcode
        self.comment = comment
        self.deal = deal
        self.order = order

    def __repr__(self) -> str:
        return (f"BrokerReport({self.client_order_id} {self.state} {self.volume:g} @ "
                f"{self.price:g} retcode={self.retcode} {self.comment!r})")


class Broker(Protocol):
    """What :class:`~flowchain.trading.engine.TradingEngine` needs from a broker."""

    def send(self, order: OrderRequest) -> BrokerReport:
        """Send ``order``; return its state now (filled, pending or rejected).

        Raises when it cannot tell whether the order reached the broker (the engine journals
        ``unknown`` and never resends).
        """
        ...

    def on_quote(self, symbol: str, bid: float, ask: float, time_msc: int) -> tuple:
        """Take the latest quote; return the reports of orders completed since (maybe empty)."""
        ...

    def lookup(self, client_order_id: str) -> BrokerReport | None:
        """Return what the broker knows of an order (None when it never received it).

        Raises when it cannot tell (the journal then keeps the order unresolved).
        """
        ...

    def position(self, symbol: str) -> float:
        """Return the net position in lots (+ long, - short)."""
        ...

    def pnl(self) -> float:
        """Return realized plus unrealized PnL across symbols, in account currency."""
        ...
