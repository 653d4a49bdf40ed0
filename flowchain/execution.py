"""Execution records: what happened in one run of a chain, step by step.

Records are materialized on demand from the engine's rings: the execution ring (every
execution) and the failure ring (the latest failures, by reference). The tick path allocates
none of this, a failure's traceback and input repr included.
"""
from __future__ import annotations

import enum
import reprlib
import traceback
from dataclasses import dataclass
from typing import Any

from flowchain.context import UserContext


class ExecutionStatus(str, enum.Enum):
    """Where an execution or a step stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step of one execution.

    ``start_ns``/``end_ns`` are engine-clock nanoseconds (monotonic); ``duration_ns`` is exact.
    ``slow`` is true when the step took longer than its expected duration.
    """

    name: str
    component: str
    status: ExecutionStatus
    start_ns: int
    end_ns: int
    expected_ns: int

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def duration_ms(self) -> float:
        return self.duration_ns / 1e6

    @property
    def slow(self) -> bool:
        return self.status is not ExecutionStatus.PENDING and self.duration_ns > self.expected_ns


INPUT_REPR_LIMIT = 1000
"""Characters kept of the repr of a failing step's input."""

_input_repr = reprlib.Repr()
_input_repr.maxstring = 200
_input_repr.maxother = 200
_input_repr.maxlist = _input_repr.maxtuple = _input_repr.maxdict = 20

_STACKS_KEPT = 256
_stacks: dict[tuple, str] = {}


def describe_input(value: Any) -> str:
    """Return the bounded repr (:data:`INPUT_REPR_LIMIT` characters) of a step's input."""
    try:
        shown = _input_repr.repr(value)
    except Exception as exc:  # a broken __repr__ must not hide the real failure
        shown = f"<unrepresentable {type(value).__name__}: {exc!r}>"
    return shown[:INPUT_REPR_LIMIT]


def format_traceback(exc: BaseException) -> str:
    """Return ``exc``'s traceback as ``traceback.format_exception`` writes it.

    A step failing on every tick fails at the same places: the stack part is formatted once
    per (exception type, code locations) and reused; the message line is formatted each time.
    Chained exceptions and exceptions with notes are formatted in full.
    """
    if exc.__cause__ is not None or exc.__context__ is not None or \
            getattr(exc, "__notes__", None):
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code, tb.tb_lasti))
        tb = tb.tb_next
    key = (type(exc), tuple(frames))
    stack = _stacks.get(key)
    if stack is None:
        stack = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
        if len(_stacks) >= _STACKS_KEPT:
            _stacks.clear()
        _stacks[key] = stack
    head = "Traceback (most recent call last):\n" if exc.__traceback__ is not None else ""
    return head + stack + "".join(traceback.format_exception_only(type(exc), exc))


class StepFailure:
    """Why an execution failed: the step, its component, the exception and the input it got.

    The tick path keeps only references (the exception, the input); the message, the
    traceback and the input's bounded repr are formatted the first time they are read and
    then kept. A step input that the chain's caller mutates later (a reused context object)
    is shown as it is when first read.
    """

    __slots__ = ("step", "step_index", "component", "exception", "_input", "_message",
                 "_traceback", "_input_repr", "_exception_type")

    def __init__(self, step: str, step_index: int, component: str,
                 exception_type: str | None = None, message: str | None = None,
                 traceback: str | None = None, input_repr: str | None = None,
                 exception: BaseException | None = None, *,
                 step_input: Any = None) -> None:
        if exception is None and (exception_type is None or message is None):
            raise ValueError("a StepFailure needs the exception, or its type and message")
        self.step = step
        self.step_index = step_index
        self.component = component
        self.exception = exception
        self._input = step_input
        self._exception_type = exception_type
        self._message = message
        self._traceback = traceback
        self._input_repr = input_repr

    @property
    def exception_type(self) -> str:
        """The exception's class name (qualified)."""
        if self._exception_type is None:
            self._exception_type = type(self.exception).__qualname__
        return self._exception_type

    @property
    def message(self) -> str:
        """``str()`` of the exception."""
        if self._message is None:
            try:
                self._message = str(self.exception)
            except Exception as exc:  # a broken __str__ must not hide the failure
                self._message = f"<unprintable {self.exception_type}: {exc!r}>"
        return self._message

    @property
    def traceback(self) -> str:
        """The formatted traceback, down to the step's own frame."""
        if self._traceback is None:
            self._traceback = format_traceback(self.exception) \
                if self.exception is not None else ""
        return self._traceback

    @property
    def input_repr(self) -> str:
        """A bounded repr (:data:`INPUT_REPR_LIMIT` characters) of the failing step's input."""
        if self._input_repr is None:
            self._input_repr = describe_input(self._input)
            self._input = None
        return self._input_repr

    def detached(self) -> StepFailure:
        """Return this failure with every text formatted and no live object kept (neither the
        exception nor the input), fit to pickle or to keep for long."""
        return StepFailure(self.step, self.step_index, self.component, self.exception_type,
                           self.message, self.traceback, self.input_repr)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "step_index": self.step_index,
            "component": self.component,
            "exception_type": self.exception_type,
            "message": self.message,
            "traceback": self.traceback,
            "input": self.input_repr,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StepFailure):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"StepFailure(step={self.step!r}, step_index={self.step_index}, "
                f"component={self.component!r}, exception_type={self.exception_type!r}, "
                f"message={self.message!r})")


