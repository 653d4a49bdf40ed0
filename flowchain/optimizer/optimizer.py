"""The chain optimizer: read a chain version's recorded history, find its bottlenecks, size
a remedy for each, and estimate what they gain.

It reads, from a history database, the chain version's interval latency histograms (every
execution: the p50 and p99 of the chain and of each step) and its step profiles (the sampled
executions: wall and CPU time, allocation, input hash and item count per step). The detectors
(:mod:`.detectors`) and the suggestions (:mod:`.suggestions`) work on that data alone.
"""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flowchain.chain import ChainDefinition
from flowchain.errors import FlowChainError
from flowchain.histograms import LatencyHistogram
from flowchain.optimizer import detectors, suggestions
from flowchain.optimizer.detectors import Bottleneck
from flowchain.optimizer.measurements import ChainMeasurements, StepMeasurements
from flowchain.optimizer.suggestions import Improvement, Optimization

REMEDIES = {detectors.SLOW_STEP: suggestions.PARALLEL,
            detectors.MEMORY_INTENSIVE: suggestions.CACHE,
            detectors.IO_BOUND: suggestions.ASYNC}
"""The optimization each bottleneck type calls for."""


UNSIZED_PARALLEL = ("parallel workers: run `flowchain optimize` to size them (it measures the "
                    "worker pool's dispatch cost and the free cores)")


class NoHistory(FlowChainError, LookupError):
    """The database holds nothing the optimizer can read for that chain version."""


