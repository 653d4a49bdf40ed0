"""The chain definitions FlowChain ships: the trading node's two chains in the `Data_Flow_Chains:` YAML shape."""
from __future__ import annotations

from pathlib import Path

TRADING_NODE_YAML = Path(__file__).with_name("trading_node.yaml")
"""The trading node's chains file (``Data_Flow_Chains:`` shape)."""

MT5_TO_DATABASE_CHAIN = "MT5_To_Database_Chain"
"""The per-batch chain: ingestion, validation, processing, storage."""

AI_DECISION_CHAIN = "AI_Decision_Chain"
"""The per-tick chain: features, agents, consensus, trading execution."""

__all__ = ["AI_DECISION_CHAIN", "MT5_TO_DATABASE_CHAIN", "TRADING_NODE_YAML"]
