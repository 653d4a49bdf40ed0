"""FlowChain's exceptions: each names what was wrong, where, and what to do."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from flowchain.execution import ChainExecution


class FlowChainError(Exception):
    """Base class of every error FlowChain raises on purpose."""


class ChainProblem:
    """One problem found in a chain definition, with where it was found."""

    __slots__ = ("message", "chain", "step", "source", "line")

    def __init__(self, message: str, chain: str | None = None, step: str | None = None,
                 source: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.chain = chain
        self.step = step
        self.source = source
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.source is not None:
            where = f"{self.source}:{self.line}: " if self.line is not None else f"{self.source}: "
        elif self.line is not None:
            where = f"line {self.line}: "
        what = ""
        if self.chain is not None:
            what = f"chain {self.chain!r}"
            if self.step is not None:
                what += f" step {self.step!r}"
            what += ": "
        return f"{where}{what}{self.message}"

    def __repr__(self) -> str:
        return f"ChainProblem({str(self)!r})"


class ChainValidationError(FlowChainError, ValueError):
    """A chain definition (Python or YAML) was rejected; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[ChainProblem]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = str(self.problems[0])
        else:
            text = f"{len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


class UnknownComponentError(FlowChainError, LookupError):
    """A component name was not registered."""


class UnknownChainError(FlowChainError, LookupError):
    """A chain id or name is not in the registry."""


class ChainStepError(FlowChainError):
    """A step raised during an execution; ``execution`` holds the full record.

    The step's own exception is ``__cause__``. ``step`` (the failing step's name),
    ``step_index``, ``chain_id`` and ``seq`` are cheap to read; the record (timings so far,
    traceback, the input's repr) is built the first time ``execution`` or ``str()`` asks,
    never on the tick path. ``ChainStepError(execution)`` wraps a record built elsewhere.
    """

    # Raised by the engine as ChainStepError(runner, seq, step_index, failure_number,
    # step_input): BaseException's own __init__ keeps the arguments, so raising one costs
    # no more than building a tuple; ``runner.resolve_failure(error)`` (set by the registry)
    # materializes the record.

    @property
    def execution(self) -> ChainExecution:
        """The failed execution's record (materialized once, on first access).

        Raises
        ------
        LookupError
            When the runner that raised it belongs to no registry (built by hand).
        """
        cached = self.__dict__.get("_execution")
        if cached is None:
            if len(self.args) == 1:
                cached = self.args[0]
            else:
                resolve = self.args[0].resolve_failure
                if resolve is None:
                    raise LookupError(f"chain {self.args[0].chain_id} failed at step "
                                      f"{self.step!r}; its runner has no registry to build "
                                      "the record (use ChainRegistry.runner)")
                cached = resolve(self)
            self.__dict__["_execution"] = cached
        return cached

    @property
    def step(self) -> str:
        """The failing step's name."""
        if len(self.args) == 1:
            return self.args[0].failure.step
        return self.args[0].step_names[self.args[2]]

    @property
    def step_index(self) -> int:
        """The failing step's index in its chain."""
        if len(self.args) == 1:
            return self.args[0].failure.step_index
        return self.args[2]

    @property
    def chain_id(self) -> str:
        """The failed chain's id."""
        return self.args[0].chain_id

    @property
    def seq(self) -> int:
        """The execution's number on its chain's runner."""
        if len(self.args) == 1:
            return self.args[0].seq
        return self.args[1]

    def __str__(self) -> str:
        try:
            execution = self.execution
        except LookupError:
            cause = self.__cause__
            return (f"chain {self.chain_id} failed at step {self.step!r}: "
                    f"{type(cause).__qualname__}: {cause}")
        failure = execution.failure
        if failure is None:
            return f"chain {execution.chain_name!r} ({execution.chain_id}) failed"
        return (f"chain {execution.chain_name!r} ({execution.chain_id}) failed at step "
                f"{failure.step!r} ({failure.component}): {failure.exception_type}: "
                f"{failure.message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.execution,))
