"""The worker processes of a ``parallel: N`` step, and what dispatching to them costs.

**Processes, not threads.** A pure-Python CPU-bound component holds the GIL while it runs, so N
threads run its chunks one at a time; N processes run them at once, which is what makes such a
step faster on a multi-core machine. The price is that the component and every chunk (and its
output) are pickled across a pipe: :func:`measure_dispatch_cost` measures that price in this
process, and the optimizer weighs it against the step's per-item work before suggesting N.

Workers are started with the ``spawn`` method (a fresh interpreter: safe in a process with
threads, unlike ``fork``), receive the component once (pickled, at start) and keep it for the
pool's life; chunks travel alone. So the component must be picklable and importable by its
module path in a fresh interpreter: a function or class defined at a module's top level,
instances whose state pickles. :class:`ComponentPool` checks this when the runner is built and
refuses with the reason otherwise (:class:`ComponentNotPicklable`). The pool lives as long as
the runner's registry (``ChainRegistry.close()`` shuts it down; the interpreter's exit does too).

**What the workers got.** Each chunk is timed in its worker (the process's CPU time and the wall
time around the component's call), and the pool sums them (:meth:`ComponentPool.usage`): on a
machine whose cores other processes hold, the workers' chunks run but are not on a CPU for
much of their wall time, and :class:`WorkerUsage` says how many cores' worth they really had.
That is the check ``flowchain optimize --verify`` reports beside a parallel step's speedup.
"""
from __future__ import annotations

import importlib.machinery
import inspect
import multiprocessing
import os
import pickle
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowchain.errors import FlowChainError

POOL_START_METHOD = "spawn"
"""How worker processes start: a fresh interpreter each."""

_worker_call: Callable[[Any], Any] | None = None
_worker_error: str | None = None


def _module_locations(call: Any) -> tuple[tuple[str, str], ...]:
    """Where the component's top-level module was found, when ``sys.path`` would not find it
    (a module imported by ``--import`` or ``[components] import``: see
    :mod:`flowchain.component_modules`), so that a worker can find the same file."""
    name = getattr(call, "__module__", None)
    if not isinstance(name, str) or name == "__main__":
        return ()
    top = name.split(".")[0]
    module = sys.modules.get(top)
    origin = getattr(getattr(module, "__spec__", None), "origin", None)
    if not origin or not os.path.exists(origin):
        return ()
    found = importlib.machinery.PathFinder.find_spec(top)
    if found is not None and found.origin == origin:
        return ()  # a fresh interpreter finds it on sys.path
    folder = Path(origin).parent
    if getattr(module, "__path__", None) is not None:  # a package: its __init__.py's folder
        folder = folder.parent
    return ((str(folder), top),)


def _install(payload: bytes, locations: tuple[tuple[str, str], ...]) -> None:
    """Worker initializer: unpickle the component once, for every chunk to come.

    A failure is kept (and reported by :func:`_ready` to the pool's owner) rather than raised:
    a raising initializer only breaks the pool, without saying why.
    """
    global _worker_call, _worker_error
    try:
        from flowchain.component_modules import NamedModuleFinder

        for folder, top in locations:
            sys.meta_path.insert(0, NamedModuleFinder([folder], [top]))
        _worker_call = pickle.loads(payload)
    except BaseException as exc:  # noqa: BLE001  (reported to the parent by _ready)
        _worker_error = f"{type(exc).__name__}: {exc}"


def _run_chunk(chunk: Any) -> tuple[Any, int, int]:
    """The component's output for ``chunk``, with the CPU and wall nanoseconds it took here."""
    if _worker_call is None:
        raise RuntimeError(f"the worker could not load the component: {_worker_error}")
    cpu = time.process_time_ns()
    wall = time.perf_counter_ns()
    out = _worker_call(chunk)
    return out, time.process_time_ns() - cpu, time.perf_counter_ns() - wall


def _ready() -> str | None:
    return _worker_error


def _identity_items(chunk: Any) -> Any:
    return chunk


def parallel_problem(impl: Any) -> str | None:
    """Why a registered implementation cannot run in worker processes, or None.

    Checked at registration (the instance of a class is made later, when the runner is built,
    and checked again then): a coroutine cannot be awaited there, and the function or class
    must pickle by reference.
    """
    # the __call__ methods themselves (not callable()): is one of them a coroutine function?
    call = getattr(impl, "__call__", None) if inspect.isclass(impl) else impl  # noqa: B004
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
            getattr(call, "__call__", None)):  # noqa: B004
        return "it is a coroutine (async def); use 'async: {concurrency: N}' instead"
    try:
        pickle.dumps(impl)
    except Exception as exc:  # pickling raises PicklingError, TypeError, AttributeError...
        return (f"it cannot be sent to one ({type(exc).__name__}: {exc}); define it at the top "
                "level of an importable module (not a lambda or a nested function)")
    return None


