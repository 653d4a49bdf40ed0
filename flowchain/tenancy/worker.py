"""Process isolation: a tenant's chains run in a worker process of their own.

The worker holds its own :class:`~flowchain.ChainRegistry` (runners, rings, histograms) and
serves requests over a ``multiprocessing`` pipe, one at a time: register a chain, run one
execution, or read records and statistics. A component that raises is an ordinary failed
execution (the record comes back). One that hangs past the tier's ``execution_timeout_s``,
crashes the interpreter, or makes the worker grow by more than ``worker_memory_mb`` takes
down only the worker: it is killed or recycled, started again with the tenant's chains, and
counted in :attr:`ProcessWorker.restarts`; the caller gets :class:`WorkerCrashed`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import multiprocessing
import os
import select
import sys
import threading
from typing import Any

from flowchain.chain import ChainDefinition
from flowchain.errors import ChainStepError
from flowchain.tenancy.errors import WorkerCrashed
from flowchain.tenancy.resources import ReadingsProbe

log = logging.getLogger("flowchain.tenancy")

_REGISTER, _RUN, _QUERY, _STOP = 0, 1, 2, 3
_OK, _FAILED, _ERROR, _RECYCLE = 0, 1, 2, 3

QUERIES = ("last_execution", "recent_executions", "failures", "execution", "stats",
           "histogram", "active_executions")
"""The registry reads a worker answers (all scoped to its one tenant)."""

CONTROL_TIMEOUT_S = 60.0
"""The least a registration or a registry read waits for the worker: they run no tenant code,
so only a broken worker exceeds it; ``execution_timeout_s`` bounds the tenant's executions."""

MEMORY_CHECK_EVERY = 64
"""Executions between two reads of the worker's own (private) memory."""


def _own_bytes() -> int:
    """The worker's own memory: its private pages (USS) where Linux says, else its resident size.

    A forked worker shares its parent's pages until it writes them; a leak that reuses memory
    the parent had freed (already resident, shared) does not grow the resident size, but every
    page it writes becomes private, so the private size is what grows with a leak.
    """
    try:
        with open("/proc/self/smaps_rollup", "rb") as fh:
            private = 0
            for line in fh:
                if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                    private += int(line.split()[1]) * 1024
            return private
    except OSError:
        pass
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak size is the best we have
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _portable(record: Any) -> Any:
    """The record without the live exception object (it may not pickle)."""
    if record is not None and getattr(record, "failure", None) is not None:
        return dataclasses.replace(record, failure=record.failure.detached())
    return record


def _answer(registry: Any, method: str, args: tuple) -> Any:
    result = getattr(registry, method)(*args)
    if method == "histogram":
        return result.encode()
    if isinstance(result, list):
        return [_portable(r) for r in result]
    return _portable(result)


