"""A strategy author's components: imported by ``flowchain run --import my_components`` and by
the node (``[components] import = ["my_components"]`` in node.toml).

Three kinds of component live here:

* plain functions for a chain of your own (``Price_Signal_Chain`` in chains.yaml);
* a step added to the AI decision chain (``SpreadGuard``: no order while the spread is wide);
* a custom agent (``SpreadReversionAgent``) voting beside the built-in four, through an
  orchestrator component (``AuthorAgents``) that the AI decision chain names instead of
  ``MultiAgentOrchestrator``.

Hot-path rule for the AI decision chain's steps: they fill the symbol's ``DecisionContext`` in
place and allocate nothing per tick.
"""
from __future__ import annotations

import math

import flowchain
from flowchain.trading.agents import default_agents
from flowchain.trading.decision import HOLD
from flowchain.trading.layout import F_EMA_SLOW, F_MID, F_SPREAD, F_VOLATILITY
from flowchain.trading.orchestrator import MultiAgentOrchestrator

# --------------------------------------------------------------------- a chain of your own


@flowchain.component("Returns")
def returns(prices: list) -> list:
    """Prices (a JSON list of numbers) -> simple returns."""
    if not isinstance(prices, list) or len(prices) < 3:
        raise ValueError(f"Returns needs a list of at least 3 prices, got {prices!r}")
    return [b / a - 1.0 for a, b in zip(prices, prices[1:], strict=False)]


@flowchain.component("ZScore")
def zscore(rets: list) -> dict:
    """Returns -> the last return's z-score against the others."""
    *history, last = rets
    mean = sum(history) / len(history)
    var = sum((r - mean) ** 2 for r in history) / len(history)
    std = math.sqrt(var)
    return {"last": last, "mean": mean, "std": std,
            "z": 0.0 if std == 0.0 else (last - mean) / std}


@flowchain.component("ThresholdSignal")
class ThresholdSignal:
    """z-score -> ``buy`` / ``sell`` / ``hold`` (a class: instantiated once, then called)."""

    def __init__(self, threshold: float = 2.0) -> None:
        self.threshold = threshold

    def __call__(self, stats: dict) -> dict:
        z = stats["z"]
        action = "sell" if z > self.threshold else "buy" if z < -self.threshold else "hold"
        return {"action": action, "z": round(z, 4)}


# --------------------------------------------------------------------- the AI decision chain

MAX_SPREAD_OVER_VOLATILITY = 4.0
"""SpreadGuard holds when the spread is wider than this many ticks of volatility."""


@flowchain.component("SpreadGuard")
class SpreadGuard:
    """After consensus: turn the decision into a hold while the spread is unusually wide."""

    def __init__(self) -> None:
        self.held = 0

    def __call__(self, ctx):
        features = ctx.features
        volatility = features[F_VOLATILITY] * features[F_MID]
        decision = ctx.decision
        if decision.side != 0 and volatility > 0.0 and \
                features[F_SPREAD] > MAX_SPREAD_OVER_VOLATILITY * volatility:
            decision.action = HOLD
            decision.side = 0
            decision.volume = 0.0
            self.held += 1
        return ctx


class SpreadReversionAgent:
    """A custom agent: lean against a mid that ran away from its slow EMA, by more than the
    spread; confident in proportion to the distance."""

    name = "spread_reversion"

    def analyze(self, features) -> tuple[float, float]:
        mid, slow, spread = features[F_MID], features[F_EMA_SLOW], features[F_SPREAD]
        if slow <= 0.0 or spread <= 0.0:
            return 0.0, 0.0
        distance = (mid - slow) / spread
        if abs(distance) < 1.0:
            return 0.0, 0.0
        return (-1.0 if distance > 0 else 1.0), min(1.0, abs(distance) / 10.0)


@flowchain.component("AuthorAgents")
class AuthorAgents(MultiAgentOrchestrator):
    """The built-in four agents plus :class:`SpreadReversionAgent`."""

    def __init__(self) -> None:
        super().__init__(agents=[*default_agents(), SpreadReversionAgent()])