@dataclass(frozen=True, slots=True)
class WorkerUsage:
    """The CPU a pool's workers had while running chunks, summed over the calls so far.

    ``cpu_ns`` is the workers' CPU time inside the component, ``wall_ns`` the wall time of the
    same chunks; ``chunks / calls`` is how many chunks ran at once on average (one per worker
    when every input had at least ``workers`` items); ``items`` the items of those chunks;
    ``span_ns`` the wall time of each call's slowest chunk, summed (a call waits for it).
    """

    workers: int
    calls: int
    chunks: int
    items: int
    cpu_ns: int
    wall_ns: int
    span_ns: int

    @property
    def cpu_share(self) -> float:
        """The fraction of its wall time a chunk was on a CPU (1.0: never waited for one)."""
        return self.cpu_ns / self.wall_ns if self.wall_ns > 0 else 0.0

    @property
    def cores_worth(self) -> float:
        """Cores' worth of CPU the chunks of one call had at once (``workers`` at most)."""
        if self.calls == 0:
            return 0.0
        return min(float(self.workers), self.cpu_share * self.chunks / self.calls)

    def since(self, earlier: WorkerUsage) -> WorkerUsage:
        """The usage of the calls made after ``earlier`` was read (same pool)."""
        return WorkerUsage(self.workers, self.calls - earlier.calls,
                           self.chunks - earlier.chunks, self.items - earlier.items,
                           self.cpu_ns - earlier.cpu_ns, self.wall_ns - earlier.wall_ns,
                           self.span_ns - earlier.span_ns)

    def item_wall_ns(self) -> float:
        """Mean wall time of one item in a worker (0.0 before the first call)."""
        return self.wall_ns / self.items if self.items else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"workers": self.workers, "calls": self.calls, "chunks": self.chunks,
                "items": self.items,
                "cpu_share": round(self.cpu_share, 3), "cores_worth": round(self.cores_worth, 2)}


class ComponentNotPicklable(FlowChainError, TypeError):
    """A ``parallel`` step's component cannot be sent to a worker process."""


class PoolBroken(FlowChainError, RuntimeError):
    """A worker process of a ``parallel`` step died or could not start its component."""


class ComponentPool:
    """``workers`` spawned processes, each holding one copy of a component.

    Parameters
    ----------
    call : callable
        The component (function, or instance of a class), pickled once.
    workers : int
        Processes to start (all of them now, so the first execution pays no start-up).
    what : str
        The step, for error messages.

    Raises
    ------
    ComponentNotPicklable
        When the component cannot be pickled, or a worker cannot unpickle it.
    """

    def __init__(self, call: Callable[[Any], Any], workers: int, what: str) -> None:
        self.what = what
        self.workers = workers
        self._usage_lock = threading.Lock()
        self._calls = self._chunks = self._items = self._cpu_ns = self._wall_ns = 0
        self._span_ns = 0
        try:
            payload = pickle.dumps(call)
        except Exception as exc:  # pickling raises PicklingError, TypeError, AttributeError...
            raise ComponentNotPicklable(
                f"{what} runs its component in {workers} worker processes (parallel: "
                f"{workers}), but the component cannot be sent to one: {type(exc).__name__}: "
                f"{exc}. Define it at the top level of an importable module (not a lambda, a "
                "nested function or a class instance holding locks, sockets or open files), "
                "or remove 'parallel'") from None
        self._executor = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context(POOL_START_METHOD),
            initializer=_install, initargs=(payload, _module_locations(call)))
        try:
            errors = [f.result() for f in [self._executor.submit(_ready)
                                           for _ in range(workers)]]
        except BrokenProcessPool as exc:
            errors = [str(exc)]
        problem = next((e for e in errors if e is not None), None)
        if problem is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            raise ComponentNotPicklable(
                f"{what}: the worker processes of 'parallel: {workers}' could not load the "
                f"component ({problem}); a fresh interpreter must be able to import it by its "
                "module path (define it at the top level of an importable module)")

    def submit(self, chunk: Any) -> Future:
        """Start ``component(chunk)`` in a worker; return its future, whose result is the
        output with the chunk's CPU and wall nanoseconds (:meth:`map` unpacks and counts them).

        Raises
        ------
        PoolBroken
            When the pool was shut down or a worker died.
        """
        try:
            return self._executor.submit(_run_chunk, chunk)
        except (BrokenProcessPool, RuntimeError) as exc:
            raise PoolBroken(f"{self.what}: the worker pool cannot take work ({exc})") from None

    def map(self, chunks: Sequence[Any],
            on_error: Callable[[BaseException, int], None] | None = None) -> list[Any]:
        """Run every chunk at once and return the outputs in order.

        The first chunk (in order) that raised fails the call with its exception, after
        ``on_error(exc, index)`` (to add a note); the other chunks are cancelled or discarded.
        A call whose chunks all returned counts in :meth:`usage`.

        Raises
        ------
        PoolBroken
            When the pool was shut down or a worker died.
        """
        futures = [self.submit(chunk) for chunk in chunks]
        outputs = []
        cpu_ns = wall_ns = span_ns = 0
        try:
            for k, future in enumerate(futures):
                try:
                    out, cpu, wall = future.result()
                except BrokenProcessPool as exc:
                    raise PoolBroken(f"{self.what}: a worker process died ({exc})") from None
                except Exception as exc:
                    if on_error is not None:
                        on_error(exc, k)
                    raise
                outputs.append(out)
                cpu_ns += cpu
                wall_ns += wall
                span_ns = max(span_ns, wall)
        finally:
            for future in futures:
                future.cancel()
        with self._usage_lock:
            self._calls += 1
            self._chunks += len(futures)
            self._items += sum(len(chunk) if hasattr(chunk, "__len__") else 1
                               for chunk in chunks)
            self._cpu_ns += cpu_ns
            self._wall_ns += wall_ns
            self._span_ns += span_ns
        return outputs

    def usage(self) -> WorkerUsage:
        """The CPU the workers had in the calls so far (see :class:`WorkerUsage`)."""
        with self._usage_lock:
            return WorkerUsage(self.workers, self._calls, self._chunks, self._items,
                               self._cpu_ns, self._wall_ns, self._span_ns)

    def close(self) -> None:
        """Stop the workers (waits for chunks in flight)."""
        self._executor.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True, slots=True)
