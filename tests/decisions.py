"""Decided contexts for trading-engine tests: a DecisionContext as the consensus step leaves it."""
from __future__ import annotations

import time

import numpy as np

from flowchain.trading import layout as L
from flowchain.trading.context import DecisionContext


def ctx_with(side: int, volume: float = 0.1, bid: float = 1.1000, ask: float = 1.1002,
             time_msc: int = 5_000, symbol: str = "EURUSD") -> DecisionContext:
    """Return a context quoting ``bid``/``ask`` whose decision is ``side`` (+1 buy, -1 sell,
    0 hold) for ``volume`` lots, backed by one confident momentum signal.

    Raises
    ------
    KeyError
        When ``side`` is not +1, -1 or 0.
    """
    ctx = DecisionContext(symbol)
    ctx.features[L.F_BID], ctx.features[L.F_ASK], ctx.features[L.F_TIME_MSC] = bid, ask, time_msc
    ctx.received_ns = time.monotonic_ns()
    ctx.signals, ctx.confidences, ctx.agent_names = np.array([0.9]), np.array([0.8]), ("momentum",)
    d = ctx.decision
    d.side, d.volume, d.action = side, volume, {1: "buy", -1: "sell", 0: "hold"}[side]
    d.signals, d.confidences, d.agent_names = ctx.signals, ctx.confidences, ctx.agent_names
    return ctx
