"""Tracking overhead: one chain of 4 trivial Python steps (each returns its input plus one),
run five ways in one process, interleaved (A B C D E, A B C D E, ...):

* ``floor``     plain nested calls: the work itself, untracked;
* ``naive``     a pure-Python tracker: ``perf_counter_ns`` around each step, appended to a list;
* ``otel``      an OpenTelemetry SDK span per step;
* ``prom_hdr``  ``prometheus_client`` ``Histogram.observe`` plus ``hdrhistogram`` ``record_value``
  per step;
* ``flowchain`` ``ChainRunner.run``: one public call per execution, every step timed by the
  native engine into its ring and HDR histograms.

and the failure path, two more ways interleaved with them:

* ``bare_failure`` the same nested calls with the last one raising, caught by a bare
  ``try/except``;
* ``failure``      ``ChainRunner.run`` of the same chain whose last step raises, caught as
  ``ChainStepError``: the engine times the failed execution, keeps the exception, the input and
  the clock readings in its failure ring, and raises a ``ChainStepError`` whose record is built
  only when asked.

Each figure is the median over repetitions of (time for N executions) / N, in ns per whole
chain. The engine's own per-step histograms give the p50/p99/p99.9 of each step.
"""
from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from flowchain.bench.distribution import interleave
from flowchain.bench.environment import cpu, versions

STEP_NAMES = ("step_0", "step_1", "step_2", "step_3")


def _inc0(x: int) -> int:
    return x + 1


def _inc1(x: int) -> int:
    return x + 1


def _inc2(x: int) -> int:
    return x + 1


def _inc3(x: int) -> int:
    return x + 1


STEPS = (_inc0, _inc1, _inc2, _inc3)

FAILURE_RATIO_BUDGET = 3.0
"""``failure_ns / bare_failure_ns`` at most: a failure costs about what the bare raise costs."""


class StepFailed(Exception):
    """What the failing last step raises."""


def _raise3(x: int) -> int:
    raise StepFailed(x)


def _floor(x: int) -> int:
    return _inc3(_inc2(_inc1(_inc0(x))))


def _bare_failure(x: int) -> Any:
    try:
        return _raise3(_inc2(_inc1(_inc0(x))))
    except StepFailed:
        return None


def _make_naive() -> Callable[[int], int]:
    perf = time.perf_counter_ns
    steps = tuple(zip(STEP_NAMES, STEPS, strict=False))
    records: list[tuple[str, int]] = []

    def naive(x: int) -> int:
        if len(records) > 100_000:
            records.clear()
        t = perf()
        for name, fn in steps:
            x = fn(x)
            t2 = perf()
            records.append((name, t2 - t))
            t = t2
        return x

    return naive


def _make_otel() -> Callable[[int], int]:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("flowchain.bench")
    steps = tuple(zip(STEP_NAMES, STEPS, strict=False))

    def otel(x: int) -> int:
        for name, fn in steps:
            span = tracer.start_span(name)
            x = fn(x)
            span.end()
        return x

    return otel


def _make_prom_hdr() -> Callable[[int], int]:
    from hdrh.histogram import HdrHistogram
    from prometheus_client import CollectorRegistry, Histogram

    hist = Histogram("bench_step_seconds", "step latency", ["step"],
                     registry=CollectorRegistry())
    children = [hist.labels(name) for name in STEP_NAMES]
    hdrs = [HdrHistogram(1, 3_600_000_000_000, 3) for _ in STEP_NAMES]
    steps = tuple(zip(STEPS, children, hdrs, strict=False))
    perf = time.perf_counter_ns

    def prom_hdr(x: int) -> int:
        t = perf()
        for fn, child, hdr in steps:
            x = fn(x)
            t2 = perf()
            d = t2 - t
            child.observe(d / 1e9)
            hdr.record_value(d)
            t = t2
        return x

    return prom_hdr


def _make_flowchain(steps: tuple = STEPS,
                    name: str = "overhead_bench") -> tuple[Callable[[int], int], Any, str]:
    from flowchain import ChainBuilder, ChainRegistry, ComponentRegistry

    components = ComponentRegistry()
    builder = ChainBuilder(name)
    for i, (step, fn) in enumerate(zip(STEP_NAMES, steps, strict=False)):
        components.register(f"Step{i}", fn)
        builder.step(step, f"Step{i}", f"int{i}", f"int{i + 1}", 0.001)
    registry = ChainRegistry(components)
    chain_id = registry.register_chain(builder.build())
    return registry.runner(chain_id).run, registry, chain_id


