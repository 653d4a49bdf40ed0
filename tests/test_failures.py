"""The failure path: a failing step costs about what a success costs on the tick path.

The runner keeps references (exception, input, context) and clock readings in its failure
ring and times failures into their own histograms; tracebacks, reprs and records are built on
the cold path, when asked, and kept.
"""
import gc
import sys
import traceback

import pytest

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry, ExecutionStatus, UserContext
from flowchain.execution import format_traceback


class Tick:
    """A step input that counts how often it is repr'd."""

    reprs = 0

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        Tick.reprs += 1
        return f"Tick({self.value})"


def reject(tick):
    if tick.value % 2:
        raise ValueError(f"odd tick {tick.value}")
    return tick


@pytest.fixture
def registry():
    comps = ComponentRegistry()
    comps.register("Parse", lambda t: t)
    comps.register("Reject", reject)
    comps.register("Send", lambda t: t.value)
    return ChainRegistry(comps, failures_kept=8)


@pytest.fixture
def cid(registry):
    return registry.register_chain(
        ChainBuilder("orders").step("parse", "Parse", "raw", "tick", 1)
        .step("reject", "Reject", "tick", "tick2", 1).step("send", "Send", "tick2", "id", 1)
        .build())


def fail_many(run, n, start=1):
    for i in range(n):
        with pytest.raises(ChainStepError):
            run(Tick(start + 2 * i))


def test_the_tick_path_formats_nothing(registry, cid, monkeypatch):
    calls = []
    for name in ("format_exception", "format_list", "extract_tb", "format_exception_only"):
        real = getattr(traceback, name)
        monkeypatch.setattr(traceback, name,
                            lambda *a, _real=real, _name=name, **k: calls.append(_name) or
                            _real(*a, **k))
    Tick.reprs = 0
    run = registry.runner(cid).run
    for i in range(50):
        try:
            run(Tick(2 * i + 1))
        except ChainStepError as exc:
            assert exc.step == "reject" and exc.step_index == 1 and exc.seq == i
            assert exc.chain_id == cid
    assert calls == [] and Tick.reprs == 0
    # asked for, the newest record is built once, with everything the old record had
    record = registry.failures(cid)[-1]
    failure = record.failure
    assert failure.input_repr == "Tick(99)" and Tick.reprs == 1
    assert failure.exception_type == "ValueError" and failure.message == "odd tick 99"
    assert "in reject" in failure.traceback and failure.traceback.startswith("Traceback")
    assert failure.traceback.endswith("ValueError: odd tick 99\n")
    assert calls  # formatted now, on the cold path
    assert registry.failures(cid)[-1] is record  # and kept: not rebuilt
    _ = record.failure.input_repr
    assert Tick.reprs == 1


def test_failure_steady_state_allocates_only_the_exceptions(registry, cid):
    run = registry.runner(cid).run
    ticks = [Tick(2 * i + 1) for i in range(3000)]

    def fail(tick):
        try:
            run(tick)
        except ChainStepError:
            pass

    for t in ticks[:1000]:  # wrap the failure ring: each failure now replaces an old one
        fail(t)
    gc.collect()
    before = sys.getallocatedblocks()
    for t in ticks[1000:]:
        fail(t)
    gc.collect()
    # nothing accumulates: no traceback text, no record, no repr per failure
    assert sys.getallocatedblocks() - before < 200


def test_execute_chain_returns_the_full_record_with_timings(registry, cid):
    ctx = UserContext("acme", "ann", "pro")
    record = registry.execute_chain(cid, Tick(7), ctx)
    assert record.status is ExecutionStatus.FAILED and record.user_context == ctx
    assert [s.status for s in record.steps] == [ExecutionStatus.SUCCEEDED,
                                                ExecutionStatus.FAILED]
    assert record.end_ns - record.start_ns == sum(s.duration_ns for s in record.steps)
    assert record.steps[1].duration_ns > 0
    assert record.failure.to_dict()["input"] == "Tick(7)"
    assert registry.execution(cid, record.seq).failure.message == "odd tick 7"


def test_failed_records_keep_their_timings_after_the_execution_ring_wraps():
    comps = ComponentRegistry()
    comps.register("Reject", reject)
    registry = ChainRegistry(comps, ring_capacity=4, failures_kept=4)
    cid = registry.register_chain(ChainBuilder("r").step("a", "Reject", "x", "y", 1).build())
    run = registry.runner(cid).run
    with pytest.raises(ChainStepError):
        run(Tick(1))
    for _ in range(20):
        run(Tick(2))
    assert registry.execution(cid, 0) is None  # the execution ring overwrote it
    (record,) = registry.failures(cid)
    assert record.seq == 0 and record.steps[0].duration_ns > 0
    assert record.total_duration == record.steps[0].duration_ns


def test_the_failure_ring_keeps_the_latest_and_errors_outlive_it(registry, cid):
    run = registry.runner(cid).run
    assert registry.runner(cid).failed.capacity == 8
    held = None
    for i in range(20):
        try:
            run(Tick(2 * i + 1))
        except ChainStepError as exc:
            if i == 0:
                held = exc
    kept = registry.failures(cid)
    assert [r.seq for r in kept] == list(range(12, 20))
    assert [r.seq for r in registry.failures(cid, after_seq=17)] == [18, 19]
    assert [r.seq for r in registry.failures(cid, limit=3)] == [17, 18, 19]
    assert registry.failures(cid, limit=0) == []
    # an error held past its ring slot still names the step, the exception and the input
    assert held.step == "reject"
    late = held.execution
    assert late.seq == 0 and late.failure.message == "odd tick 1"
    assert late.failure.input_repr == "Tick(1)" and late.steps == ()
    assert "failed at step 'reject' (Reject): ValueError: odd tick 1" in str(held)


