"""The detectors' numeric criteria, each side of each threshold."""
import pytest

from flowchain.optimizer import detectors as d
from tests.optimizer.measured import chain, step

N = 40
MS = 1_000_000


def test_a_dominant_step_slower_than_expected_is_a_slow_step_with_its_evidence():
    c = chain(step("parse", 0, [MS] * N, expected_ns=5 * MS),
              step("score", 1, [8 * MS] * N, expected_ns=2 * MS))
    [b] = d.detect(c)
    assert (b.step, b.type) == ("score", d.SLOW_STEP)
    assert b.evidence["share_of_chain_p50"] == pytest.approx(8 / 9, abs=1e-3)
    assert b.evidence["ratio_to_expected"] == pytest.approx(4.0)
    assert b.to_dict()["evidence"]["p50_ns"] == 8 * MS


def test_within_its_expected_duration_or_a_small_share_is_no_bottleneck():
    within = chain(step("a", 0, [MS] * N, expected_ns=5 * MS),
                   step("b", 1, [8 * MS] * N, expected_ns=10 * MS))
    assert d.detect(within) == []
    # three equal steps: each a third of the chain, below BOTTLENECK_SHARE, even when slow
    equal = chain(*(step(n, i, [3 * MS] * N, expected_ns=MS) for i, n in enumerate("abc")))
    assert d.detect(equal) == []


def test_too_few_profiled_calls_are_not_judged():
    c = chain(step("a", 0, [MS] * (d.MIN_PROFILED_CALLS - 1), expected_ns=MS // 10))
    assert d.detect(c) == []
    c = chain(step("a", 0, [MS] * d.MIN_PROFILED_CALLS, expected_ns=MS // 10))
    assert [b.type for b in d.detect(c)] == [d.SLOW_STEP]


def test_mostly_waiting_is_io_bound():
    waits = chain(step("cpu", 0, [MS] * N),
                  step("fetch", 1, [10 * MS] * N, cpu_ns=[MS] * N, items=[8] * N))
    [b] = d.detect(waits)
    assert (b.step, b.type) == ("fetch", d.IO_BOUND)
    assert b.evidence["cpu_per_wall"] == pytest.approx(0.1)
    assert b.evidence["wait_per_call_ns"] == 9 * MS
    busy = chain(step("cpu", 0, [MS] * N),
                 step("fetch", 1, [10 * MS] * N, cpu_ns=[3 * MS] * N))  # 0.3 > IO_CPU_PER_WALL
    assert [b.type for b in d.detect(busy)] == [d.SLOW_STEP]


def test_large_allocations_on_repeating_inputs_are_memory_intensive():
    hashes = [f"{i % 5:016x}" for i in range(N)]  # 5 distinct inputs: 35/40 repeats
    c = chain(step("load", 0, [MS] * N),
              step("table", 1, [9 * MS] * N, alloc=8 << 20, hashes=hashes))
    [b] = d.detect(c)
    assert (b.step, b.type) == ("table", d.MEMORY_INTENSIVE)
    assert b.evidence["alloc_per_call_bytes"] == 8 << 20
    assert b.evidence["input_repeat_ratio"] == pytest.approx(35 / 40)
    # the same allocation on inputs that never repeat: no cache could help; only slow
    unique = chain(step("load", 0, [MS] * N),
                   step("table", 1, [9 * MS] * N, alloc=8 << 20))
    assert [b.type for b in d.detect(unique)] == [d.SLOW_STEP]
    # repeats with small allocations: not memory-intensive
    small = chain(step("load", 0, [MS] * N),
                  step("table", 1, [9 * MS] * N, alloc=d.MEMORY_ALLOC_BYTES - 1, hashes=hashes))
    assert [b.type for b in d.detect(small)] == [d.SLOW_STEP]


def test_repeating_large_allocations_win_over_waiting():
    # a cache answers a repeated input whatever the call spent its time on
    hashes = [f"{i % 4:016x}" for i in range(N)]
    c = chain(step("load", 0, [MS] * N),
              step("table", 1, [9 * MS] * N, cpu_ns=[MS] * N, alloc=8 << 20, hashes=hashes))
    assert [b.type for b in d.detect(c)] == [d.MEMORY_INTENSIVE]


def test_a_light_step_with_a_slow_tail_is_no_bottleneck_but_a_dominant_tail_is():
    light = [MS] * (N - 2) + [8 * MS] * 2  # two outliers: half the chain's p99
    c = chain(step("light", 0, light, expected_ns=MS // 2),
              step("heavy", 1, [8 * MS] * N, expected_ns=20 * MS))
    assert d.detect(c) == []
    tail = [MS] * (N - 2) + [100 * MS] * 2
    c = chain(step("light", 0, tail, expected_ns=MS // 2),
              step("heavy", 1, [8 * MS] * N, expected_ns=20 * MS))
    [b] = d.detect(c)
    assert b.step == "light" and b.evidence["share_of_chain_p99"] >= d.TAIL_BOTTLENECK_SHARE