def _serve(conn: Any, components: Any, settings: Any, ring_capacity: int,
           memory_limit: int | None) -> None:  # pragma: no cover - runs in the worker
    from flowchain.registry import ChainRegistry

    registry = ChainRegistry(components, ring_capacity=ring_capacity, histograms=settings)
    runners: dict[str, Any] = {}
    baseline = _own_bytes()
    served = 0
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        op = msg[0]
        if op == _STOP:
            return
        reply: tuple
        try:
            if op == _RUN:
                chain_id, data, context = msg[1], msg[2], msg[3]
                runner = runners.get(chain_id)
                if runner is None:
                    runner = runners[chain_id] = registry.runner(chain_id)
                seq = runner.executions
                probe = ReadingsProbe(runner.n_steps) if msg[5] else None
                try:
                    out = runner.run(data, context) if probe is None else \
                        runner.run_measured(data, context, probe)
                    reply = (_OK, (out, _portable(registry.execution(chain_id, seq)))
                             if msg[4] else out)
                    if probe is not None:
                        reply = (_OK, (reply[1], probe.readings))
                except ChainStepError as exc:
                    reply = (_FAILED, _portable(exc.execution))
                served += 1
                if memory_limit is not None and served % MEMORY_CHECK_EVERY == 0 \
                        and _own_bytes() - baseline > memory_limit:
                    conn.send((_RECYCLE, reply))
                    return
            elif op == _REGISTER:
                reply = (_OK, registry.register_chain(msg[1]))
            elif op == _QUERY and msg[1] in QUERIES:
                reply = (_OK, _answer(registry, msg[1], msg[2]))
            else:
                reply = (_ERROR, f"unknown worker request {msg[:2]!r}")
        except Exception as exc:
            reply = (_ERROR, f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except Exception as exc:  # an output that does not pickle
            conn.send((_ERROR, f"the result could not be sent back to the caller: "
                               f"{type(exc).__name__}: {exc}; chains in a process worker "
                               "must return picklable outputs"))


class _Readable:
    """Waits for the worker's reply with a timeout: one ``poll`` object registered once per
    pipe. ``Connection.poll(timeout)`` builds, registers and closes a selector on every call,
    which cost a third of a round trip's own time (measured with ``flowchain bench tenancy``)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._poller = select.poll() if hasattr(select, "poll") else None
        if self._poller is not None:
            self._poller.register(conn.fileno(), select.POLLIN)

    def wait(self, timeout_s: float) -> bool:
        """Whether the pipe has something to read (or was closed) within ``timeout_s``."""
        if self._poller is None:  # no poll(2) (Windows): the connection's own wait
            return bool(self._conn.poll(timeout_s))
        return bool(self._poller.poll(max(0, math.ceil(timeout_s * 1000))))


class ProcessWorker:
    """One tenant's worker process: start, serve, restart on failure.

    Parameters
    ----------
    tenant_id : str
    components : ComponentRegistry
        What the worker resolves component names with (inherited by fork).
    settings : HistogramSettings
    ring_capacity : int
    timeout_s : float
        An execution running longer kills and restarts the worker. A registration or a read runs
        only FlowChain's own code (building runners, summarizing histograms, a fresh worker's
        first compile) and waits at least :data:`CONTROL_TIMEOUT_S`.
    memory_limit_mb : int or None
        Growth of the worker's own (private) memory over its size at start that recycles it.

    Attributes
    ----------
    restarts : dict
        Restarts by reason: ``crashed``, ``timeout``, ``memory``.
    """

    def __init__(self, tenant_id: str, components: Any, settings: Any, *,
                 ring_capacity: int = 1024, timeout_s: float = 30.0,
                 memory_limit_mb: int | None = None) -> None:
        self.tenant_id = tenant_id
        self.components = components
        self.settings = settings
        self.ring_capacity = ring_capacity
        self.timeout_s = timeout_s
        self.memory_limit = None if memory_limit_mb is None else memory_limit_mb * 1024 * 1024
        self.restarts = {"crashed": 0, "timeout": 0, "memory": 0}
        self._definitions: dict[str, ChainDefinition] = {}
        self._lock = threading.Lock()
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self._mp = multiprocessing.get_context(method)
        self._process: Any = None
        self._conn: Any = None
        self._readable: _Readable | None = None
        self._inherited: frozenset = frozenset()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> ProcessWorker:
        with self._lock:
            self._spawn()
        return self

    def _spawn(self) -> None:
        parent, child = self._mp.Pipe(duplex=True)
        proc = self._mp.Process(
            target=_serve, name=f"flowchain-tenant-{self.tenant_id[:32]}",
            args=(child, self.components, self.settings, self.ring_capacity, self.memory_limit),
            daemon=True)
        self._inherited = frozenset(self.components.names())
        proc.start()
        child.close()
        self._process, self._conn = proc, parent
        self._readable = _Readable(parent)
        for definition in self._definitions.values():
            self._request((_REGISTER, definition))

    def _kill(self) -> int | None:
        proc, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if proc is None:
            return None
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        return proc.exitcode

    def _restart(self, reason: str, what: str) -> WorkerCrashed:
        exitcode = self._kill()
        self.restarts[reason] += 1
        log.warning("tenant %r worker %s (%s, exit code %s); restarting it", self.tenant_id,
                    reason, what, exitcode)
        self._spawn()
        return WorkerCrashed(
            f"tenant {self.tenant_id!r}: the worker process {reason} during {what} (exit code "
            f"{exitcode}); it was restarted and the execution is lost",
            tenant_id=self.tenant_id, reason=reason, exitcode=exitcode)

    def _request(self, msg: tuple) -> Any:
        conn = self._conn
        if conn is None:
            raise WorkerCrashed(f"tenant {self.tenant_id!r}: the worker is not running",
                                tenant_id=self.tenant_id, reason="crashed")
        what = ("execution of " + msg[1]) if msg[0] == _RUN else \
            ("registration" if msg[0] == _REGISTER else f"read {msg[1]}")
        timeout_s = self.timeout_s if msg[0] == _RUN else max(self.timeout_s, CONTROL_TIMEOUT_S)
        try:
            conn.send(msg)
            if not self._readable.wait(timeout_s):
                raise self._restart("timeout", what)
            status, value = conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            raise self._restart("crashed", what) from None
        if status == _RECYCLE:
            self._kill()
            self.restarts["memory"] += 1
            log.warning("tenant %r worker outgrew its memory limit; recycled", self.tenant_id)
            self._spawn()
            status, value = value
        if status == _ERROR:
            raise RuntimeError(f"tenant {self.tenant_id!r} worker: {value}")
        return status, value

    # ------------------------------------------------------------------ public

    def register(self, definition: ChainDefinition) -> str:
        """Register ``definition`` in the worker (and again after every restart).

        Components registered after the worker started are not in it yet: the worker is
        started again (not counted as a restart) so that it inherits them.
        """
        with self._lock:
            self._definitions[definition.chain_id] = definition
            needed = {s.component for s in definition.steps}
            if self._process is None or not needed <= self._inherited:
                # the worker inherits components when it starts: start one that has them
                self._kill()
                self._spawn()
                return definition.chain_id
            return self._request((_REGISTER, definition))[1]

    def execute(self, chain_id: str, data: Any, context: Any = None, *,
                with_record: bool = False, measure: bool = False) -> Any:
        """Run one execution in the worker and return its output (``(output, record)`` with
        ``with_record``; ``(that, readings)`` with ``measure``: the execution ran through the
        measuring path and ``readings`` are its ``(row, wall ns, cpu ns, bytes)``).

        Raises
        ------
        ChainStepError
            When a step raised (the record, from the worker).
        WorkerCrashed
            When the worker died, hung or outgrew its memory (it was restarted).
        """
        with self._lock:
            status, value = self._request((_RUN, chain_id, data, context, with_record,
                                           measure))
        if status == _FAILED:
            raise ChainStepError(value)
        return value

    async def execute_async(self, chain_id: str, data: Any, context: Any = None) -> Any:
        """:meth:`execute` from a coroutine (the pipe is waited on in a thread)."""
        return await asyncio.to_thread(self.execute, chain_id, data, context)

    def query(self, method: str, *args: Any) -> Any:
        """Ask the worker's registry one of :data:`QUERIES`."""
        if method not in QUERIES:
            raise ValueError(f"a worker answers {', '.join(QUERIES)}; not {method!r}")
        with self._lock:
            return self._request((_QUERY, method, args))[1]

    def close(self) -> None:
        """Stop the worker (it is killed when it does not stop within a second)."""
        with self._lock:
            conn, proc = self._conn, self._process
            if conn is not None:
                try:
                    conn.send((_STOP,))
                except (OSError, BrokenPipeError):
                    pass
            if proc is not None:
                proc.join(1)
            self._kill()
