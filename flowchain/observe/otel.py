"""OpenTelemetry export: sampled and failed executions as traces, built on the cold path.

Each exported execution becomes one trace: a root span ``chain <name>`` and one child span
per step, with the engine's recorded timestamps converted to epoch nanoseconds (no span is
opened while the chain runs). The failing step's span has status ERROR and an ``exception``
event (type, message, traceback); its input is the ``flowchain.step.input`` attribute.

Send the spans anywhere an OpenTelemetry ``TracerProvider`` sends them: an OTLP exporter
(``opentelemetry-exporter-otlp``) to any backend, or the SDK's in-memory exporter in tests.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from flowchain.execution import ChainExecution, ExecutionStatus
from flowchain.observe._reader import STATUS_SUCCEEDED, RingTail, built_runners, engine_to_epoch_offset
from flowchain.periodic import PeriodicThread

log = logging.getLogger("flowchain.otel")


class TraceExporter:
    """Turn failed executions and a sample of successful ones into OpenTelemetry traces.

    Parameters
    ----------
    registries : ChainRegistry or mapping of tenant -> ChainRegistry
    tracer_provider : opentelemetry.sdk.trace.TracerProvider, optional
        Where the spans go; the global provider when omitted.
    sample_rate : float
        Fraction of successful executions exported (failed ones always are), 0..1;
        deterministic over sequence numbers.
    interval_s : float
        Seconds between exports when running in a thread (:meth:`start`).

    Raises
    ------
    ValueError
        When ``sample_rate`` is outside 0..1 or ``interval_s`` is not positive.
    """

    def __init__(self, registries: Any | Mapping[str, Any], tracer_provider: Any = None,
                 *, sample_rate: float = 0.01, interval_s: float = 1.0) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate is a fraction in [0, 1], got {sample_rate}")
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.registries = dict(registries) if isinstance(registries, Mapping) \
            else {"default": registries}
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.tracer = provider.get_tracer("flowchain")
        self.sample_rate = sample_rate
        self.interval_s = interval_s
        self.counters = {"traces": 0, "failed": 0, "sampled": 0, "lost": 0, "errors": 0}
        self._tails: dict[tuple[str, str], RingTail] = {}
        self._failed_seq: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._periodic = PeriodicThread(self._guarded, interval_s, "flowchain-otel")

    def export(self) -> int:
        """Export what completed since the last call; return the number of traces."""
        with self._lock:
            offset = engine_to_epoch_offset()
            exported = 0
            for tenant, registry in self.registries.items():
                for definition, runner in built_runners(registry):
                    key = (tenant, definition.chain_id)
                    tail = self._tails.get(key)
                    if tail is None or tail.runner is not runner:
                        tail = self._tails[key] = RingTail(runner, from_start=True)
                        self._failed_seq[key] = -1
                    for record in registry.failures(definition.chain_id,
                                                    after_seq=self._failed_seq[key]):
                        self._failed_seq[key] = record.seq
                        if record.steps:
                            self.trace_execution(record, offset, tenant)
                            self.counters["failed"] += 1
                            exported += 1
                        else:
                            self.counters["lost"] += 1
                    rows = tail.read()
                    if self.sample_rate <= 0:
                        continue
                    ok = rows.seq[rows.status == STATUS_SUCCEEDED]
                    rate = self.sample_rate
                    for seq in ok[np.floor((ok + 1) * rate) > np.floor(ok * rate)].tolist():
                        record = registry.execution(definition.chain_id, seq)
                        if record is None or not record.is_successful():
                            self.counters["lost"] += 1
                            continue
                        self.trace_execution(record, offset, tenant)
                        self.counters["sampled"] += 1
                        exported += 1
            self.counters["traces"] += exported
            return exported

    def trace_execution(self, record: ChainExecution, offset_ns: int,
                        tenant: str = "default") -> None:
        """Emit one execution as a root span with a child span per step that started.

        ``offset_ns`` converts engine timestamps to epoch ns (see
        :func:`flowchain.observe._reader.engine_to_epoch_offset`).
        """
        ctx = record.user_context
        attributes = {"flowchain.chain": record.chain_name,
                      "flowchain.chain_id": record.chain_id,
                      "flowchain.execution_id": record.execution_id,
                      "flowchain.seq": record.seq,
                      "flowchain.status": record.status.value,
                      "flowchain.tenant": ctx.tenant_id if ctx is not None else tenant}
        if ctx is not None:
            attributes["flowchain.user"] = ctx.user_id
            attributes["flowchain.tier"] = ctx.tier
        end = record.end_ns if record.end_ns is not None else record.steps[-1].end_ns
        root = self.tracer.start_span(f"chain {record.chain_name}", attributes=attributes,
                                      start_time=record.start_ns + offset_ns)
        parent = trace.set_span_in_context(root)
        failure = record.failure
        for step in record.steps:
            span = self.tracer.start_span(
                f"step {step.name}", context=parent, start_time=step.start_ns + offset_ns,
                attributes={"flowchain.step": step.name, "flowchain.component": step.component,
                            "flowchain.expected_ns": step.expected_ns,
                            "flowchain.duration_ns": step.duration_ns,
                            "flowchain.slow": step.slow})
            if step.status is ExecutionStatus.FAILED and failure is not None:
                span.set_attribute("flowchain.step.input", failure.input_repr)
                span.add_event("exception", {"exception.type": failure.exception_type,
                                             "exception.message": failure.message,
                                             "exception.stacktrace": failure.traceback},
                               timestamp=step.end_ns + offset_ns)
                span.set_status(Status(StatusCode.ERROR,
                                       f"{failure.exception_type}: {failure.message}"))
            span.end(end_time=step.end_ns + offset_ns)
        if record.status is ExecutionStatus.FAILED:
            step_name = failure.step if failure is not None else "?"
            root.set_status(Status(StatusCode.ERROR, f"failed at step {step_name}"))
        root.end(end_time=end + offset_ns)

    # ------------------------------------------------------------------ thread

    def start(self) -> TraceExporter:
        """Export every ``interval_s`` in a daemon thread until :meth:`stop`."""
        self._periodic.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread after a last export."""
        self._periodic.stop(timeout)

    def _guarded(self) -> None:
        try:
            self.export()
        except Exception:
            self.counters["errors"] += 1
            log.exception("trace export failed")
