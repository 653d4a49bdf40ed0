"""Fixtures for tests that run the bridge on the fake MT5 over 127.0.0.1 sockets.

Registered for every test by ``pytest_plugins`` in ``conftest.py``. A test module supplies
its own ``mt5`` fixture (usually :func:`fake_mt5` with the module's seed) and may override
``bridge_config``; it then gets ``ctx`` and a ready ``bridge``.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import zmq
from flowchain_bridge import Bridge, BridgeConfig, FakeMetaTrader5


def local_bridge_config(symbols: Iterable[str] = ("EURUSD",), **overrides: Any) -> BridgeConfig:
    """Return a BridgeConfig on ephemeral 127.0.0.1 ports that reconciles at once.

    Raises
    ------
    TypeError
        When an override names no BridgeConfig field.
    """
    fields: dict[str, Any] = dict(symbols=list(symbols), pub_endpoint="tcp://127.0.0.1:*",
                                  router_endpoint="tcp://127.0.0.1:*", reconcile_delay_s=0.0,
                                  allow_unauthenticated_orders=True)
    fields.update(overrides)
    return BridgeConfig(**fields)


def fake_mt5(seed: int, symbols: Iterable[str] = ("EURUSD",), rate: float = 50) -> FakeMetaTrader5:
    """Return a seeded fake terminal making ``rate`` ticks/s on each of ``symbols`` (0: none,
    the test makes them)."""
    fake = FakeMetaTrader5(seed=seed)
    for symbol in symbols:
        fake.set_rate(symbol, rate)
    return fake


def started_bridge(mt5: FakeMetaTrader5, ctx: zmq.Context, eventually, **overrides: Any) -> Bridge:
    """Start a bridge on ``mt5`` with :func:`local_bridge_config` (plus ``overrides``) and return
    it once it is positioned and the fake has quoted EURUSD (orders need a price); the caller
    stops it."""
    running = Bridge(mt5, local_bridge_config(**overrides), ctx).start()
    eventually(lambda: running.ready and mt5.symbol_info_tick("EURUSD").time_msc > 0,
               message="the bridge never positioned on the fake MT5")
    return running


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    """A ZeroMQ context for the test's sockets, destroyed (linger 0) after it."""
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def bridge_config() -> BridgeConfig:
    """The bridge's config: EURUSD, polled every 2 ms (override in a module for others)."""
    return local_bridge_config(poll_ms=2.0)


@pytest.fixture
def bridge(mt5: FakeMetaTrader5, bridge_config: BridgeConfig, ctx: zmq.Context,
           eventually) -> Iterator[Bridge]:
    """The bridge running on the module's ``mt5`` with ``bridge_config``, once it is ready."""
    with Bridge(mt5, bridge_config, ctx) as running:
        eventually(lambda: running.ready, message="the bridge never positioned on the fake MT5")
        yield running
