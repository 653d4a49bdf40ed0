"""Latency history in SQLite: interval HDR histograms, executions, warnings and escalations.

:class:`HistoryWriter` runs on the cold path. Every ``interval_s`` (10 s by default) it copies
each runner's native HDR counts, subtracts the previous copy, and stores one encoded
HdrHistogram per (chain, step, tenant) for that interval, with its count and error count (the
whole chain is the row with ``step = ''``). Failed executions are stored with their full
context (failing step, exception, traceback, input); successful ones are sampled at
``sample_rate`` (deterministically: exactly that fraction of the sequence numbers). Beside a
failure's repr, the failing step's input is stored in a form that round-trips (table
``recorded_inputs``, see :mod:`flowchain.optimizer.recorded_inputs`; the reason instead when
it cannot be encoded), with the chain's definition, so ``flowchain replay`` can run it again;
so is the chain input of each successful profiled execution when the registry records them
(``set_profiling(rate, record_inputs=True)``), with status ``'sampled'``.
As an alert
sink (:meth:`HistoryWriter.emit`) it stores every monitor event with its time span: a slow-step
warning from its first covered slow execution to the warning, an escalation from its start to
its recovery (the row is updated by each repeated alert and closed by the recovery; a step still
escalated when the run ends keeps an open end), and each recovery.

:class:`HistoryReader` merges the interval histograms of any time range, so percentiles and
trends over any range are exact to the histogram's precision, from this process or another
(WAL lets readers work while the node writes).
"""
from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flowchain.histograms import LatencyHistogram
from flowchain.observe._reader import STATUS_SUCCEEDED, RingTail, bucket_values, built_runners, engine_to_epoch_offset
from flowchain.periodic import PeriodicThread

log = logging.getLogger("flowchain.history")

CHAIN_ROW = ""
"""The ``step`` value of a whole-chain interval row."""

