"""What to do about a bottleneck, sized from the measurements, and what it would gain.

* ``slow_step`` -> ``parallel: N``. For each candidate N (2 up to the cores this process may
  use), each profiled call's time is predicted as its largest chunk's share of the measured
  per-item work plus the measured cost of dispatching to N worker processes (fixed + per item):
  Amdahl's law with the dispatch as the serial part, the chunks sharing the CPU this machine
  gives N busy threads at once (measured: fewer cores' worth on a loaded machine). N is the
  smallest candidate whose median
  predicted time is within :data:`PARALLEL_TOLERANCE` of the best; no N is suggested when the
  best gains less than :data:`MIN_STEP_SPEEDUP`. Only for element-wise components.
* ``memory_intensive`` -> ``cache: {strategy: lru, size: N}``. The step's recorded input
  hashes are replayed through an LRU simulation of every size (the hit-ratio curve); N is the
  smallest size reaching :data:`CACHE_COVERAGE` of the hit ratio an unbounded cache would reach,
  its memory cost N x the median allocation of a call (an upper bound of an entry). Only for
  deterministic components: a cache is never suggested for any other.
* ``io_bound`` -> ``async: {concurrency: N}``. Little's law: the items in flight needed to keep
  pace, L = lambda x W, with W the measured wait of an item (wall - CPU time, per item) and
  lambda the rate at which items reach the step when its wait is overlapped (items per call
  over the chain's p50 less the step's wait); capped by the items of a call and by a configured
  limit. Only for element-wise components (the items are what run concurrently).

Each suggestion predicts the step's time per profiled call; :func:`estimate_improvement`
substitutes those predictions into the profiled executions (per sample: the execution's total
less the step's measured time plus its predicted time) and reads the p50 and p99 of the
result against the measured ones.
"""
from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from flowchain.optimizer.lru_simulation import hit_ratio_curve, lru_hits
from flowchain.optimizer.measurements import ChainMeasurements, StepMeasurements
from flowchain.optimizer.pool import DispatchCost

PARALLEL = "parallel"
CACHE = "cache"
ASYNC = "async"

PARALLEL_TOLERANCE = 0.05
"""Suggest the fewest workers whose predicted time is within this fraction of the best."""
MIN_STEP_SPEEDUP = 1.1
"""A suggestion must make its step at least this much faster (predicted median)."""
CACHE_COVERAGE = 0.95
"""Suggest the smallest LRU size reaching this fraction of the achievable hit ratio."""
DEFAULT_CONCURRENCY_LIMIT = 64
"""The most items in flight an ``async`` suggestion asks for, unless configured otherwise."""
ELEMENTWISE = "elementwise"
DETERMINISTIC = "deterministic"


