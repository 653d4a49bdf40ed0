"""Suggestions sized from measurements: Amdahl against a dispatch cost, the LRU curve,
Little's law, and the per-sample improvement estimate."""
import math

import pytest

from flowchain.optimizer import suggestions as s
from tests.optimizer.measured import chain, step

N = 40
MS = 1_000_000
CHEAP = s.DispatchCost(fixed_ns=100_000, per_item_ns=1_000)


def cpu_step(**kw):
    return step("score", 1, [16 * MS] * N, items=[32] * N, expected_ns=MS, **kw)


def test_parallelism_is_capped_by_the_cores_and_weighs_the_dispatch_cost():
    asked = []

    def cost(n):
        asked.append(n)
        return CHEAP

    opt = s.suggest_parallel(cpu_step(elementwise=True), 2, cost)
    assert (opt.kind, opt.value) == (s.PARALLEL, 2)
    assert asked == [2]
    # 16 chunks of 2 items each: half a millisecond each, plus dispatch
    assert opt.predicted_ns[0] == pytest.approx(8 * MS + 100_000 + 32_000)
    assert opt.to_dict()["parallelism"] == 2
    opt = s.suggest_parallel(cpu_step(elementwise=True), 64, lambda n: CHEAP)
    assert opt.value == 32  # beyond 32 workers a call of 32 items has nothing left to split
    assert max(int(k) for k in opt.details["predicted_step_ns_by_workers"]) == 64


def test_fewest_workers_within_tolerance_of_the_best():
    # a dispatch cost growing with the workers: the best is interior, not the most cores
    opt = s.suggest_parallel(cpu_step(elementwise=True), 8,
                             lambda n: s.DispatchCost(fixed_ns=n * 0.5 * MS, per_item_ns=0))
    by = {int(k): v for k, v in opt.details["predicted_step_ns_by_workers"].items()}
    best = min(by.values())
    assert by[opt.value] <= best * (1 + s.PARALLEL_TOLERANCE)
    assert all(by[n] > best * (1 + s.PARALLEL_TOLERANCE) for n in by if n < opt.value)
    assert opt.value < 8


def test_no_parallelism_when_dispatch_outweighs_the_work_or_no_cores():
    opt = s.suggest_parallel(cpu_step(elementwise=True), 4,
                             lambda n: s.DispatchCost(fixed_ns=20 * MS, per_item_ns=0))
    assert opt.value is None and "dispatch cost outweighs" in opt.reason
    assert opt.needs_trait is None
    one = s.suggest_parallel(cpu_step(elementwise=True), 1, lambda n: CHEAP)
    assert one.value is None and "1 core" in one.reason


def test_not_elementwise_says_what_would_make_it_splittable():
    opt = s.suggest_parallel(cpu_step(), 4, lambda n: pytest.fail("must not measure"))
    assert opt.value is None and opt.needs_trait == s.ELEMENTWISE
    assert "elementwise=True" in opt.reason and "f(a + b) == f(a) + f(b)" in opt.reason
    no_items = step("score", 1, [16 * MS] * N, elementwise=True)
    assert "never a sequence" in s.suggest_parallel(no_items, 4, lambda n: CHEAP).reason


def test_cache_size_from_the_hit_ratio_curve_with_its_memory_cost():
    hashes = [f"{i % 10:016x}" for i in range(200)]  # 10 inputs in turn: LRU needs all 10
    st = step("table", 1, [9 * MS] * 200, alloc=4 << 20, hashes=hashes, deterministic=True)
    opt = s.suggest_cache(st)
    assert (opt.kind, opt.value) == (s.CACHE, 10)
    assert opt.details["hit_ratio"] == pytest.approx(0.95)
    assert opt.details["achievable_hit_ratio"] == pytest.approx(0.95)
    assert opt.details["memory_bytes"] == 10 * (4 << 20)
    assert opt.details["hit_ratio_curve"]["8"] == 0.0
    assert opt.predicted_ns[:11] == (9 * MS,) * 10 + (0.0,)
    assert opt.to_dict()["cache_size"] == 10


def test_cache_never_suggested_for_a_component_not_declared_deterministic():
    hashes = [f"{i % 3:016x}" for i in range(N)]
    opt = s.suggest_cache(step("clock", 1, [9 * MS] * N, alloc=4 << 20, hashes=hashes))
    assert opt.value is None and opt.needs_trait == s.DETERMINISTIC
    assert "never suggested" in opt.reason and "deterministic=True" in opt.reason
    unique = s.suggest_cache(step("t", 1, [9 * MS] * N, deterministic=True))
    assert unique.value is None and "never hit" in unique.reason


def test_async_concurrency_by_littles_law_capped_by_items_and_limit():
    # 8 items each waiting 2 ms; the rest of the chain takes 1 ms: all 8 must be in flight
    io = step("fetch", 1, [16.4 * MS] * N, cpu_ns=[0.4 * MS] * N, items=[8] * N,
              elementwise=True)
    c = chain(step("prep", 0, [MS] * N), io)
    opt = s.suggest_async(c, io)
    assert (opt.kind, opt.value) == (s.ASYNC, 8)
    assert opt.details["wait_per_item_ns"] == 2 * MS
    # lambda = 8 items / (17.4 ms - 16 ms of wait) and W = 2 ms
    assert opt.details["littles_law_in_flight"] == pytest.approx(8 / 1.4e-3 * 2e-3, rel=1e-3)
    assert opt.predicted_ns[0] == pytest.approx(0.4 * MS + 2 * MS)
    assert s.suggest_async(c, io, limit=3).value == 3
    assert s.suggest_async(c, io, limit=3).predicted_ns[0] == pytest.approx(0.4 * MS + 3 * 2 * MS)
    with pytest.raises(ValueError, match="at least 1"):
        s.suggest_async(c, io, limit=0)


