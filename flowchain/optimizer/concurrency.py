"""A step's ``async: {concurrency: N}``: run the items of its element-wise input concurrently,
at most N in flight, and concatenate the outputs in input order.

Each item is given to the component as a one-item input (``f([x])``; element-wise, so
``f(a + b) == f(a) + f(b)``), which suits components that wait (a request per item):

* a coroutine component (``async def``) runs under ``run_async`` as N-bounded asyncio tasks
  (a semaphore), on the runner's loop;
* a blocking component runs on a pool of N threads owned by the step (kept across executions,
  shut down by ``ChainRegistry.close()``): threads overlap waits, and the GIL is released
  while a thread waits on I/O or sleeps.

The first item that raises fails the step with its exception (noted with the item's index);
the items not started yet are cancelled.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flowchain.optimizer.elementwise import join, note_chunk, split


class ThreadedItems:
    """A blocking element-wise component run item by item on ``concurrency`` threads."""

    def __init__(self, call: Callable[[Any], Any], concurrency: int, what: str) -> None:
        self.call = call
        self.concurrency = concurrency
        self.what = what
        self._pool = ThreadPoolExecutor(max_workers=concurrency,
                                        thread_name_prefix="flowchain-async-step")

    def __call__(self, data: Any) -> Any:
        items = split(data, len(data) if hasattr(data, "__len__") else 1, self.what)
        if len(items) == 1:
            return self.call(items[0])
        futures = [self._pool.submit(self.call, item) for item in items]
        outputs = []
        try:
            for k, future in enumerate(futures):
                try:
                    outputs.append(future.result())
                except Exception as exc:
                    note_chunk(exc, self.what, k, len(items), k, 1)
                    raise
        finally:
            for future in futures:
                future.cancel()
        return join(items, outputs, self.what)

    def close(self) -> None:
        """Stop the threads (waits for items in flight)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


class AsyncItems:
    """A coroutine element-wise component run item by item, ``concurrency`` tasks at a time."""

    def __init__(self, call: Callable[[Any], Any], concurrency: int, what: str) -> None:
        self.call = call
        self.concurrency = concurrency
        self.what = what

    async def __call__(self, data: Any) -> Any:
        items = split(data, len(data) if hasattr(data, "__len__") else 1, self.what)
        if len(items) == 1:
            return await self.call(items[0])
        # a semaphore per execution: executions interleaving on one loop each get N in flight
        gate = asyncio.Semaphore(self.concurrency)
        call = self.call

        async def one(item: Any) -> Any:
            async with gate:
                return await call(item)

        tasks = [asyncio.ensure_future(one(item)) for item in items]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for k, task in enumerate(tasks):
                if task.done() and not task.cancelled() and task.exception() is not None:
                    exc = task.exception()
                    assert exc is not None
                    note_chunk(exc, self.what, k, len(items), k, 1)
                    raise exc
            outputs = [task.result() for task in tasks]
        finally:
            for task in tasks:
                task.cancel()
        return join(items, outputs, self.what)

    def close(self) -> None:
        """Nothing to release: the tasks run on the caller's loop."""
