"""Type stubs of the native engine (native/engine.pyx); private: use the flowchain package."""
from collections.abc import Awaitable, Callable
from typing import Any, final

import numpy as np
import numpy.typing as npt
from typing_extensions import Self

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
def install_alloc_counter() -> None: ...
def alloc_counter_installed() -> bool: ...
def alloc_window_start() -> None: ...
def alloc_window_bytes() -> int: ...
def alloc_window_depth() -> int: ...

@final
class HdrCounts:
    n: int
    counts: npt.NDArray[np.int64]
    stats: npt.NDArray[np.int64]
    def __new__(cls, n: int, layout: dict[str, int]) -> Self: ...
    def record(self, h: int, value: int) -> None: ...
    def index_of(self, value: int) -> int: ...
    def snapshot(self, h: int) -> tuple[npt.NDArray[np.int64], tuple[int, int, int, int]]: ...
    def snapshot_all(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...
    def value_at_percentile(self, h: int, percentile: float) -> int: ...
    def total(self, h: int) -> int: ...
    def reset(self) -> None: ...

@final
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
    def __new__(cls, capacity: int, n_steps: int) -> Self: ...
    def read(self, seq: int) -> tuple[int, int, int, int, int, int, tuple[int, ...]] | None: ...
    def running(self) -> list[int]: ...

@final
class FailureRing:
    capacity: int
    n_steps: int
    written: int
    def __new__(cls, capacity: int, n_steps: int) -> Self: ...
    def read(
        self, number: int
    ) -> tuple[int, int, int, int, int, npt.NDArray[np.int64], BaseException, Any, Any] | None: ...
    def oldest(self) -> int: ...
    def clear(self) -> None: ...

@final
class RunnerSnapshot:
    executions: int
    failures: int
    step_errors: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    stats: npt.NDArray[np.int64]
    failure_counts: npt.NDArray[np.int64]
    failure_stats: npt.NDArray[np.int64]

@final
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
    on_failure: Callable[..., BaseException] | None
    resolve_failure: Callable[[BaseException], Any] | None
    busy: bool
    sample_probe: Any
    def __new__(cls, chain_id: str, step_names: tuple[str, ...],
                 steps: tuple[Callable[[Any], Any], ...], step_is_async: tuple[bool, ...],
                 capacity: int, hdr_layout: dict[str, int],
                 on_failure: Callable[..., BaseException] | None,
                 failures_kept: int = ..., contexts_kept: int = ...) -> Self: ...
    def context_of(self, index: int, seq: int) -> Any: ...
    def snapshot(self) -> RunnerSnapshot: ...
    def run(self, data: Any, context: Any = None) -> Any: ...
    def run_measured(self, data: Any, context: Any, probe: Any) -> Any: ...
    def sample(self, probe: Any, every: int) -> None: ...
    async def run_async(self, data: Any, context: Any = None) -> Any: ...

ADMIT_CONCURRENT: int
ADMIT_RATE: int
ADMIT_DAILY: int

@final
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
    on_refuse: Callable[[TenantGate, int, int], BaseException] | None
    on_period: Callable[[TenantGate, int], None] | None
    on_reserve: Callable[[TenantGate], None] | None
    def __new__(cls) -> Self: ...
    def try_admit(self) -> int: ...
    def release(self) -> None: ...

@final
class UserMeter:
    block: npt.NDArray[np.int64]
    column: int
    def __new__(cls, block: npt.NDArray[np.int64], column: int,
                 layout: dict[str, int]) -> Self: ...
    def record(self, value: int) -> None: ...
    def snapshot(self, h: int = ...) -> tuple[npt.NDArray[np.int64], tuple[int, int, int, int]]: ...

@final
class AdmittedCall:
    gate: TenantGate
    call: Callable[[Any, Any], Any]
    call_async: Callable[[Any, Any], Awaitable[Any]]
    context: Any
    meter: UserMeter
    executions: int
    failures: int
    def __new__(cls, gate: TenantGate, call: Callable[[Any, Any], Any],
                 call_async: Callable[[Any, Any], Awaitable[Any]], context: Any,
                 hdr_layout: dict[str, int], meter_block: npt.NDArray[np.int64],
                 meter_column: int) -> Self: ...
    def run(self, data: Any) -> Any: ...
    call_measured: Callable[[Any, Any], Any] | None
    sample_every: int
    sampled: int
    def sample(self, call_measured: Callable[[Any, Any], Any] | None, every: int) -> None: ...
    async def run_async(self, data: Any) -> Any: ...
