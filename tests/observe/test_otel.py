"""OpenTelemetry export: failed and sampled executions as traces, from recorded timestamps."""
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry, UserContext
from flowchain.observe.otel import TraceExporter


@pytest.fixture
def spans():
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def make_registry():
    components = ComponentRegistry()
    components.register("Parse", lambda x: x)

    def risk(x):
        if x == 5:
            raise PermissionError(f"risk limit hit for order {x}")
        return x

    components.register("Risk", risk)
    components.register("Send", lambda x: x)
    reg = ChainRegistry(components, ring_capacity=64)
    cid = reg.register_chain(ChainBuilder("orders").step("parse", "Parse", "a", "a", 1)
                             .step("risk", "Risk", "a", "a", 1).step("send", "Send", "a", "b", 1)
                             .build())
    return reg, cid


def run(reg, cid, xs, ctx=None):
    for x in xs:
        try:
            reg.runner(cid).run(x, ctx)
        except ChainStepError:
            pass


def test_failed_execution_becomes_a_trace_with_an_error_step(spans):
    provider, memory = spans
    reg, cid = make_registry()
    before = time.time_ns()
    run(reg, cid, range(8), UserContext("desk_a", "ann", "pro"))
    after = time.time_ns()
    exporter = TraceExporter(reg, provider, sample_rate=0)
    assert exporter.export() == 1
    assert exporter.export() == 0                    # nothing exported twice
    finished = memory.get_finished_spans()
    names = [s.name for s in finished]
    assert names == ["step parse", "step risk", "chain orders"]
    root = finished[-1]
    parse, risk = finished[0], finished[1]
    assert root.attributes["flowchain.execution_id"] == f"{cid}#5"
    assert root.attributes["flowchain.tenant"] == "desk_a"
    assert root.status.status_code is StatusCode.ERROR
    assert risk.status.status_code is StatusCode.ERROR
    assert risk.events[0].attributes["exception.type"] == "PermissionError"
    assert "risk limit hit" in risk.events[0].attributes["exception.message"]
    assert risk.attributes["flowchain.step.input"] == "5"
    for span in finished:
        assert span.context.trace_id == root.context.trace_id
        assert before - 5_000_000 <= span.start_time <= span.end_time <= after + 5_000_000
    assert parse.parent.span_id == root.context.span_id
    assert parse.end_time == risk.start_time         # steps are contiguous, as recorded
    assert parse.start_time == root.start_time


def test_successes_are_sampled_at_the_configured_rate(spans):
    provider, memory = spans
    reg, cid = make_registry()
    exporter = TraceExporter(reg, provider, sample_rate=0.25)
    run(reg, cid, range(5, 25))                      # seq 0 (input 5) fails
    exporter.export()
    roots = [s for s in memory.get_finished_spans() if s.name == "chain orders"]
    seqs = sorted(int(s.attributes["flowchain.seq"]) for s in roots)
    assert seqs == [0, 3, 7, 11, 15, 19]             # the failure + every 4th success
    ok = [s for s in roots if s.status.status_code is not StatusCode.ERROR]
    for root in ok:
        children = [s for s in memory.get_finished_spans()
                    if s.parent is not None and s.parent.span_id == root.context.span_id]
        assert [c.name for c in children] == ["step parse", "step risk", "step send"]
        assert root.end_time == children[-1].end_time
    assert exporter.counters["sampled"] == 5 and exporter.counters["failed"] == 1


def test_thread_mode_and_bad_settings(spans, eventually):
    provider, memory = spans
    reg, cid = make_registry()
    exporter = TraceExporter(reg, provider, sample_rate=1.0, interval_s=0.01).start()
    try:
        run(reg, cid, range(3))
        eventually(lambda: exporter.counters["traces"] == 3, timeout=10)
    finally:
        exporter.stop()
    with pytest.raises(ValueError, match="sample_rate"):
        TraceExporter(reg, provider, sample_rate=-1)
