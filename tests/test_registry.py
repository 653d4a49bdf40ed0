"""ChainRegistry and the native runner: registration, versions, tracked execution, failures,
ring wrap-around, live status, async interleaving, user context."""
import asyncio
import dataclasses
import gc
import json
import threading
from pathlib import Path

import pytest

from flowchain import (
    ChainBuilder,
    ChainRegistry,
    ChainStats,
    ChainStepError,
    ChainValidationError,
    ComponentRegistry,
    ExecutionStatus,
    LatencySummary,
    StepStats,
    UnknownChainError,
    UserContext,
)
from flowchain._native import engine

DATA = Path(__file__).parent / "data"


@pytest.fixture
def components():
    reg = ComponentRegistry()
    reg.register("Inc", lambda x: x + 1)
    reg.register("Double", lambda x: x * 2)

    def explode(x):
        if x == 13:
            raise ValueError(f"unlucky input {x}")
        return x

    reg.register("Explode", explode)
    return reg


def three_steps(name="c"):
    return (ChainBuilder(name).step("inc", "Inc", "n", "n1", 1)
            .step("check", "Explode", "n1", "n2", 1).step("double", "Double", "n2", "n3", 1).build())


def test_seed_chains_register_and_run_with_stub_components():
    comps = ComponentRegistry()
    calls = []
    for name in ("DataBridge", "DataValidator", "DataProcessor", "DatabaseService",
                 "FeatureEngine", "MultiAgentOrchestrator", "ConsensusEngine", "TradingEngine"):
        comps.register(name, lambda x, name=name: calls.append(name) or x + [name])
    registry = ChainRegistry(comps)
    ids = registry.register_file(DATA / "seed_chains.yaml")
    assert len(ids) == 2
    for chain in registry.list_chains():
        record = registry.execute_chain(chain.chain_id, [])
        assert record.is_successful() and record.status is ExecutionStatus.SUCCEEDED
        assert [s.name for s in record.steps] == list(chain.step_names)
        assert all(s.duration_ns > 0 for s in record.steps)
        assert record.total_duration == sum(s.duration_ns for s in record.steps)
        assert record.progress == 100.0 and record.current_step is None
    assert calls == ["FeatureEngine", "MultiAgentOrchestrator", "ConsensusEngine", "TradingEngine",
                     "DataBridge", "DataValidator", "DataProcessor", "DatabaseService"]


def test_unknown_component_is_rejected_at_registration(components):
    bad = ChainBuilder("c").step("a", "Inc", "x", "y", 1).step("b", "Nope", "y", "z", 1).build()
    with pytest.raises(ChainValidationError,
                       match=r"chain 'c' step 'b': unknown component 'Nope' \(registered: Double"):
        ChainRegistry(components).register_chain(bad)


def test_unknown_component_in_a_file_names_the_line(tmp_path, components):
    path = tmp_path / "c.yaml"
    path.write_text("C:\n  steps:\n    - {name: a, component: Ghost, input: x, output: y,"
                    " expected_duration: 1}\n")
    with pytest.raises(ChainValidationError, match=r"c.yaml:3: chain 'C' step 'a': unknown component 'Ghost'"):
        ChainRegistry(components).register_file(path)


def test_versions_ids_and_lookup(components):
    registry = ChainRegistry(components)
    v1 = registry.register_chain(three_steps())
    assert registry.register_chain(three_steps()) == v1  # idempotent
    changed = (ChainBuilder("c", version="fast").step("inc", "Inc", "n", "n1", 0.5)
               .step("check", "Explode", "n1", "n2", 1).step("double", "Double", "n2", "n3", 1)
               .build())
    v2 = registry.register_chain(changed)
    assert v1 != v2
    assert [v.version for v in registry.versions("c")] == [1, 2]
    assert registry.versions("c")[1].label == "fast"
    assert registry.get_chain("c").chain_id == v2  # a name means its latest version
    assert registry.get_chain(v1).steps[0].expected_duration_ms == 1
    assert [c.chain_id for c in registry.list_chains()] == [v2]
    with pytest.raises(UnknownChainError, match="no chain with id or name 'missing'"):
        registry.get_chain("missing")