def test_littles_law_with_little_wait_asks_for_little_concurrency():
    # 1 ms of wait in 8 items, behind 40 ms of other work: about 0.2 in flight is enough
    io = step("fetch", 1, [2 * MS] * N, cpu_ns=[MS] * N, items=[8] * N, elementwise=True)
    c = chain(step("prep", 0, [40 * MS] * N), io)
    opt = s.suggest_async(c, io)
    assert opt.value is None and "fewer than 2" in opt.reason
    not_ew = step("fetch", 1, [16 * MS] * N, cpu_ns=[0] * N, items=[8] * N)
    assert s.suggest_async(c, not_ew).needs_trait == s.ELEMENTWISE


def test_improvement_substitutes_each_sample():
    prep = step("prep", 0, [MS] * N)
    slow = step("score", 1, [8 * MS] * (N // 2) + [16 * MS] * (N // 2), items=[32] * N,
                elementwise=True)
    c = chain(prep, slow)
    opt = s.suggest_parallel(slow, 2, lambda n: s.DispatchCost(0, 0))
    imp = s.estimate_improvement(c, [opt])
    # p50 of (9, 17) ms totals -> (5, 9) ms; p99 -> 17 -> 9
    assert imp.p50_speedup == pytest.approx(c.p50_ns / (c.p50_ns * 7 / 13), rel=1e-6)
    assert imp.p99_after_ns == pytest.approx(c.p99_ns * 9 / 17, rel=1e-2)
    out = imp.to_dict()
    assert set(out) >= {"p50", "p99", "method"} and out["p50"]["speedup"] > 1
    assert s.estimate_improvement(c, []).p50_speedup == pytest.approx(1.0)


def test_parallel_candidates():
    assert s.parallel_candidates(2) == [2]
    assert s.parallel_candidates(16) == [2, 3, 4, 5, 6, 7, 8, 16]
    assert s.parallel_candidates(40) == [2, 3, 4, 5, 6, 7, 8, 16, 32, 40]
    assert s.available_cores() >= 1
    assert math.isfinite(s.predict_parallel_ns(10, None, 4, CHEAP))


def test_a_loaded_machine_gives_fewer_cores_worth_and_the_prediction_says_so():
    idle = s.suggest_parallel(cpu_step(elementwise=True), 2, lambda n: CHEAP, lambda n: 2.0)
    half = s.suggest_parallel(cpu_step(elementwise=True), 2, lambda n: CHEAP, lambda n: 1.5)
    assert half.predicted_ns[0] == pytest.approx(16 * MS / 1.5 + 100_000 + 32_000)
    assert half.details["cpu_capacity"] == 1.5 and idle.predicted_ns[0] < half.predicted_ns[0]
    busy = s.suggest_parallel(cpu_step(elementwise=True), 2, lambda n: CHEAP, lambda n: 1.0)
    assert busy.value is None and "1.0 cores' worth" in busy.reason


def test_cpu_capacity_is_measured_between_one_and_the_workers():
    from flowchain.optimizer.capacity import measure_cpu_capacity

    assert measure_cpu_capacity(1) == 1.0
    assert 1.0 <= measure_cpu_capacity(2, rounds=1) <= 2.0
    with pytest.raises(ValueError):
        measure_cpu_capacity(0)


def test_cpu_capacity_sees_a_busy_core():
    """A process spinning on one of two cores halves what two threads get at once: the probe
    must read it, even when the spinning has just started (its units last 40 ms)."""
    import os
    import subprocess
    import sys

    from flowchain.optimizer.capacity import measure_cpu_capacity

    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs and affinity masks")
    mask = os.sched_getaffinity(0)
    two = set(sorted(mask)[:2])
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(hog.pid, {max(two)})
        os.sched_setaffinity(0, two)  # the probe's threads inherit this thread's mask
        busy = measure_cpu_capacity(2)
    finally:
        os.sched_setaffinity(0, mask)
        hog.kill()
        hog.wait()
    assert 1.0 <= busy < 1.5, busy


def test_the_estimate_remade_for_the_cpu_the_workers_delivered():
    """``--verify``'s remade prediction: the same workers and dispatch, another capacity."""
    prep = step("prep", 0, [4 * MS] * N)
    score = cpu_step(elementwise=True)
    measured = chain(prep, score)
    opt = s.suggest_parallel(score, 2, lambda n: CHEAP, lambda n: 2.0)
    sized = s.estimate_improvement(measured, [opt])
    # the capacity it was sized for gives the same estimate (dispatch read back from details)
    same = s.estimate_at_capacity(measured, [opt], {"score": 2.0})
    assert same.p50_speedup == pytest.approx(sized.p50_speedup, rel=1e-3)
    # one core's worth: the chunks run one after the other, and the dispatch is on top
    one = s.estimate_at_capacity(measured, [opt], {"score": 1.0})
    assert one.p50_after_ns == pytest.approx(4 * MS + 16 * MS + 100_000 + 32_000, rel=1e-3)
    assert one.p50_speedup < 1.0 < sized.p50_speedup
    # a step not named keeps its own prediction; a blocked remedy is left alone
    assert s.estimate_at_capacity(measured, [opt], {}).p50_speedup == \
        pytest.approx(sized.p50_speedup)
    blocked = s.suggest_parallel(cpu_step(), 2, lambda n: CHEAP)
    assert s.estimate_at_capacity(measured, [blocked], {"score": 1.0}).p50_speedup == 1.0
