"""Brokers the trading step sends orders through: paper (simulated) and the MT5 bridge.

``BridgeBroker`` is imported on first use, so a paper-only node does not load the bridge
package.
"""
from __future__ import annotations

from typing import Any

__all__ = ["BridgeBroker", "BridgeUnreachableError", "PaperBroker"]


def __getattr__(name: str) -> Any:
    if name == "PaperBroker":
        from flowchain.trading.brokers.paper import PaperBroker

        return PaperBroker
    if name in ("BridgeBroker", "BridgeUnreachableError"):
        from flowchain.trading.brokers import bridge

        return getattr(bridge, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
