"""Execution records: what happened in one run of a chain, step by step.

Records are materialized on demand from the engine's ring (successes) or built on the failure
path (failures); the hot path itself allocates none of this.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional

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


@dataclass(frozen=True, slots=True)
class StepFailure:
    """Why an execution failed: the step, its component, the exception and the input it got."""

    step: str
    step_index: int
    component: str
    exception_type: str
    message: str
    traceback: str
    input_repr: str
    exception: Optional[BaseException] = field(default=None, compare=False, repr=False)

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
    user_context: Optional[UserContext]
    status: ExecutionStatus
    start_ns: int
    end_ns: Optional[int]
    steps: tuple[StepResult, ...]
    step_names: tuple[str, ...]
    failure: Optional[StepFailure] = None
    eta_ns: Optional[int] = None

    def is_successful(self) -> bool:
        """True when every step succeeded."""
        return self.status is ExecutionStatus.SUCCEEDED

    def is_complete(self) -> bool:
        """True once the execution succeeded or failed."""
        return self.status in (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED)

    @property
    def total_duration(self) -> Optional[int]:
        """Whole-chain duration in ns, None while running."""
        return None if self.end_ns is None else self.end_ns - self.start_ns

    @property
    def total_duration_ms(self) -> Optional[float]:
        d = self.total_duration
        return None if d is None else d / 1e6

    @property
    def completed_steps(self) -> tuple[str, ...]:
        """Names of the steps that succeeded."""
        return tuple(s.name for s in self.steps if s.status is ExecutionStatus.SUCCEEDED)

    @property
    def current_step(self) -> Optional[str]:
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
