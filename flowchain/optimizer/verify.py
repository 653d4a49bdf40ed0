"""Check an optimization by measurement: run the original and the optimized chain version
side by side on the same inputs and compare their latency and their outputs.

The inputs run in order, each through both versions one after the other, the version going
first alternating from input to input (so neither always meets a warmer cache or a quieter
machine). Each version gets its own deep copy of the input. Both runners are built (worker
processes started) before the first input, and no input is run beforehand, so an optimized
version starts as the optimizer's prediction assumes: a cache empty, a pool ready.

A ``parallel`` step's speedup hangs on the CPU the machine gives its workers during the check,
which on a machine shared with busy processes can be far less than the optimizer measured when
it sized the step. So the check also reports, per parallel step, the cores' worth of CPU the
workers had (:class:`~flowchain.optimizer.pool.WorkerUsage`, timed in the workers): a miss
with the workers short of CPU is the machine's, not the model's.
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
    workers: dict[str, WorkerUsage] = field(default_factory=dict)
    """Per ``parallel`` step of the optimized version: the CPU its workers had in the check."""

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
            "workers": {step: usage.to_dict() for step, usage in self.workers.items()},
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
    before = {name: registry.step_worker_usage(new.chain_id, name) for name in parallel}
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
    for name, earlier in before.items():
        usage = registry.step_worker_usage(new.chain_id, name)
        if usage is not None:
            workers[name] = usage if earlier is None else usage.since(earlier)
    old_t = np.asarray(times[0] or [0], dtype=np.float64)
    new_t = np.asarray(times[1] or [0], dtype=np.float64)
    return VerifyResult(len(inputs), float(np.percentile(old_t, 50)),
                        float(np.percentile(new_t, 50)), float(np.percentile(old_t, 99)),
                        float(np.percentile(new_t, 99)), not mismatches and not failures,
                        tuple(mismatches), tuple(failures), workers)
