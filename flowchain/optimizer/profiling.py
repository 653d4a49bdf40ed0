"""Per-step profiles of sampled executions, measured on the cold path.

With a rate set (``ChainRegistry(profile_rate=R)`` or ``registry.set_profiling(R)``), 1
execution in ``round(1 / R)`` of each chain's ``runner.run`` takes the engine's measuring path
(``ChainRunner.run_measured``; same ring, histograms and failure path as any execution) with a
:class:`ChainProfiler` reading, per step:

* ``wall_ns``: the step's wall time (engine clock, the profiler's own work excluded);
* ``cpu_ns``: the thread's CPU time (``time.thread_time_ns``) during the step;
* ``alloc_bytes``: tracemalloc's peak during the step above the traced size at its start.
  tracemalloc is started by the first sampled execution and then **kept running** for the
  rest of the process: stopping it while other threads run extensions that report their
  allocations without holding the GIL (numpy under numba's ``nogil`` code, as the node's
  agents do) crashed the interpreter here (CPython 3.11: a segfault in the monitor thread a
  few seconds after a stop), so it is never stopped by FlowChain once profiling began. While it
  runs every allocation of the process is traced, which is the main cost of profiling (see
  ``flowchain bench profile``). It is process-wide, so on a busy node other threads'
  allocations during the step count too (an upper bound);
* ``input_hash`` and ``items``: the stable hash of the step's input
  (:mod:`flowchain.optimizer.input_hash`, computed before the step's clocks start) and its
  length when it is a sequence.

Rate 0 (the default) samples nothing: ``run`` pays one integer test. Coroutine chains
(``run_async``) are not profiled. Profiles are kept in memory (the newest ``profiles_kept``
per chain version) until the history writer or ``registry.take_profiles()`` takes them.
"""
from __future__ import annotations

import collections
import threading
import time
import tracemalloc
from typing import Any, Optional

import numpy as np

from flowchain.optimizer.input_hash import input_hash
from flowchain.optimizer.profile_store import StepProfile

_thread_time_ns = time.thread_time_ns
_time_ns = time.time_ns
_traced = tracemalloc.get_traced_memory
_reset_peak = tracemalloc.reset_peak


_holding_tracemalloc = False
_hold_lock = threading.Lock()


def _hold_tracemalloc() -> None:
    """Start tracemalloc for the rest of the process (see the module's note on stopping it).

    Taken through the tenants' resource sampling's tracemalloc users (process-wide, shared),
    and never given back, so that neither ever stops it.
    """
    global _holding_tracemalloc
    from flowchain.tenancy.resources import _tracing

    with _hold_lock:
        if not _holding_tracemalloc:
            _tracing.acquire()
            _holding_tracemalloc = True


def release_tracemalloc() -> bool:
    """Give back the hold profiling took on tracemalloc (stopping it when nobody else uses
    it); return whether there was one.

    Only safe when no other thread of the process is running: a test's teardown, or a
    program's end. The next sampled execution starts it again.
    """
    global _holding_tracemalloc
    from flowchain.tenancy.resources import _tracing

    with _hold_lock:
        if not _holding_tracemalloc:
            return False
        _holding_tracemalloc = False
        _tracing.release()
        return True


def sample_every(rate: float) -> int:
    """Return N for "1 execution in N" (0: off) for a sampling ``rate`` in [0, 1].

    Raises
    ------
    ValueError
        When ``rate`` is not a number from 0 to 1.
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1 \
            or rate != rate:
        raise ValueError(f"the profiling rate must be a number from 0 (off) to 1 (every "
                         f"execution), got {rate!r}")
    return 0 if rate == 0 else max(1, round(1 / rate))


def _items(data: Any) -> Optional[int]:
    if isinstance(data, (list, tuple)) or (isinstance(data, np.ndarray) and data.ndim >= 1):
        return len(data)
    return None


class _Sample:
    """One sampled execution's readings (one object per execution: threads never share it)."""

    __slots__ = ("profiler", "seq", "epoch_ns", "inputs", "raw")
    wants_input = True

    def __init__(self, profiler: "ChainProfiler", seq: int) -> None:
        self.profiler = profiler
        self.seq = seq
        self.epoch_ns = _time_ns()
        self.inputs: list = []
        self.raw: list = []

    def input(self, i: int, data: Any) -> None:
        self.inputs.append(input_hash(data))
        self.inputs.append(_items(data))

    def before(self) -> None:
        _reset_peak()
        self.raw.append(_traced()[0])
        self.raw.append(_thread_time_ns())

    def after(self, i: int, wall_ns: int) -> None:
        cpu1 = _thread_time_ns()
        self.raw.append(_traced()[1])
        self.raw.append(cpu1)
        self.raw.append(wall_ns)

    def end(self, ok: bool) -> None:
        # the readings are kept raw: the profiles are built when taken, off the sampled path
        self.profiler.add(self)


class ChainProfiler:
    """The profiler of one chain version: the probe its runner's sampled executions use."""

    def __init__(self, chain: str, chain_id: str, step_names: tuple[str, ...],
                 keep: int = 10_000) -> None:
        self.chain = chain
        self.chain_id = chain_id
        self.step_names = tuple(step_names)
        from flowchain.tenancy.resources import CPU_FLOOR_NS

        self.cpu_floor_ns = CPU_FLOOR_NS
        self.runner: Any = None
        self.sampled = 0
        self.dropped = 0
        self._samples: collections.deque[_Sample] = collections.deque()
        self._held_steps = 0
        self._keep = keep
        self._lock = threading.Lock()

    def begin(self) -> _Sample:
        """Start measuring an execution (called by the runner before its first step)."""
        if not _holding_tracemalloc:
            _hold_tracemalloc()
        seq = self.runner.executions if self.runner is not None else -1
        return _Sample(self, seq)

    def add(self, sample: _Sample) -> None:
        """Keep a sampled execution's readings (the newest ``keep`` steps' worth)."""
        with self._lock:
            self.sampled += 1
            held = self._samples
            held.append(sample)
            self._held_steps += len(sample.raw) // 5
            while self._held_steps > self._keep and len(held) > 1:
                dropped = held.popleft()
                self._held_steps -= len(dropped.raw) // 5
                self.dropped += len(dropped.raw) // 5

    def _profiles_of(self, sample: _Sample) -> list[StepProfile]:
        raw, inputs, floor = sample.raw, sample.inputs, self.cpu_floor_ns
        start = sample.epoch_ns
        out = []
        for i in range(len(raw) // 5):
            mem0, cpu0, peak, cpu1, wall = raw[5 * i:5 * i + 5]
            cpu = cpu1 - cpu0 - floor
            out.append(StepProfile(self.chain, self.chain_id, sample.seq, self.step_names[i], i,
                                   start, wall, cpu if cpu > 0 else 0,
                                   peak - mem0 if peak > mem0 else 0,
                                   inputs[2 * i], inputs[2 * i + 1]))
            start += wall
        return out

    def take(self) -> list[StepProfile]:
        """Return and forget the profiles held (each step of each sampled execution)."""
        with self._lock:
            samples = list(self._samples)
            self._samples.clear()
            self._held_steps = 0
        return [p for sample in samples for p in self._profiles_of(sample)]

    def peek(self) -> list[StepProfile]:
        """Return the profiles held, keeping them."""
        with self._lock:
            samples = list(self._samples)
        return [p for sample in samples for p in self._profiles_of(sample)]
