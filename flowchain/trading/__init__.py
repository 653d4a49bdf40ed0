"""The AI decision chain: features (numba), agents, consensus, risk, journal and brokers.

The four chain steps pass one object along: a :class:`~flowchain.trading.context.DecisionContext`
preallocated per symbol and reused on every tick of that symbol::

    ctx (tick loaded) -> FeatureEngine -> ctx (features) -> MultiAgentOrchestrator
        -> ctx (signals, confidences) -> ConsensusEngine -> ctx (decision)
        -> TradingEngine -> TradeResult

Import :mod:`flowchain.trading.components` to register the four steps under their chain names.
"""
from flowchain.trading.context import DecisionContext
from flowchain.trading.decision import Decision, TradeResult

__all__ = ["DecisionContext", "Decision", "TradeResult"]
