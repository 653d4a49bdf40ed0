"""What the optimizer knows of a chain: per-step latency percentiles and profiled calls.

Plain data, built by :mod:`flowchain.optimizer.optimizer` from a history database (the
latency histograms of every execution, the step profiles of the sampled ones) and read by the
detectors and the suggestions, which therefore work on any data, recorded or made up.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class StepMeasurements:
    """One step: its latency percentiles (every execution) and its profiled calls in order.

    The per-call tuples (``wall_ns`` .. ``items``) are aligned: entry ``k`` is the ``k``-th
    profiled call, oldest first. ``items`` is None for a call whose input was no sequence.
    """

    name: str
    index: int
    component: str
    expected_ns: int
    p50_ns: float
    p99_ns: float
    wall_ns: tuple[int, ...] = ()
    cpu_ns: tuple[int, ...] = ()
    alloc_bytes: tuple[int, ...] = ()
    input_hashes: tuple[str, ...] = ()
    items: tuple[int | None, ...] = ()
    elementwise: bool = False
    deterministic: bool = False

    @property
    def samples(self) -> int:
        """Profiled calls."""
        return len(self.wall_ns)

    @property
    def cpu_per_wall(self) -> float | None:
        """Thread CPU time over wall time, summed over the profiled calls (None without any)."""
        wall = sum(self.wall_ns)
        return sum(self.cpu_ns) / wall if wall > 0 else None

    @property
    def median_alloc_bytes(self) -> float:
        """The median allocation of one call (0 without profiled calls)."""
        return float(statistics.median(self.alloc_bytes)) if self.alloc_bytes else 0.0

    @property
    def repeat_ratio(self) -> float:
        """The share of profiled calls whose input had been seen before in the sequence."""
        n = len(self.input_hashes)
        return (n - len(set(self.input_hashes))) / n if n else 0.0

    @property
    def median_items(self) -> float | None:
        """The median item count of the calls whose input was a sequence (None if none was)."""
        known = [i for i in self.items if i is not None]
        return float(statistics.median(known)) if known else None


@dataclass(frozen=True, slots=True)
class ChainMeasurements:
    """A chain version's measurements.

    ``execution_wall_ns`` has one row per fully profiled execution (every step profiled),
    oldest first, one column per step: the per-sample basis of the improvement estimate.
    ``execution_rows`` maps each such row to the index of that execution's call in every step's
    per-call tuples (``execution_rows[r][i]``), so a step's predicted time per call can be put in
    the right row.
    """

    chain: str
    chain_id: str
    executions: int
    p50_ns: float
    p99_ns: float
    steps: tuple[StepMeasurements, ...]
    execution_wall_ns: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    execution_rows: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))

    def step(self, name: str) -> StepMeasurements:
        """The step called ``name``.

        Raises
        ------
        KeyError
            When the chain has no such step.
        """
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"chain {self.chain!r} has no step {name!r}")