HISTORY_SCHEMA: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS latency_intervals (
        id          INTEGER PRIMARY KEY,
        run_id      TEXT    NOT NULL,
        start_ns    INTEGER NOT NULL,
        end_ns      INTEGER NOT NULL,
        chain       TEXT    NOT NULL,
        chain_id    TEXT    NOT NULL,
        step        TEXT    NOT NULL,
        step_index  INTEGER NOT NULL,
        tenant      TEXT    NOT NULL,
        count       INTEGER NOT NULL,
        errors      INTEGER NOT NULL,
        expected_ns INTEGER,
        histogram   TEXT    NOT NULL,
        failure_histogram TEXT
    )
    """,
    "CREATE INDEX IF NOT EXISTS latency_intervals_by_chain "
    "ON latency_intervals (chain, step, tenant, start_ns)",
    """
    CREATE TABLE IF NOT EXISTS execution_records (
        id             INTEGER PRIMARY KEY,
        run_id         TEXT    NOT NULL,
        execution_id   TEXT    NOT NULL,
        chain          TEXT    NOT NULL,
        chain_id       TEXT    NOT NULL,
        tenant         TEXT    NOT NULL,
        status         TEXT    NOT NULL,
        sampled        INTEGER NOT NULL,
        start_epoch_ns INTEGER NOT NULL,
        duration_ns    INTEGER,
        failed_step    TEXT,
        record         TEXT    NOT NULL,
        UNIQUE (run_id, execution_id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS execution_records_by_chain "
    "ON execution_records (chain, status, start_epoch_ns)",
    """
    CREATE TABLE IF NOT EXISTS alert_events (
        id          INTEGER PRIMARY KEY,
        run_id      TEXT    NOT NULL,
        kind        TEXT    NOT NULL,
        chain       TEXT    NOT NULL,
        chain_id    TEXT    NOT NULL,
        step        TEXT    NOT NULL,
        tenant      TEXT    NOT NULL,
        start_ns    INTEGER NOT NULL,
        end_ns      INTEGER,
        alerts      INTEGER NOT NULL,
        message     TEXT    NOT NULL,
        fields      TEXT    NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS alert_events_by_time ON alert_events (start_ns)",
)
"""The history tables; :func:`open_history` creates them."""

_ADDED_COLUMNS = (("latency_intervals", "failure_histogram", "TEXT"),)
"""Columns added since a table was first written: :func:`open_history` adds them to old files."""

DatabasePath = str | Path


def open_history(path: DatabasePath, readonly: bool = False) -> sqlite3.Connection:
    """Open the database at ``path`` in WAL mode and create the history tables.

    Uses :func:`flowchain.store.open_database` (WAL, busy timeout, autocommit).

    Raises
    ------
    flowchain.store.StoreError
        When the file cannot be opened or WAL mode cannot be enabled.
    """
    from flowchain.store import ensure_schema, open_database

    conn = open_database(path, readonly=readonly)
    if not readonly:
        from flowchain.optimizer.recorded_inputs import RECORDED_INPUTS_SCHEMA

        ensure_schema(conn, HISTORY_SCHEMA + RECORDED_INPUTS_SCHEMA)
        for table, column, kind in _ADDED_COLUMNS:
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    return conn


def histogram_of_counts(counts: np.ndarray, lowest: np.ndarray,
                        settings: Any) -> LatencyHistogram:
    """Return a LatencyHistogram of a counts row (total, min and max derived from it)."""
    nz = np.flatnonzero(counts)
    total = int(counts.sum())
    if total:
        stats = (total, int(lowest[nz[0]]), int(lowest[nz[-1]]), 0)
    else:
        stats = (0, 0, 0, 0)
    return LatencyHistogram.from_counts(counts, stats, settings)


EVENT_QUEUE = 10_000
"""Monitor events held for the next flush at most; more are counted as ``dropped_events``."""


class _Baseline:
    __slots__ = ("counts", "failed_counts", "errors", "failures", "failed_seq", "tail", "runner",
                 "input_number")

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.counts = np.zeros_like(runner.histograms.counts)
        self.failed_counts = np.zeros_like(runner.failure_histograms.counts)
        self.errors = np.zeros(runner.n_steps, dtype=np.int64)
        self.failures = 0
        self.failed_seq = -1
        self.tail = RingTail(runner, from_start=True)
        self.input_number = 0  # the next failure-ring number whose input is to be read


class HistoryWriter:
    """Persist interval histograms and executions of per-tenant registries to SQLite.

    Parameters
    ----------
    registries : ChainRegistry or mapping of tenant -> ChainRegistry
        A single registry is the tenant ``"default"``.
    path : str or Path
        The SQLite database (created if missing, WAL mode).
    interval_s : float
        The interval length when running in a thread (:meth:`start`).
    sample_rate : float
        Fraction of successful executions persisted in full, 0..1.
    record_failed_inputs : bool
        Store each failed execution's failing-step input in ``recorded_inputs`` (a round-trip
        form, or the reason it has none). Off for a caller that records the chains' own inputs
        itself (``flowchain run --inputs``).
    failed_inputs_per_interval : int
        At most this many failed inputs per chain are encoded per flush (a step failing on
        every tick must not turn the history thread into an encoder); the others get a row
        saying so, without a payload.

    Attributes
    ----------
    counters : dict
        ``intervals`` rows written, ``failures`` and ``samples`` persisted, ``lost_samples``
        (overwritten in the ring before they were read), ``events`` stored, ``dropped_events``
        (more than :data:`EVENT_QUEUE` waiting), ``flush_errors``, ``profiles`` (sampled
        step profiles written to ``step_profiles``; see ``ChainRegistry(profile_rate=...)``),
        ``inputs`` recorded (of them ``unserializable_inputs``: stored as a reason only).

    Raises
    ------
    ValueError
        When ``interval_s`` is not positive or ``sample_rate`` is outside 0..1.
    """

    def __init__(self, registries: Any | Mapping[str, Any], path: DatabasePath, *,
                 interval_s: float = 10.0, sample_rate: float = 0.001,
                 record_failed_inputs: bool = True,
                 failed_inputs_per_interval: int = 20) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate is a fraction in [0, 1], got {sample_rate}")
        self.registries = dict(registries) if isinstance(registries, Mapping) \
            else {"default": registries}
        self.path = Path(path)
        self.interval_s = interval_s
        self.sample_rate = sample_rate
        self.record_failed_inputs = record_failed_inputs
        self.failed_inputs_per_interval = failed_inputs_per_interval
        self.run_id = uuid.uuid4().hex
        self.conn = open_history(self.path)
        self.counters = {"intervals": 0, "failures": 0, "samples": 0, "lost_samples": 0,
                         "events": 0, "dropped_events": 0, "flush_errors": 0, "profiles": 0,
                         "inputs": 0, "unserializable_inputs": 0}
        self._input_rows: list[tuple] = []
        self._definition_rows: list[tuple] = []
        self._defined: set[str] = set()
        self._events: deque[Any] = deque()
        self._events_lock = threading.Lock()
        self._baselines: dict[tuple[str, str], _Baseline] = {}
        self._interval_start = time.time_ns()
        self._lowest: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self._periodic = PeriodicThread(self._guarded_flush, interval_s, "flowchain-history")

    # ------------------------------------------------------------------ driving

    def start(self) -> HistoryWriter:
        """Flush every ``interval_s`` in a daemon thread until :meth:`close`."""
        self._periodic.start()
        return self

    def close(self) -> None:
        """Flush what is pending, stop the thread and close the database."""
        if not self._periodic.stop(30):
            self.flush()
        self.conn.close()

    def _guarded_flush(self) -> None:
        try:
            self.flush()
        except Exception:  # keep the node alive; counted and logged
            self.counters["flush_errors"] += 1
            log.exception("history flush to %s failed", self.path)

    def emit(self, event: Any) -> None:
        """Queue a monitor event (an :class:`~flowchain.observe.alerts.AlertEvent`) to store.

        The alert-sink interface: it returns at once and never raises; the event is stored by
        the next :meth:`flush` (every ``interval_s``, and on :meth:`close`).
        """
        with self._events_lock:
            if len(self._events) >= EVENT_QUEUE:
                self.counters["dropped_events"] += 1
                return
            self._events.append(event)

    def add_inputs(self, rows: list[tuple], definitions: list[Any] = ()) -> None:
        """Queue ``recorded_inputs`` rows (:func:`~flowchain.optimizer.recorded_inputs.input_row`)
        and the chain definitions they ran on, for the next :meth:`flush` to store with the
        rest of history."""
        from flowchain.optimizer.recorded_inputs import definition_row

        with self._lock:
            self._input_rows.extend(rows)
            for definition in definitions:
                if definition.chain_id not in self._defined:
                    self._defined.add(definition.chain_id)
                    self._definition_rows.append(definition_row(definition))

    def flush(self) -> int:
        """Write one interval (since the previous flush), new executions and events; return rows.

        Raises
        ------
        sqlite3.Error
            When the database rejects the write (locked beyond the busy timeout, disk full).
        """
        from flowchain.optimizer.profile_store import write_profiles
        from flowchain.optimizer.recorded_inputs import insert_definitions, insert_rows
        from flowchain.store import transaction

        with self._lock:
            end = time.time_ns()
            start = self._interval_start
            offset = engine_to_epoch_offset()
            intervals: list[tuple] = []
            records: list[tuple] = []
            for tenant, registry in self.registries.items():
                settings = registry.histogram_settings
                for definition, runner in built_runners(registry):
                    key = (tenant, definition.chain_id)
                    base = self._baselines.get(key)
                    if base is None or base.runner is not runner:
                        base = self._baselines[key] = _Baseline(runner)
                    intervals.extend(self._interval_rows(tenant, definition, runner, base,
                                                         settings, start, end))
                    records.extend(self._failure_rows(tenant, registry, definition, base,
                                                      offset))
                    if self.sample_rate > 0:
                        records.extend(self._sample_rows(tenant, registry, definition, base,
                                                         offset))
                    self._sampled_inputs(tenant, registry, definition)
            inputs, self._input_rows = self._input_rows, []
            definitions, self._definition_rows = self._definition_rows, []
            with transaction(self.conn):
                insert_rows(self.conn, inputs)
                insert_definitions(self.conn, definitions)
                self.conn.executemany(
                    "INSERT INTO latency_intervals (run_id, start_ns, end_ns, chain, chain_id, "
                    "step, step_index, tenant, count, errors, expected_ns, histogram, "
                    "failure_histogram) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    intervals)
                self.conn.executemany(
                    "INSERT OR IGNORE INTO execution_records (run_id, execution_id, chain, "
                    "chain_id, tenant, status, sampled, start_epoch_ns, duration_ns, "
                    "failed_step, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", records)
                with self._events_lock:
                    events = list(self._events)
                    self._events.clear()
                for event in events:
                    self._store_event(event)
                profiles = [p for registry in self.registries.values()
                            for p in registry.take_profiles()]
                if profiles:  # sampled step profiles (a registry's profile_rate)
                    write_profiles(self.conn, self.run_id, profiles)
            self._interval_start = end
            self.counters["profiles"] += len(profiles)
            self.counters["intervals"] += len(intervals)
            self.counters["events"] += len(events)
            self.counters["inputs"] += len(inputs)
            self.counters["unserializable_inputs"] += sum(1 for r in inputs if r[8] is not None)
            return len(intervals) + len(records) + len(events)

    def _store_event(self, event: Any) -> None:
        """Insert (or, for a repeated escalation or a recovery, update) an event's span row."""
        from flowchain.observe.alerts import ESCALATION, RECOVERY

        fields = dict(event.fields)
        tenant = str(fields.get("tenant", "default"))
        since = int(fields.get("since_ns", event.time_ns))
        text = json.dumps(fields, default=str)
        key = (self.run_id, ESCALATION, event.chain_id, event.step, tenant, since)
        open_row = "run_id = ? AND kind = ? AND chain_id = ? AND step = ? AND tenant = ? " \
                   "AND start_ns = ?"
        if event.kind == ESCALATION and int(fields.get("repeat", 0)) > 0:
            updated = self.conn.execute(
                f"UPDATE alert_events SET alerts = ?, message = ?, fields = ? WHERE {open_row}",
                (int(fields["repeat"]) + 1, event.message, text, *key)).rowcount
            if updated:
                return
        if event.kind == RECOVERY:
            self.conn.execute(f"UPDATE alert_events SET end_ns = ? WHERE {open_row}",
                              (event.time_ns, *key))
        if event.kind == ESCALATION:
            start, end = since, None
        elif event.kind == RECOVERY:
            start = end = event.time_ns
        else:  # a slow-step warning spans the slow executions it covers
            start, end = int(fields.get("first_ns", event.time_ns)), event.time_ns
        alerts = int(fields.get("repeat", 0)) + 1 if event.kind == ESCALATION else 1
        self.conn.execute(
            "INSERT INTO alert_events (run_id, kind, chain, chain_id, step, tenant, start_ns, "
            "end_ns, alerts, message, fields) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.run_id, event.kind, event.chain, event.chain_id, event.step, tenant, start,
             end, alerts, event.message, text))

    # ------------------------------------------------------------------ rows

    def _lowest_values(self, settings: Any) -> np.ndarray:
        layout = settings.layout()
        key = int(layout["counts_len"])
        if key not in self._lowest:
            self._lowest[key] = bucket_values(layout)[0]
        return self._lowest[key]

    def _interval_rows(self, tenant: str, definition: Any, runner: Any, base: _Baseline,
                       settings: Any, start: int, end: int) -> list[tuple]:
        snap = runner.snapshot()  # one consistent copy: counts, failures and errors agree
        counts, failed, errors, failures = (snap.counts, snap.failure_counts, snap.step_errors,
                                            snap.failures)
        diff = counts - base.counts
        failed_diff = failed - base.failed_counts
        d_err = errors - base.errors
        d_fail = failures - base.failures
        base.counts, base.failed_counts = counts, failed
        base.errors, base.failures = errors, failures
        lowest = self._lowest_values(settings)
        rows = []
        n = len(definition.steps)
        for i in range(n + 1):
            n_err = int(d_err[i]) if i < n else d_fail
            if not diff[i].any() and not n_err:
                continue
            hist = histogram_of_counts(diff[i], lowest, settings)
            failed_hist = histogram_of_counts(failed_diff[i], lowest, settings) \
                if failed_diff[i].any() else None
            step = definition.steps[i].name if i < n else CHAIN_ROW
            expected = definition.steps[i].expected_duration_ns if i < n else \
                sum(s.expected_duration_ns for s in definition.steps)
            rows.append((self.run_id, start, end, definition.name, definition.chain_id, step,
                         i if i < n else -1, tenant, hist.count, n_err, expected,
                         hist.encode(), failed_hist.encode() if failed_hist else None))
        return rows

    def _record_row(self, tenant: str, record: Any, sampled: bool, offset: int) -> tuple:
        data = record.to_dict()
        data["start_epoch_ns"] = record.start_ns + offset
        data["completed_steps"] = list(record.completed_steps)
        ctx = record.user_context
        return (self.run_id, record.execution_id, record.chain_name, record.chain_id,
                ctx.tenant_id if ctx is not None else tenant, record.status.value,
                1 if sampled else 0, record.start_ns + offset if record.start_ns else 0,
                record.total_duration, record.failure.step if record.failure else None,
                json.dumps(data, default=str))

    def _failure_rows(self, tenant: str, registry: Any, definition: Any, base: _Baseline,
                      offset: int) -> list[tuple]:
        rows = []
        failed = registry.failures(definition.chain_id, after_seq=base.failed_seq)
        inputs = self._failure_inputs(base) if self.record_failed_inputs and failed else {}
        for n, record in enumerate(failed):
            rows.append(self._record_row(tenant, record, False, offset))
            base.failed_seq = record.seq
            if self.record_failed_inputs:
                self._failure_input(tenant, definition, record, inputs, offset,
                                    n < self.failed_inputs_per_interval)
        self.counters["failures"] += len(rows)
        return rows

    @staticmethod
    def _failure_inputs(base: _Baseline) -> dict[int, Any]:
        """Execution seq -> the failing step's input, of the failures the ring gained."""
        ring = base.runner.failed
        found = {}
        for number in range(max(base.input_number, ring.oldest()), ring.written):
            row = ring.read(number)
            if row is not None:
                found[row[1]] = row[7]
        base.input_number = ring.written
        return found

    def _failure_input(self, tenant: str, definition: Any, record: Any,
                       inputs: dict[int, Any], offset: int, encode: bool) -> None:
        """Queue the round-trip form of a failure's input (or why there is none)."""
        from flowchain.optimizer.recorded_inputs import definition_row, input_row

        ctx = record.user_context
        missing = None
        if not encode:
            missing = (f"not recorded: the first {self.failed_inputs_per_interval} failed "
                       "inputs of this chain in this history interval were")
        elif record.seq not in inputs:
            # overwritten in the ring between the record and this read: said, not dropped
            missing = (f"the failure ring no longer held the input of execution {record.seq}: "
                       "more failures arrived before the history flush; raise failures_kept "
                       "or shorten interval_s")
        self._input_rows.append(input_row(
            run_id=self.run_id, execution_id=record.execution_id, chain=definition.name,
            chain_id=definition.chain_id, status="failed",
            start_epoch_ns=record.start_ns + offset if record.start_ns else 0,
            value=inputs.get(record.seq), unserializable=missing,
            step_index=record.failure.step_index if record.failure else 0,
            tenant=ctx.tenant_id if ctx is not None else tenant))
        if definition.chain_id not in self._defined:
            self._defined.add(definition.chain_id)
            self._definition_rows.append(definition_row(definition))

    def _sampled_inputs(self, tenant: str, registry: Any, definition: Any) -> None:
        """Queue the chain inputs of the sampled successes the registry's profiler kept
        (``set_profiling(rate, record_inputs=True)``), encoded when they ran."""
        from flowchain.optimizer.recorded_inputs import definition_row, input_row

        taken = registry.take_sampled_inputs(definition.chain_id)
        for sampled in taken:
            self._input_rows.append(input_row(
                run_id=self.run_id, execution_id=f"{definition.chain_id}#{sampled.seq}",
                chain=definition.name, chain_id=definition.chain_id, status="sampled",
                start_epoch_ns=sampled.start_epoch_ns, value=None, encoded=sampled.encoded,
                unserializable=sampled.reason, tenant=tenant))
        if taken and definition.chain_id not in self._defined:
            self._defined.add(definition.chain_id)
            self._definition_rows.append(definition_row(definition))

    def _sample_rows(self, tenant: str, registry: Any, definition: Any, base: _Baseline,
                     offset: int) -> list[tuple]:
        done = base.tail.read()
        ok = done.seq[done.status == STATUS_SUCCEEDED]
        rate = self.sample_rate
        picked = ok[np.floor((ok + 1) * rate) > np.floor(ok * rate)]
        rows = []
        for seq in picked.tolist():
            record = registry.execution(definition.chain_id, seq)
            if record is None or not record.is_successful():
                self.counters["lost_samples"] += 1
                continue
            rows.append(self._record_row(tenant, record, True, offset))
        self.counters["samples"] += len(rows)
        return rows


