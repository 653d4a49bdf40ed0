"""The MT5 bridge: the Windows-side process, its order client and the MetaTrader5 fake."""
from flowchain_bridge.client import OrderClient, OrderTimeout
from flowchain_bridge.config import BridgeConfig
from flowchain_bridge.fake_mt5 import FakeMetaTrader5, FakeSymbol, OrderFault
from flowchain_bridge.server import Bridge

__all__ = ["Bridge", "BridgeConfig", "FakeMetaTrader5", "FakeSymbol", "OrderClient", "OrderFault", "OrderTimeout"]
