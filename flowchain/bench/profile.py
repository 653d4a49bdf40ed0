"""Profiling overhead: the 4-step chain of ``flowchain bench overhead`` (each step returns its
input plus one) run through two registries in one process, interleaved (A B, A B, ...):

* ``off``      profiling off (the default): ``ChainRunner.run`` as every chain runs it;
* ``sampled``  ``ChainRegistry(profile_rate=0.01)``: 1 execution in 100 takes the measuring
  path (thread CPU clock, each step's input hashed, the engine's allocation counter opened
  and read around each step).

The allocation counter, once installed (by the sampled registry's profiler), stays installed
for the process, so ``off`` runs under it too, as every chain of a profiling process does:
an execution that is not sampled pays its thread-local test per allocation.

Each execution is timed from outside (``perf_counter_ns`` around the call, the same for both);
each repetition is summarized (p50/p99/p99.9/max, mean) and the report gives the median over
repetitions of each, and the ratios sampled/off. The mean holds the cost of the sampled
executions spread over all of them; p50 shows what an unsampled execution pays.
"""
from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from flowchain.bench.distribution import interleave, median_summary, summarize_ns
from flowchain.bench.environment import cpu, versions
from flowchain.bench.overhead import STEP_NAMES, STEPS

SAMPLED_RATE = 0.01
"""The rate measured against profiling off."""


def _make_run(rate: float, name: str) -> tuple[Callable[[int], int], Any]:
    from flowchain import ChainBuilder, ChainRegistry, ComponentRegistry

    components = ComponentRegistry()
    builder = ChainBuilder(name)
    for i, (step, fn) in enumerate(zip(STEP_NAMES, STEPS, strict=False)):
        components.register(f"Step{i}", fn)
        builder.step(step, f"Step{i}", f"int{i}", f"int{i + 1}", 0.001)
    registry = ChainRegistry(components, profile_rate=rate)
    return registry.runner(registry.register_chain(builder.build())).run, registry


def _time_each(run: Callable[[int], int], n: int) -> dict[str, float]:
    durations = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for i in range(n):
            t0 = clock()
            run(1)
            durations[i] = clock() - t0
    finally:
        if gc_was:
            gc.enable()
    summary: dict[str, float] = dict(summarize_ns(durations))
    summary["mean_ns"] = float(durations.mean())
    return summary


def run(repetitions: int = 7, n: int = 20_000, rate: float = SAMPLED_RATE) -> dict[str, Any]:
    """Measure both ways; return the JSON object ``flowchain bench profile`` prints."""
    if repetitions < 5:
        raise ValueError(f"at least 5 interleaved repetitions are needed, got {repetitions}")
    off, _ = _make_run(0.0, "profile_off_bench")
    sampled, sampled_registry = _make_run(rate, "profile_sampled_bench")
    _time_each(off, max(n // 10, 200))  # warm-up
    _time_each(sampled, max(n // 10, 200))
    sampled_registry.take_profiles()
    reps = interleave({"off": lambda rep: _time_each(off, n),
                       "sampled": lambda rep: _time_each(sampled, n)}, repetitions)
    keys = ("p50_ns", "p99_ns", "p999_ns", "max_ns")
    med = {way: median_summary(r, keys) for way, r in reps.items()}
    for way, r in reps.items():
        med[way]["mean_ns"] = round(statistics.median(x["mean_ns"] for x in r), 1)
    profiles = sampled_registry.take_profiles()
    return {
        "rate": rate,
        "off": med["off"],
        "sampled": med["sampled"],
        "p50_ratio": round(med["sampled"]["p50_ns"] / med["off"]["p50_ns"], 3),
        "p99_ratio": round(med["sampled"]["p99_ns"] / med["off"]["p99_ns"], 3),
        "mean_ratio": round(med["sampled"]["mean_ns"] / med["off"]["mean_ns"], 3),
        "sampled_executions": len({p.execution_seq for p in profiles}),
        "repetitions": repetitions,
        "executions_per_repetition": n,
        "versions": versions(),
        "cpu": cpu(),
    }