def test_success_records_every_step_and_histograms(components):
    registry = ChainRegistry(components)
    cid = registry.register_chain(three_steps())
    runner = registry.runner(cid)
    assert [runner.run(i) for i in range(5)] == [2, 4, 6, 8, 10]
    ctx = UserContext("acme", "ann", "pro")
    record = registry.execute_chain(cid, 1, ctx)
    assert record.user_context == ctx and record.seq == 5
    assert record.execution_id == f"{cid}#5"
    stats = registry.stats(cid)
    assert stats.executions == 6 and stats.failures == 0 and stats.success_ratio == 1.0
    assert stats.latency.count == 6
    assert [s.latency.count for s in stats.steps] == [6, 6, 6]
    assert registry.histogram(cid, "double").count == 6
    with pytest.raises(KeyError, match="has no step 'nope'"):
        registry.histogram(cid, "nope")


def test_failure_stops_at_the_step_with_full_context(components):
    registry = ChainRegistry(components)
    cid = registry.register_chain(three_steps())
    record = registry.execute_chain(cid, 12)
    assert record.status is ExecutionStatus.FAILED and not record.is_successful()
    f = record.failure
    assert (f.step, f.step_index, f.component) == ("check", 1, "Explode")
    assert f.exception_type == "ValueError" and f.message == "unlucky input 13"
    assert f.input_repr == "13" and "in explode" in f.traceback
    assert [s.status for s in record.steps] == [ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED]
    assert record.current_step == "check" and record.completed_steps == ("inc",)
    assert record.steps[0].duration_ns > 0
    # the hot path raises, chained to the step's own exception
    with pytest.raises(ChainStepError, match=r"failed at step 'check' \(Explode\): ValueError") as info:
        registry.runner(cid).run(12)
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.execution.failure.step == "check"
    stats = registry.stats(cid)
    assert stats.failures == 2 and [s.errors for s in stats.steps] == [0, 2, 0]
    # failures never enter the latency histograms of the failing or later steps
    assert [s.latency.count for s in stats.steps] == [2, 0, 0]
    assert len(registry.failures(cid)) == 2
    # and the runner goes on
    assert registry.runner(cid).run(1) == 4


def test_huge_input_repr_is_bounded(components):
    comps = ComponentRegistry()
    comps.register("Fail", lambda x: 1 / 0)
    registry = ChainRegistry(comps)
    cid = registry.register_chain(ChainBuilder("f").step("a", "Fail", "x", "y", 1).build())
    record = registry.execute_chain(cid, {"blob": "x" * 100_000, "items": list(range(10_000))})
    assert len(record.failure.input_repr) <= 1000


def test_ring_wraps_around_and_keeps_the_latest(components):
    registry = ChainRegistry(components, ring_capacity=8)
    cid = registry.register_chain(three_steps())
    runner = registry.runner(cid)
    assert runner.ring.capacity == 8
    for i in range(100):
        if i == 95:
            with pytest.raises(ChainStepError):
                runner.run(12)
        else:
            runner.run(0)
    assert registry.execution(cid, 0) is None  # overwritten
    latest = registry.recent_executions(cid)
    assert [r.seq for r in latest] == list(range(99, 91, -1))
    assert latest[4].seq == 95 and latest[4].status is ExecutionStatus.FAILED
    assert registry.histogram(cid).count == 99  # histograms keep everything
    assert registry.last_execution(cid).seq == 99


def test_capacity_rounds_up_and_steps_are_bounded():
    assert engine.ExecutionRing(5, 2).capacity == 8
    with pytest.raises(ValueError):
        engine.ExecutionRing(0, 2)


def test_live_status_while_a_step_runs(components):
    release = threading.Event()
    entered = threading.Event()
    comps = ComponentRegistry()
    comps.register("Fast", lambda x: x)

    def slow(x):
        entered.set()
        release.wait(10)
        return x

    comps.register("Slow", slow)
    registry = ChainRegistry(comps)
    cid = registry.register_chain(ChainBuilder("live").step("a", "Fast", "x", "x", 5)
                                  .step("b", "Slow", "x", "x", 50).step("c", "Fast", "x", "x", 7)
                                  .build())
    worker = threading.Thread(target=registry.runner(cid).run, args=(1,))
    worker.start()
    try:
        assert entered.wait(10)
        active = registry.active_executions()
        assert len(active) == 1
        live = active[0]
        assert live.status is ExecutionStatus.RUNNING and live.current_step == "b"
        assert live.completed_steps == ("a",) and live.progress == pytest.approx(100 / 3)
        # nothing observed yet for b and c: expected durations (50 ms + 7 ms) minus elapsed
        assert 7_000_000 < live.eta_ns <= 57_000_000
    finally:
        release.set()
        worker.join(10)
    assert registry.active_executions() == []


