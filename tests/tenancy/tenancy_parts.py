"""Small real components for the tenancy tests, a chain builder and the test tiers.

A module of its own (not conftest) so tests import it by a unique name, and worker processes
(forked) find the same functions.
"""
import asyncio
import os
import time

from flowchain import ChainDefinition, ChainStep, ComponentRegistry


class Inflight:
    """Counts executions in progress inside a component (and the most seen at once)."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.done = 0


INFLIGHT = Inflight()
LEAK: list = []


def inc(x):
    return x + 1


def boom(x):
    raise ValueError(f"bad input {x!r}")


def exit_interpreter(x):
    os._exit(3)


def segfault(x):
    import ctypes

    return ctypes.string_at(0)


def hang(x):
    time.sleep(120)
    return x


def leak(x):
    LEAK.append(bytearray(4 * 1024 * 1024))
    LEAK[-1][::4096] = b"x" * len(LEAK[-1][::4096])  # touch every page: resident
    return x


ALLOC_BYTES = 256 * 1024


def alloc(x):
    block = bytearray(ALLOC_BYTES)  # freed on return: only the step's peak sees it
    return x + len(block) // ALLOC_BYTES


def spin(x):
    end = time.thread_time_ns() + 2_000_000  # 2 ms of this thread's CPU
    while time.thread_time_ns() < end:
        pass
    return x + 1


async def slow_async(x):
    INFLIGHT.now += 1
    INFLIGHT.peak = max(INFLIGHT.peak, INFLIGHT.now)
    try:
        for _ in range(3):
            await asyncio.sleep(0)
        return x + 1
    finally:
        INFLIGHT.now -= 1
        INFLIGHT.done += 1


class Counter:
    """A stateful component: dedicated tenants must each get their own instance."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return self.calls


TEST_TIERS = """
[features]
advanced = ["Advanced"]

[tiers.free]
isolation = "shared"
chains = 5
steps_per_chain = 4
executions_per_day = 10
history_retention_days = 7
features = []

[tiers.pro]
isolation = "dedicated"
chains = 50
steps_per_chain = 16
concurrent = 10
executions_per_day = 100000
features = ["advanced"]
ring_capacity = 256

[tiers.enterprise]
isolation = "process"
steps_per_chain = 64
features = ["advanced"]
ring_capacity = 256
execution_timeout_s = 2.0
worker_memory_mb = 8
"""


def make_components() -> ComponentRegistry:
    reg = ComponentRegistry()
    for name, fn in (("Inc", inc), ("Boom", boom), ("Exit", exit_interpreter),
                     ("Segfault", segfault), ("Hang", hang), ("Leak", leak),
                     ("SlowAsync", slow_async), ("Advanced", inc),
                     ("Alloc", alloc), ("Spin", spin)):
        reg.register(name, fn)
    reg.register("Counter", Counter)
    INFLIGHT.__init__()
    return reg


def chain(name: str, n: int = 4, component: str = "Inc", *, last: str = "") -> ChainDefinition:
    steps = [ChainStep(f"step_{i}", component, "int", "int", 1.0) for i in range(n)]
    if last:
        steps[-1] = ChainStep(f"step_{n - 1}", last, "int", "int", 1.0)
    return ChainDefinition(name, tuple(steps))