def _make_failure() -> tuple[Callable[[int], Any], Any, str]:
    """The same chain with the last step raising, called and caught as a user would."""
    from flowchain import ChainStepError

    run, registry, chain_id = _make_flowchain(STEPS[:3] + (_raise3,), "overhead_failure_bench")

    def failure(x: int) -> Any:
        try:
            return run(x)
        except ChainStepError:
            return None

    return failure, registry, chain_id


def _time_per_call(fn: Callable[[int], int], n: int) -> float:
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn(1)
        return (time.perf_counter_ns() - t0) / n
    finally:
        if gc_was:
            gc.enable()


def run(repetitions: int = 7, n: int = 50_000, n_otel: int = 2_000) -> dict[str, Any]:
    """Measure the five ways; return the JSON object ``flowchain bench overhead`` prints."""
    if repetitions < 5:
        raise ValueError(f"at least 5 interleaved repetitions are needed, got {repetitions}")
    flowchain_run, registry, chain_id = _make_flowchain()
    failure_run, failure_registry, failure_id = _make_failure()
    n_fail = max(n // 5, 1000)
    ways: dict[str, tuple[Callable[[int], Any], int]] = {
        "floor": (_floor, n),
        "naive": (_make_naive(), n),
        "otel": (_make_otel(), n_otel),
        "prom_hdr": (_make_prom_hdr(), max(n // 5, 1000)),
        "flowchain": (flowchain_run, n),
        "bare_failure": (_bare_failure, n_fail),
        "failure": (failure_run, n_fail),
    }
    for fn, count in ways.values():  # warm-up: caches, branch predictors, lazy init
        _time_per_call(fn, max(count // 10, 100))
    runner = registry.runner(chain_id)
    runner.histograms.reset()
    samples = interleave({name: (lambda rep, fn=fn, count=count: _time_per_call(fn, count))
                          for name, (fn, count) in ways.items()}, repetitions)
    med = {k: statistics.median(v) for k, v in samples.items()}
    steps = {}
    for name in STEP_NAMES:
        s = registry.histogram(chain_id, name).summary()
        steps[name] = {"p50_ns": s["p50_ns"], "p99_ns": s["p99_ns"], "p999_ns": s["p999_ns"],
                       "max_ns": s["max_ns"], "count": s["count"]}
    chain = registry.histogram(chain_id).summary()
    failed = failure_registry.histogram(failure_id, outcome="failure").summary()
    failure_ratio = med["failure"] / med["bare_failure"]
    return {
        "floor_ns": round(med["floor"], 1),
        "naive_ns": round(med["naive"], 1),
        "otel_ns": round(med["otel"], 1),
        "prom_hdr_ns": round(med["prom_hdr"], 1),
        "flowchain_ns": round(med["flowchain"], 1),
        "flowchain_vs_floor": round(med["flowchain"] / med["floor"], 3),
        "otel_vs_flowchain": round(med["otel"] / med["flowchain"], 1),
        "naive_vs_flowchain": round(med["naive"] / med["flowchain"], 2),
        "prom_hdr_vs_flowchain": round(med["prom_hdr"] / med["flowchain"], 2),
        "failure_ns": round(med["failure"], 1),
        "bare_failure_ns": round(med["bare_failure"], 1),
        "failure_vs_bare_failure": round(failure_ratio, 3),
        "budget": {"flowchain_vs_floor_max": 2.0, "otel_vs_flowchain_min": 20.0,
                   "naive_vs_flowchain_min": 3.0,
                   "failure_vs_bare_failure_max": FAILURE_RATIO_BUDGET},
        "within_budget": (med["flowchain"] <= 2.0 * med["floor"]
                          and med["otel"] >= 20.0 * med["flowchain"]
                          and med["naive"] >= 3.0 * med["flowchain"]
                          and failure_ratio <= FAILURE_RATIO_BUDGET),
        "step_latency": steps,
        "chain_latency": {k: chain[k] for k in ("count", "p50_ns", "p99_ns", "p999_ns", "max_ns")},
        "failure_latency": {k: failed[k] for k in ("count", "p50_ns", "p99_ns", "p999_ns",
                                                   "max_ns")},
        "repetitions": repetitions,
        "executions_per_repetition": {k: c for k, (_, c) in ways.items()},
        "samples_ns": {k: [round(x, 1) for x in v] for k, v in samples.items()},
        "versions": versions(),
        "cpu": cpu(),
    }
