"""Shared test fixtures: uvloop for every async test and a condition-based wait."""
import asyncio
import time
from collections.abc import Callable

import pytest
import uvloop

pytest_plugins = ["bridge_fixtures"]  # ctx, bridge_config, bridge: the bridge on the fake MT5


def pytest_asyncio_loop_factories(config, item):
    """Run every async test on uvloop, as the node does."""
    return {"uvloop": uvloop.new_event_loop}


def _eventually(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.002,
                message: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {message or condition}")
        time.sleep(interval)


async def _eventually_async(condition: Callable[[], object], timeout: float = 10.0,
                            interval: float = 0.002, message: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {message or condition}")
        await asyncio.sleep(interval)


@pytest.fixture
def eventually():
    """``eventually(lambda: cond, timeout=10)``: poll until true, else fail naming the condition."""
    return _eventually


@pytest.fixture
def eventually_async():
    """``await eventually_async(lambda: cond)``: the same, yielding to the event loop."""
    return _eventually_async
