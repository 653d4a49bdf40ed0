"""Turn an optimization result into a new chain version: the same chain with step fields set.

``parallel: N``, ``cache: {strategy: lru, size: N}`` and ``async: {concurrency: N}`` change the
chain's content-hash id, so the optimized chain is a new version beside the original. Nothing is
applied when any remedy the bottlenecks call for cannot be (a component lacking the trait it
needs): the refusal says which step, which trait and how to declare it.
"""
from __future__ import annotations

import dataclasses

from flowchain.chain import AsyncSpec, CacheSpec, ChainDefinition
from flowchain.errors import FlowChainError
from flowchain.optimizer.optimizer import OptimizationResult
from flowchain.optimizer.suggestions import ASYNC, CACHE, PARALLEL


class ApplyRefused(FlowChainError, ValueError):
    """The optimization result cannot be applied; the message says why."""


def apply_optimizations(definition: ChainDefinition,
                        result: OptimizationResult) -> ChainDefinition:
    """Return ``definition`` with every suggested optimization set on its step.

    Raises
    ------
    ApplyRefused
        When ``result`` is of another chain version, when a remedy needs a component trait
        the component lacks, or when there is nothing to apply.
    """
    if result.chain_id != definition.chain_id:
        raise ApplyRefused(f"the result is of {result.chain_id}, not of {definition.chain_id}")
    missing = [o for o in result.blocked if o.needs_trait is not None]
    if missing:
        raise ApplyRefused("; ".join(f"step {o.step!r} needs {o.kind}, but its {o.reason}"
                                     for o in missing))
    if not result.optimizations:
        why = "; ".join(f"step {o.step!r}: {o.reason}" for o in result.blocked)
        raise ApplyRefused("nothing to apply: " + (why or "the optimizer found no bottleneck"))
    by_step = {o.step: o for o in result.optimizations}
    steps = []
    for step in definition.steps:
        opt = by_step.get(step.name)
        if opt is None:
            steps.append(step)
        elif opt.kind == PARALLEL:
            steps.append(dataclasses.replace(step, parallel=opt.value))
        elif opt.kind == CACHE:
            steps.append(dataclasses.replace(step, cache=CacheSpec(strategy="lru",
                                                                   size=opt.value)))
        elif opt.kind == ASYNC:
            steps.append(dataclasses.replace(step, async_=AsyncSpec(opt.value)))
        else:  # pragma: no cover - the kinds are closed
            raise ApplyRefused(f"unknown optimization kind {opt.kind!r}")
    return dataclasses.replace(definition, steps=tuple(steps))
