"""Per-step profiles of sampled executions, measured on the cold path.

With a rate set (``ChainRegistry(profile_rate=R)`` or ``registry.set_profiling(R)``), 1
execution in ``round(1 / R)`` of each chain's ``runner.run`` takes the engine's measuring path
(``ChainRunner.run_measured``; same ring, histograms and failure path as any execution) with a
:class:`ChainProfiler` reading, per step:

* ``wall_ns``: the step's wall time (engine clock, the profiler's own work excluded);
* ``cpu_ns``: the thread's CPU time (``time.thread_time_ns``) during the step;
* ``alloc_bytes``: the bytes the step's thread requested from CPython's object and memory
  allocators while the step ran (the engine's per-thread allocation counter, native/alloc.h:
  malloc and calloc sizes, realloc's whole new size, frees not subtracted; a volume, not a
  peak). Other threads' allocations are not counted; numpy's array data is (a counting numpy
  memory handler while the window is open), like its array objects. The counter is installed
  by the first profiler and never removed; an execution that is not sampled pays one thread-local
  test per allocation;
* ``input_hash`` and ``items``: the stable hash of the step's input
  (:mod:`flowchain.optimizer.input_hash`, computed before the step's clocks start) and its
  length when it is a sequence.

With ``record_inputs`` (``registry.set_profiling(rate, record_inputs=True)``, the node's
``[history] record_inputs``), a sampled execution also encodes the chain's own input (the first
step's, :func:`~flowchain.optimizer.input_recording.capture_input`) before the first step runs,
so a step that changes its input in place does not change what is kept; a successful one keeps
it as a :class:`SampledInput` (the reason instead when it has no round-trip form) until the
history writer stores it in ``recorded_inputs`` with status ``'sampled'`` (a failed one's input
is recorded by the failure path). At most ``inputs_kept`` wait per chain version between takes;
beyond that an input is not encoded and is counted in ``inputs_dropped``.

Rate 0 (the default) samples nothing: ``run`` pays one integer test. Coroutine chains
(``run_async``) are not profiled. Profiles are kept in memory (the newest ``profiles_kept``
per chain version) until the history writer or ``registry.take_profiles()`` takes them.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, NamedTuple

import numpy as np

from flowchain._native import engine
from flowchain.optimizer.input_hash import input_hash
from flowchain.optimizer.input_recording import capture_input
from flowchain.optimizer.profile_store import StepProfile
from flowchain.step_readings import CPU_FLOOR_NS, STEP_READINGS, StepReadings
from flowchain.step_readings import sample_every as _sample_every

_time_ns = time.time_ns


def sample_every(rate: float) -> int:
    """Return N for "1 execution in N" (0: off) for the profiling rate (see
    :func:`flowchain.step_readings.sample_every`)."""
    return _sample_every(rate, "the profiling rate")


def _items(data: Any) -> int | None:
    if isinstance(data, (list, tuple)) or (isinstance(data, np.ndarray) and data.ndim >= 1):
        return len(data)
    return None


class SampledInput(NamedTuple):
    """The chain input of one successful sampled execution, encoded before it ran."""

    seq: int
    start_epoch_ns: int
    encoded: tuple[str, bytes] | None
    """``(encoding, payload)``; None when it has no round-trip form (``reason`` says why)."""
    reason: str | None


class _Sample(StepReadings):
    """One sampled execution's readings (:class:`~flowchain.step_readings.StepReadings`) with
    its steps' input hashes and item counts, and its captured input when recorded."""

    __slots__ = ("profiler", "seq", "epoch_ns", "inputs", "captured")
    wants_input = True

    def __init__(self, profiler: ChainProfiler, seq: int) -> None:
        super().__init__()
        self.profiler = profiler
        self.seq = seq
        self.epoch_ns = _time_ns()
        self.inputs: list = []
        self.captured: tuple | None = None

    def input(self, i: int, data: Any) -> None:
        if i == 0 and self.profiler.record_inputs:
            self.captured = self.profiler.capture(data)
        self.inputs.append(input_hash(data))
        self.inputs.append(_items(data))

    def end(self, ok: bool) -> None:
        self.close_failed_step()
        # the readings are kept raw: the profiles are built when taken, off the sampled path
        self.profiler.add(self)
        if self.captured is not None and ok:
            self.profiler.add_input(SampledInput(self.seq, self.epoch_ns, *self.captured))


class ChainProfiler:
    """The profiler of one chain version: the probe its runner's sampled executions use."""

    def __init__(self, chain: str, chain_id: str, step_names: tuple[str, ...],
                 keep: int = 10_000, *, record_inputs: bool = False,
                 inputs_kept: int = 1000) -> None:
        self.chain = chain
        self.chain_id = chain_id
        self.step_names = tuple(step_names)
        self.cpu_floor_ns = CPU_FLOOR_NS
        self.runner: Any = None
        self.sampled = 0
        self.dropped = 0
        self._samples: collections.deque[_Sample] = collections.deque()
        self._held_steps = 0
        self._keep = keep
        self.record_inputs = record_inputs
        """Encode and keep the chain input of each sampled execution (see the module)."""
        self.inputs_kept = inputs_kept
        self.inputs_dropped = 0
        self._inputs: list[SampledInput] = []
        self._lock = threading.Lock()
        engine.install_alloc_counter()

    def capture(self, data: Any) -> tuple | None:
        """Encode a sampled execution's chain input (None when ``inputs_kept`` are waiting)."""
        if len(self._inputs) >= self.inputs_kept:
            with self._lock:
                self.inputs_dropped += 1
            return None
        try:
            return capture_input(data)
        except Exception as exc:  # recording never fails the execution it samples
            return None, f"encoding failed: {type(exc).__qualname__}: {exc}"

    def add_input(self, sampled: SampledInput) -> None:
        """Keep a successful sampled execution's input until :meth:`take_inputs`."""
        with self._lock:
            if len(self._inputs) >= self.inputs_kept:
                self.inputs_dropped += 1
            else:
                self._inputs.append(sampled)

    def take_inputs(self) -> list[SampledInput]:
        """Return and forget the sampled executions' inputs held, oldest first."""
        with self._lock:
            taken, self._inputs = self._inputs, []
        return taken

    def begin(self) -> _Sample:
        """Start measuring an execution (called by the runner before its first step)."""
        seq = self.runner.executions if self.runner is not None else -1
        return _Sample(self, seq)

    def add(self, sample: _Sample) -> None:
        """Keep a sampled execution's readings (the newest ``keep`` steps' worth)."""
        with self._lock:
            self.sampled += 1
            held = self._samples
            held.append(sample)
            self._held_steps += len(sample.raw) // STEP_READINGS
            while self._held_steps > self._keep and len(held) > 1:
                dropped = held.popleft()
                self._held_steps -= len(dropped.raw) // STEP_READINGS
                self.dropped += len(dropped.raw) // STEP_READINGS

    def _profiles_of(self, sample: _Sample) -> list[StepProfile]:
        raw, inputs, floor = sample.raw, sample.inputs, self.cpu_floor_ns
        start = sample.epoch_ns
        out = []
        for i in range(len(raw) // STEP_READINGS):
            cpu0, nbytes, cpu1, wall = raw[4 * i:4 * i + 4]
            cpu = cpu1 - cpu0 - floor
            out.append(StepProfile(self.chain, self.chain_id, sample.seq, self.step_names[i], i,
                                   start, wall, cpu if cpu > 0 else 0,
                                   nbytes,
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
