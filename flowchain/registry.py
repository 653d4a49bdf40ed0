"""ChainRegistry: register chains, keep their versions, execute them through the engine.

The hot path is :meth:`ChainRegistry.runner` -> ``ChainRunner.run(data)``: one call per
execution, every step timed into the runner's ring and HDR histograms. The record-returning
:meth:`ChainRegistry.execute_chain` is the convenient, allocating form of the same thing.
"""
from __future__ import annotations

import reprlib
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from flowchain._native import engine
from flowchain.chain import ChainDefinition, load_chains_file
from flowchain.components import ComponentRegistry, default_components
from flowchain.context import UserContext
from flowchain.errors import ChainProblem, ChainStepError, ChainValidationError, UnknownChainError
from flowchain.execution import ChainExecution, ExecutionStatus, StepFailure, StepResult
from flowchain.histograms import DEFAULT_SETTINGS, HistogramSettings, LatencyHistogram

_STATUS = {0: ExecutionStatus.PENDING, 1: ExecutionStatus.RUNNING,
           2: ExecutionStatus.SUCCEEDED, 3: ExecutionStatus.FAILED}

_input_repr = reprlib.Repr()
_input_repr.maxstring = 200
_input_repr.maxother = 200
_input_repr.maxlist = _input_repr.maxtuple = _input_repr.maxdict = 20
INPUT_REPR_LIMIT = 1000
"""Characters kept of the repr of a failing step's input."""


@dataclass(frozen=True, slots=True)
class ChainVersion:
    """One registered version of a chain name."""

    name: str
    version: int
    chain_id: str
    label: Optional[str]
    registered_at: float


class _Entry:
    __slots__ = ("definition", "version", "runner", "failures", "lock")

    def __init__(self, definition: ChainDefinition, version: ChainVersion) -> None:
        self.definition = definition
        self.version = version
        self.runner: Optional[engine.ChainRunner] = None
        self.failures: "OrderedDict[int, StepFailure]" = OrderedDict()
        self.lock = threading.Lock()


ChainRef = Union[str, ChainDefinition]


