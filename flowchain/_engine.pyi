"""Type stubs of the native engine (native/engine.pyx); private: use the flowchain package."""
from typing import Any, Awaitable, Callable, Optional

import numpy as np
import numpy.typing as npt

STATUS_PENDING: int
STATUS_RUNNING: int
STATUS_SUCCEEDED: int
STATUS_FAILED: int
STATUS_NAMES: dict[int, str]
LAYOUT_KEYS: tuple[str, ...]

def now_ns() -> int: ...
def os_now_ns() -> int: ...
def calibrate_clock(window_ns: int = ..., allow_counter: bool = ...) -> dict[str, Any]: ...
def clock_info() -> dict[str, Any]: ...

class HdrCounts:
    n: int
    counts: npt.NDArray[np.int64]
    stats: npt.NDArray[np.int64]
    def __init__(self, n: int, layout: dict[str, int]) -> None: ...
    def record(self, h: int, value: int) -> None: ...
    def index_of(self, value: int) -> int: ...
    def snapshot(self, h: int) -> tuple[npt.NDArray[np.int64], tuple[int, int, int, int]]: ...
    def snapshot_all(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
    def value_at_percentile(self, h: int, percentile: float) -> int: ...
    def total(self, h: int) -> int: ...
    def reset(self) -> None: ...

class ExecutionRing:
    capacity: int
    n_steps: int
    seq: npt.NDArray[np.int64]
    start_ns: npt.NDArray[np.int64]
    end_ns: npt.NDArray[np.int64]
    status: npt.NDArray[np.int8]
    step: npt.NDArray[np.int16]
    context: npt.NDArray[np.int32]
    step_ns: npt.NDArray[np.int64]
    def __init__(self, capacity: int, n_steps: int) -> None: ...
    def read(self, seq: int) -> Optional[tuple[int, int, int, int, int, int, tuple[int, ...]]]: ...
    def running(self) -> list[int]: ...

class FailureRing:
    capacity: int
    n_steps: int
    written: int
    def __init__(self, capacity: int, n_steps: int) -> None: ...
    def read(self, number: int) -> Optional[tuple[int, int, int, int, int, npt.NDArray[np.int64],
                                                  BaseException, Any, Any]]: ...
    def oldest(self) -> int: ...
    def clear(self) -> None: ...

class RunnerSnapshot:
    executions: int
    failures: int
    step_errors: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    stats: npt.NDArray[np.int64]
    failure_counts: npt.NDArray[np.int64]
    failure_stats: npt.NDArray[np.int64]

class ChainRunner:
    chain_id: str
    step_names: tuple[str, ...]
    steps: tuple[Callable[[Any], Any], ...]
    step_is_async: tuple[bool, ...]
    has_async: bool
    n_steps: int
    ring: ExecutionRing
    failed: FailureRing
    histograms: HdrCounts
    failure_histograms: HdrCounts
    step_errors: npt.NDArray[np.int64]
    executions: int
    failures: int
    contexts_kept: int
    contexts: tuple[Any, ...]
    on_failure: Optional[Callable[..., BaseException]]
    resolve_failure: Optional[Callable[[BaseException], Any]]
    busy: bool
    sample_probe: Any
    def __init__(self, chain_id: str, step_names: tuple[str, ...],
                 steps: tuple[Callable[[Any], Any], ...], step_is_async: tuple[bool, ...],
                 capacity: int, hdr_layout: dict[str, int],
                 on_failure: Optional[Callable[..., BaseException]],
                 failures_kept: int = ..., contexts_kept: int = ...) -> None: ...
    def context_of(self, index: int, seq: int) -> Any: ...
    def snapshot(self) -> RunnerSnapshot: ...
    def run(self, data: Any, context: Any = None) -> Any: ...
    def sample(self, probe: Any, every: int) -> None: ...
    def run_async(self, data: Any, context: Any = None) -> Awaitable[Any]: ...

ADMIT_CONCURRENT: int
ADMIT_RATE: int
ADMIT_DAILY: int

class TenantGate:
    interval_ns: int
    tolerance_ns: int
    tat: int
    max_depth_ns: int
    max_running: int
    running: int
    peak_running: int
    day_limit: int
    day_used: int
    day_reserved: int
    period_end_ns: int
    admitted: int
    refused_concurrent: int
    refused_rate: int
    refused_daily: int
    on_refuse: Optional[Callable[[TenantGate, int, int], BaseException]]
    on_period: Optional[Callable[[TenantGate, int], None]]
    on_reserve: Optional[Callable[[TenantGate], None]]
    def __init__(self) -> None: ...
    def try_admit(self) -> int: ...
    def release(self) -> None: ...

class UserMeter:
    block: npt.NDArray[np.int64]
    column: int
    def __init__(self, block: npt.NDArray[np.int64], column: int,
                 layout: dict[str, int]) -> None: ...
    def record(self, value: int) -> None: ...
    def snapshot(self, h: int = ...) -> tuple[npt.NDArray[np.int64], tuple[int, int, int, int]]: ...

class AdmittedCall:
    gate: TenantGate
    call: Callable[[Any, Any], Any]
    call_async: Callable[[Any, Any], Awaitable[Any]]
    context: Any
    meter: UserMeter
    executions: int
    failures: int
    def __init__(self, gate: TenantGate, call: Callable[[Any, Any], Any],
                 call_async: Callable[[Any, Any], Awaitable[Any]], context: Any,
                 hdr_layout: dict[str, int], meter_block: npt.NDArray[np.int64],
                 meter_column: int) -> None: ...
    def run(self, data: Any) -> Any: ...
    def run_async(self, data: Any) -> Awaitable[Any]: ...