@dataclass(frozen=True, slots=True)
class Optimization:
    """A remedy for one step's bottleneck.

    ``value`` is the size (workers, entries or items in flight), None when none can be
    suggested; ``reason`` then says why, and ``needs_trait`` names the component trait whose
    absence is that reason (what ``--apply`` leaves out and says). ``predicted_ns`` is the step's
    predicted time per profiled call (aligned with the step's measurements).
    """

    step: str
    kind: str
    value: int | None
    details: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    needs_trait: str | None = None
    predicted_ns: tuple[float, ...] = ()

    @property
    def applicable(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        field_name = {PARALLEL: "parallelism", CACHE: "cache_size",
                      ASYNC: "concurrency_limit"}[self.kind]
        out: dict[str, Any] = {"step": self.step, "kind": self.kind, field_name: self.value}
        out.update(self.details)
        if self.reason is not None:
            out["reason"] = self.reason
        if self.needs_trait is not None:
            out["needs_trait"] = self.needs_trait
        return out


def available_cores() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _missing_trait(step: StepMeasurements, kind: str, trait: str, why: str) -> Optimization:
    return Optimization(step.name, kind, None,
                        reason=f"component {step.component!r} is not declared {trait}: {why}",
                        needs_trait=trait)


def _sequence_calls(step: StepMeasurements) -> bool:
    return any(i is not None for i in step.items)


def parallel_candidates(cores: int) -> list[int]:
    """Worker counts worth measuring: every count up to 8, then powers of two, then ``cores``."""
    out = [n for n in range(2, min(cores, 8) + 1)]
    n = 16
    while n < cores:
        out.append(n)
        n *= 2
    if cores > 8:
        out.append(cores)
    return out


def predict_parallel_ns(wall_ns: float, items: int | None, workers: int,
                        cost: Any, capacity: float | None = None) -> float:
    """One call's predicted time split over ``workers``: its largest chunk (slowed when the
    machine gives the chunks only ``capacity`` cores' worth of CPU at once) plus the dispatch."""
    if items is None or items < 2:
        return float(wall_ns)
    chunks = min(workers, items)
    per_item = wall_ns / items
    share = 1.0 if capacity is None else chunks / max(1.0, min(float(chunks), capacity))
    return math.ceil(items / chunks) * per_item * share + cost.fixed_ns + \
        cost.per_item_ns * items


def suggest_parallel(step: StepMeasurements, cores: int,
                     dispatch_cost: Callable[[int], Any],
                     capacity: Callable[[int], float] | None = None) -> Optimization:
    """Size ``parallel: N`` for a slow step (see the module); ``dispatch_cost(N)`` measures
    the pool's cost, ``capacity(N)`` the cores' worth of CPU N busy workers get at once (all N
    when omitted: an idle machine)."""
    if not step.elementwise:
        return _missing_trait(
            step, PARALLEL, ELEMENTWISE,
            "only an element-wise component (mapping a sequence item by item, so that "
            "f(a + b) == f(a) + f(b)) can be split into chunks run at once; if it is one, "
            "declare it with @flowchain.component(..., elementwise=True), else make it take a "
            "sequence and return one output per item")
    if not _sequence_calls(step):
        return Optimization(step.name, PARALLEL, None,
                            reason="its input was never a sequence (list, tuple, 1-d array), "
                                   "so there is nothing to split")
    if cores < 2:
        return Optimization(step.name, PARALLEL, None,
                            reason=f"this process may use {cores} core: no parallelism to gain")
    measured = float(statistics.median(step.wall_ns))
    best: tuple[int, float, Any] | None = None
    tried: dict[int, float] = {}
    costs: dict[int, Any] = {}
    caps: dict[int, float] = {}
    for n in parallel_candidates(cores):
        costs[n] = dispatch_cost(n)
        caps[n] = float(n) if capacity is None else float(capacity(n))
        tried[n] = float(statistics.median(
            predict_parallel_ns(w, k, n, costs[n], caps[n])
            for w, k in zip(step.wall_ns, step.items, strict=False)))
        if best is None or tried[n] < best[1]:
            best = (n, tried[n], costs[n])
    assert best is not None
    chosen = min(n for n, t in tried.items() if t <= best[1] * (1 + PARALLEL_TOLERANCE))
    speedup = measured / tried[chosen] if tried[chosen] > 0 else 0.0
    cost = costs[chosen]
    details = {
        "per_item_ns": int(measured / step.median_items) if step.median_items else None,
        "dispatch_fixed_ns": int(cost.fixed_ns), "dispatch_per_item_ns": round(cost.per_item_ns, 1),
        "cores": cores, "cpu_capacity": round(caps[chosen], 2),
        "predicted_step_speedup": round(speedup, 3),
        "predicted_step_ns_by_workers": {str(n): int(t) for n, t in tried.items()},
    }
    if speedup < MIN_STEP_SPEEDUP:
        return Optimization(step.name, PARALLEL, None, details,
                            reason=f"the measured dispatch cost outweighs the work on the CPU "
                                   f"this machine gives now ({caps[chosen]:.1f} cores' worth "
                                   f"to {chosen} workers): the best predicted gain is "
                                   f"{speedup:.2f}x (below {MIN_STEP_SPEEDUP}x)")
    predicted = tuple(predict_parallel_ns(w, k, chosen, cost, caps[chosen])
                      for w, k in zip(step.wall_ns, step.items, strict=False))
    return Optimization(step.name, PARALLEL, chosen, details, predicted_ns=predicted)


def suggest_cache(step: StepMeasurements, *, coverage: float = CACHE_COVERAGE,
                  hit_ns: float = 0.0) -> Optimization:
    """Size ``cache: {strategy: lru, size: N}`` for a memory-intensive step (see the module).

    ``hit_ns`` is what answering a hit costs (looking the input up); 0 neglects it.
    """
    if not step.deterministic:
        return _missing_trait(
            step, CACHE, DETERMINISTIC,
            "a cache is never suggested for a step whose output may depend on time, state or "
            "randomness; if its output depends only on its input, declare it with "
            "@flowchain.component(..., deterministic=True)")
    curve = hit_ratio_curve(step.input_hashes)
    size = curve.smallest_size_reaching(coverage)
    if size is None:
        return Optimization(step.name, CACHE, None,
                            reason="no recorded input repeats: a cache would never hit")
    hits = lru_hits(step.input_hashes, size)
    hit_ratio = sum(hits) / len(hits)
    entry = step.median_alloc_bytes
    sizes = sorted({s for s in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, size,
                                curve.distinct) if 1 <= s <= curve.distinct})
    details = {
        "strategy": "lru", "hit_ratio": round(hit_ratio, 4),
        "achievable_hit_ratio": round(curve.achievable, 4),
        "coverage": coverage, "distinct_inputs": curve.distinct,
        "memory_bytes": int(size * entry), "entry_bytes": int(entry),
        "hit_ratio_curve": {str(s): round(curve.hit_ratio(s), 4) for s in sizes},
    }
    predicted = tuple(hit_ns if hit else float(w) for hit, w in zip(hits, step.wall_ns, strict=False))
    median_before = statistics.median(step.wall_ns)
    median_after = statistics.median(predicted)
    speedup = median_before / median_after if median_after > 0 else math.inf
    if speedup < MIN_STEP_SPEEDUP and statistics.mean(predicted) * MIN_STEP_SPEEDUP > \
            statistics.mean(step.wall_ns):
        return Optimization(step.name, CACHE, None, details,
                            reason=f"a hit ratio of {hit_ratio:.0%} gains too little")
    return Optimization(step.name, CACHE, size, details, predicted_ns=predicted)


