"""async: {concurrency: N}: an element-wise step's items run concurrently, at most N at once."""
import asyncio
import dataclasses
import threading

import pytest

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry
from flowchain.chain import AsyncSpec


class InFlight:
    """Counts the items in flight and the most seen at once."""

    def __init__(self):
        self.now = 0
        self.peak = 0
        self.lock = threading.Lock()

    def enter(self):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self):
        with self.lock:
            self.now -= 1


def _registry(component, concurrency):
    components = ComponentRegistry()
    components.register("Fetch", component, elementwise=True)
    registry = ChainRegistry(components)
    plain = ChainBuilder("C").step("fetch", "Fetch", "ids", "quotes", 1).build()
    optimized = dataclasses.replace(plain, steps=(
        dataclasses.replace(plain.steps[0], async_=AsyncSpec(concurrency)),))
    return registry, registry.register_chain(plain), registry.register_chain(optimized)


def test_blocking_items_overlap_on_threads_up_to_the_limit_in_order():
    flight = InFlight()
    three_in = threading.Barrier(3, timeout=20)

    def fetch(ids):
        flight.enter()
        try:
            if ids[0] < 3:
                three_in.wait()  # the first three items can only pass together
            return [f"q{i}" for i in ids]
        finally:
            flight.leave()

    registry, _, optimized_id = _registry(fetch, 3)
    data = list(range(12))
    out = registry.runner(optimized_id).run(data)
    assert out == [f"q{i}" for i in range(12)]
    assert flight.peak <= 3
    registry.close()


def test_a_failing_item_fails_the_step_with_its_index():
    def fetch(ids):
        if ids[0] == "bad":
            raise ConnectionError("quote server refused")
        return list(ids)

    registry, _, optimized_id = _registry(fetch, 2)
    data = ["a", "bad", "c"]
    with pytest.raises(ChainStepError) as info:
        registry.runner(optimized_id).run(data)
    assert info.value.execution.failure.step == "fetch"
    assert info.value.args[4] is data
    cause = info.value.__cause__
    assert isinstance(cause, ConnectionError)
    assert any("chunk 2 of 3 (input items 1..1)" in n for n in cause.__notes__)
    registry.close()


async def test_coroutine_items_run_as_tasks_at_most_n_in_flight():
    flight = InFlight()
    release = asyncio.Event()

    async def fetch(ids):
        flight.enter()
        try:
            if flight.now == 2:
                release.set()
            await release.wait()  # nothing returns before two items are in flight at once
            return [i * 10 for i in ids]
        finally:
            flight.leave()

    registry, _, optimized_id = _registry(fetch, 2)
    out = await registry.runner(optimized_id).run_async([1, 2, 3, 4, 5])
    assert out == [10, 20, 30, 40, 50]
    assert flight.peak == 2


async def test_a_failing_coroutine_item_fails_the_step():
    async def fetch(ids):
        if ids[0] == 3:
            raise TimeoutError("no quote for 3")
        await asyncio.sleep(0)
        return list(ids)

    registry, _, optimized_id = _registry(fetch, 4)
    with pytest.raises(ChainStepError) as info:
        await registry.runner(optimized_id).run_async([1, 2, 3, 4])
    assert info.value.execution.failure.step == "fetch"
    assert isinstance(info.value.__cause__, TimeoutError)
    assert any("input items 2..2" in n for n in info.value.__cause__.__notes__)


def test_an_empty_or_single_input_is_one_plain_call():
    calls = []

    def fetch(ids):
        calls.append(list(ids))
        return list(ids)

    registry, _, optimized_id = _registry(fetch, 4)
    run = registry.runner(optimized_id).run
    assert run([]) == [] and run([7]) == [7]
    assert calls == [[], [7]]
    registry.close()