def test_runner_refuses_reentry(components):
    comps = ComponentRegistry()
    registry = ChainRegistry(comps)
    holder = {}
    comps.register("Reenter", lambda x: holder["run"](x))
    cid = registry.register_chain(ChainBuilder("r").step("a", "Reenter", "x", "y", 1).build())
    holder["run"] = registry.runner(cid).run
    record = registry.execute_chain(cid, 1)
    assert record.failure.exception_type == "RuntimeError"
    assert "not re-entrant" in record.failure.message


async def test_async_steps_of_two_executions_interleave():
    comps = ComponentRegistry()
    order = []
    gates = {1: asyncio.Event(), 2: asyncio.Event()}

    async def fetch(x):
        order.append(("start", x))
        await gates[x].wait()
        order.append(("end", x))
        return x * 10

    comps.register("Fetch", fetch)
    comps.register("Inc", lambda x: x + 1)
    registry = ChainRegistry(comps)
    cid = registry.register_chain(ChainBuilder("io").step("fetch", "Fetch", "id", "row", 20)
                                  .step("inc", "Inc", "row", "row2", 1).build())
    with pytest.raises(TypeError, match="coroutine steps"):
        registry.runner(cid).run(1)
    first = asyncio.ensure_future(registry.execute_chain_async(cid, 1, UserContext("t1")))
    second = asyncio.ensure_future(registry.execute_chain_async(cid, 2, UserContext("t2")))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert order == [("start", 1), ("start", 2)]  # both waiting at once
    running = registry.active_executions()
    assert {r.current_step for r in running} == {"fetch"} and len(running) == 2
    gates[2].set()
    r2 = await second
    gates[1].set()
    r1 = await first
    assert order[2:] == [("end", 2), ("end", 1)]
    assert (r1.seq, r2.seq) == (0, 1)
    assert r1.is_successful() and r2.is_successful()
    assert r1.user_context.tenant_id == "t1" and r2.user_context.tenant_id == "t2"
    assert r1.steps[0].duration_ns > r2.steps[0].duration_ns


async def test_async_failure_is_recorded():
    comps = ComponentRegistry()

    async def broken(x):
        await asyncio.sleep(0)
        raise ConnectionError("db down")

    comps.register("Broken", broken)
    registry = ChainRegistry(comps)
    cid = registry.register_chain(ChainBuilder("io").step("q", "Broken", "a", "b", 1).build())
    record = await registry.execute_chain_async(cid, "SELECT 1")
    assert record.failure.exception_type == "ConnectionError"
    assert record.failure.input_repr == "'SELECT 1'"


def test_keyboard_interrupt_is_recorded_and_not_wrapped():
    comps = ComponentRegistry()

    def stop(x):
        raise KeyboardInterrupt

    comps.register("Stop", stop)
    registry = ChainRegistry(comps)
    cid = registry.register_chain(ChainBuilder("k").step("a", "Stop", "a", "b", 1).build())
    with pytest.raises(KeyboardInterrupt):
        registry.runner(cid).run(1)
    assert registry.runner(cid).failures == 1
    assert registry.last_execution(cid).status is ExecutionStatus.FAILED


def test_success_path_allocates_nothing_but_the_output(components):
    registry = ChainRegistry(components)
    runner = registry.runner(registry.register_chain(three_steps()))
    run = runner.run
    for _ in range(2000):
        run(1)
    gc.collect()
    import sys
    before = sys.getallocatedblocks()
    for _ in range(20000):
        run(1)
    assert sys.getallocatedblocks() - before < 50


# --------------------------------------------------------------------------- typed stats, on demand

def test_stats_of_a_chain_never_run_are_zeros_and_build_no_runner(components):
    registry = ChainRegistry(components)
    cid = registry.register_chain(three_steps())
    stats = registry.stats(cid)
    assert isinstance(stats, ChainStats) and stats.chain_id == cid and stats.version == 1
    assert (stats.executions, stats.succeeded, stats.failures, stats.running) == (0, 0, 0, 0)
    assert stats.success_ratio is None
    assert stats.latency == LatencySummary() and stats.failure_latency.count == 0
    assert [(s.name, s.errors, s.latency.p99_ns) for s in stats.steps] == \
        [("inc", 0, 0), ("check", 0, 0), ("double", 0, 0)]
    assert registry.histogram(cid).count == 0
    assert registry.histogram(cid, "check", outcome="failure").count == 0
    with pytest.raises(KeyError, match="has no step 'nope'"):
        registry.histogram(cid, "nope")
    with pytest.raises(ValueError, match="outcome must be one of"):
        registry.histogram(cid, outcome="both")
    assert registry.built_runners() == []  # reading built nothing


