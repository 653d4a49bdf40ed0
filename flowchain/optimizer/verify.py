"""Check an optimization by measurement: run the original and the optimized chain version
side by side on the same inputs and compare their latency and their outputs.

The inputs run in order, each through both versions one after the other, the version going
first alternating from input to input (so neither always meets a warmer cache or a quieter
machine). Each version gets its own deep copy of the input. Both runners are built (worker
processes started) before the first input, and no input is run beforehand, so an optimized
version starts as the optimizer's prediction assumes: a cache empty, a pool ready.

A ``parallel`` step's speedup hangs on the CPU the machine gives its workers during the check,
which on a shared machine can be far less than the optimizer measured when it sized the step:
other processes may hold the cores (the workers then wait for one), or the cores may be slower
together than alone (hyperthreads of one core, a VM host's other guests) while the workers stay
on them. So the check also reports, per parallel step (:class:`ParallelCheck`), how fast the
workers ran the step's items against the original version's step on the same inputs: a miss
with the workers short of speed is the machine's, not the model's.
"""
from __future__ import annotations

import asyncio
import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowchain.chain import ChainDefinition
from flowchain.errors import ChainStepError
from flowchain.optimizer.pool import WorkerUsage


def same_output(a: Any, b: Any) -> bool:
    """Whether two outputs are equal: same types, same values, arrays element for element
    (NaN equal to NaN), containers item by item."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and \
            bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_output(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_output(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    try:
        return bool(a == b)
    except Exception:
        return False


@dataclass(frozen=True, slots=True)
class ParallelCheck:
    """How a ``parallel`` step's workers ran during the check.

    ``usage`` is timed in the workers (:class:`~flowchain.optimizer.pool.WorkerUsage`);
    ``serial_item_ns`` the original version's step time per item over the same inputs (None
    when some input was not split, so the items differ). ``speed`` is the serial time of an
    item over a worker's: 1.0 when the workers ran as fast as the step alone, about 0.5 when
    two workers shared one core's worth of speed. ``effective_cores`` is the original step's
    time over the time of each call's slowest chunk (which the call waits for): the speedup
    of the work itself that the machine delivered, dispatch aside (``workers`` at most).
    """

    usage: WorkerUsage
    serial_item_ns: float | None

    @property
    def speed(self) -> float | None:
        worker = self.usage.item_wall_ns()
        if self.serial_item_ns is None or worker <= 0:
            return None
        return self.serial_item_ns / worker

    @property
    def effective_cores(self) -> float | None:
        if self.serial_item_ns is None or self.usage.span_ns <= 0:
            return None
        return min(float(self.usage.workers),
                   self.serial_item_ns * self.usage.items / self.usage.span_ns)

    def to_dict(self) -> dict[str, Any]:
        speed, cores = self.speed, self.effective_cores
        return {**self.usage.to_dict(),
                "serial_item_ns": None if self.serial_item_ns is None
                else int(self.serial_item_ns),
                "worker_item_ns": int(self.usage.item_wall_ns()),
                "speed": None if speed is None else round(speed, 3),
                "effective_cores": None if cores is None else round(cores, 2)}


def _step_total(registry: Any, chain_id: str, step: str) -> tuple[int, float]:
    """The step's successful calls so far in ``registry`` and their summed time (ns)."""
    latency = registry.stats(chain_id).step(step).latency
    return latency.count, latency.count * latency.mean_ns


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Latency of both versions over the same inputs, and whether their outputs agree."""

    executions: int
    old_p50_ns: float
    new_p50_ns: float
    old_p99_ns: float
    new_p99_ns: float
    identical: bool
    mismatches: tuple[int, ...] = ()
    failures: tuple[str, ...] = field(default=())
    workers: dict[str, ParallelCheck] = field(default_factory=dict)
    """Per ``parallel`` step of the optimized version: how its workers ran in the check."""

    @property
    def p50_speedup(self) -> float:
        return self.old_p50_ns / self.new_p50_ns if self.new_p50_ns > 0 else 0.0

    @property
    def p99_speedup(self) -> float:
        return self.old_p99_ns / self.new_p99_ns if self.new_p99_ns > 0 else 0.0

    def to_dict(self, predicted: Any | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "executions": self.executions,
            "measured": {
                "p50": {"before_ns": int(self.old_p50_ns), "after_ns": int(self.new_p50_ns),
                        "speedup": round(self.p50_speedup, 3)},
                "p99": {"before_ns": int(self.old_p99_ns), "after_ns": int(self.new_p99_ns),
                        "speedup": round(self.p99_speedup, 3)},
            },
            "outputs_identical": self.identical,
            "mismatched_inputs": list(self.mismatches),
            "failures": list(self.failures),
            "workers": {step: check.to_dict() for step, check in self.workers.items()},
        }
        if predicted is not None:
            out["predicted"] = {"p50": {"speedup": round(predicted.p50_speedup, 3)},
                                "p99": {"speedup": round(predicted.p99_speedup, 3)}}
            out["p50_prediction_error"] = round(
                predicted.p50_speedup / self.p50_speedup - 1.0, 3) if self.p50_speedup else None
        return out


def _timed(runner: Any, loop: asyncio.AbstractEventLoop | None, data: Any) -> tuple[int, Any]:
    t0 = time.perf_counter_ns()
    if loop is None:
        out = runner.run(data)
    else:
        out = loop.run_until_complete(runner.run_async(data))
    return time.perf_counter_ns() - t0, out


def verify_side_by_side(registry: Any, old: ChainDefinition, new: ChainDefinition,
                        inputs: Sequence[Any]) -> VerifyResult:
    """Run every input through ``old`` and ``new`` (both registered in ``registry``).

    A failing execution is a failure of the check (its message kept), not an exception; its
    input counts as a mismatch when only one version failed.

    Raises
    ------
    ValueError
        When ``inputs`` is empty.
    """
    if not inputs:
        raise ValueError("no input to verify with")
    runners = (registry.runner(old.chain_id), registry.runner(new.chain_id))
    parallel = [s.name for s in new.steps if s.parallel is not None]
    before = {name: (registry.step_worker_usage(new.chain_id, name),
                     _step_total(registry, old.chain_id, name)) for name in parallel}
    loop = asyncio.new_event_loop() if any(r.has_async for r in runners) else None
    times: tuple[list[int], list[int]] = ([], [])
    mismatches: list[int] = []
    failures: list[str] = []
    try:
        for i, data in enumerate(inputs):
            outputs: list[Any] = [None, None]
            failed = [False, False]
            order = (0, 1) if i % 2 == 0 else (1, 0)
            for v in order:
                copied = copy.deepcopy(data)
                runner = runners[v]
                try:
                    elapsed, outputs[v] = _timed(runner, loop if runner.has_async else None,
                                                 copied)
                    times[v].append(elapsed)
                except ChainStepError as exc:
                    failed[v] = True
                    which = "original" if v == 0 else "optimized"
                    failures.append(f"input {i}: the {which} version failed: {exc}")
            if failed[0] != failed[1] or \
                    (not failed[0] and not same_output(outputs[0], outputs[1])):
                mismatches.append(i)
    finally:
        if loop is not None:
            loop.close()
    workers = {}
    for name, (earlier, (calls_before, ns_before)) in before.items():
        usage = registry.step_worker_usage(new.chain_id, name)
        if usage is None:
            continue
        usage = usage if earlier is None else usage.since(earlier)
        calls, ns = _step_total(registry, old.chain_id, name)
        # every input split on both sides: the original's step saw the same items
        same_items = usage.items > 0 and calls - calls_before == usage.calls
        workers[name] = ParallelCheck(usage, (ns - ns_before) / usage.items if same_items
                                      else None)
    old_t = np.asarray(times[0] or [0], dtype=np.float64)
    new_t = np.asarray(times[1] or [0], dtype=np.float64)
    return VerifyResult(len(inputs), float(np.percentile(old_t, 50)),
                        float(np.percentile(new_t, 50)), float(np.percentile(old_t, 99)),
                        float(np.percentile(new_t, 99)), not mismatches and not failures,
                        tuple(mismatches), tuple(failures), workers)
