"""Register the AI decision chain's four steps under the chain's component names.

Importing this module registers the classes (instantiated with their defaults the first time a
chain needs them) in the process-wide registry::

    FeatureEngine -> MultiAgentOrchestrator -> ConsensusEngine -> TradingEngine
    (DecisionContext -> DecisionContext -> DecisionContext -> TradeResult)

To run them configured (a journal file, the bridge broker, risk limits), register instances
instead with :func:`register_decision_components`.
"""
from __future__ import annotations

from flowchain.chain import ChainDefinition, ChainStep
from flowchain.components import ComponentRegistry, component, default_components
from flowchain.trading.consensus import ConsensusEngine
from flowchain.trading.engine import TradingEngine
from flowchain.trading.features import FeatureEngine
from flowchain.trading.orchestrator import MultiAgentOrchestrator

component("FeatureEngine")(FeatureEngine)
component("MultiAgentOrchestrator")(MultiAgentOrchestrator)
component("ConsensusEngine")(ConsensusEngine)
component("TradingEngine")(TradingEngine)


def register_decision_components(registry: ComponentRegistry | None = None, *,
                                 features: FeatureEngine | None = None,
                                 orchestrator: MultiAgentOrchestrator | None = None,
                                 consensus: ConsensusEngine | None = None,
                                 trading: TradingEngine | None = None) -> None:
    """Register configured instances of the four steps under their chain names.

    Each one given replaces the registered class (or instance) of its name; the others are
    registered as classes when missing.

    Raises
    ------
    ValueError
        Never for these names (they are replaced); see :meth:`ComponentRegistry.register`.
    """
    reg = registry or default_components
    for name, impl, cls in (("FeatureEngine", features, FeatureEngine),
                            ("MultiAgentOrchestrator", orchestrator, MultiAgentOrchestrator),
                            ("ConsensusEngine", consensus, ConsensusEngine),
                            ("TradingEngine", trading, TradingEngine)):
        if impl is not None:
            reg.register(name, impl, replace=True)
        elif name not in reg:
            reg.register(name, cls)


def ai_decision_chain(name: str = "ai_decision") -> ChainDefinition:
    """Return the AI decision chain (steps, contracts and expected durations in ms)."""
    return ChainDefinition(name, (
        ChainStep("feature_extraction", "FeatureEngine", "market_data", "feature_vectors", 30.0),
        ChainStep("multi_agent_analysis", "MultiAgentOrchestrator", "feature_vectors",
                  "agent_results", 15.0),
        ChainStep("consensus_generation", "ConsensusEngine", "agent_results", "ai_decision", 10.0),
        ChainStep("trading_execution", "TradingEngine", "ai_decision", "trade_result", 1.2),
    ))
