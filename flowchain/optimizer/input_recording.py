"""Run a chain on a series of inputs and record it in a history database, without the node.

:class:`RecordingRun` is what ``flowchain run FILE CHAIN --inputs FILE.jsonl --db PATH`` drives:
each input runs through the chain's native runner (the node's hot path, timed the same way); a
:class:`~flowchain.observe.history.HistoryWriter` stores the latency intervals and the failed
(and sampled) execution records; the chain's *own* input of every failed execution, and of
the sampled successes (``record_rate``), goes to ``recorded_inputs`` with ``step_index = 0``;
when the registry profiles (``ChainRegistry.set_profiling``), the writer stores the step
profiles in ``step_profiles`` under the same run id.

The input is encoded before the chain runs, so a step that changes its input in place (the
trading chain's :class:`~flowchain.trading.context.DecisionContext`) does not change what is
recorded; the encoding is kept only when the execution fails or is sampled.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from flowchain.errors import ChainStepError
from flowchain.optimizer.recorded_inputs import InputNotSerializable, check_rate, encode_input, input_row, sampled

FLUSH_EVERY = 512
"""Executions between history flushes: well inside the runner's rings (execution ring 4096,
failure ring 1000 by default), so no failure or sample is overwritten before it is stored."""


@dataclass
class RunTotals:
    """What a recording run did; the figures equal what it stored."""

    executions: int = 0
    succeeded: int = 0
    failed: int = 0
    recorded_failed: int = 0
    recorded_sampled: int = 0
    unserializable: int = 0
    failures: Counter = field(default_factory=Counter)
    """(step, exception type) -> failed executions."""
    failed_ids: list[str] = field(default_factory=list)
    """``<execution_id>@<run_id>`` of each failed execution, in order (``flowchain replay``)."""
    unserializable_reasons: Counter = field(default_factory=Counter)
    profiles: int = 0
    """Step profile rows stored (one per step of each profiled execution)."""


class RecordingRun:
    """Execute inputs through one chain of ``registry`` and record them through ``writer``.

    Parameters
    ----------
    registry : ChainRegistry
        Holds ``definition`` (registered).
    definition : ChainDefinition
        The chain to run.
    writer : HistoryWriter
        Made with ``record_failed_inputs=False`` (this records the chain's own inputs); its
        ``sample_rate`` should equal ``record_rate`` so the sampled records and inputs are the
        same executions.
    record_rate : float
        Fraction of successful executions whose input is recorded (0..1).
    context : UserContext, optional
        The user context of every execution.

    Raises
    ------
    ValueError
        When ``record_rate`` is outside 0..1.
    """

    def __init__(self, registry: Any, definition: Any, writer: Any, *, record_rate: float = 0.0,
                 context: Any = None, flush_every: int = FLUSH_EVERY) -> None:
        self.registry = registry
        self.definition = definition
        self.writer = writer
        self.record_rate = check_rate(record_rate, "--record-inputs")
        self.context = context
        self.flush_every = flush_every
        self.runner = registry.runner(definition.chain_id)
        self.totals = RunTotals()
        self._loop: asyncio.AbstractEventLoop | None = \
            asyncio.new_event_loop() if self.runner.has_async else None
        self._tenant = context.tenant_id if context is not None else "default"
        writer.add_inputs([], [definition])

    def run(self, value: Any) -> ChainStepError | None:
        """Execute the chain once on ``value``; return its ChainStepError when a step failed."""
        runner, totals = self.runner, self.totals
        seq = runner.executions
        encoded, reason = capture_input(value)
        start = time.time_ns()
        error = None
        try:
            if self._loop is None:
                runner.run(value, self.context)
            else:
                self._loop.run_until_complete(runner.run_async(value, self.context))
        except ChainStepError as exc:
            error = exc
        totals.executions += 1
        if error is None:
            totals.succeeded += 1
            keep = self.record_rate > 0 and sampled(seq, self.record_rate)
        else:
            totals.failed += 1
            totals.failures[(error.step, _cause_type(error))] += 1
            keep = True
        if keep:
            status = "failed" if error is not None else "sampled"
            execution_id = f"{self.definition.chain_id}#{seq}"
            self.writer.add_inputs([input_row(
                run_id=self.writer.run_id, execution_id=execution_id, chain=self.definition.name,
                chain_id=self.definition.chain_id, status=status, start_epoch_ns=start,
                value=None, unserializable=reason, encoded=encoded, tenant=self._tenant)])
            if error is not None:
                totals.recorded_failed += 1
                totals.failed_ids.append(f"{execution_id}@{self.writer.run_id}")
            else:
                totals.recorded_sampled += 1
            if reason is not None:
                totals.unserializable += 1
                totals.unserializable_reasons[reason] += 1
        if totals.executions % self.flush_every == 0:
            self.writer.flush()
        return error

    def finish(self) -> RunTotals:
        """Store what is pending and close the history writer; return the totals."""
        try:
            self.writer.close()
            self.totals.profiles = self.writer.counters["profiles"]
        finally:
            if self._loop is not None:
                self._loop.close()
        return self.totals


def capture_input(value: Any) -> tuple[tuple[str, bytes] | None, str | None]:
    """Encode a chain's input now, before a step can change it in place: ``(encoded, None)``,
    or ``(None, reason)`` when it has no round-trip form (the reason is what gets stored).

    Shared by :class:`RecordingRun` and the profiler's sampled executions
    (``registry.set_profiling(rate, record_inputs=True)``).
    """
    try:
        return encode_input(value), None
    except InputNotSerializable as exc:
        return None, exc.reason


def _cause_type(error: ChainStepError) -> str:
    cause = error.__cause__
    return type(cause).__qualname__ if cause is not None else "unknown"