@dataclass(frozen=True, slots=True)
class ChainExecution:
    """One execution of a chain, as recorded: a snapshot when it is still running.

    Attributes
    ----------
    execution_id : str
        ``<chain_id>#<seq>``, unique in the registry's process.
    seq : int
        The execution's number on its chain's runner (0, 1, 2, ...).
    steps : tuple of StepResult
        The steps that started, in order (completed ones, then the running or failed one).
    eta_ns : int or None
        While running: the estimated remaining time, from the observed per-step medians,
        falling back to expected durations for steps not yet observed.
    """

    execution_id: str
    chain_id: str
    chain_name: str
    seq: int
    user_context: UserContext | None
    status: ExecutionStatus
    start_ns: int
    end_ns: int | None
    steps: tuple[StepResult, ...]
    step_names: tuple[str, ...]
    failure: StepFailure | None = None
    eta_ns: int | None = None

    def is_successful(self) -> bool:
        """True when every step succeeded."""
        return self.status is ExecutionStatus.SUCCEEDED

    def is_complete(self) -> bool:
        """True once the execution succeeded or failed."""
        return self.status in (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED)

    @property
    def total_duration(self) -> int | None:
        """Whole-chain duration in ns, None while running."""
        return None if self.end_ns is None else self.end_ns - self.start_ns

    @property
    def total_duration_ms(self) -> float | None:
        d = self.total_duration
        return None if d is None else d / 1e6

    @property
    def completed_steps(self) -> tuple[str, ...]:
        """Names of the steps that succeeded."""
        return tuple(s.name for s in self.steps if s.status is ExecutionStatus.SUCCEEDED)

    @property
    def current_step(self) -> str | None:
        """The step running now (or where it failed); None once it succeeded."""
        if self.status is ExecutionStatus.SUCCEEDED:
            return None
        index = len(self.completed_steps)
        return self.step_names[index] if index < len(self.step_names) else None

    @property
    def progress(self) -> float:
        """Completed steps as a percentage of all steps."""
        return 100.0 * len(self.completed_steps) / len(self.step_names)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready description of the execution."""
        return {
            "execution_id": self.execution_id,
            "chain_id": self.chain_id,
            "chain": self.chain_name,
            "status": self.status.value,
            "user_context": None if self.user_context is None else {
                "tenant_id": self.user_context.tenant_id,
                "user_id": self.user_context.user_id,
                "tier": self.user_context.tier,
            },
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "total_duration_ns": self.total_duration,
            "current_step": self.current_step,
            "progress": round(self.progress, 1),
            "eta_ns": self.eta_ns,
            "steps": [
                {"name": s.name, "component": s.component, "status": s.status.value,
                 "duration_ns": s.duration_ns, "expected_ns": s.expected_ns, "slow": s.slow}
                for s in self.steps
            ],
            "failure": None if self.failure is None else self.failure.to_dict(),
        }
