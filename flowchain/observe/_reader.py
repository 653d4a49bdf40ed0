"""How the cold path reads the engine: the one place that knows its recording layout.

Every module of :mod:`flowchain.observe` reads what the engine recorded through this module
and never through another's: the runners that exist (:func:`built_runners`), a runner's
execution ring in seq order (:class:`RingTail`), the ring's status codes (taken from the
engine's own table), the value of each HDR counts index (:func:`bucket_values`) and the offset
from the engine's clock to the epoch (:func:`engine_to_epoch_offset`). Nothing here writes.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from flowchain._native import STATUS_FAILED, STATUS_RUNNING, STATUS_SUCCEEDED, engine
from flowchain.chain import ChainDefinition

__all__ = ["STATUS_FAILED", "STATUS_RUNNING", "STATUS_SUCCEEDED", "CompletedRows", "RingTail",
           "bucket_bounds", "bucket_values", "built_runners", "engine_to_epoch_offset"]


def built_runners(registry: Any) -> list[tuple[ChainDefinition, Any]]:
    """Return ``(definition, runner)`` for every chain of ``registry`` whose runner exists.

    Chains never run have no runner and nothing to read; none is built here. The cold path's
    modules (monitor, metrics, history, dashboard, diagrams, OpenTelemetry) all read runners
    through this one function, which asks the registry's public
    :meth:`~flowchain.ChainRegistry.built_runners`.
    """
    return list(registry.built_runners())


@dataclass(frozen=True, slots=True)
class CompletedRows:
    """Executions a :class:`RingTail` read: one row per execution, columns as numpy arrays.

    ``step`` is ``n_steps`` for a success and the failing step's index for a failure;
    ``step_ns[r, i]`` is step ``i``'s duration (meaningful for ``i < step`` and, for a
    success, for every step).
    """

    seq: np.ndarray
    start_ns: np.ndarray
    end_ns: np.ndarray
    status: np.ndarray
    step: np.ndarray
    context: np.ndarray
    step_ns: np.ndarray

    def __len__(self) -> int:
        return len(self.seq)

    def completed_mask(self) -> np.ndarray:
        """Return a (rows, steps) boolean mask of the steps that completed successfully."""
        n_steps = self.step_ns.shape[1]
        return np.arange(n_steps)[None, :] < self.step[:, None]


class RingTail:
    """Read a runner's completed executions in seq order, each exactly once.

    Parameters
    ----------
    runner : flowchain.ChainRunner
        The runner whose ring to read.
    from_start : bool
        Start at execution 0 (what the ring still holds) instead of at the next execution.

    Attributes
    ----------
    lost : int
        Executions the ring overwrote before they were read (the reader fell behind by more than
        the ring's capacity, or a slot was overwritten while it was being copied).
    """

    def __init__(self, runner: Any, from_start: bool = False) -> None:
        self.runner = runner
        self.ring = runner.ring
        self.cursor = 0 if from_start else int(runner.executions)
        self.lost = 0
        self._mask = self.ring.capacity - 1

    def read(self, limit: int | None = None) -> CompletedRows:
        """Return the executions completed since the last read (up to ``limit``).

        Reading stops at the first execution still running, so every execution is returned
        once, after it completed.
        """
        ring = self.ring
        end = int(self.runner.executions)
        capacity = ring.capacity
        if end - self.cursor > capacity:
            self.lost += end - capacity - self.cursor
            self.cursor = end - capacity
        if limit is not None:
            end = min(end, self.cursor + limit)
        seqs = np.arange(self.cursor, end, dtype=np.int64)
        slots = seqs & self._mask
        seq_before = ring.seq[slots]
        status = ring.status[slots]
        step = ring.step[slots]
        start_ns = ring.start_ns[slots]
        end_ns = ring.end_ns[slots]
        context = ring.context[slots]
        step_ns = ring.step_ns[slots]
        seq_after = ring.seq[slots]
        valid = (seq_before == seqs) & (seq_after == seqs)
        done = valid & ((status == STATUS_SUCCEEDED) | (status == STATUS_FAILED))
        waiting = valid & ~done
        stop = int(np.argmax(waiting)) if waiting.any() else len(seqs)
        self.lost += int(np.count_nonzero(~valid[:stop]))
        self.cursor += stop
        keep = done[:stop]
        return CompletedRows(seqs[:stop][keep], start_ns[:stop][keep], end_ns[:stop][keep],
                             status[:stop][keep], step[:stop][keep].astype(np.int64),
                             context[:stop][keep], step_ns[:stop][keep])


def bucket_bounds(layout: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Return the lowest value (ns) and the width of every counts index of ``layout``.

    The same bucket arithmetic as HdrHistogram's ``get_value_from_index``, vectorized.
    """
    n = int(layout["counts_len"])
    shm = int(layout["sub_bucket_half_count_magnitude"])
    half = int(layout["sub_bucket_half_count"])
    unit = int(layout["unit_magnitude"])
    index = np.arange(n, dtype=np.int64)
    bucket = (index >> shm) - 1
    sub = (index & (half - 1)) + half
    low = bucket < 0
    sub[low] -= half
    bucket[low] = 0
    return sub << (bucket + unit), np.left_shift(np.int64(1), bucket + unit)


def bucket_values(layout: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Return the lowest and the median equivalent value (ns) of every counts index."""
    lowest, width = bucket_bounds(layout)
    return lowest, lowest + (width >> 1)


def engine_to_epoch_offset() -> int:
    """Return ``epoch_ns - engine_ns`` now: add it to an engine timestamp to get epoch ns."""
    before = time.time_ns()
    engine_ns = engine.now_ns()
    after = time.time_ns()
    return (before + after) // 2 - engine_ns
