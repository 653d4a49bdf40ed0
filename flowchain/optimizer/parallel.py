"""A step's ``parallel: N``: split its element-wise input into N chunks, run them in N worker
processes (:class:`~flowchain.optimizer.pool.ComponentPool`) and concatenate the outputs.

The output is exactly the plain step's (same items, same order, same container kind). An input
of a single item, or an empty one, is run in the calling thread (nothing to split). A chunk that
raises fails the step with that exception (the other chunks are cancelled or discarded); the
exception carries a note naming the chunk and its items, and the runner records the step's
whole input as the failing input, as for any failing step.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowchain.optimizer.elementwise import join, note_chunk, split
from flowchain.optimizer.pool import ComponentPool


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
        futures = [self.pool.submit(chunk) for chunk in chunks]
        outputs = []
        start = 0
        try:
            for k, future in enumerate(futures):
                try:
                    outputs.append(future.result())
                except Exception as exc:
                    note_chunk(exc, self.what, k, len(chunks), start, len(chunks[k]))
                    raise
                start += len(chunks[k])
        finally:
            for future in futures:
                future.cancel()
        return join(chunks, outputs, self.what)

    def close(self) -> None:
        """Stop the worker processes."""
        self.pool.close()
