"""The readings a sampled execution takes around each of its steps.

The runner's measuring path (``ChainRunner.run_measured``) calls ``before()`` just ahead of a
step and ``after(i, wall_ns)`` just behind it; :class:`StepReadings` keeps, per step, the thread's
CPU clock before and after, the bytes the step allocated (the engine's per-thread allocation
window) and its wall time, as a flat list of raw values turned into figures off the sampled
path. The optimizer's profiler and the tenants' resource probe both measure with it.
"""
from __future__ import annotations

import time

from flowchain._native import engine

_thread_time_ns = time.thread_time_ns
_window_start = engine.alloc_window_start
_window_bytes = engine.alloc_window_bytes

STEP_READINGS = 4
"""Raw readings per step: CPU ns before, bytes allocated, CPU ns after, wall ns."""


def _clock_floor_ns() -> int:
    """The least CPU time two back-to-back readings show (subtracted from every step's)."""
    least = None
    for _ in range(64):
        a = _thread_time_ns()
        d = _thread_time_ns() - a
        least = d if least is None else min(least, d)
    return int(least or 0)


CPU_FLOOR_NS = _clock_floor_ns()
"""The cost of reading the thread's CPU clock, measured at import."""


def sample_every(rate: float, what: str = "the sampling rate") -> int:
    """Return N for "1 execution in N" (0: off) for a sampling ``rate`` in [0, 1].

    Raises
    ------
    ValueError
        When ``rate`` is not a number from 0 to 1 (``what`` names it in the message).
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1 \
            or rate != rate:
        raise ValueError(f"{what} must be a number from 0 (off) to 1 (every execution; 0.01: "
                         f"one in 100), got {rate!r}")
    return 0 if rate == 0 else max(1, round(1 / rate))


class StepReadings:
    """One sampled execution's raw readings (one object per execution: threads never share it)."""

    __slots__ = ("raw",)

    def __init__(self) -> None:
        self.raw: list = []

    def before(self) -> None:
        self.raw.append(_thread_time_ns())
        try:
            _window_start()  # last: the step's window holds none of the measurer's allocations
        except BaseException:
            del self.raw[-1]
            raise

    def after(self, i: int, wall_ns: int) -> None:
        nbytes = _window_bytes()
        cpu1 = _thread_time_ns()
        self.raw.append(nbytes)
        self.raw.append(cpu1)
        self.raw.append(wall_ns)

    def close_failed_step(self) -> None:
        """Close the window of a step that raised (its ``after()`` never came) and drop its
        unfinished readings; a no-op when every step finished."""
        if len(self.raw) % STEP_READINGS:
            _window_bytes()
            del self.raw[-1]
