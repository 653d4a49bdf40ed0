"""Latency gates for a strategy author's own tests: the ``chain_latency`` pytest fixture.

Installed with flowchain (a ``pytest11`` entry point), so any project's tests can ask for it::

    def test_my_chain_is_fast_enough(chain_latency):
        chain_latency("My_Chain", inputs, file="chains.yaml", budget_ms=2.0)

The fixture runs the chain over the inputs through the engine (warm-up first, then
``rounds`` passes over every input), reads the engine's own HDR histograms and fails the test
when a step's percentile (p99 unless told otherwise) passes the step's ``expected_duration``,
or its entry in ``step_budgets_ms``, or when the whole chain's passes ``budget_ms`` (by default
the sum of the steps' expected durations). A step that raises fails the test with the step's
error. With pytest-benchmark installed the passes are timed by its ``benchmark`` fixture and
the engine's percentiles land in the benchmark's ``extra_info`` (its JSON, ``--benchmark-json``);
a ``flowchain latency gates`` table at the end of the run shows every gate.
"""
from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PERCENTILE = 99.0
"""The percentile a gate checks unless told otherwise."""

_REPORTS_KEY = pytest.StashKey[list]()


@dataclass(frozen=True, slots=True)
class LatencyFigure:
    """The engine's HDR figures (ns) for one step, or the whole chain, and its limit."""

    name: str
    count: int
    p50_ns: int
    p90_ns: int
    p99_ns: int
    p999_ns: int
    max_ns: int
    gated_ns: int
    """The value at the gate's percentile."""
    limit_ns: int

    @property
    def passed(self) -> bool:
        """True when the gated percentile is within the limit."""
        return self.gated_ns <= self.limit_ns

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "p50_ns": self.p50_ns, "p90_ns": self.p90_ns,
                "p99_ns": self.p99_ns, "p999_ns": self.p999_ns, "max_ns": self.max_ns,
                "gated_ns": self.gated_ns, "limit_ns": self.limit_ns, "passed": self.passed}