class DispatchCost:
    """What one chunk sent to a worker costs beyond the component's own work (ns)."""

    fixed_ns: float
    per_item_ns: float


DISPATCH_IDLE_S = 0.01
"""How long the workers idle before each timed round trip of :func:`measure_dispatch_cost`.

A parallel step is called once per execution, with the chain's other steps (and the wait for
the next input) in between, so its workers are asleep when its chunks arrive: waking a process
(and, on a virtual machine, its vCPU) is part of the dispatch. Measured on this project's 2-vCPU
VM: a round trip of two one-item chunks took 0.26 ms back to back, 0.73 ms after 1 ms idle,
1.1 ms after 5 ms and 1.3-1.4 ms after 15-50 ms."""


def measure_dispatch_cost(workers: int, *, items: int = 2000, rounds: int = 20,
                          idle_s: float = DISPATCH_IDLE_S) -> DispatchCost:
    """Measure, in this process, the cost of a ``parallel`` step's dispatch to ``workers``.

    Starts a pool of the engine's kind (spawned processes, one pickled component each) around a
    component that returns its chunk unchanged, then times round trips of ``workers`` chunks
    (one per worker, as a step sends them) of 1 item and of ``items`` floats, each after the
    workers idled ``idle_s`` (as between a step's calls: :data:`DISPATCH_IDLE_S`):
    ``fixed_ns`` is the median round trip of the small chunks, ``per_item_ns`` the median extra
    per item (pickling both ways and the pipe). The pool is shut down before returning.

    Raises
    ------
    ValueError
        When ``workers`` is below 1, ``items`` below 2 or ``idle_s`` negative.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if items < 2:
        raise ValueError(f"items must be at least 2, got {items}")
    if idle_s < 0:
        raise ValueError(f"idle_s must be at least 0, got {idle_s}")
    pool = ComponentPool(_identity_items, workers, "the dispatch-cost probe")
    try:
        small = [[0.5] for _ in range(workers)]
        large = [[0.5 + i for i in range(items)] for _ in range(workers)]
        for _ in range(3):  # warm the pipes and the workers' allocators
            pool.map(small)
            pool.map(large)
        fixed: list[int] = []
        extra: list[float] = []
        clock = time.perf_counter_ns
        for _ in range(rounds):
            time.sleep(idle_s)
            t0 = clock()
            pool.map(small)
            t1 = clock()
            time.sleep(idle_s)
            t2 = clock()
            pool.map(large)
            t3 = clock()
            fixed.append(t1 - t0)
            extra.append(max(0.0, ((t3 - t2) - (t1 - t0)) / ((items - 1) * workers)))
        return DispatchCost(float(statistics.median(fixed)), float(statistics.median(extra)))
    finally:
        pool.close()