def test_failures_are_timed_in_their_own_series(registry, cid):
    run = registry.runner(cid).run
    fail_many(run, 5)
    for i in range(3):
        run(Tick(2 * i))
    ok, bad = registry.histogram(cid), registry.histogram(cid, outcome="failure")
    assert ok.count == 3 and bad.count == 5 and bad.min > 0
    assert registry.histogram(cid, "reject", outcome="failure").count == 5
    assert registry.histogram(cid, "reject").count == 3
    assert registry.histogram(cid, "send", outcome="failure").count == 0
    # the step before the failing one succeeded every time
    assert registry.histogram(cid, "parse").count == 8
    stats = registry.stats(cid)
    assert (stats.executions, stats.succeeded, stats.failures, stats.running) == \
        (8, 3, 5, 0)
    assert stats.failure_latency.count == 5 and stats.latency.count == 3
    assert stats.failure_latency.p50_ns > 0
    assert [s.failure_latency.count for s in stats.steps] == [0, 5, 0]
    with pytest.raises(ValueError, match="outcome must be one of success, failure"):
        registry.histogram(cid, outcome="both")


def test_a_chain_with_only_failures_has_failure_latency(registry, cid):
    fail_many(registry.runner(cid).run, 4)
    stats = registry.stats(cid)
    assert stats.latency.count == 0
    assert stats.failure_latency.count == 4
    assert 0 < stats.failure_latency.p50_ns <= stats.failure_latency.max_ns


def test_the_context_table_is_bounded_and_says_what_it_lost():
    comps = ComponentRegistry()
    comps.register("Id", lambda x: x)
    registry = ChainRegistry(comps, contexts_kept=3)  # entry 0 is "no context": 2 kept
    cid = registry.register_chain(ChainBuilder("c").step("a", "Id", "x", "x", 1).build())
    run = registry.runner(cid).run
    a, b, c = UserContext("a"), UserContext("b"), UserContext("c")
    for ctx in (a, b, a, None, c):  # c replaces the oldest entry (a's)
        run(1, ctx)
    got = [registry.execution(cid, s).user_context for s in range(5)]
    assert got == [None, b, None, None, c]  # a's executions lost their context, not mislabelled
    assert registry.runner(cid).contexts == (None, c, b)
    run(1, UserContext("b"))  # an equal context reuses its entry
    assert registry.execution(cid, 5).user_context == b
    assert len(registry.runner(cid).contexts) == 3
    with pytest.raises(IndexError, match="context index 3 is outside 0..2"):
        registry.runner(cid).context_of(3, 0)
    with pytest.raises(ValueError, match="contexts_kept"):
        ChainRegistry(comps, contexts_kept=1)


def test_an_unhashable_context_is_refused_and_the_runner_goes_on():
    comps = ComponentRegistry()
    comps.register("Id", lambda x: x)
    registry = ChainRegistry(comps)
    runner = registry.runner(registry.register_chain(
        ChainBuilder("c").step("a", "Id", "x", "x", 1).build()))
    with pytest.raises(TypeError, match="unhashable"):
        runner.run(1, {"tenant": "acme"})
    assert not runner.busy and runner.executions == 0
    assert runner.run(5) == 5


def test_traceback_stacks_are_reused_but_messages_are_not():
    def fail(n):
        raise KeyError(n)

    errors = []
    for n in range(3):
        try:
            fail(n)
        except KeyError as exc:
            errors.append(exc)
    texts = [format_traceback(e) for e in errors]
    for n, (exc, text) in enumerate(zip(errors, texts, strict=True)):
        assert text == "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        assert text.endswith(f"KeyError: {n}\n")
    try:
        try:
            fail(9)
        except KeyError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as chained:
        text = format_traceback(chained)
    assert "direct cause" in text and "KeyError: 9" in text


def test_a_runner_built_by_hand_raises_errors_that_say_what_they_lack():
    from flowchain._native import engine
    from flowchain.histograms import DEFAULT_SETTINGS

    runner = engine.ChainRunner("solo@1", ("a", "b"), (lambda x: x, reject), (False, False),
                                8, DEFAULT_SETTINGS.layout(), ChainStepError)
    with pytest.raises(ChainStepError) as info:
        runner.run(Tick(3))
    err = info.value
    assert (err.step, err.step_index, err.seq, err.chain_id) == ("b", 1, 0, "solo@1")
    assert str(err) == "chain solo@1 failed at step 'b': ValueError: odd tick 3"
    with pytest.raises(LookupError, match="no registry to build the record"):
        _ = err.execution
    # the failure ring has it all the same
    number, seq, step, start, end, durations, exc, step_input, context = runner.failed.read(0)
    assert (seq, step, exc, step_input.value, context) == (0, 1, err.__cause__, 3, None)
    assert end - start == durations.sum() and durations[1] > 0
    assert runner.failure_histograms.total(1) == 1 and runner.failure_histograms.total(2) == 1