@dataclass(frozen=True, slots=True)
class LatencyReport:
    """What one gate measured: the chain's and every step's figures, and what failed."""

    test: str
    chain: str
    chain_id: str
    percentile: float
    executions: int
    whole: LatencyFigure
    steps: tuple[LatencyFigure, ...] = field(default=())

    @property
    def violations(self) -> list[str]:
        """One sentence per figure over its limit (empty when the gate passes)."""
        p = f"p{self.percentile:g}"
        out = [f"step {s.name!r}: {p} {s.gated_ns / 1e6:.3f} ms > {s.limit_ns / 1e6:.3f} ms"
               for s in self.steps if not s.passed]
        if not self.whole.passed:
            out.append(f"whole chain: {p} {self.whole.gated_ns / 1e6:.3f} ms > "
                       f"{self.whole.limit_ns / 1e6:.3f} ms")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (what goes into pytest-benchmark's ``extra_info``)."""
        return {"chain": self.chain, "chain_id": self.chain_id, "percentile": self.percentile,
                "executions": self.executions, "whole_chain": self.whole.to_dict(),
                "steps": {s.name: s.to_dict() for s in self.steps},
                "violations": self.violations}


def _ms_to_ns(value: float, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive number of ms, got {value!r}")
    return int(round(value * 1_000_000))


class ChainLatencyGate:
    """The ``chain_latency`` fixture's value: call it once per chain to gate."""

    def __init__(self, request: pytest.FixtureRequest, benchmark: Any) -> None:
        self._request = request
        self._benchmark = benchmark
        self.reports: list[LatencyReport] = []

    def __call__(self, chain: Any, inputs: Iterable[Any] | Callable[[], Iterable[Any]], *,
                 file: str | Path | None = None, registry: Any = None,
                 budget_ms: float | None = None,
                 step_budgets_ms: Mapping[str, float] | None = None,
                 percentile: float = PERCENTILE, warmup: int = 1, rounds: int = 5,
                 check: bool = True) -> LatencyReport:
        """Run ``chain`` over ``inputs`` through the engine and gate its latency.

        Parameters
        ----------
        chain : str or ChainDefinition
            A chain name or id (of ``file`` or ``registry``), or a definition to register.
        inputs : iterable, or a callable returning one
            The first step's inputs. Pass a callable when the chain changes its input in
            place: it is called for a fresh set before every pass.
        file : path, optional
            A chains YAML file to register first.
        registry : ChainRegistry, optional
            Where to register and run; a new one over the process-wide components when
            omitted. Its runner's histograms are reset after the warm-up.
        budget_ms : float, optional
            The whole chain's limit; the sum of the steps' expected durations when omitted.
        step_budgets_ms : mapping, optional
            Per-step limits (ms) replacing the steps' expected durations.
        percentile : float
            The percentile gated (0 < p <= 100).
        warmup, rounds : int
            Passes over the inputs before measuring (not counted) and measured.
        check : bool
            Fail the test on a violation (default); when false, just return the report.

        Raises
        ------
        pytest.fail.Exception
            When a step raises, or (``check``) a figure passes its limit.
        ValueError
            On a bad budget, percentile, round count, an unknown step in ``step_budgets_ms``
            or no inputs.
        """
        from flowchain.chain import ChainDefinition
        from flowchain.errors import ChainStepError
        from flowchain.registry import ChainRegistry

        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
        if rounds < 1 or warmup < 0:
            raise ValueError(f"rounds must be >= 1 and warmup >= 0, got {rounds}, {warmup}")
        registry = registry if registry is not None else ChainRegistry()
        if file is not None:
            registry.register_file(file)
        if isinstance(chain, ChainDefinition):
            chain = registry.register_chain(chain)
        definition = registry.get_chain(chain)
        limits = {s.name: s.expected_duration_ns for s in definition.steps}
        for name, value in (step_budgets_ms or {}).items():
            if name not in limits:
                raise ValueError(f"step_budgets_ms names {name!r}, which is not a step of "
                                 f"{definition.name!r}; its steps: "
                                 f"{', '.join(definition.step_names)}")
            limits[name] = _ms_to_ns(value, f"step_budgets_ms[{name!r}]")
        whole_limit = (_ms_to_ns(budget_ms, "budget_ms") if budget_ms is not None
                       else sum(s.expected_duration_ns for s in definition.steps))
        runner = registry.runner(definition.chain_id)
        fresh = inputs if callable(inputs) else None
        fixed = None if fresh is not None else list(inputs)  # type: ignore[arg-type]
        if fixed is not None and not fixed:
            raise ValueError(f"no inputs to run {definition.name!r} over")
        loop = asyncio.new_event_loop() if runner.has_async else None

        def one_pass() -> None:
            batch = fresh() if fresh is not None else fixed
            failed: ChainStepError | None = None
            try:
                if loop is None:
                    for item in batch:
                        runner.run(item)
                else:
                    for item in batch:
                        loop.run_until_complete(runner.run_async(item))
            except ChainStepError as exc:
                failed = exc
            if failed is not None:
                record = failed.execution.failure
                where = f"\n{record.traceback}" if record is not None else ""
                pytest.fail(f"{definition.name}: {failed}{where}", pytrace=False)

        try:
            for _ in range(warmup):
                one_pass()
            runner.histograms.reset()
            before = int(runner.executions)
            if self._benchmark is not None:
                self._benchmark.pedantic(one_pass, rounds=rounds, iterations=1)
            else:
                for _ in range(rounds):
                    one_pass()
        finally:
            if loop is not None:
                loop.close()
        report = self._report(registry, definition, limits, whole_limit, percentile,
                              int(runner.executions) - before)
        self.reports.append(report)
        self._request.config.stash.setdefault(_REPORTS_KEY, []).append(report)
        if self._benchmark is not None:
            self._benchmark.extra_info.setdefault("flowchain", {})[definition.name] = \
                report.to_dict()
        if check and report.violations:
            pytest.fail(f"latency gate of {definition.name!r} ({report.executions} executions):"
                        "\n  " + "\n  ".join(report.violations), pytrace=False)
        return report

    def _report(self, registry: Any, definition: Any, limits: Mapping[str, int],
                whole_limit: int, percentile: float, executions: int) -> LatencyReport:
        def figure(name: str, step: str | None, limit: int) -> LatencyFigure:
            h = registry.histogram(definition.chain_id, step)
            ps = h.percentiles((50.0, 90.0, 99.0, 99.9, percentile))
            return LatencyFigure(name, h.count, ps[50.0], ps[90.0], ps[99.0], ps[99.9], h.max,
                                 ps[percentile], limit)

        steps = tuple(figure(s.name, s.name, limits[s.name]) for s in definition.steps)
        return LatencyReport(self._request.node.nodeid, definition.name, definition.chain_id,
                             percentile, executions, figure("whole chain", None, whole_limit),
                             steps)


@pytest.fixture
def chain_latency(request: pytest.FixtureRequest) -> ChainLatencyGate:
    """Gate a chain's step and whole-chain latency percentiles (see :class:`ChainLatencyGate`)."""
    try:
        benchmark = request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:  # pytest-benchmark not installed, or -p no:benchmark
        benchmark = None
    return ChainLatencyGate(request, benchmark)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print every gate's figures: the engine's HDR percentiles against their limits."""
    reports = config.stash.get(_REPORTS_KEY, [])
    if not reports:
        return
    tr = terminalreporter
    tr.section("flowchain latency gates (the engine's HDR histograms, us)")
    tr.write_line(f"{'chain / step':<44} {'count':>8} {'p50':>9} {'p99':>9} {'gated':>9} "
                  f"{'limit':>9}  result")
    for r in reports:
        tr.write_line(f"{r.test}  [{r.chain}, p{r.percentile:g}]")
        for f in (*r.steps, r.whole):
            tr.write_line(f"  {f.name:<42} {f.count:>8,} {f.p50_ns / 1e3:>9,.1f} "
                          f"{f.p99_ns / 1e3:>9,.1f} {f.gated_ns / 1e3:>9,.1f} "
                          f"{f.limit_ns / 1e3:>9,.1f}  {'ok' if f.passed else 'OVER'}")
