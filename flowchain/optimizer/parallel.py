"""A step's ``parallel: N``: split its element-wise input into N chunks, run them in N worker
processes (:class:`~flowchain.optimizer.pool.ComponentPool`) and concatenate the outputs.

The output is exactly the plain step's (same items, same order, same container kind). An input
of a single item, or an empty one, is run in the calling thread (nothing to split). A chunk that
raises fails the step with that exception (the other chunks are cancelled or discarded); the
exception carries a note naming the chunk and its items, and the runner records the step's
whole input as the failing input, as for any failing step. A worker process that dies fails the step with
:class:`~flowchain.optimizer.pool.PoolBroken`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowchain.optimizer.elementwise import join, note_chunk, split
from flowchain.optimizer.pool import ComponentPool, WorkerUsage


class ParallelStep:
    """The callable a ``parallel: N`` step runs instead of its component."""

    def __init__(self, call: Callable[[Any], Any], workers: int, what: str) -> None:
        self.call = call
        self.workers = workers
        self.what = what
        self.pool = ComponentPool(call, workers, what)

    def __call__(self, data: Any) -> Any:
        chunks = split(data, self.workers, self.what)
        if len(chunks) == 1:
            return self.call(data)
        starts = [0]
        for chunk in chunks[:-1]:
            starts.append(starts[-1] + len(chunk))

        def name_chunk(exc: BaseException, k: int) -> None:
            note_chunk(exc, self.what, k, len(chunks), starts[k], len(chunks[k]))

        return join(chunks, self.pool.map(chunks, name_chunk), self.what)

    def usage(self) -> WorkerUsage:
        """The CPU the step's workers had so far (:meth:`ComponentPool.usage`)."""
        return self.pool.usage()

    def close(self) -> None:
        """Stop the worker processes."""
        self.pool.close()
