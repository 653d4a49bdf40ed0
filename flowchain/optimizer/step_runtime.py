"""Build what the engine calls for a step with ``parallel``, ``cache`` or ``async`` set.

Cold code, run once when a chain's runner is built: a step without these fields is given to
the engine as its component, untouched (no wrapper, no cost). Composition, outermost first:
the cache (a hit skips everything), then the split (``parallel`` in processes or ``async``
concurrently), then the component.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowchain.chain import ChainStep
from flowchain.components import ResolvedComponent
from flowchain.optimizer.cache import AsyncLruStepCache, LruStepCache
from flowchain.optimizer.concurrency import AsyncItems, ThreadedItems
from flowchain.optimizer.parallel import ParallelStep
from flowchain.optimizer.pool import WorkerUsage


class StepOptionError(TypeError):
    """A step's options cannot run with its component (a coroutine under ``parallel``)."""


@dataclass(frozen=True, slots=True)
class StepRuntime:
    """What the engine calls for one step, and whether it must be awaited.

    ``cache`` is the step's :class:`LruStepCache` (counters via ``cache.stats()``) or None;
    ``parts`` every object holding threads or processes, for :meth:`close`.
    """

    call: Callable[[Any], Any]
    is_async: bool
    cache: LruStepCache | None
    parts: tuple[Any, ...]

    def worker_usage(self) -> WorkerUsage | None:
        """The CPU a ``parallel`` step's worker processes had so far, or None."""
        for part in self.parts:
            if isinstance(part, ParallelStep):
                return part.usage()
        return None

    def close(self) -> None:
        """Stop the step's worker processes and threads."""
        for part in self.parts:
            part.close()


def has_options(step: ChainStep) -> bool:
    """Whether the step sets ``parallel``, ``cache`` or ``async``."""
    return step.parallel is not None or step.cache is not None or step.async_ is not None


def build_step_runtime(step: ChainStep, resolved: ResolvedComponent,
                       chain: str) -> StepRuntime:
    """Return the callable running ``step`` with its options around ``resolved``.

    Raises
    ------
    StepOptionError
        When ``parallel`` is set on a coroutine component (worker processes cannot await it on
        the runner's loop: use ``async`` instead).
    flowchain.optimizer.pool.ComponentNotPicklable
        When ``parallel`` is set and the component cannot be sent to a worker process.
    """
    what = f"chain {chain!r} step {step.name!r} ({step.component})"
    call = resolved.call
    is_async = resolved.is_async
    parts: list[Any] = []
    if step.parallel is not None:
        if is_async:
            raise StepOptionError(
                f"{what}: 'parallel' runs the component in worker processes, but it is a "
                "coroutine (async def); use 'async: {concurrency: N}' instead")
        call = ParallelStep(call, step.parallel, what)
        parts.append(call)
    elif step.async_ is not None:
        if is_async:
            call = AsyncItems(call, step.async_.concurrency, what)
        else:
            call = ThreadedItems(call, step.async_.concurrency, what)
        parts.append(call)
    cache: LruStepCache | None = None
    if step.cache is not None:
        cache = (AsyncLruStepCache if is_async else LruStepCache)(call, step.cache.size)
        call = cache
    return StepRuntime(call, is_async, cache, tuple(parts))
