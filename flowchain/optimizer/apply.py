"""Turn an optimization result into a new chain version: the same chain with step fields set.

``parallel: N``, ``cache: {strategy: lru, size: N}`` and ``async: {concurrency: N}`` change the
chain's content-hash id, so the optimized chain is a new version beside the original. A remedy
that cannot be applied (a component lacking the trait it needs) is left out and said by
:func:`not_applied` (which step, which trait and how to declare it); with nothing applicable
the application is refused with those reasons.
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
    """Return ``definition`` with every suggested optimization set on its step (the remedies
    in ``result.blocked`` are not: see :func:`not_applied`).

    Raises
    ------
    ApplyRefused
        When ``result`` is of another chain version, or when there is nothing to apply (the
        message gives each blocked remedy's reason).
    """
    if result.chain_id != definition.chain_id:
        raise ApplyRefused(f"the result is of {result.chain_id}, not of {definition.chain_id}")
    if not result.optimizations:
        why = "; ".join(not_applied(result))
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


def not_applied(result: OptimizationResult) -> list[str]:
    """Why each remedy the bottlenecks call for was not suggested, one line each: for a
    missing component trait, the step, the remedy, the trait and how to declare it."""
    return [f"step {o.step!r} needs {o.kind}, but its {o.reason}" if o.needs_trait is not None
            else f"step {o.step!r}: {o.reason}" for o in result.blocked]
