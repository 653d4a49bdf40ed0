"""Bottleneck detectors: which step holds the chain back, and of what kind.

Every criterion is a named constant below (documented in ``docs/optimizer.md``). A step is a
bottleneck only when it matters to the chain: it takes at least :data:`BOTTLENECK_SHARE` of the
chain's p50 (or :data:`TAIL_BOTTLENECK_SHARE` of its p99: a tail share needs to be larger, one
slow outlier of a light step moves it), and it was profiled at least :data:`MIN_PROFILED_CALLS`
times. Such a step
is then, the first criterion that holds winning:

* ``memory_intensive``: one call allocates at least :data:`MEMORY_ALLOC_BYTES` (median) and at
  least :data:`MEMORY_REPEAT_RATIO` of its calls had an input seen before (a cache would answer
  them, whatever the call spends its time on);
* ``io_bound``: its thread CPU time over its wall time, summed over the profiled calls, is at
  most :data:`IO_CPU_PER_WALL` (it mostly waits: well below what a CPU-bound step shows even
  on a machine whose cores are shared with several other busy processes);
* ``slow_step``: its p50 is at least :data:`SLOW_EXPECTED_RATIO` times its expected
  duration.

Each bottleneck carries the figures that made it one (its *evidence*).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowchain.optimizer.measurements import ChainMeasurements, StepMeasurements

SLOW_STEP = "slow_step"
MEMORY_INTENSIVE = "memory_intensive"
IO_BOUND = "io_bound"
BOTTLENECK_TYPES = (SLOW_STEP, MEMORY_INTENSIVE, IO_BOUND)

BOTTLENECK_SHARE = 0.4
"""A bottleneck takes at least this share of the chain's p50..."""
TAIL_BOTTLENECK_SHARE = 0.6
"""...or at least this share of the chain's p99."""
MIN_PROFILED_CALLS = 10
"""Fewer profiled calls of a step are too few to judge it."""
SLOW_EXPECTED_RATIO = 1.0
"""A slow step's p50 is at least this multiple of its expected duration."""
IO_CPU_PER_WALL = 0.2
"""An I/O-bound step's CPU time is at most this share of its wall time."""
MEMORY_ALLOC_BYTES = 1 << 20
"""A memory-intensive step allocates at least this much per call (median, bytes)."""
MEMORY_REPEAT_RATIO = 0.5
"""...and at least this share of its calls repeat an input seen before."""


@dataclass(frozen=True, slots=True)
class Bottleneck:
    """A step found holding the chain back: its kind and the evidence."""

    step: str
    type: str
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "type": self.type, "evidence": dict(self.evidence)}


def _round(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def step_evidence(chain: ChainMeasurements, step: StepMeasurements) -> dict[str, Any]:
    """The figures every detector reads of one step."""
    share50 = step.p50_ns / chain.p50_ns if chain.p50_ns > 0 else 0.0
    share99 = step.p99_ns / chain.p99_ns if chain.p99_ns > 0 else 0.0
    expected = step.expected_ns
    ratio = cpu = None
    if expected > 0:
        ratio = step.p50_ns / expected
    cpu = step.cpu_per_wall
    return {
        "p50_ns": int(step.p50_ns), "p99_ns": int(step.p99_ns),
        "share_of_chain_p50": _round(share50), "share_of_chain_p99": _round(share99),
        "expected_ns": expected,
        "ratio_to_expected": None if ratio is None else _round(ratio),
        "cpu_per_wall": None if cpu is None else _round(cpu),
        "alloc_per_call_bytes": int(step.median_alloc_bytes),
        "input_repeat_ratio": _round(step.repeat_ratio),
        "profiled_calls": step.samples,
        "items_per_call": step.median_items,
    }


def classify(chain: ChainMeasurements, step: StepMeasurements) -> Bottleneck | None:
    """Return the step's bottleneck, or None when it holds nothing back (see the module)."""
    if step.samples < MIN_PROFILED_CALLS:
        return None
    ev = step_evidence(chain, step)
    if ev["share_of_chain_p50"] < BOTTLENECK_SHARE and \
            ev["share_of_chain_p99"] < TAIL_BOTTLENECK_SHARE:
        return None
    if ev["alloc_per_call_bytes"] >= MEMORY_ALLOC_BYTES and \
            ev["input_repeat_ratio"] >= MEMORY_REPEAT_RATIO:
        return Bottleneck(step.name, MEMORY_INTENSIVE, ev)
    cpu = ev["cpu_per_wall"]
    if cpu is not None and cpu <= IO_CPU_PER_WALL:
        wait = sum(step.wall_ns) - sum(step.cpu_ns)
        ev["wait_per_call_ns"] = int(wait / step.samples)
        return Bottleneck(step.name, IO_BOUND, ev)
    ratio = ev["ratio_to_expected"]
    if ratio is not None and ratio >= SLOW_EXPECTED_RATIO:
        return Bottleneck(step.name, SLOW_STEP, ev)
    return None


def detect(chain: ChainMeasurements) -> list[Bottleneck]:
    """Return the chain's bottlenecks in step order (empty for a chain with none)."""
    found = (classify(chain, s) for s in chain.steps)
    return [b for b in found if b is not None]