class ChainRegistry:
    """Know every chain, every version, and run them tracked.

    Parameters
    ----------
    components : ComponentRegistry, optional
        Where component names resolve; the process-wide default registry when omitted.
    ring_capacity : int
        Executions kept per chain in the engine's ring (rounded up to a power of two).
    histograms : HistogramSettings
        HDR parameters of every step and chain histogram.
    failures_kept : int
        Failed executions kept in full (with traceback and input) per chain.
    """

    def __init__(self, components: Optional[ComponentRegistry] = None, *,
                 ring_capacity: int = 4096,
                 histograms: HistogramSettings = DEFAULT_SETTINGS,
                 failures_kept: int = 1000) -> None:
        self.components = components if components is not None else default_components
        self.ring_capacity = ring_capacity
        self.histogram_settings = histograms
        self._layout = histograms.layout()
        self.failures_kept = failures_kept
        self._entries: dict[str, _Entry] = {}
        self._versions: dict[str, list[ChainVersion]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ registration

    def register_chain(self, definition: ChainDefinition) -> str:
        """Validate and register ``definition``; return its content-hash id.

        Registering the same definition again returns the same id and adds no version.

        Raises
        ------
        ChainValidationError
            When the definition has structural problems or names unknown components.
        """
        problems = self._problems(definition)
        if problems:
            raise ChainValidationError(problems)
        chain_id = definition.chain_id
        with self._lock:
            if chain_id in self._entries:
                return chain_id
            versions = self._versions.setdefault(definition.name, [])
            version = ChainVersion(definition.name, len(versions) + 1, chain_id,
                                   definition.version, time.time())
            versions.append(version)
            self._entries[chain_id] = _Entry(definition, version)
        return chain_id

    def register_file(self, path: Union[str, Path]) -> list[str]:
        """Load a YAML file (see :func:`flowchain.chain.load_chains`) and register its chains.

        Raises
        ------
        ChainValidationError
            When the file or any chain in it is invalid; nothing is registered then.
        """
        definitions = load_chains_file(path)
        problems = [p for d in definitions for p in self._problems(d)]
        if problems:
            raise ChainValidationError(problems)
        return [self.register_chain(d) for d in definitions]

    def _problems(self, definition: ChainDefinition) -> list[ChainProblem]:
        """Structural problems of ``definition`` plus the components this registry lacks."""
        problems = definition.problems()
        known = None
        for step in definition.steps:
            if isinstance(step.component, str) and step.component and \
                    step.component not in self.components:
                known = known or ", ".join(self.components.names()) or "none"
                problems.append(ChainProblem(
                    f"unknown component {step.component!r} (registered: {known}); register it "
                    f"with @flowchain.component({step.component!r})",
                    chain=definition.name, step=step.name, source=definition.source,
                    line=step.line))
        return problems

    # ------------------------------------------------------------------ lookup

    def _entry(self, ref: ChainRef) -> _Entry:
        if isinstance(ref, ChainDefinition):
            ref = ref.chain_id
        entry = self._entries.get(ref)
        if entry is not None:
            return entry
        versions = self._versions.get(ref)
        if versions:
            return self._entries[versions[-1].chain_id]
        raise UnknownChainError(
            f"no chain with id or name {ref!r}; registered: "
            f"{', '.join(sorted(self._versions)) or 'none'}")

    def get_chain(self, ref: ChainRef) -> ChainDefinition:
        """Return the definition for a chain id, or the latest version of a chain name.

        Raises
        ------
        UnknownChainError
            When neither an id nor a name matches.
        """
        return self._entry(ref).definition

    def list_chains(self) -> list[ChainDefinition]:
        """Return the latest version of every chain name, sorted by name."""
        return [self._entries[v[-1].chain_id].definition
                for _, v in sorted(self._versions.items())]

    def versions(self, name: str) -> list[ChainVersion]:
        """Return every registered version of ``name``, oldest first."""
        return list(self._versions.get(name, ()))

    def version_of(self, ref: ChainRef) -> ChainVersion:
        """Return the registry's version record of a chain id or name."""
        return self._entry(ref).version

    # ------------------------------------------------------------------ execution

    def runner(self, ref: ChainRef) -> "engine.ChainRunner":
        """Return the chain's native runner (built on first use): the hot-path API.

        ``runner.run(data, context=None)`` returns the last step's output and raises
        :class:`~flowchain.errors.ChainStepError` when a step fails;
        ``await runner.run_async(data)`` awaits coroutine steps.
        """
        entry = self._entry(ref)
        runner = entry.runner
        if runner is None:
            with entry.lock:
                if entry.runner is None:
                    entry.runner = self._build_runner(entry)
                runner = entry.runner
        return runner

    def _build_runner(self, entry: _Entry) -> "engine.ChainRunner":
        d = entry.definition
        resolved = [self.components.resolve(s.component) for s in d.steps]
        return engine.ChainRunner(
            d.chain_id, d.step_names, tuple(r.call for r in resolved),
            tuple(r.is_async for r in resolved), self.ring_capacity, self._layout,
            self._failure_handler(entry))

    def _failure_handler(self, entry: _Entry):
        definition = entry.definition
        kept = self.failures_kept

        def on_failure(runner: Any, seq: int, index: int, exc: BaseException,
                       step_input: Any) -> ChainStepError:
            step = definition.steps[index]
            try:
                shown = _input_repr.repr(step_input)
            except Exception as repr_exc:  # a broken __repr__ must not hide the real failure
                shown = f"<unrepresentable {type(step_input).__name__}: {repr_exc!r}>"
            failure = StepFailure(
                step=step.name, step_index=index, component=step.component,
                exception_type=type(exc).__qualname__, message=str(exc),
                traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                input_repr=shown[:INPUT_REPR_LIMIT], exception=exc)
            with entry.lock:
                entry.failures[seq] = failure
                while len(entry.failures) > kept:
                    entry.failures.popitem(last=False)
            record = self._materialize(entry, seq)
            assert record is not None
            return ChainStepError(record)

        return on_failure

    def execute_chain(self, chain_id: ChainRef, input_data: Any,
                      user_context: Optional[UserContext] = None) -> ChainExecution:
        """Execute a chain and return its full record (failures included, never raised).

        Raises
        ------
        UnknownChainError
            When the chain is not registered.
        TypeError
            When the chain has coroutine steps (use :meth:`execute_chain_async`).
        """
        runner = self.runner(chain_id)
        seq = runner.executions
        try:
            output = runner.run(input_data, user_context)
        except ChainStepError as exc:
            return exc.execution
        record = self._materialize(self._entry(chain_id), seq, output)
        assert record is not None
        return record

    async def execute_chain_async(self, chain_id: ChainRef, input_data: Any,
                                  user_context: Optional[UserContext] = None) -> ChainExecution:
        """Execute a chain, awaiting coroutine steps, and return its record.

        Executions of the same or other chains interleave on the loop without blocking.
        """
        runner = self.runner(chain_id)
        seq = runner.executions  # the coroutine claims this seq before it first suspends
        try:
            output = await runner.run_async(input_data, user_context)
        except ChainStepError as exc:
            return exc.execution
        record = self._materialize(self._entry(chain_id), seq, output)
        assert record is not None
        return record

    # ------------------------------------------------------------------ records

    def _materialize(self, entry: _Entry, seq: int, output: Any = None) -> Optional[ChainExecution]:
        runner = entry.runner
        if runner is None:
            return None
        row = runner.ring.read(seq)
        if row is None:
            return None
        _, start, end, status_code, at_step, ctx_index, durations = row
        status = _STATUS[status_code]
        d = entry.definition
        steps = []
        t = start
        last = at_step if status is not ExecutionStatus.SUCCEEDED else len(d.steps)
        for i in range(min(last + 1, len(d.steps))):
            step = d.steps[i]
            if i < last:
                st = ExecutionStatus.SUCCEEDED
            elif status is ExecutionStatus.FAILED:
                st = ExecutionStatus.FAILED
            else:
                st = ExecutionStatus.RUNNING
            if st is ExecutionStatus.RUNNING:
                steps.append(StepResult(step.name, step.component, st, t, engine.now_ns(),
                                        step.expected_duration_ns))
                break
            steps.append(StepResult(step.name, step.component, st, t, t + durations[i],
                                    step.expected_duration_ns))
            t += durations[i]
        eta = self._eta(entry, runner, at_step, steps[-1]) \
            if status is ExecutionStatus.RUNNING and steps else None
        return ChainExecution(
            execution_id=f"{d.chain_id}#{seq}", chain_id=d.chain_id, chain_name=d.name,
            seq=seq, user_context=runner.contexts[ctx_index], status=status, start_ns=start,
            end_ns=end if status in (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED) else None,
            steps=tuple(steps), step_names=d.step_names,
            failure=entry.failures.get(seq) if status is ExecutionStatus.FAILED else None,
            eta_ns=eta)

    def _eta(self, entry: _Entry, runner: Any, at_step: int, current: StepResult) -> int:
        hist = runner.histograms
        remaining = 0
        for i in range(at_step, len(entry.definition.steps)):
            observed = hist.value_at_percentile(i, 50.0)
            typical = observed if observed else entry.definition.steps[i].expected_duration_ns
            if i == at_step:
                typical = max(0, typical - current.duration_ns)
            remaining += typical
        return remaining

    def execution(self, chain: ChainRef, seq: int) -> Optional[ChainExecution]:
        """Return execution ``seq`` of a chain, or None once the ring overwrote it."""
        return self._materialize(self._entry(chain), seq)

    def last_execution(self, chain: ChainRef) -> Optional[ChainExecution]:
        """Return the chain's most recent execution, or None before the first."""
        entry = self._entry(chain)
        if entry.runner is None or entry.runner.executions == 0:
            return None
        return self._materialize(entry, entry.runner.executions - 1)

    def recent_executions(self, chain: ChainRef, limit: int = 100) -> list[ChainExecution]:
        """Return up to ``limit`` of the chain's latest executions still in the ring, newest first."""
        entry = self._entry(chain)
        if entry.runner is None:
            return []
        last = entry.runner.executions - 1
        out = []
        for seq in range(last, max(-1, last - limit), -1):
            record = self._materialize(entry, seq)
            if record is None:
                break
            out.append(record)
        return out

    def failures(self, chain: ChainRef) -> list[ChainExecution]:
        """Return the kept failed executions of a chain, oldest first.

        Records whose ring slot was overwritten keep their failure but lose step timings.
        """
        entry = self._entry(chain)
        out = []
        for seq, failure in list(entry.failures.items()):
            record = self._materialize(entry, seq)
            if record is None:
                d = entry.definition
                record = ChainExecution(
                    f"{d.chain_id}#{seq}", d.chain_id, d.name, seq, None, ExecutionStatus.FAILED,
                    0, None, (), d.step_names, failure)
            out.append(record)
        return out

    def active_executions(self) -> list[ChainExecution]:
        """Return a live snapshot of every running execution (current step, progress, ETA)."""
        out = []
        for entry in list(self._entries.values()):
            if entry.runner is None:
                continue
            for seq in entry.runner.ring.running():
                record = self._materialize(entry, seq)
                if record is not None and record.status is ExecutionStatus.RUNNING:
                    out.append(record)
        return out

    # ------------------------------------------------------------------ statistics

    def histogram(self, chain: ChainRef, step: Optional[str] = None) -> LatencyHistogram:
        """Return a chain's whole-execution histogram, or one step's (ns, successes only).

        Raises
        ------
        KeyError
            When ``step`` is not a step of the chain.
        """
        entry = self._entry(chain)
        runner = self.runner(chain)
        if step is None:
            row = len(entry.definition.steps)
        else:
            try:
                row = entry.definition.step_names.index(step)
            except ValueError:
                raise KeyError(f"chain {entry.definition.name!r} has no step {step!r}; its "
                               f"steps: {', '.join(entry.definition.step_names)}") from None
        counts, stats = runner.histograms.snapshot(row)
        return LatencyHistogram.from_counts(counts, stats, self.histogram_settings)

    def stats(self, chain: ChainRef) -> dict[str, Any]:
        """Return executions, failures, success ratio and per-step summaries of a chain."""
        entry = self._entry(chain)
        runner = self.runner(chain)
        d = entry.definition
        errors = runner.step_errors
        executions = int(runner.executions)
        failures = int(runner.failures)
        return {
            "chain_id": d.chain_id,
            "chain": d.name,
            "version": entry.version.version,
            "executions": executions,
            "failures": failures,
            "success_ratio": (executions - failures) / executions if executions else None,
            "latency": self.histogram(chain).summary(),
            "steps": [
                {"name": s.name, "component": s.component,
                 "expected_ns": s.expected_duration_ns, "errors": int(errors[i]),
                 "latency": self.histogram(chain, s.name).summary()}
                for i, s in enumerate(d.steps)
            ],
        }

    def built_runners(self) -> list[tuple[ChainDefinition, "engine.ChainRunner"]]:
        """Return (definition, runner) for every chain whose runner exists; builds none.

        The cold path (monitor, metrics, history, dashboard) reads these rings and histograms.
        """
        return [(e.definition, e.runner) for e in list(self._entries.values())
                if e.runner is not None]

    def chain_ids(self) -> Iterable[str]:
        """Every registered chain id (all versions)."""
        return list(self._entries)
