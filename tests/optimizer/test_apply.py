"""Applying an optimization result: what can be applied is, what cannot is said, with why."""
import pytest

from flowchain import ChainBuilder
from flowchain.optimizer.apply import ApplyRefused, apply_optimizations, not_applied
from flowchain.optimizer.optimizer import OptimizationResult
from flowchain.optimizer.suggestions import CACHE, PARALLEL, Optimization

BLOCKED = Optimization("seed", PARALLEL, None, reason="component 'Seed' is not declared "
                       "elementwise: declare it with @flowchain.component(..., elementwise=True)",
                       needs_trait="elementwise")


def definition():
    return (ChainBuilder("surface_chain").step("seed", "Seed", "int", "list", 1)
            .step("surface", "Surface", "list", "list", 1).build())


def result(definition, optimizations, blocked):
    return OptimizationResult(definition.chain_id, (), tuple(optimizations), None,
                              chain=definition.name, blocked=tuple(blocked))


def test_the_applicable_remedy_is_applied_and_the_blocked_one_said():
    d = definition()
    cache = Optimization("surface", CACHE, 6)
    new = apply_optimizations(d, result(d, [cache], [BLOCKED]))
    assert new.chain_id != d.chain_id
    assert [s.cache.size if s.cache else None for s in new.steps] == [None, 6]
    assert [s.parallel for s in new.steps] == [d.steps[0].parallel, d.steps[1].parallel]
    [line] = not_applied(result(d, [cache], [BLOCKED]))
    assert line.startswith("step 'seed' needs parallel, but its component 'Seed' is not "
                           "declared elementwise") and "elementwise=True" in line


def test_nothing_applicable_is_refused_with_each_reason():
    d = definition()
    with pytest.raises(ApplyRefused, match="nothing to apply: step 'seed' needs parallel, but "
                                           "its component 'Seed' is not declared elementwise"):
        apply_optimizations(d, result(d, [], [BLOCKED]))
    with pytest.raises(ApplyRefused, match="the optimizer found no bottleneck"):
        apply_optimizations(d, result(d, [], []))
    other = ChainBuilder("other").step("a", "Seed", "int", "list", 1).build()
    with pytest.raises(ApplyRefused, match="the result is of"):
        apply_optimizations(d, result(other, [Optimization("a", CACHE, 2)], []))
