"""Typed statistics of a chain: what :meth:`ChainRegistry.stats` returns.

Frozen dataclasses, so a figure is an attribute a type checker knows (``stats.latency.p99_ns``,
``stats.step("signal").errors``), not a string key; ``to_dict()`` gives the plain data for JSON.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowchain.histograms import LatencyHistogram

SUMMARY_PERCENTILES = (50.0, 90.0, 99.0, 99.9)
"""The percentiles every summary gives."""


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Count and distribution (ns) of one latency series; all zero when nothing was recorded."""

    count: int = 0
    min_ns: int = 0
    max_ns: int = 0
    mean_ns: float = 0.0
    p50_ns: int = 0
    p90_ns: int = 0
    p99_ns: int = 0
    p999_ns: int = 0

    @classmethod
    def of(cls, histogram: LatencyHistogram) -> LatencySummary:
        """Summarize ``histogram`` (percentiles never above its maximum)."""
        if not histogram.count:
            return EMPTY_LATENCY
        ps = histogram.percentiles(SUMMARY_PERCENTILES)
        return cls(histogram.count, histogram.min, histogram.max, round(histogram.mean, 1),
                   ps[50.0], ps[90.0], ps[99.0], ps[99.9])

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain data (the keys are the field names)."""
        return dataclasses.asdict(self)


EMPTY_LATENCY = LatencySummary()
"""The summary of a series with no value."""


@dataclass(frozen=True, slots=True)
class StepStats:
    """One step's figures: its errors and both latency series.

    ``latency`` holds each time the step returned, ``failure_latency`` each time it raised
    (timed until it raised); ``expected_ns`` is the step's expected duration.
    """

    name: str
    component: str
    expected_ns: int
    errors: int
    latency: LatencySummary
    failure_latency: LatencySummary

    def to_dict(self) -> dict[str, Any]:
        """The figures as plain data (nested summaries as mappings)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class ChainStats:
    """A chain's executions, outcomes and latency, from one consistent read of its runner.

    ``running`` is ``executions - succeeded - failures``; ``success_ratio`` is None before
    the first execution. ``latency`` summarizes successful executions, ``failure_latency``
    failed ones (start to failure). A chain that never ran has zeros everywhere.
    """

    chain_id: str
    chain: str
    version: int
    executions: int
    succeeded: int
    failures: int
    running: int
    success_ratio: float | None
    latency: LatencySummary
    failure_latency: LatencySummary
    steps: tuple[StepStats, ...]

    def step(self, name: str) -> StepStats:
        """Return the figures of step ``name``.

        Raises
        ------
        KeyError
            When the chain has no such step; the message lists its steps.
        """
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"chain {self.chain!r} has no step {name!r}; its steps: "
                       f"{', '.join(s.name for s in self.steps)}")

    def to_dict(self) -> dict[str, Any]:
        """The figures as plain data (steps as a list of mappings, in chain order)."""
        out = dataclasses.asdict(self)
        out["steps"] = [s.to_dict() for s in self.steps]
        return out