@dataclass(frozen=True, slots=True)
class OptimizationResult:
    """What the optimizer found for one chain version.

    ``optimizations`` holds the remedies sized from the data; ``blocked`` the remedies a
    bottleneck calls for that cannot be suggested, each with its reason (a missing component
    trait, a dispatch cost above the gain, inputs that never repeat...).
    ``estimated_improvement`` is None when no execution was profiled at every step.
    """

    chain_id: str
    bottlenecks: tuple[Bottleneck, ...]
    optimizations: tuple[Optimization, ...]
    estimated_improvement: Improvement | None
    chain: str = ""
    blocked: tuple[Optimization, ...] = ()
    executions: int = 0
    profiled_executions: int = 0
    assumed_traits: bool = False
    """Sized as if each component had the trait its remedy needs (no registry to ask)."""
    measurements: ChainMeasurements | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``flowchain optimize --json`` (see docs/optimizer.md)."""
        return {
            "chain": self.chain,
            "chain_id": self.chain_id,
            "executions": self.executions,
            "profiled_executions": self.profiled_executions,
            "assumed_traits": self.assumed_traits,
            "bottlenecks": [b.to_dict() for b in self.bottlenecks],
            "optimizations": [o.to_dict() for o in self.optimizations],
            "blocked": [o.to_dict() for o in self.blocked],
            "estimated_improvement": (self.estimated_improvement.to_dict()
                                      if self.estimated_improvement is not None else None),
        }

    def headline(self) -> str:
        """One line per bottleneck with its remedy, for summaries (empty when none)."""
        lines = []
        by_step = {o.step: o for o in (*self.optimizations, *self.blocked)}
        for b in self.bottlenecks:
            share = max(b.evidence["share_of_chain_p50"], b.evidence["share_of_chain_p99"])
            line = f"{self.chain}: {b.step} is {b.type} ({share:.0%} of the chain)"
            opt = by_step.get(b.step)
            if opt is not None and opt.applicable:
                line += f"; suggest {describe(opt)}"
                if self.assumed_traits:
                    trait = "deterministic" if opt.kind == "cache" else "element-wise"
                    line += f" (only if its component is declared {trait})"
            elif opt is not None and opt.reason == UNSIZED_PARALLEL:
                line += f"; suggest {opt.reason}"
            elif opt is not None:
                line += f"; no {opt.kind} suggested: {opt.reason}"
            lines.append(line)
        if lines and self.estimated_improvement is not None and self.optimizations:
            imp = self.estimated_improvement
            lines.append(f"{self.chain}: estimated p50 {imp.p50_speedup:.2f}x faster, "
                         f"p99 {imp.p99_speedup:.2f}x")
        return "\n".join(lines)


def describe(opt: Optimization) -> str:
    """The step field an optimization sets, as it reads in a chains file."""
    if opt.kind == suggestions.PARALLEL:
        return f"parallel: {opt.value}"
    if opt.kind == suggestions.CACHE:
        return f"cache: {{strategy: lru, size: {opt.value}}}"
    return f"async: {{concurrency: {opt.value}}}"


def measure_thread_handoff_ns(concurrency: int, items: int = 256) -> float:
    """What running one item on a pool thread costs beyond the item (ns, median of 5 rounds).

    The ``async`` step of a blocking component runs each item on such a thread.
    """
    rounds = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(int, range(concurrency)))  # start the threads
        for _ in range(5):
            t0 = time.perf_counter_ns()
            for f in [pool.submit(int, i) for i in range(items)]:
                f.result()
            rounds.append((time.perf_counter_ns() - t0) / items)
    return float(statistics.median(rounds))


def _engine_dispatch_cost(workers: int) -> Any:
    from flowchain.optimizer.pool import measure_dispatch_cost

    return measure_dispatch_cost(workers)


def _machine_capacity(workers: int) -> float:
    from flowchain.optimizer.capacity import measure_cpu_capacity

    return measure_cpu_capacity(workers)


DatabasePath = str | Path


class ChainOptimizer:
    """Analyze a chain version's recorded history and suggest what to change.

    Parameters
    ----------
    db_path : str or Path
        The history database (``flowchain run --inputs ... --db``, or the node's).
    registry : ChainRegistry, optional
        Where the chain and its components' traits are known; the traits decide what may be
        suggested. Without one, every component counts as neither element-wise nor
        deterministic.
    concurrency_limit : int
        The most items in flight an ``async`` suggestion may ask for.
    cache_coverage : float
        The share of the achievable hit ratio an LRU size must reach.
    cores : int, optional
        The cores parallelism may use; those this process may run on by default.
    dispatch_cost : callable, optional
        ``workers -> DispatchCost``; the engine pool's measurement in this process by default.
    cpu_capacity : callable, optional
        ``workers -> cores' worth of CPU`` that many busy workers get at once; measured now by
        default (:func:`flowchain.optimizer.capacity.measure_cpu_capacity`).
    size_parallelism : bool
        False: leave ``parallel`` unsized (no worker pool is started to measure it), for
        summaries that must stay cheap; the remedy then says to run ``flowchain optimize``.
    assume_traits : bool
        Without a registry, size every remedy as if the component had the trait it needs
        (for summaries of a database whose components are not imported here).

    Examples
    --------
    >>> result = ChainOptimizer("history.db", registry).analyze("Scoring")  # doctest: +SKIP
    >>> [(b.step, b.type) for b in result.bottlenecks]                       # doctest: +SKIP
    [('score', 'slow_step')]
    """

    def __init__(self, db_path: DatabasePath, registry: Any = None, *,
                 concurrency_limit: int = suggestions.DEFAULT_CONCURRENCY_LIMIT,
                 cache_coverage: float = suggestions.CACHE_COVERAGE,
                 cores: int | None = None,
                 dispatch_cost: Callable[[int], Any] | None = None,
                 cpu_capacity: Callable[[int], float] | None = None,
                 size_parallelism: bool = True, assume_traits: bool = False) -> None:
        if concurrency_limit < 1:
            raise ValueError(f"concurrency_limit must be at least 1, got {concurrency_limit}")
        if not 0.0 < cache_coverage <= 1.0:
            raise ValueError(f"cache_coverage must be in (0, 1], got {cache_coverage}")
        self.db_path = Path(db_path)
        self.registry = registry
        self.concurrency_limit = concurrency_limit
        self.cache_coverage = cache_coverage
        self.cores = cores if cores is not None else suggestions.available_cores()
        self._dispatch = dispatch_cost or _engine_dispatch_cost
        self._dispatch_seen: dict[int, Any] = {}
        self.size_parallelism = size_parallelism
        self.assume_traits = assume_traits
        self._capacity = cpu_capacity or _machine_capacity
        self._capacity_seen: dict[int, float] = {}

    def _cpu_capacity(self, workers: int) -> float:
        if workers not in self._capacity_seen:
            self._capacity_seen[workers] = self._capacity(workers)
        return self._capacity_seen[workers]

    def _dispatch_cost(self, workers: int) -> Any:
        if workers not in self._dispatch_seen:
            self._dispatch_seen[workers] = self._dispatch(workers)
        return self._dispatch_seen[workers]

    # ------------------------------------------------------------------ reading

    def _definition(self, chain: str | ChainDefinition) -> ChainDefinition:
        if isinstance(chain, ChainDefinition):
            return chain
        if self.registry is None:
            raise ValueError("pass a ChainDefinition, or a registry to look the chain up in")
        return self.registry.get_chain(chain)

    def _traits(self, component: str) -> tuple[bool, bool]:
        if self.registry is None:
            return self.assume_traits, self.assume_traits
        try:
            t = self.registry.components.traits(component)
        except LookupError:
            return False, False
        return bool(t.elementwise), bool(t.deterministic)

    def _histograms(self, chain_id: str) -> tuple[dict[int, LatencyHistogram], int]:
        """Merged success histograms by step index (-1: the whole chain) and their rows."""
        from flowchain.optimizer.recorded_inputs import open_for_reading

        if not self.db_path.is_file():
            raise NoHistory(f"no history database at {str(self.db_path)!r}")
        conn = open_for_reading(self.db_path)
        try:
            has = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                               "name = 'latency_intervals'").fetchone()
            rows = conn.execute("SELECT step_index, histogram FROM latency_intervals WHERE "
                                "chain_id = ?", (chain_id,)).fetchall() if has else []
        finally:
            conn.close()
        merged: dict[int, LatencyHistogram] = defaultdict(LatencyHistogram)
        for index, encoded in rows:
            merged[int(index)].merge(LatencyHistogram.decode(encoded))
        return dict(merged), len(rows)

    def measure(self, chain: str | ChainDefinition) -> ChainMeasurements:
        """Read the chain version's measurements from the database.

        Raises
        ------
        NoHistory
            When the database holds no latency history of this version, or no step profile.
        """
        from flowchain.optimizer.profile_store import load_profiles

        definition = self._definition(chain)
        chain_id = definition.chain_id
        hists, rows = self._histograms(chain_id)
        whole = hists.get(-1)
        if rows == 0 or whole is None or whole.count == 0:
            raise NoHistory(f"no recorded history of {chain_id} in {self.db_path}")
        profiles = load_profiles(self.db_path, chain_id)
        if not profiles:
            raise NoHistory(f"{self.db_path} holds latency history of {chain_id} but no step "
                            "profile: record with profiling on (--profile, or a profile rate)")
        profiles = sorted(profiles, key=lambda p: (p.start_epoch_ns, p.run_id,
                                                    p.execution_seq, p.step_index))
        calls: dict[int, list[Any]] = defaultdict(list)
        for p in profiles:
            calls[p.step_index].append(p)
        steps = []
        for i, s in enumerate(definition.steps):
            h = hists.get(i, LatencyHistogram())
            mine = calls.get(i, [])
            elementwise, deterministic = self._traits(s.component)
            steps.append(StepMeasurements(
                name=s.name, index=i, component=s.component, expected_ns=s.expected_duration_ns,
                p50_ns=float(h.percentile(50.0)) if h.count else 0.0,
                p99_ns=float(h.percentile(99.0)) if h.count else 0.0,
                wall_ns=tuple(p.wall_ns for p in mine), cpu_ns=tuple(p.cpu_ns for p in mine),
                alloc_bytes=tuple(p.alloc_bytes for p in mine),
                input_hashes=tuple(p.input_hash for p in mine),
                items=tuple(p.items for p in mine),
                elementwise=elementwise, deterministic=deterministic))
        # executions profiled at every step: the rows of the per-sample estimate
        position: dict[tuple[str, int], dict[int, int]] = defaultdict(dict)
        for i, mine in calls.items():
            for k, p in enumerate(mine):
                position[(p.run_id, p.execution_seq)][i] = k
        n = len(definition.steps)
        full = [(key, where) for key, where in position.items() if len(where) == n]
        walls = np.zeros((len(full), n), dtype=np.int64)
        at = np.zeros((len(full), n), dtype=np.int64)
        for r, (_, where) in enumerate(full):
            for i in range(n):
                at[r, i] = where[i]
                walls[r, i] = calls[i][where[i]].wall_ns
        return ChainMeasurements(definition.name, chain_id, whole.count,
                                 float(whole.percentile(50.0)), float(whole.percentile(99.0)),
                                 tuple(steps), walls, at)

    # ------------------------------------------------------------------ analysis

    def suggest(self, measured: ChainMeasurements, bottleneck: Bottleneck) -> Optimization:
        """Size the remedy of one bottleneck."""
        step = measured.step(bottleneck.step)
        if bottleneck.type == detectors.SLOW_STEP and not self.size_parallelism and \
                step.elementwise and self.cores >= 2 and any(k for k in step.items):
            # sizing would start a worker pool; every other answer needs no measurement
            return Optimization(step.name, suggestions.PARALLEL, None,
                                reason=UNSIZED_PARALLEL)
        if bottleneck.type == detectors.SLOW_STEP:
            return suggestions.suggest_parallel(step, self.cores, self._dispatch_cost,
                                                self._cpu_capacity)
        if bottleneck.type == detectors.MEMORY_INTENSIVE:
            return suggestions.suggest_cache(step, coverage=self.cache_coverage)
        overhead = 0.0
        if step.elementwise and step.median_items:
            overhead = measure_thread_handoff_ns(
                min(int(step.median_items), self.concurrency_limit))
        return suggestions.suggest_async(measured, step, limit=self.concurrency_limit,
                                         item_overhead_ns=overhead)

    def analyze(self, chain: str | ChainDefinition) -> OptimizationResult:
        """Detect the chain version's bottlenecks, size their remedies, estimate the gain.

        Raises
        ------
        NoHistory
            When the database holds no history or no step profile of the version.
        """
        measured = self.measure(chain)
        return self.analyze_measurements(measured)

    def analyze_measurements(self, measured: ChainMeasurements) -> OptimizationResult:
        """:meth:`analyze` on measurements already read (or made up)."""
        found = detectors.detect(measured)
        remedies = [self.suggest(measured, b) for b in found]
        applicable = tuple(o for o in remedies if o.applicable)
        blocked = tuple(o for o in remedies if not o.applicable)
        estimate = suggestions.estimate_improvement(measured, applicable)
        return OptimizationResult(measured.chain_id, tuple(found), applicable, estimate,
                                  chain=measured.chain, blocked=blocked,
                                  executions=measured.executions,
                                  profiled_executions=int(measured.execution_wall_ns.shape[0]),
                                  assumed_traits=self.registry is None and self.assume_traits,
                                  measurements=measured)
