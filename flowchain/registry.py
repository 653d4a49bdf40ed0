"""ChainRegistry: register chains, keep their versions, execute them through the engine.

The hot path is :meth:`ChainRegistry.runner` -> ``ChainRunner.run(data)``: one call per
execution, every step timed into the runner's ring and HDR histograms. The record-returning
:meth:`ChainRegistry.execute_chain` is the convenient, allocating form of the same thing.
"""
from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowchain._native import STATUS_FAILED, STATUS_PENDING, STATUS_RUNNING, STATUS_SUCCEEDED, engine
from flowchain.chain import ChainDefinition, ChainStep, load_chains_file
from flowchain.components import ComponentRegistry, default_components
from flowchain.context import UserContext
from flowchain.errors import (
    ChainProblem,
    ChainStepError,
    ChainValidationError,
    UnknownChainError,
    UnknownComponentError,
)
from flowchain.execution import ChainExecution, ExecutionStatus, StepFailure, StepResult
from flowchain.histograms import DEFAULT_SETTINGS, HistogramSettings, LatencyHistogram
from flowchain.stats import EMPTY_LATENCY, ChainStats, LatencySummary, StepStats

if TYPE_CHECKING:  # pragma: no cover
    from flowchain.optimizer.cache import CacheStats
    from flowchain.optimizer.pool import WorkerUsage

_STATUS = {STATUS_PENDING: ExecutionStatus.PENDING, STATUS_RUNNING: ExecutionStatus.RUNNING,
           STATUS_SUCCEEDED: ExecutionStatus.SUCCEEDED, STATUS_FAILED: ExecutionStatus.FAILED}

OUTCOMES = ("success", "failure")
"""The latency series of every step and chain: successful and failed executions, apart."""


@dataclass(frozen=True, slots=True)
class ChainVersion:
    """One registered version of a chain name."""

    name: str
    version: int
    chain_id: str
    label: str | None
    registered_at: float


class _Entry:
    """One registered chain version: its definition, runner and materialized failures.

    ``failures`` maps failure numbers (the runner's failure ring) to records built on the
    cold path, ``failure_numbers`` execution seqs to failure numbers; both are pruned to what
    the ring still holds.
    """

    __slots__ = ("definition", "version", "chain_id", "step_names", "runner", "failures",
                 "failure_numbers", "failures_read", "lock", "runtimes", "profiler")

    def __init__(self, definition: ChainDefinition, version: ChainVersion) -> None:
        self.definition = definition
        self.version = version
        self.chain_id = version.chain_id
        self.step_names = definition.step_names
        self.runner: engine.ChainRunner | None = None
        self.failures: dict[int, ChainExecution] = {}
        self.failure_numbers: dict[int, int] = {}
        self.failures_read = 0
        self.lock = threading.Lock()
        self.runtimes: dict[str, Any] = {}  # step name -> StepRuntime (parallel/cache/async)
        self.profiler: Any = None  # ChainProfiler, once profiling was on for this version


