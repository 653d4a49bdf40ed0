"""The typed objects the decision chain hands on: a consensus :class:`Decision` and a :class:`TradeResult`.

Both are ``__slots__`` classes that a :class:`~flowchain.trading.context.DecisionContext` owns and
the steps overwrite in place on every tick (nothing is allocated per tick). Call ``copy()`` to keep
one beyond the next tick of the same symbol.
"""
from __future__ import annotations

import numpy as np

BUY = "buy"
SELL = "sell"
HOLD = "hold"
ACTIONS = (BUY, SELL, HOLD)

# Trade result statuses.
STATUS_HOLD = "hold"
"""No order: the decision was to hold."""
STATUS_REJECTED = "rejected"
"""A risk check refused the order before it was journaled or sent (``reason`` names the check)."""
STATUS_FILLED = "filled"
"""The broker filled the order."""
STATUS_PENDING = "pending"
"""The broker accepted the order; the fill comes later (simulated latency, bridge ACK)."""
STATUS_FAILED = "failed"
"""The broker refused the order or sending failed (``reason`` says why)."""
STATUSES = (STATUS_HOLD, STATUS_REJECTED, STATUS_FILLED, STATUS_PENDING, STATUS_FAILED)


class Decision:
    """What the consensus decided for one tick, with the agents' votes as its reason.

    Attributes
    ----------
    action : str
        ``"buy"``, ``"sell"`` or ``"hold"``.
    side : int
        +1 for buy, -1 for sell, 0 for hold.
    volume : float
        Lots to trade (0.0 on hold); to a trading engine that targets positions, the size of the
        position to hold on ``side``.
    score : float
        The confidence-weighted mean signal in [-1, 1].
    agreement : float
        The share of the confidence weight that voted on the score's side, in [0, 1].
    confidence : float
        The mean confidence of the agents, in [0, 1].
    agent_names : tuple of str
        The agents, in the order of ``signals`` and ``confidences``.
    signals, confidences : numpy.ndarray
        The agents' votes (live views owned by the context; copy them to keep them).
    """

    __slots__ = ("action", "side", "volume", "score", "agreement", "confidence", "agent_names",
                 "signals", "confidences")

    def __init__(self) -> None:
        self.action = HOLD
        self.side = 0
        self.volume = 0.0
        self.score = 0.0
        self.agreement = 0.0
        self.confidence = 0.0
        self.agent_names: tuple[str, ...] = ()
        self.signals = np.zeros(0)
        self.confidences = np.zeros(0)

    def votes(self) -> list[tuple[str, float, float]]:
        """Return the reason: ``(agent name, signal, confidence)`` for every agent."""
        return [(name, float(s), float(c))
                for name, s, c in zip(self.agent_names, self.signals, self.confidences, strict=True)]

    def reason(self) -> dict[str, object]:
        """Return the decision and its votes as plain data (for the journal and logs)."""
        return {"action": self.action, "volume": self.volume, "score": self.score,
                "agreement": self.agreement, "confidence": self.confidence,
                "votes": {name: {"signal": s, "confidence": c} for name, s, c in self.votes()}}

    def copy(self) -> Decision:
        """Return an independent copy (the votes arrays are copied too)."""
        other = Decision()
        for name in Decision.__slots__:
            setattr(other, name, getattr(self, name))
        other.signals = self.signals.copy()
        other.confidences = self.confidences.copy()
        return other

    def __repr__(self) -> str:
        return (f"Decision({self.action} {self.volume:g} score={self.score:+.3f} "
                f"agreement={self.agreement:.2f} votes={self.votes()})")


class TradeResult:
    """What the trading step did with a decision.

    Attributes
    ----------
    status : str
        One of :data:`STATUSES`.
    reason : str
        Why (the risk check's name on ``rejected``, the broker's message on ``failed``).
    symbol : str
    side : int
        +1 buy, -1 sell, 0 none.
    volume : float
        Requested lots.
    client_order_id : str or None
        The idempotent order id, when an order was journaled.
    price : float
        The fill price (0.0 when not filled).
    retcode : int
        The broker's return code (MT5 ``TRADE_RETCODE_*``; 0 when no order).
    """

    __slots__ = ("status", "reason", "symbol", "side", "volume", "client_order_id", "price",
                 "retcode")

    def __init__(self, symbol: str = "") -> None:
        self.status = STATUS_HOLD
        self.reason = ""
        self.symbol = symbol
        self.side = 0
        self.volume = 0.0
        self.client_order_id: str | None = None
        self.price = 0.0
        self.retcode = 0

    def copy(self) -> TradeResult:
        """Return an independent copy."""
        other = TradeResult(self.symbol)
        for name in TradeResult.__slots__:
            setattr(other, name, getattr(self, name))
        return other

    def __repr__(self) -> str:
        return (f"TradeResult({self.status} {self.symbol} side={self.side} volume={self.volume:g} "
                f"id={self.client_order_id} price={self.price:g} reason={self.reason!r})")
