"""A step's ``cache: {strategy: lru, size: N}``: answer a repeated input from memory.

Only for components declared deterministic (the registry refuses the field otherwise). The key
is a 128-bit blake2b digest of the input's canonical encoding (:mod:`.input_hash`), so equal
inputs hit whatever their identity, and a hit returns exactly the object the miss returned:
cached outputs are shared between executions, so steps must not mutate their input (a rule of
every chain already). An input the encoding cannot read is passed to the component uncached
(counted in ``uncacheable``). A failing call is not cached. Thread-safe: the table is guarded
by a lock, the component is called outside it (two threads missing the same input both call).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowchain.optimizer.input_hash import UnhashableInput, input_digest

_KEY_BYTES = 16


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A cache's counters at one moment."""

    hits: int
    misses: int
    uncacheable: int
    entries: int
    size: int

    @property
    def hit_ratio(self) -> float:
        """Hits over lookups (0.0 before the first)."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class LruStepCache:
    """The outputs of the ``size`` most recently used distinct inputs of one step."""

    def __init__(self, call: Callable[[Any], Any], size: int) -> None:
        if size < 1:
            raise ValueError(f"an LRU cache needs a size of at least 1, got {size}")
        self.call = call
        self.size = size
        self._table: OrderedDict[bytes, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.uncacheable = 0

    def _lookup(self, data: Any) -> tuple[bytes | None, bool, Any]:
        try:
            key = input_digest(data, _KEY_BYTES)
        except UnhashableInput:
            with self._lock:
                self.uncacheable += 1
            return None, False, None
        with self._lock:
            table = self._table
            if key in table:
                table.move_to_end(key)
                self.hits += 1
                return key, True, table[key]
            self.misses += 1
        return key, False, None

    def _store(self, key: bytes, value: Any) -> None:
        with self._lock:
            table = self._table
            table[key] = value
            table.move_to_end(key)
            while len(table) > self.size:
                table.popitem(last=False)

    def __call__(self, data: Any) -> Any:
        key, hit, value = self._lookup(data)
        if hit:
            return value
        value = self.call(data)
        if key is not None:
            self._store(key, value)
        return value

    def stats(self) -> CacheStats:
        """Return the counters and the number of entries held."""
        with self._lock:
            return CacheStats(self.hits, self.misses, self.uncacheable, len(self._table),
                              self.size)

    def clear(self) -> None:
        """Forget every entry (the counters stay)."""
        with self._lock:
            self._table.clear()

    def close(self) -> None:
        """Release what the wrapped call holds (a pool), if anything."""
        close = getattr(self.call, "close", None)
        if close is not None:
            close()


class AsyncLruStepCache(LruStepCache):
    """:class:`LruStepCache` around a coroutine step (awaited by ``run_async``)."""

    async def __call__(self, data: Any) -> Any:  # type: ignore[override]
        key, hit, value = self._lookup(data)
        if hit:
            return value
        value = await self.call(data)
        if key is not None:
            self._store(key, value)
        return value