def suggest_async(chain: ChainMeasurements, step: StepMeasurements, *,
                  limit: int = DEFAULT_CONCURRENCY_LIMIT,
                  item_overhead_ns: float = 0.0) -> Optimization:
    """Size ``async: {concurrency: N}`` for an I/O-bound step by Little's law (see the module).

    ``item_overhead_ns`` is what running one item on its own costs (a thread hand-off).

    Raises
    ------
    ValueError
        When ``limit`` is below 1.
    """
    if limit < 1:
        raise ValueError(f"the concurrency limit must be at least 1, got {limit}")
    if not step.elementwise:
        return _missing_trait(
            step, ASYNC, ELEMENTWISE,
            "its items can only wait at once when the component maps a sequence item by item; "
            "declare it with @flowchain.component(..., elementwise=True) if it does, or make it "
            "an async def that awaits its I/O and take a list of requests")
    calls = [(w, c, k) for w, c, k in zip(step.wall_ns, step.cpu_ns, step.items, strict=False)
             if k is not None and k > 0]
    if not calls:
        return Optimization(step.name, ASYNC, None,
                            reason="its input was never a sequence of items to run at once")
    wait_per_item = float(statistics.median(max(0, w - c) / k for w, c, k in calls))
    wait_per_call = float(statistics.median(max(0, w - c) for w, c, _ in calls))
    items = float(statistics.median(k for _, _, k in calls))
    pace_ns = max(chain.p50_ns - wait_per_call, 1_000.0)
    arrival_per_s = items / (pace_ns / 1e9)
    in_flight = arrival_per_s * wait_per_item / 1e9
    most_items = max(k for _, _, k in calls)
    concurrency = max(1, min(math.ceil(in_flight), most_items, limit))
    details = {
        "arrival_items_per_s": round(arrival_per_s, 1), "wait_per_item_ns": round(wait_per_item),
        "littles_law_in_flight": round(in_flight, 2), "items_per_call": items,
        "limit": limit,
    }
    if concurrency < 2:
        return Optimization(step.name, ASYNC, None, details,
                            reason="Little's law asks for fewer than 2 items in flight")
    predicted = []
    for w, c, k in zip(step.wall_ns, step.cpu_ns, step.items, strict=False):
        if k is None or k < 1:
            predicted.append(float(w))
            continue
        wait = max(0, w - c) / k
        predicted.append(c + math.ceil(k / concurrency) * wait + k * item_overhead_ns)
    return Optimization(step.name, ASYNC, concurrency, details, predicted_ns=tuple(predicted))