def test_stats_are_typed_frozen_and_convert_to_plain_data(components):
    registry = ChainRegistry(components)
    cid = registry.register_chain(three_steps())
    for n in (1, 12, 2):  # 12 + 1 explodes at 'check'
        registry.execute_chain(cid, n)
    stats = registry.stats(cid)
    assert (stats.executions, stats.succeeded, stats.failures) == (3, 2, 1)
    assert stats.success_ratio == pytest.approx(2 / 3)
    check = stats.step("check")
    assert isinstance(check, StepStats) and check.errors == 1 and check.component == "Explode"
    assert check.failure_latency.count == 1 and check.latency.count == 2
    assert 0 < stats.latency.p50_ns <= stats.latency.p99_ns <= stats.latency.max_ns
    assert check.expected_ns == 1_000_000
    with pytest.raises(KeyError, match="chain 'c' has no step 'nope'; its steps: inc, check"):
        stats.step("nope")
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.executions = 0
    plain = stats.to_dict()
    assert plain["executions"] == 3 and plain["latency"]["count"] == 2
    assert [s["errors"] for s in plain["steps"]] == [0, 1, 0]
    assert json.loads(json.dumps(plain)) == plain
    assert registry.histogram(cid).latency() == stats.latency


def test_runner_of_a_definition_registers_it_on_demand(components):
    registry = ChainRegistry(components)
    chain = three_steps("fresh")
    runner = registry.runner(chain)
    assert runner.run(1) == 4
    assert registry.runner(chain) is runner and registry.runner(chain.chain_id) is runner
    assert [v.chain_id for v in registry.versions("fresh")] == [chain.chain_id]
    # execute_chain takes an unregistered definition the same way
    other = three_steps("other")
    assert registry.execute_chain(other, 2).is_successful()
    # an invalid definition is refused and nothing is registered
    bad = ChainBuilder("bad").step("a", component="Nope", input="x", output="y",
                                   expected_ms=1).build()
    with pytest.raises(ChainValidationError, match="unknown component 'Nope'"):
        registry.runner(bad)
    assert registry.versions("bad") == []
    with pytest.raises(UnknownChainError):
        registry.runner("never-registered")


def _triple(x):
    return 3 * x


class _Counter:
    instances = 0

    def __init__(self):
        type(self).instances += 1

    def __call__(self, x):
        return x + 1


def test_callable_components_are_registered_with_the_chain(components):
    registry = ChainRegistry(components)
    chain = (ChainBuilder("callables")
             .step("triple", component=_triple, input="n", output="n3", expected_ms=1)
             .step("count", component=_Counter, output="n4", expected_ms=1)
             .step("inc", component="Inc", output="n5", expected_ms=1)
             .build())
    assert registry.runner(chain).run(2) == 8
    assert components.implementation(chain.steps[0].component) is _triple
    # a second chain with the same callables reuses the registration (one instance of a class)
    again = (ChainBuilder("again").step("count", component=_Counter, input="n", output="m",
                                        expected_ms=1).build())
    assert registry.execute_chain(again, 1).is_successful()
    assert _Counter.instances == 1


def test_another_callable_with_the_same_derived_name_is_refused(components):
    registry = ChainRegistry(components)

    def make(k):
        def add(x):
            return x + k
        return add

    first = ChainBuilder("one").step("add", component=make(1), input="n", output="m",
                                     expected_ms=1).build()
    registry.register_chain(first)
    second = ChainBuilder("two").step("add", component=make(2), input="n", output="m",
                                      expected_ms=1).build()
    with pytest.raises(ChainValidationError) as info:
        registry.register_chain(second)
    message = str(info.value)
    assert "chain 'two' step 'add'" in message and "already registered to another object" in message
    assert "give the step a component name of its own" in message
    assert registry.versions("two") == []
    assert registry.runner(first).run(1) == 2  # the first keeps its component