@dataclass(frozen=True, slots=True)
class StepHistory:
    """One step's (or the whole chain's, ``step == ''``) merged history over a range."""

    chain: str
    step: str
    step_index: int
    expected_ns: int | None
    errors: int
    histogram: LatencyHistogram
    failure_histogram: LatencyHistogram = field(default_factory=LatencyHistogram)
    """Failed executions' latency (a step's: until it raised), apart from the successes."""

    @property
    def count(self) -> int:
        return self.histogram.count

    @property
    def error_rate(self) -> float:
        attempts = self.count + self.errors
        return self.errors / attempts if attempts else 0.0


class HistoryReader:
    """Read merged latency history, trends and stored executions.

    Parameters
    ----------
    path : str or Path
        A database written by :class:`HistoryWriter`.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    """

    def __init__(self, path: DatabasePath) -> None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"no history database at {str(p)!r}; run the node with a "
                                    "history database or pass the right --db path")
        self.path = p
        self.conn = open_history(p)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _where(chain: str | None, step: str | None, tenant: str | None,
               since_ns: int | None, until_ns: int | None) -> tuple[str, list]:
        clauses, args = [], []
        for column, value in (("chain", chain), ("step", step), ("tenant", tenant)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if since_ns is not None:
            clauses.append("end_ns > ?")
            args.append(since_ns)
        if until_ns is not None:
            clauses.append("start_ns < ?")
            args.append(until_ns)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def chains(self) -> list[str]:
        """Return the chain names with history, sorted."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT chain FROM latency_intervals ORDER BY chain")]

    def tenants(self) -> list[str]:
        """Return the tenants with history, sorted."""
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT tenant FROM latency_intervals ORDER BY tenant")]

    def time_range(self) -> tuple[int | None, int | None]:
        """Return the (first start, last end) epoch ns of the stored intervals."""
        row = self.conn.execute("SELECT min(start_ns), max(end_ns) FROM latency_intervals").fetchone()
        return row[0], row[1]

    def histogram(self, chain: str, step: str | None = CHAIN_ROW, *,
                  tenant: str | None = None, since_ns: int | None = None,
                  until_ns: int | None = None, outcome: str = "success") -> LatencyHistogram:
        """Return the merged histogram of a chain (``step=''``) or a step over a range.

        ``tenant=None`` merges every tenant; intervals overlapping the range are included.
        ``outcome="failure"`` merges the failed executions' latency instead.

        Raises
        ------
        ValueError
            When ``outcome`` is neither ``"success"`` nor ``"failure"``.
        """
        if outcome not in ("success", "failure"):
            raise ValueError(f"outcome must be 'success' or 'failure', got {outcome!r}")
        column = "histogram" if outcome == "success" else "failure_histogram"
        where, args = self._where(chain, step, tenant, since_ns, until_ns)
        merged = LatencyHistogram()
        for (encoded,) in self.conn.execute(f"SELECT {column} FROM latency_intervals{where}",
                                            args):
            if encoded:
                merged.merge(LatencyHistogram.decode(encoded))
        return merged

    def steps(self, chain: str, *, tenant: str | None = None,
              since_ns: int | None = None,
              until_ns: int | None = None) -> list[StepHistory]:
        """Return every step's merged history in step order, then the whole chain's."""
        where, args = self._where(chain, None, tenant, since_ns, until_ns)
        found: dict[tuple[int, str], list] = {}
        for step, index, expected, errors, encoded, failed in self.conn.execute(
                "SELECT step, step_index, expected_ns, errors, histogram, failure_histogram "
                f"FROM latency_intervals{where} ORDER BY start_ns", args):
            key = (index if index >= 0 else 1 << 30, step)
            held = found.setdefault(key, [expected, 0, LatencyHistogram(), LatencyHistogram()])
            held[0] = expected
            held[1] += errors
            held[2].merge(LatencyHistogram.decode(encoded))
            if failed:
                held[3].merge(LatencyHistogram.decode(failed))
        return [StepHistory(chain, step, -1 if index == 1 << 30 else index, e, err, h, fh)
                for (index, step), (e, err, h, fh) in sorted(found.items())]

    def trend(self, chain: str, step: str | None = CHAIN_ROW, *, bucket_s: float = 60.0,
              tenant: str | None = None, since_ns: int | None = None,
              until_ns: int | None = None) -> list[dict[str, Any]]:
        """Return per time bucket: count, errors, throughput (/s), error rate, p50/p99 (ns).

        ``p50_ns``/``p99_ns`` are of successful executions (0 when a bucket has none),
        ``failure_p50_ns``/``failure_p99_ns`` of failed ones (0 when none failed).

        Each interval lands in the bucket of its start; ``bucket_s`` should be a multiple of
        the writer's interval for exact buckets.

        Raises
        ------
        ValueError
            When ``bucket_s`` is not positive.
        """
        if bucket_s <= 0:
            raise ValueError(f"bucket_s must be positive, got {bucket_s}")
        width = int(bucket_s * 1e9)
        where, args = self._where(chain, step, tenant, since_ns, until_ns)
        buckets: dict[int, list] = {}
        for start, end, errors, encoded, failed in self.conn.execute(
                "SELECT start_ns, end_ns, errors, histogram, failure_histogram "
                f"FROM latency_intervals{where}", args):
            key = start // width * width
            held = buckets.setdefault(key, [0, LatencyHistogram(), start, end,
                                            LatencyHistogram()])
            held[0] += errors
            held[1].merge(LatencyHistogram.decode(encoded))
            if failed:
                held[4].merge(LatencyHistogram.decode(failed))
            held[2], held[3] = min(held[2], start), max(held[3], end)
        out = []
        for key in sorted(buckets):
            errors, hist, first, last, failed_hist = buckets[key]
            seconds = max((last - first) / 1e9, 1e-9)
            attempts = hist.count + errors
            ps = hist.percentiles((50.0, 99.0))
            fps = failed_hist.percentiles((50.0, 99.0))
            out.append({"start_ns": key, "count": hist.count, "errors": errors,
                        "throughput_per_s": (hist.count + errors) / seconds,
                        "error_rate": errors / attempts if attempts else 0.0,
                        "p50_ns": ps[50.0], "p99_ns": ps[99.0],
                        "failure_p50_ns": fps[50.0], "failure_p99_ns": fps[99.0]})
        return out

    def executions(self, chain: str | None = None, *, status: str | None = None,
                   limit: int = 50) -> list[dict[str, Any]]:
        """Return stored execution records (failed and sampled), newest first."""
        clauses, args = [], []
        if chain is not None:
            clauses.append("chain = ?")
            args.append(chain)
        if status is not None:
            clauses.append("status = ?")
            args.append(status)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self.conn.execute(
            f"SELECT record, tenant, sampled FROM execution_records{where} "
            "ORDER BY start_epoch_ns DESC, id DESC LIMIT ?", (*args, int(limit)))
        out = []
        for record, tenant, sampled in rows:
            data = json.loads(record)
            data["tenant"] = tenant
            data["sampled"] = bool(sampled)
            out.append(data)
        return out

    def failures(self, chain: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Return stored failed executions with their context, newest first."""
        return self.executions(chain, status="failed", limit=limit)

    def alerts(self, chain: str | None = None, *, kind: str | None = None,
               since_ns: int | None = None, until_ns: int | None = None,
               limit: int = 1000) -> list[dict[str, Any]]:
        """Return stored warnings, escalations and recoveries with their spans, oldest first.

        Each has ``kind``, ``chain``, ``step``, ``tenant``, ``start_ns``, ``end_ns`` (None: an
        escalation still open when its run ended or still running), ``alerts`` (escalation
        alerts sent, repeats included), ``message``, the event's ``fields`` and, for an open
        one, ``run_last_ns`` (the end of its run's last stored interval: it lasted at least
        that long). A range keeps the events whose span overlaps it (an open one reaches to
        now).
        """
        clauses, args = [], []
        for column, value in (("chain", chain), ("kind", kind)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if since_ns is not None:
            clauses.append("(end_ns IS NULL OR end_ns >= ?)")
            args.append(since_ns)
        if until_ns is not None:
            clauses.append("start_ns <= ?")
            args.append(until_ns)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        out = []
        for row in self.conn.execute(
                "SELECT run_id, kind, chain, chain_id, step, tenant, start_ns, end_ns, alerts, "
                f"message, fields FROM alert_events{where} ORDER BY start_ns, id LIMIT ?",
                (*args, int(limit))):
            run_id, kind_, chain_, chain_id, step, tenant, start, end, alerts, message, fields \
                = row
            out.append({"run_id": run_id, "kind": kind_, "chain": chain_, "chain_id": chain_id,
                        "step": step, "tenant": tenant, "start_ns": start, "end_ns": end,
                        "alerts": alerts, "message": message, "fields": json.loads(fields),
                        "run_last_ns": None if end is not None else self._run_last(run_id)})
        return out

    def _run_last(self, run_id: str) -> int | None:
        """The end of a run's last stored interval (how long an open escalation lasted at least)."""
        row = self.conn.execute("SELECT max(end_ns) FROM latency_intervals WHERE run_id = ?",
                                (run_id,)).fetchone()
        return row[0] if row else None


def parse_since(text: str | None, now_ns: int | None = None) -> int | None:
    """Parse ``--since``: ``30s``, ``15m``, ``2h``, ``7d`` ago, or an ISO-8601 date-time.

    Returns epoch ns, or None for None/empty.

    Raises
    ------
    ValueError
        When the text is neither a duration nor an ISO date-time.
    """
    if not text:
        return None
    now = time.time_ns() if now_ns is None else now_ns
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip()
    if t[-1:] in units:
        try:
            amount = float(t[:-1])
        except ValueError:
            amount = math.nan
        if math.isfinite(amount) and amount >= 0:
            return now - int(amount * units[t[-1]] * 1e9)
    from datetime import datetime, timezone

    try:
        when = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(f"--since {text!r} is neither a duration (30s, 15m, 2h, 7d) nor an "
                         "ISO date-time (2024-05-01T12:00:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    ns = int(when.timestamp() * 1e9)
    if not -(2**63) <= ns < 2**63:
        raise ValueError(f"--since {text!r} is outside the years 1678..2262 that epoch "
                         "nanoseconds can hold")
    return ns
