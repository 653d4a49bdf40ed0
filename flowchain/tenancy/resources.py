"""Resource use per chain and step, measured on sampled executions only.

When sampling is on (``TenantManager(sample_rate=...)`` or :meth:`TenantManager.set_sampling`),
1 execution in N of every admitted call runs through the measuring path
(``ChainRunner.run_measured``): the same runner, ring, histograms and failure path as any
other execution, with a :class:`ResourceProbe` reading around each step

* the step's wall time (engine clock, the probe's own work excluded),
* the thread's CPU time (``time.thread_time_ns``),
* the memory the step allocated: the bytes the step's thread requested from CPython's object
  and memory allocators while it ran (the engine's per-thread allocation counter,
  native/alloc.h, installed by the first probe and never removed: malloc and calloc sizes,
  realloc's whole new size, frees not subtracted; numpy's array data, allocated by numpy's own
  handler, is counted too). Only the step's own thread is counted, whatever others do.

Each probe holds, per step and for the whole execution (row ``n``), HDR counts of CPU ns and
allocated bytes (the engine's layout, so rows merge exactly like the latency histograms) and
the sums of wall ns, CPU ns and bytes. With sampling off nothing here runs: the hot path pays
one integer test.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from flowchain._native import engine
from flowchain.step_readings import CPU_FLOOR_NS, STEP_READINGS, StepReadings
from flowchain.step_readings import sample_every as _sample_every

CHAIN_ROW = ""
"""The step name stored for a whole execution (the sum of its steps)."""

RESOURCE_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS tenant_resources (
        id            INTEGER PRIMARY KEY,
        tenant        TEXT    NOT NULL,
        tier          TEXT    NOT NULL,
        chain         TEXT    NOT NULL,
        chain_id      TEXT    NOT NULL,
        step          TEXT    NOT NULL,
        start_ns      INTEGER NOT NULL,
        end_ns        INTEGER NOT NULL,
        samples       INTEGER NOT NULL,
        wall_ns       INTEGER NOT NULL,
        cpu_ns        INTEGER NOT NULL,
        alloc_bytes   INTEGER NOT NULL,
        cpu_buckets   BLOB    NOT NULL,
        alloc_buckets BLOB    NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS tenant_resources_by_time ON tenant_resources (end_ns, tenant)",
)
"""Resource rows: per interval, tenant, tier, chain version and step (``""``: the whole
execution), the sampled executions' sums and their CPU / allocation HDR buckets (sparse, the
engine's layout: rows merge exactly)."""


class _Measurement(StepReadings):
    """One sampled execution's readings (:class:`~flowchain.step_readings.StepReadings`),
    turned into the probe's figures at the end (:meth:`end`)."""

    __slots__ = ("probe",)

    def __init__(self, probe: Any) -> None:
        super().__init__()
        self.probe = probe

    def end(self, ok: bool) -> None:
        self.close_failed_step()
        probe, raw, floor = self.probe, self.raw, CPU_FLOOR_NS
        wall = cpu = alloc = 0
        steps = len(raw) // STEP_READINGS
        for i in range(steps):
            cpu0, a, cpu1, w = raw[4 * i:4 * i + 4]
            c = cpu1 - cpu0 - floor
            c = c if c > 0 else 0
            probe.record(i, w, c, a)
            wall += w
            cpu += c
            alloc += a
        if ok and steps == probe.n_steps:
            probe.record(probe.n_steps, wall, cpu, alloc)
        elif not ok:
            probe.failed += 1


