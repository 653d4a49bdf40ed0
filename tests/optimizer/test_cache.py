"""cache: {strategy: lru, size: N}: repeated inputs answered from memory, exactly."""
import asyncio
import dataclasses
import threading

import numpy as np
import pytest

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry
from flowchain.chain import CacheSpec
from flowchain.optimizer.cache import LruStepCache
from flowchain.optimizer.input_hash import input_hash


class Counting:
    """A deterministic component that counts its calls."""

    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, data):
        with self.lock:
            self.calls += 1
        if data == "boom":
            raise KeyError("boom")
        return {"sum": sum(data) if isinstance(data, (list, tuple)) else data}


def _registry(component, size=2):
    components = ComponentRegistry()
    components.register("Features", component, deterministic=True)
    registry = ChainRegistry(components)
    plain = ChainBuilder("C").step("features", "Features", "x", "y", 1).build()
    cached = dataclasses.replace(plain, steps=(
        dataclasses.replace(plain.steps[0], cache=CacheSpec(size=size)),))
    return registry, registry.register_chain(plain), registry.register_chain(cached)


def test_hits_return_what_a_miss_returned_and_lru_evicts_the_oldest():
    component = Counting()
    registry, plain_id, cached_id = _registry(component)
    run = registry.runner(cached_id).run
    first = run([1, 2])
    assert run([1, 2]) is first
    assert component.calls == 1
    assert run((1, 2)) == {"sum": 3}  # a tuple is another input than a list
    assert component.calls == 2
    run([3])               # size 2: [1, 2] is now the least recently used
    run([1, 2])            # evicted: called again
    assert component.calls == 4
    stats = registry.step_cache(cached_id, "features")
    assert (stats.hits, stats.misses, stats.entries, stats.size) == (1, 4, 2, 2)
    assert stats.hit_ratio == pytest.approx(0.2)
    assert registry.step_cache(plain_id, "features") is None
    assert registry.runner(plain_id).run([1, 2]) == run([1, 2])
    with pytest.raises(KeyError, match="no step 'nope'"):
        registry.step_cache(cached_id, "nope")


def test_equal_inputs_hit_whatever_their_identity_or_dict_order():
    component = Counting()
    registry, _, cached_id = _registry(component, size=8)
    run = registry.runner(cached_id).run
    run([4, 5])
    run([4, 5].copy())
    run({"a": 1, "b": [1.5, None]})
    run({"b": [1.5, None], "a": 1})
    assert component.calls == 2
    assert input_hash({"a": 1, "b": 2}) == input_hash({"b": 2, "a": 1})
    assert input_hash(1) != input_hash(1.0) != input_hash(True)
    assert input_hash(np.arange(3)) != input_hash(np.arange(3, dtype=np.int32))


def test_failures_are_not_cached_and_fail_the_step():
    component = Counting()
    registry, _, cached_id = _registry(component)
    run = registry.runner(cached_id).run
    for _ in range(2):
        with pytest.raises(ChainStepError) as info:
            run("boom")
        assert info.value.execution.failure.step == "features"
    assert component.calls == 2


def test_an_input_the_hash_cannot_read_is_passed_through_uncached():
    component = Counting()
    registry, _, cached_id = _registry(component)
    run = registry.runner(cached_id).run
    marker = object()
    assert run(marker) == {"sum": marker}
    assert run(marker) == {"sum": marker}
    assert component.calls == 2
    assert registry.step_cache(cached_id, "features").uncacheable == 2
    assert input_hash(marker).startswith("?") and input_hash(marker) != input_hash(marker)


def test_the_cache_is_thread_safe():
    component = Counting()
    cache = LruStepCache(component, 16)
    errors = []

    def worker(offset):
        try:
            for i in range(400):
                assert cache([(i + offset) % 32]) == {"sum": (i + offset) % 32}
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = cache.stats()
    assert stats.hits + stats.misses == 1600
    assert stats.entries == 16


async def test_a_coroutine_component_is_cached_under_run_async():
    calls = []

    async def slow_double(x):
        calls.append(x)
        await asyncio.sleep(0)
        return 2 * x

    registry, _, cached_id = _registry(slow_double)
    runner = registry.runner(cached_id)
    assert [await runner.run_async(v) for v in (1, 1, 2, 1)] == [2, 2, 4, 2]
    assert calls == [1, 2]


def test_size_is_validated():
    with pytest.raises(ValueError, match="size of at least 1"):
        LruStepCache(lambda x: x, 0)