@dataclass(frozen=True, slots=True)
class Improvement:
    """The chain's estimated p50 and p99 before and after the optimizations (ns)."""

    p50_before_ns: float
    p50_after_ns: float
    p99_before_ns: float
    p99_after_ns: float
    executions: int
    method: str

    @property
    def p50_speedup(self) -> float:
        return self.p50_before_ns / self.p50_after_ns if self.p50_after_ns > 0 else 0.0

    @property
    def p99_speedup(self) -> float:
        return self.p99_before_ns / self.p99_after_ns if self.p99_after_ns > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "p50": {"before_ns": int(self.p50_before_ns), "after_ns": int(self.p50_after_ns),
                    "speedup": round(self.p50_speedup, 3)},
            "p99": {"before_ns": int(self.p99_before_ns), "after_ns": int(self.p99_after_ns),
                    "speedup": round(self.p99_speedup, 3)},
            "executions": self.executions,
            "method": self.method,
        }


SUBSTITUTION = ("per-sample substitution over the profiled executions: each execution's total "
                "less the optimized steps' measured times plus their predicted times; the "
                "speedup of those totals' p50 and p99 applied to the chain's recorded p50 and "
                "p99")


def estimate_improvement(chain: ChainMeasurements,
                         optimizations: Sequence[Optimization]) -> Improvement | None:
    """Estimate the chain's p50 and p99 once ``optimizations`` are applied.

    None when no execution was profiled at every step (nothing to substitute into).
    """
    walls = chain.execution_wall_ns
    if walls.size == 0 or walls.shape[0] == 0:
        return None
    before = walls.sum(axis=1).astype(np.float64)
    after = before.copy()
    index = {s.name: i for i, s in enumerate(chain.steps)}
    for opt in optimizations:
        if not opt.applicable or not opt.predicted_ns:
            continue
        i = index[opt.step]
        predicted = np.asarray(opt.predicted_ns, dtype=np.float64)
        calls = chain.execution_rows[:, i]
        after += predicted[calls] - walls[:, i]
    after = np.maximum(after, 1.0)
    b50, b99 = np.percentile(before, [50, 99])
    a50, a99 = np.percentile(after, [50, 99])
    p50 = chain.p50_ns if chain.p50_ns > 0 else b50
    p99 = chain.p99_ns if chain.p99_ns > 0 else b99
    return Improvement(p50, p50 * a50 / b50, p99, p99 * a99 / b99, int(walls.shape[0]),
                       SUBSTITUTION)


def estimate_at_capacity(chain: ChainMeasurements, optimizations: Sequence[Optimization],
                         capacities: dict[str, float]) -> Improvement | None:
    """:func:`estimate_improvement` with each ``parallel`` step named in ``capacities`` given
    that many cores' worth of CPU instead of what the optimizer measured when it sized it (the
    same workers and dispatch cost): the prediction for the machine ``--verify`` met, so that
    a miss can be told apart from a machine busier than at the analysis."""
    repriced = []
    for opt in optimizations:
        if opt.kind == PARALLEL and opt.applicable and opt.step in capacities:
            step = chain.step(opt.step)
            cost = DispatchCost(float(opt.details["dispatch_fixed_ns"]),
                             float(opt.details["dispatch_per_item_ns"]))
            opt = replace(opt, predicted_ns=tuple(
                predict_parallel_ns(w, k, int(opt.value or 1), cost, capacities[opt.step])
                for w, k in zip(step.wall_ns, step.items, strict=False)))
        repriced.append(opt)
    return estimate_improvement(chain, repriced)