class ResourceProbe:
    """The resource figures of one tenant's chain version on one tier (sampled executions).

    Parameters
    ----------
    tenant, tier, chain, chain_id : str
    step_names : tuple of str
    hdr_layout : dict
        The engine's HDR layout (:meth:`HistogramSettings.layout`).

    Attributes
    ----------
    samples : list of int
        Measured executions per row (rows: the steps, then the whole execution).
    wall_ns, cpu_ns, alloc_bytes : list of int
        Sums per row.
    cpu, alloc : HdrCounts
        Distributions per row of CPU ns and allocated bytes.
    failed : int
        Sampled executions that failed (their completed steps are counted, not the whole).
    """

    def __init__(self, tenant: str, tier: str, chain: str, chain_id: str,
                 step_names: tuple[str, ...], hdr_layout: dict) -> None:
        self.tenant, self.tier, self.chain, self.chain_id = tenant, tier, chain, chain_id
        self.step_names = tuple(step_names)
        self.n_steps = len(self.step_names)
        rows = self.n_steps + 1
        self.samples = [0] * rows
        self.wall_ns = [0] * rows
        self.cpu_ns = [0] * rows
        self.alloc_bytes = [0] * rows
        self.cpu = engine.HdrCounts(rows, hdr_layout)
        self.alloc = engine.HdrCounts(rows, hdr_layout)
        self.failed = 0
        self._lock = threading.Lock()  # sampled executions of several threads, the writer
        engine.install_alloc_counter()

    @property
    def row_names(self) -> tuple[str, ...]:
        """The step names, then :data:`CHAIN_ROW` for the whole execution."""
        return self.step_names + (CHAIN_ROW,)

    def begin(self) -> _Measurement:
        return _Measurement(self)

    def record(self, row: int, wall_ns: int, cpu_ns: int, alloc_bytes: int) -> None:
        with self._lock:
            self.samples[row] += 1
            self.wall_ns[row] += wall_ns
            self.cpu_ns[row] += cpu_ns
            self.alloc_bytes[row] += alloc_bytes
            self.cpu.record(row, cpu_ns or 1)
            self.alloc.record(row, alloc_bytes or 1)

    def snapshot(self) -> dict[str, np.ndarray]:
        """Copies of every figure, of one instant (for the history writer's differences)."""
        with self._lock:
            return self._copy()

    def _copy(self) -> dict[str, np.ndarray]:
        return {"samples": np.array(self.samples, dtype=np.int64),
                "wall_ns": np.array(self.wall_ns, dtype=np.int64),
                "cpu_ns": np.array(self.cpu_ns, dtype=np.int64),
                "alloc_bytes": np.array(self.alloc_bytes, dtype=np.int64),
                "cpu_counts": np.array(self.cpu.counts), "alloc_counts":
                np.array(self.alloc.counts)}

    def summary(self) -> list[dict[str, Any]]:
        """Per row: samples, mean wall/CPU ns and allocated bytes, p50/p99 CPU and bytes."""
        out = []
        for row, name in enumerate(self.row_names):
            n = int(self.samples[row])
            if not n:
                continue
            out.append({"step": name, "samples": n,
                        "wall_ns_mean": int(self.wall_ns[row]) / n,
                        "cpu_ns_mean": int(self.cpu_ns[row]) / n,
                        "cpu_ns_p50": int(self.cpu.value_at_percentile(row, 50.0)),
                        "cpu_ns_p99": int(self.cpu.value_at_percentile(row, 99.0)),
                        "alloc_bytes_mean": int(self.alloc_bytes[row]) / n,
                        "alloc_bytes_p50": int(self.alloc.value_at_percentile(row, 50.0)),
                        "alloc_bytes_p99": int(self.alloc.value_at_percentile(row, 99.0))})
        return out


def sample_every(rate: float) -> int:
    """Return N for "1 execution in N" (0: off) for the resource sampling rate (see
    :func:`flowchain.step_readings.sample_every`)."""
    return _sample_every(rate, "the resource sampling rate")


class ReadingsProbe:
    """A probe that keeps one execution's readings as ``(row, wall, cpu, bytes)`` tuples (a
    process worker's: they go back over the pipe to the tenant's :class:`ResourceProbe`)."""

    __slots__ = ("n_steps", "readings", "failed")

    def __init__(self, n_steps: int) -> None:
        self.n_steps = n_steps
        self.readings: list[tuple[int, int, int, int]] = []
        self.failed = 0
        engine.install_alloc_counter()

    def begin(self) -> _Measurement:
        return _Measurement(self)

    def record(self, row: int, wall_ns: int, cpu_ns: int, alloc_bytes: int) -> None:
        self.readings.append((row, wall_ns, cpu_ns, alloc_bytes))
