"""The MT5 bridge: the Windows-side process, its order client, the MetaTrader5 fake, and the wire
protocol, tick record and CurveZMQ keys it shares with the trading node.

Pure Python (numpy, pyzmq, PyYAML; MetaTrader5 on Windows). The package root loads nothing until
a name is first used (:pep:`562`), so the node importing :mod:`flowchain_bridge.ticks` or
:mod:`flowchain_bridge.wire` does not load the bridge's sockets or the fake.
"""
import typing as _typing

__version__ = "0.1.0"

_HOMES = {
    "Bridge": "flowchain_bridge.server",
    "BridgeConfig": "flowchain_bridge.config",
    "FakeMetaTrader5": "flowchain_bridge.fake_mt5",
    "FakeSymbol": "flowchain_bridge.fake_mt5",
    "OrderClient": "flowchain_bridge.client",
    "OrderFault": "flowchain_bridge.fake_mt5",
    "OrderTimeout": "flowchain_bridge.client",
}

__all__ = ["Bridge", "BridgeConfig", "FakeMetaTrader5", "FakeSymbol", "OrderClient", "OrderFault", "OrderTimeout"]


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'flowchain_bridge' has no attribute {name!r}")
    value = getattr(__import__(home, fromlist=[name]), name)  # seen by `python -X importtime`
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if _typing.TYPE_CHECKING:
    from flowchain_bridge.client import OrderClient, OrderTimeout
    from flowchain_bridge.config import BridgeConfig
    from flowchain_bridge.fake_mt5 import FakeMetaTrader5, FakeSymbol, OrderFault
    from flowchain_bridge.server import Bridge
