"""CI latency gates (pytest-benchmark) for the trading node at its chains' expected durations.

The decision chain expects multi-agent analysis under 15 ms and trading execution under 1.2 ms.
The node's whole decision (tick in the ring -> decision, all four steps tracked) must stay under
15 ms and the trading_execution step (paper broker, SQLite journal) under 1.2 ms, at p99. The
node benchmark's own budgets are 500x and 100x tighter (``flowchain bench node`` reports them); these gates
are generous on purpose so a noisy 2-core CI machine never fails them, yet a regression by
orders of magnitude (a compile on the tick, a blocking write, a per-tick scan) does.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from flowchain.bench import node as bench
from flowchain.chains import AI_DECISION_CHAIN

pytestmark = pytest.mark.latency_gate

SEED_DECISION_TARGET_NS = 15_000_000
SEED_EXECUTION_TARGET_NS = 1_200_000


@pytest.fixture(scope="module")
def node_path():
    with tempfile.TemporaryDirectory(prefix="flowchain-gate-node-") as tmp:
        path = bench.NodePath(Path(tmp), bench.SYMBOLS, seed=1)
        try:
            yield path
        finally:
            path.close()


@pytest.fixture(scope="module")
def measured(node_path):
    return bench.measure_decisions(node_path, ticks=5_000, repetitions=5, warmup=2_000)


def test_decision_under_the_seed_target(node_path, measured, benchmark):
    ids, ticks = node_path.ticks(1)
    raw = memoryview(ticks.view(np.uint8))
    out = np.zeros(1, dtype=np.int64)
    seq = iter(range(10**12, 2 * 10**12))

    def one_tick() -> int:
        bench.decision_repetition(node_path, node_path.decide, ids, raw, next(seq), out)
        return int(out[0])

    assert benchmark(one_tick) > 0
    fc = measured["medians"]["flowchain"]
    benchmark.extra_info.update({"decision_p50_ns": fc["p50_ns"], "decision_p99_ns": fc["p99_ns"],
                                 "decision_p999_ns": fc["p999_ns"]})
    assert benchmark.stats.stats.median * 1e9 < SEED_DECISION_TARGET_NS
    assert fc["p99_ns"] < SEED_DECISION_TARGET_NS, measured["medians"]


def test_execution_step_under_the_seed_target(node_path, measured):
    step = node_path.registry.histogram(AI_DECISION_CHAIN, "trading_execution").summary()
    assert step["count"] >= 25_000
    assert step["p99_ns"] < SEED_EXECUTION_TARGET_NS, step