ChainRef = str | ChainDefinition


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
        Failed executions kept in full (exception, input, timings) per chain, rounded up to a
        power of two: the runner's failure ring. They stay alive until overwritten; lower it
        for chains with large inputs.
    contexts_kept : int
        User contexts a runner's table holds (see ``ChainRunner``); older executions whose
        entry was reused report no context.
    profile_rate : float
        The share of executions profiled per step (wall, thread CPU, allocation, input hash;
        see :mod:`flowchain.optimizer.profiling`): 0 (the default) none, 1.0 every one, 0.01
        one in a hundred. Change it with :meth:`set_profiling`.
    profiles_kept : int
        Step profiles held in memory per chain version until taken (:meth:`take_profiles`).

    Raises
    ------
    ValueError
        When ``failures_kept`` or ``ring_capacity`` is below 1, ``contexts_kept`` below 2,
        or ``profile_rate`` not from 0 to 1.
    """

    def __init__(self, components: ComponentRegistry | None = None, *,
                 ring_capacity: int = 4096,
                 histograms: HistogramSettings = DEFAULT_SETTINGS,
                 failures_kept: int = 1000, contexts_kept: int = 1024,
                 profile_rate: float = 0.0, profiles_kept: int = 10_000) -> None:
        from flowchain.optimizer.profiling import sample_every

        if ring_capacity < 1:
            raise ValueError(f"ring_capacity must be at least 1, got {ring_capacity}")
        if failures_kept < 1:
            raise ValueError(f"failures_kept must be at least 1, got {failures_kept}")
        if contexts_kept < 2:
            raise ValueError(f"contexts_kept must be at least 2, got {contexts_kept}")
        self.components = components if components is not None else default_components
        self.ring_capacity = ring_capacity
        self.histogram_settings = histograms
        self._layout = histograms.layout()
        self.failures_kept = failures_kept
        self.contexts_kept = contexts_kept
        self._entries: dict[str, _Entry] = {}
        self._versions: dict[str, list[ChainVersion]] = {}
        self._lock = threading.Lock()
        self._profile_rate = float(profile_rate)
        self._profile_every = sample_every(profile_rate)
        self._record_inputs = False
        self.profiles_kept = profiles_kept

    # ------------------------------------------------------------------ registration

    def register_chain(self, definition: ChainDefinition) -> str:
        """Validate and register ``definition``; return its content-hash id.

        Registering the same definition again returns the same id and adds no version. A step
        built with a callable (``ChainStep.implementation``) has it registered in
        :attr:`components` under the step's derived component name, unless that name already
        holds this very callable.

        Raises
        ------
        ChainValidationError
            When the definition has structural problems, names unknown components, or a
            step's derived component name is already registered to another object.
        """
        problems = self._problems(definition)
        if problems:
            raise ChainValidationError(problems)
        self._register_implementations(definition)
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

    def register_file(self, path: str | Path) -> list[str]:
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
            if step.implementation is not None:
                problems.extend(self._implementation_problems(definition, step))
                if step.parallel is not None or step.cache is not None or \
                        step.async_ is not None:
                    problems.append(ChainProblem(
                        "'parallel', 'cache' and 'async' need a component whose traits are "
                        "declared: register the callable with @flowchain.component('Name', "
                        "elementwise=..., deterministic=...) and give the step component='Name'",
                        chain=definition.name, step=step.name, source=definition.source,
                        line=step.line))
                continue
            if isinstance(step.component, str) and step.component and \
                    step.component not in self.components:
                known = known or ", ".join(self.components.names()) or "none"
                problems.append(ChainProblem(
                    f"unknown component {step.component!r} (registered: {known}); register it "
                    f"with @flowchain.component({step.component!r})",
                    chain=definition.name, step=step.name, source=definition.source,
                    line=step.line))
            elif step.parallel is not None or step.cache is not None or \
                    step.async_ is not None:
                problems.extend(self._trait_problems(definition, step))
        return problems

    def _implementation_problems(self, definition: ChainDefinition,
                                 step: ChainStep) -> list[ChainProblem]:
        """A step given a callable: its name must be free or already hold that callable."""
        name = step.component
        if name not in self.components:
            return []
        try:
            existing = self.components.implementation(name)
        except UnknownComponentError:  # unregistered meanwhile: free again
            return []
        if existing is step.implementation:
            return []
        return [ChainProblem(
            f"component name {name!r}, derived from the callable given for this step, is "
            f"already registered to another object ({existing!r}); give the step a component "
            f"name of its own (@flowchain.component('Name') and component='Name')",
            chain=definition.name, step=step.name, source=definition.source, line=step.line)]

    def _register_implementations(self, definition: ChainDefinition) -> None:
        for step in definition.steps:
            if step.implementation is not None and step.component not in self.components:
                try:
                    self.components.register(step.component, step.implementation)
                except ValueError as exc:  # another thread took the name since the check
                    raise ChainValidationError([ChainProblem(
                        str(exc), chain=definition.name, step=step.name,
                        source=definition.source, line=step.line)]) from None

    def _trait_problems(self, definition: ChainDefinition, step: Any) -> list[ChainProblem]:
        """A step's ``parallel``/``async``/``cache`` its component's traits do not allow."""
        if not isinstance(step.component, str) or step.component not in self.components:
            return []
        traits = self.components.traits(step.component)
        found = []
        needs = (("parallel", step.parallel, traits.elementwise, "element-wise",
                  "elementwise=True", "split its input into chunks"),
                 ("async", step.async_, traits.elementwise, "element-wise",
                  "elementwise=True", "run its input's items concurrently"),
                 ("cache", step.cache, traits.deterministic, "deterministic",
                  "deterministic=True", "answer a repeated input from memory"))
        for key, value, has, trait, flag, why in needs:
            if value is not None and not has:
                found.append(ChainProblem(
                    f"'{key}' needs a component declared {trait} (to {why}), and "
                    f"{step.component!r} is not; if it is, register it with "
                    f"@flowchain.component({step.component!r}, {flag}), else remove '{key}'",
                    chain=definition.name, step=step.name, source=definition.source,
                    line=step.line))
        if step.parallel is not None and traits.elementwise:
            from flowchain.optimizer.pool import parallel_problem

            reason = parallel_problem(self.components.implementation(step.component))
            if reason is not None:
                found.append(ChainProblem(
                    f"'parallel' runs {step.component!r} in worker processes, but {reason}",
                    chain=definition.name, step=step.name, source=definition.source,
                    line=step.line))
        return found

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

    def runner(self, ref: ChainRef) -> engine.ChainRunner:
        """Return the chain's native runner (built on first use): the hot-path API.

        ``ref`` is a chain id, a name (its latest version) or a :class:`ChainDefinition`; a
        definition not registered yet is registered first (as :meth:`register_chain` does).
        ``runner.run(data, context=None)`` returns the last step's output and raises
        :class:`~flowchain.errors.ChainStepError` when a step fails;
        ``await runner.run_async(data)`` awaits coroutine steps.

        Raises
        ------
        UnknownChainError
            When an id or name is not registered.
        ChainValidationError
            When a definition registered here on demand is invalid.
        """
        if isinstance(ref, ChainDefinition) and ref.chain_id not in self._entries:
            self.register_chain(ref)
        entry = self._entry(ref)
        runner = entry.runner
        if runner is None:
            with entry.lock:
                if entry.runner is None:
                    entry.runner = self._build_runner(entry)
                    if self._profile_every:
                        self._sample(entry)
                runner = entry.runner
        return runner

    # ------------------------------------------------------------------ profiling

    @property
    def profile_rate(self) -> float:
        """The share of executions profiled (0: off); see :meth:`set_profiling`."""
        return self._profile_rate

    def set_profiling(self, rate: float, *, record_inputs: bool = False) -> None:
        """Profile 1 execution in ``round(1 / rate)`` of every chain's ``runner.run``
        (0: stop; 1.0: every one), from now on, for runners built and to be built.

        With ``record_inputs``, each profiled execution also encodes its chain input before
        the first step runs; the successful ones' inputs wait for :meth:`take_sampled_inputs`
        (the history writer stores them in ``recorded_inputs`` with status ``'sampled'``).

        Raises
        ------
        ValueError
            When ``rate`` is not a number from 0 to 1.
        """
        from flowchain.optimizer.profiling import sample_every
        every = sample_every(rate)
        self._profile_rate, self._profile_every = float(rate), every
        self._record_inputs = bool(record_inputs)
        for entry in list(self._entries.values()):
            with entry.lock:
                if entry.runner is not None:
                    self._sample(entry)

    def _sample(self, entry: _Entry) -> None:
        """Point the runner's sampling at the entry's profiler (cold; holds entry.lock)."""
        runner = entry.runner
        assert runner is not None, "sampling is pointed at built runners only"
        if not self._profile_every:
            runner.sample(None, 0)
            return
        if entry.profiler is None:
            from flowchain.optimizer.profiling import ChainProfiler
            entry.profiler = ChainProfiler(entry.definition.name, entry.chain_id,
                                           entry.step_names, self.profiles_kept)
            entry.profiler.runner = runner
        entry.profiler.record_inputs = self._record_inputs
        runner.sample(entry.profiler, self._profile_every)

    def take_profiles(self, chain: ChainRef | None = None) -> list[Any]:
        """Return and forget the step profiles (``StepProfile``) held for one chain version
        (an id, or a name's latest version) or, without ``chain``, for every one.

        The history writer stores them in ``step_profiles``
        (:func:`flowchain.optimizer.profile_store.write_profiles`).
        """
        entries = [self._entry(chain)] if chain is not None else list(self._entries.values())
        out: list[Any] = []
        for entry in entries:
            if entry.profiler is not None:
                out.extend(entry.profiler.take())
        return out

    def take_sampled_inputs(self, chain: ChainRef) -> list[Any]:
        """Return and forget the chain inputs (``SampledInput``) of one chain version's
        successful profiled executions, kept when profiling with ``record_inputs``."""
        entry = self._entry(chain)
        return entry.profiler.take_inputs() if entry.profiler is not None else []

    def _build_runner(self, entry: _Entry) -> engine.ChainRunner:
        d = entry.definition
        resolved = [self.components.resolve(s.component) for s in d.steps]
        calls = [r.call for r in resolved]
        is_async = [r.is_async for r in resolved]
        if any(s.parallel is not None or s.cache is not None or s.async_ is not None
               for s in d.steps):
            self._build_step_runtimes(entry, resolved, calls, is_async)
        # on a failure the runner builds ChainStepError(runner, seq, step, number, input): one
        # tuple; its record is resolved on the cold path, when asked for
        runner = engine.ChainRunner(
            entry.chain_id, entry.step_names, tuple(calls),
            tuple(is_async), self.ring_capacity, self._layout,
            ChainStepError, self.failures_kept, self.contexts_kept)
        runner.resolve_failure = functools.partial(self._error_record, entry)
        return runner

    @staticmethod
    def _build_step_runtimes(entry: _Entry, resolved: list, calls: list,
                             is_async: list) -> None:
        """Put each optioned step's runtime (pool, cache) in place of its component's call."""
        from flowchain.optimizer.step_runtime import build_step_runtime, has_options

        built: dict[str, Any] = {}
        try:
            for i, step in enumerate(entry.definition.steps):
                if has_options(step):
                    runtime = build_step_runtime(step, resolved[i], entry.definition.name)
                    built[step.name] = runtime
                    calls[i] = runtime.call
                    is_async[i] = runtime.is_async
        except BaseException:
            for runtime in built.values():
                runtime.close()
            raise
        entry.runtimes = built

    def step_cache(self, chain: ChainRef, step: str) -> CacheStats | None:
        """Return the counters of a step's ``cache`` (hits, misses, entries), or None when the
        step has no cache or the chain's runner is not built yet.

        Raises
        ------
        KeyError
            When ``step`` is not a step of the chain.
        """
        runtime = self._step_runtime(chain, step)
        return runtime.cache.stats() if runtime is not None and runtime.cache else None

    def step_worker_usage(self, chain: ChainRef, step: str) -> WorkerUsage | None:
        """Return the CPU a ``parallel`` step's worker processes had in its calls so far
        (:class:`~flowchain.optimizer.pool.WorkerUsage`: cores' worth, CPU share), or None
        when the step is not parallel or the chain's runner is not built yet.

        Raises
        ------
        KeyError
            When ``step`` is not a step of the chain.
        """
        runtime = self._step_runtime(chain, step)
        return runtime.worker_usage() if runtime is not None else None

    def _step_runtime(self, chain: ChainRef, step: str) -> Any:
        """The step's ``StepRuntime`` (parallel/cache/async), or None; KeyError for no step."""
        entry = self._entry(chain)
        self._histogram_row(entry, step)
        return entry.runtimes.get(step)

    def close(self) -> None:
        """Stop the worker processes and threads of every ``parallel``/``async`` step.

        Runners stay readable; a chain with such a step cannot execute afterwards.
        """
        for entry in list(self._entries.values()):
            with entry.lock:
                runtimes, entry.runtimes = entry.runtimes, {}
            for runtime in runtimes.values():
                runtime.close()

    def execute_chain(self, chain_id: ChainRef, input_data: Any,
                      user_context: UserContext | None = None) -> ChainExecution:
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
                                  user_context: UserContext | None = None) -> ChainExecution:
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

    def _materialize(self, entry: _Entry, seq: int, output: Any = None) -> ChainExecution | None:
        runner = entry.runner
        if runner is None:
            return None
        row = runner.ring.read(seq)
        if row is None:
            return None
        _, start, end, status_code, at_step, ctx_index, durations = row
        status = _STATUS[status_code]
        if status is ExecutionStatus.FAILED:
            failed = self._failure_of_seq(entry, seq)
            if failed is not None:
                return failed
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
            execution_id=f"{entry.chain_id}#{seq}", chain_id=entry.chain_id, chain_name=d.name,
            seq=seq, user_context=runner.context_of(ctx_index, seq), status=status,
            start_ns=start,
            end_ns=end if status in (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED) else None,
            steps=tuple(steps), step_names=entry.step_names, failure=None, eta_ns=eta)

    def _read_failures(self, entry: _Entry) -> None:
        """Materialize the failures the runner's ring gained since the last read (cold path).

        Holds ``entry.lock``'s caller. Records are built from one consistent ring row each;
        their traceback and input repr are formatted later, when read.
        """
        runner = entry.runner
        if runner is None:
            return
        ring = runner.failed
        written = ring.written
        oldest = ring.oldest()
        for number in range(max(entry.failures_read, oldest), written):
            row = ring.read(number)
            if row is not None:
                entry.failures[number] = self._failure_record(entry, row)
                entry.failure_numbers[row[1]] = number
        entry.failures_read = max(entry.failures_read, written)
        if entry.failures and next(iter(entry.failures)) < oldest:
            for number in [k for k in entry.failures if k < oldest]:
                record = entry.failures.pop(number)
                entry.failure_numbers.pop(record.seq, None)

    def _failure_record(self, entry: _Entry, row: tuple) -> ChainExecution:
        number, seq, at_step, start, end, durations, exc, step_input, context = row
        d = entry.definition
        steps = []
        t = start
        for i in range(at_step + 1):
            step = d.steps[i]
            status = ExecutionStatus.SUCCEEDED if i < at_step else ExecutionStatus.FAILED
            duration = int(durations[i])
            steps.append(StepResult(step.name, step.component, status, t, t + duration,
                                    step.expected_duration_ns))
            t += duration
        failing = d.steps[at_step]
        failure = StepFailure(failing.name, at_step, failing.component, exception=exc,
                              step_input=step_input)
        return ChainExecution(
            execution_id=f"{entry.chain_id}#{seq}", chain_id=entry.chain_id, chain_name=d.name,
            seq=seq, user_context=context, status=ExecutionStatus.FAILED, start_ns=start,
            end_ns=end, steps=tuple(steps), step_names=entry.step_names, failure=failure)

    def _failure_of_seq(self, entry: _Entry, seq: int) -> ChainExecution | None:
        with entry.lock:
            self._read_failures(entry)
            number = entry.failure_numbers.get(seq)
            return entry.failures.get(number) if number is not None else None

    def _error_record(self, entry: _Entry, error: ChainStepError) -> ChainExecution:
        """The record of a ChainStepError the runner raised (see ``ChainStepError.execution``).

        From the failure ring while it holds the failure; after ring overwrote it, rebuilt
        from what the error itself keeps (step, exception, input), without timings.
        """
        _, seq, index, number, step_input = error.args
        with entry.lock:
            self._read_failures(entry)
            record = entry.failures.get(number)
        if record is not None:
            return record
        d = entry.definition
        step = d.steps[index]
        exc = error.__cause__
        failure = StepFailure(step.name, index, step.component,
                              exception_type=None if exc is not None else "unknown",
                              message=None if exc is not None else "",
                              exception=exc, step_input=step_input)
        return ChainExecution(
            f"{entry.chain_id}#{seq}", entry.chain_id, d.name, seq, None, ExecutionStatus.FAILED,
            0, None, (), entry.step_names, failure)

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

    def execution(self, chain: ChainRef, seq: int) -> ChainExecution | None:
        """Return execution ``seq`` of a chain, or None once the ring overwrote it."""
        return self._materialize(self._entry(chain), seq)

    def last_execution(self, chain: ChainRef) -> ChainExecution | None:
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

    def failures(self, chain: ChainRef, *, after_seq: int = -1,
                 limit: int | None = None) -> list[ChainExecution]:
        """Return the kept failed executions of a chain, oldest first.

        The runner keeps the latest ``failures_kept`` failures (exception, input, timings);
        records are built here, on first request, and reused afterwards.

        Parameters
        ----------
        after_seq : int
            Only failures of executions numbered above this (a reader's cursor).
        limit : int, optional
            Only the newest ``limit`` of them.
        """
        entry = self._entry(chain)
        if entry.runner is None:
            return []
        with entry.lock:
            self._read_failures(entry)
            records = [r for r in entry.failures.values() if r.seq > after_seq]
        if limit is not None:
            records = records[-limit:] if limit > 0 else []
        return records

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

    def histogram(self, chain: ChainRef, step: str | None = None, *,
                  outcome: str = "success") -> LatencyHistogram:
        """Return a chain's whole-execution histogram, or one step's (ns).

        ``outcome="success"`` (the default) holds successful executions (a step's: each time
        it returned); ``outcome="failure"`` the failed ones, timed the same way (a step's: each
        time it raised, until it raised; the chain's: from start to the failure). The two
        series are never mixed.

        Raises
        ------
        KeyError
            When ``step`` is not a step of the chain.
        ValueError
            When ``outcome`` is not ``"success"`` or ``"failure"``.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
        entry = self._entry(chain)
        row = self._histogram_row(entry, step)
        runner = entry.runner
        if runner is None:  # never run: an empty histogram, and no runner built for a read
            return LatencyHistogram(self.histogram_settings.new())
        series = runner.histograms if outcome == "success" else runner.failure_histograms
        counts, stats = series.snapshot(row)
        return LatencyHistogram.from_counts(counts, stats, self.histogram_settings)

    @staticmethod
    def _histogram_row(entry: _Entry, step: str | None) -> int:
        if step is None:
            return len(entry.step_names)
        try:
            return entry.step_names.index(step)
        except ValueError:
            raise KeyError(f"chain {entry.definition.name!r} has no step {step!r}; its "
                           f"steps: {', '.join(entry.step_names)}") from None

    def stats(self, chain: ChainRef) -> ChainStats:
        """Return executions, outcomes and per-step latency of a chain, typed.

        Every figure comes from one consistent copy of the runner's counters
        (``ChainRunner.snapshot``): the counts agree with each other even while the chain
        runs in another thread. ``latency`` summarizes successful executions,
        ``failure_latency`` failed ones (per step: the failing step's time until it raised).
        A chain that never ran gets zeros; reading builds no runner.

        Raises
        ------
        UnknownChainError
            When the chain is not registered.
        """
        entry = self._entry(chain)
        d = entry.definition
        runner = entry.runner
        if runner is None:
            return ChainStats(
                entry.chain_id, d.name, entry.version.version, 0, 0, 0, 0, None, EMPTY_LATENCY,
                EMPTY_LATENCY, tuple(StepStats(s.name, s.component, s.expected_duration_ns, 0,
                                               EMPTY_LATENCY, EMPTY_LATENCY) for s in d.steps))
        snap = runner.snapshot()
        settings = self.histogram_settings
        n = len(d.steps)

        def summary(counts: Any, stats: Any, row: int) -> LatencySummary:
            return LatencySummary.of(LatencyHistogram.from_counts(counts[row], stats[row],
                                                                  settings))

        executions, failures = snap.executions, snap.failures
        succeeded = int(snap.stats[n, 0])
        return ChainStats(
            chain_id=entry.chain_id, chain=d.name, version=entry.version.version,
            executions=executions, succeeded=succeeded, failures=failures,
            running=executions - succeeded - failures,
            success_ratio=(executions - failures) / executions if executions else None,
            latency=summary(snap.counts, snap.stats, n),
            failure_latency=summary(snap.failure_counts, snap.failure_stats, n),
            steps=tuple(
                StepStats(s.name, s.component, s.expected_duration_ns, int(snap.step_errors[i]),
                          summary(snap.counts, snap.stats, i),
                          summary(snap.failure_counts, snap.failure_stats, i))
                for i, s in enumerate(d.steps)),
        )

    def built_runners(self) -> list[tuple[ChainDefinition, engine.ChainRunner]]:
        """Return (definition, runner) for every chain whose runner exists; builds none.

        The cold path (monitor, metrics, history, dashboard) reads these rings and histograms.
        """
        return [(e.definition, e.runner) for e in list(self._entries.values())
                if e.runner is not None]

    def chain_ids(self) -> Iterable[str]:
        """Every registered chain id (all versions)."""
        return list(self._entries)
