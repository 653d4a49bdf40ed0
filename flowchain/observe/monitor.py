"""The cold-path monitor: slow-step warnings, error-rate escalation, live status.

The monitor only *reads* what the engine wrote, through :mod:`flowchain.observe._reader`: each
runner's execution ring (a :class:`~flowchain.observe._reader.RingTail`: by a seq cursor,
copying rows with numpy and re-checking their seq so a slot overwritten mid-copy is discarded),
its per-step error counters and its HDR totals. It runs in its own thread (:meth:`Monitor.start`)
or as an asyncio task (:meth:`Monitor.run`), or is driven by hand (:meth:`Monitor.poll`); the
runner never waits for it.

* **Slow steps.** A completed step whose duration exceeded its ``expected_duration`` raises a
  :data:`~flowchain.observe.alerts.SLOW_STEP` event naming the execution, chain, step, observed and
  expected ns. At most one event per (chain, step) every ``warning_interval_s``; the next one
  carries how many slow executions were ``suppressed`` in between, so a slow period never floods.
* **Error rate.** Per step, attempts (successes from the HDR totals + errors from the error
  counters) and errors are summed over a rolling ``window_s``. Above ``error_threshold`` (5%),
  with at least ``min_attempts`` attempts, the step is *escalated*: a state, not a passing
  event. :meth:`Monitor.escalations` lists every escalated step (since when, its error rate)
  until it recovers (a window without attempts is no evidence either way: the state and its
  last measured rate hold); an :data:`~flowchain.observe.alerts.ESCALATION` event goes out when it
  starts and again every ``repeat_interval_s`` while it lasts (``repeat`` counts them); when the
  rate falls back to the threshold or below, a :data:`~flowchain.observe.alerts.RECOVERY` event
  closes it with its duration.
* **Throughput.** Every poll samples each chain's execution count on the monitor's own clock;
  :meth:`Monitor.throughput` is the rate over the last 1 s and 10 s of those samples, the same
  whoever asks and however often.
* **Live status.** :meth:`Monitor.live` lists running executions with their current step,
  completed steps, progress and estimated remaining time.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flowchain.chain import ChainDefinition
from flowchain.observe._reader import RingTail, built_runners
from flowchain.observe.alerts import ESCALATION, RECOVERY, SLOW_STEP, AlertEvent, AlertSink, MemorySink
from flowchain.periodic import PeriodicThread

log = logging.getLogger("flowchain.monitor")

THROUGHPUT_WINDOWS_S = (1.0, 10.0)
"""The windows :meth:`Monitor.throughput` reports, in seconds of the monitor's clock."""


@dataclass(frozen=True, slots=True)
class Escalation:
    """One step's escalated state, from the escalation until its recovery.

    Attributes
    ----------
    tenant, chain, chain_id, step, component : str
        Where it is.
    since_ns : int
        Wall-clock time (``time.time_ns()``) it escalated.
    error_rate : float
        The error rate over the window at the latest poll.
    errors, attempts : int
        Behind that rate.
    repeats : int
        Repeated escalation alerts sent since the first one.
    message : str
        The latest escalation alert's sentence.
    """

    tenant: str
    chain: str
    chain_id: str
    step: str
    component: str
    since_ns: int
    error_rate: float
    errors: int
    attempts: int
    repeats: int
    message: str

    def to_dict(self, now_ns: int | None = None) -> dict[str, Any]:
        """Return a JSON-ready description, with ``duration_s`` up to ``now_ns`` (now)."""
        now = time.time_ns() if now_ns is None else now_ns
        return {"tenant": self.tenant, "chain": self.chain, "chain_id": self.chain_id,
                "step": self.step, "component": self.component, "since_ns": self.since_ns,
                "duration_s": round(max(0, now - self.since_ns) / 1e9, 3),
                "error_rate": self.error_rate, "errors": self.errors,
                "attempts": self.attempts, "repeats": self.repeats, "message": self.message}


class _ChainWatch:
    """The monitor's state for one runner: its ring cursor and rolling error window."""

    __slots__ = ("definition", "runner", "tail", "expected", "window", "prev_ok", "prev_err",
                 "escalated", "last_warning", "suppressed", "worst", "slow_total",
                 "escalated_at", "alerted_at", "repeats", "executions", "slow_since")

    def __init__(self, definition: ChainDefinition, runner: Any) -> None:
        self.definition = definition
        self.runner = runner
        self.tail = RingTail(runner, from_start=True)
        n = len(definition.steps)
        self.expected = np.array([s.expected_duration_ns for s in definition.steps],
                                 dtype=np.int64)
        self.window: deque[tuple[float, np.ndarray, np.ndarray]] = deque()
        self.prev_ok = np.zeros(n, dtype=np.int64)
        self.prev_err = np.zeros(n, dtype=np.int64)
        self.escalated = np.zeros(n, dtype=bool)
        self.last_warning = np.full(n, -np.inf)
        self.suppressed = np.zeros(n, dtype=np.int64)
        self.worst: list[tuple[int, int] | None] = [None] * n
        self.slow_total = np.zeros(n, dtype=np.int64)
        self.slow_since = np.zeros(n, dtype=np.int64)     # wall ns a warning's slow run began
        self.escalated_at = np.zeros(n, dtype=np.int64)   # wall ns of each escalation's start
        self.alerted_at = np.zeros(n)                     # monitor clock of the latest alert
        self.repeats = np.zeros(n, dtype=np.int64)
        self.executions: deque[tuple[float, int]] = deque()  # (monitor clock, executions)


MAX_PERIOD_S = 7 * 86400.0
"""The longest poll interval the monitor accepts (in practice it is well under a second)."""


class Monitor:
    """Watch every chain of a registry from the cold path and raise alert events.

    Parameters
    ----------
    registry : flowchain.ChainRegistry
        The registry whose runners to watch (chains are picked up as their runners appear).
    sinks : iterable of AlertSink
        Where events go, besides :attr:`events` (the latest events, kept in memory).
    interval_s : float
        Seconds between polls when running in a thread or task.
    warning_interval_s : float
        At most one slow-step event per (chain, step) in this many seconds.
    window_s : float
        The rolling window of the error rate.
    error_threshold : float
        Error rate above which a step escalates (0.05 = 5%).
    min_attempts : int
        Attempts the window must hold before the error rate is judged.
    repeat_interval_s : float
        While a step stays escalated, its escalation alert is sent again this often.
    tenant : str
        Tenant label put on every event (registries are per tenant).
    clock : callable
        Monotonic seconds; injectable for tests of the window.

    Raises
    ------
    ValueError
        When an interval, the window or the threshold is out of range.
    """

    def __init__(self, registry: Any, sinks: Iterable[AlertSink] = (), *,
                 interval_s: float = 0.25, warning_interval_s: float = 10.0,
                 window_s: float = 60.0, error_threshold: float = 0.05, min_attempts: int = 20,
                 repeat_interval_s: float = 60.0, tenant: str = "default",
                 event_capacity: int = 200,
                 clock: Callable[[], float] = time.monotonic) -> None:
        periods = {"interval_s": interval_s, "warning_interval_s": warning_interval_s,
                   "window_s": window_s, "repeat_interval_s": repeat_interval_s}
        bad = {k: v for k, v in periods.items()
               if not v >= 0 or (v == 0 and k != "warning_interval_s")}
        if not interval_s <= MAX_PERIOD_S:  # a timed wait that long would kill the thread
            bad["interval_s"] = interval_s
        if bad:
            raise ValueError(
                "monitor periods must be positive and interval_s at most "
                f"{MAX_PERIOD_S:g} s: " + ", ".join(f"{k}={v!r}" for k, v in bad.items()))
        if not 0 <= error_threshold < 1:
            raise ValueError(f"error_threshold is a fraction in [0, 1), got {error_threshold}")
        self.registry = registry
        self.events = MemorySink(event_capacity)
        self.sinks: list[AlertSink] = [self.events, *sinks]
        self.interval_s = interval_s
        self.warning_interval_s = warning_interval_s
        self.window_s = window_s
        self.error_threshold = error_threshold
        self.min_attempts = min_attempts
        self.repeat_interval_s = repeat_interval_s
        self.tenant = tenant
        self.clock = clock
        self.counters = {"polls": 0, "events": 0, "lost_rows": 0, "sink_errors": 0,
                         "poll_errors": 0}
        self._watches: dict[str, _ChainWatch] = {}
        self._escalations: dict[tuple[str, int], Escalation] = {}
        self._lock = threading.Lock()
        self._periodic = PeriodicThread(self._guarded_poll, interval_s, "flowchain-monitor")

    # ------------------------------------------------------------------ driving

    def poll(self) -> list[AlertEvent]:
        """Read everything new once, emit and return the events it raised."""
        with self._lock:
            now = self.clock()
            events: list[AlertEvent] = []
            for definition, runner in built_runners(self.registry):
                watch = self._watches.get(definition.chain_id)
                if watch is None or watch.runner is not runner:
                    watch = self._watches[definition.chain_id] = _ChainWatch(definition, runner)
                    for key in [k for k in self._escalations if k[0] == definition.chain_id]:
                        del self._escalations[key]   # a new runner starts with a clean state
                self._sample_executions(watch, now)
                lost_before = watch.tail.lost
                rows = watch.tail.read()
                self.counters["lost_rows"] += watch.tail.lost - lost_before
                events.extend(self._slow_steps(watch, rows, now))
                events.extend(self._error_rates(watch, now))
            self.counters["polls"] += 1
        for event in events:
            self._emit(event)
        return events

    def start(self) -> Monitor:
        """Poll every ``interval_s`` in a daemon thread until :meth:`stop`."""
        self._periodic.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (after one last poll)."""
        self._periodic.stop(timeout)

    async def run(self) -> None:
        """Poll every ``interval_s`` on the running event loop until cancelled."""
        while True:
            self._guarded_poll()
            await asyncio.sleep(self.interval_s)

    def _guarded_poll(self) -> None:
        try:
            self.poll()
        except Exception:  # the monitor must outlive its own bugs; counted and logged
            self.counters["poll_errors"] += 1
            log.exception("monitor poll failed")

    def _emit(self, event: AlertEvent) -> None:
        self.counters["events"] += 1
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:
                self.counters["sink_errors"] += 1
                log.exception("alert sink %r raised on a %s event", sink, event.kind)

    # ------------------------------------------------------------------ rules

    def _slow_steps(self, watch: _ChainWatch, rows: Any, now: float) -> list[AlertEvent]:
        if not len(rows):
            return []
        slow = (rows.step_ns > watch.expected[None, :]) & rows.completed_mask()
        if not slow.any():
            return []
        d = watch.definition
        events = []
        for i in np.flatnonzero(slow.any(axis=0)):
            hits = np.flatnonzero(slow[:, i])
            watch.slow_total[i] += len(hits)
            worst_row = hits[np.argmax(rows.step_ns[hits, i])]
            worst = (int(rows.step_ns[worst_row, i]), int(rows.seq[worst_row]))
            if watch.worst[i] is None or worst[0] > watch.worst[i][0]:
                watch.worst[i] = worst
            if not watch.slow_since[i]:
                watch.slow_since[i] = time.time_ns()
            if now - watch.last_warning[i] < self.warning_interval_s:
                watch.suppressed[i] += len(hits)
                continue
            observed, seq = watch.worst[i]
            suppressed = int(watch.suppressed[i] + len(hits) - 1)
            step = d.steps[i]
            expected = int(watch.expected[i])
            execution_id = f"{d.chain_id}#{seq}"
            events.append(AlertEvent(
                SLOW_STEP, d.name, d.chain_id, step.name,
                f"step {step.name!r} ({step.component}) of chain {d.name!r} took "
                f"{observed / 1e6:.3f} ms, expected at most {expected / 1e6:.3f} ms "
                f"(execution {execution_id}; {suppressed} more slow since the last warning)",
                time.time_ns(),
                {"execution_id": execution_id, "component": step.component,
                 "observed_ns": observed, "expected_ns": expected, "suppressed": suppressed,
                 "first_ns": int(watch.slow_since[i]), "tenant": self.tenant}))
            watch.slow_since[i] = 0
            watch.last_warning[i] = now
            watch.suppressed[i] = 0
            watch.worst[i] = None
        return events

    def _error_rates(self, watch: _ChainWatch, now: float) -> list[AlertEvent]:
        runner = watch.runner
        n = len(watch.definition.steps)
        ok = np.array(runner.histograms.stats[:n, 0], dtype=np.int64)
        err = np.array(runner.step_errors, dtype=np.int64)
        d_ok, d_err = ok - watch.prev_ok, err - watch.prev_err
        watch.prev_ok, watch.prev_err = ok, err
        if d_ok.any() or d_err.any():
            watch.window.append((now, d_ok + d_err, d_err))
        while watch.window and watch.window[0][0] <= now - self.window_s:
            watch.window.popleft()
        if watch.window:
            attempts = np.sum([w[1] for w in watch.window], axis=0)
            errors = np.sum([w[2] for w in watch.window], axis=0)
        else:
            attempts = errors = np.zeros(n, dtype=np.int64)
        events = []
        d = watch.definition
        for i, step in enumerate(d.steps):
            a, e = int(attempts[i]), int(errors[i])
            rate = e / a if a else 0.0
            fields = {"error_rate": round(rate, 6), "errors": e, "attempts": a,
                      "window_s": self.window_s, "threshold": self.error_threshold,
                      "component": step.component, "tenant": self.tenant}
            key = (d.chain_id, i)
            if not watch.escalated[i] and a >= self.min_attempts and rate > self.error_threshold:
                watch.escalated[i] = True
                watch.escalated_at[i] = time.time_ns()
                watch.repeats[i] = 0
                events.append(self._escalation_event(watch, i, rate, e, a, fields, now))
            elif watch.escalated[i] and a and rate <= self.error_threshold:
                # (no attempt in the window is no evidence of recovery: the state holds)
                watch.escalated[i] = False
                since = int(watch.escalated_at[i])
                at = time.time_ns()
                fields.update(since_ns=since, duration_s=round((at - since) / 1e9, 3),
                              repeats=int(watch.repeats[i]))
                self._escalations.pop(key, None)
                events.append(AlertEvent(
                    RECOVERY, d.name, d.chain_id, step.name,
                    f"step {step.name!r} ({step.component}) of chain {d.name!r} recovered after "
                    f"{(at - since) / 1e9:.1f} s escalated: {e} errors in {a} attempts "
                    f"({rate:.1%}) in the last {self.window_s:g} s", at, fields))
            elif watch.escalated[i]:
                held = self._escalations[key]
                if not a:  # no attempt in the window: the last measured rate still stands
                    rate, e, a = held.error_rate, held.errors, held.attempts
                    fields.update(error_rate=rate, errors=e, attempts=a, idle=True)
                if now - watch.alerted_at[i] >= self.repeat_interval_s:
                    watch.repeats[i] += 1
                    events.append(self._escalation_event(watch, i, rate, e, a, fields, now))
                else:
                    self._escalations[key] = Escalation(
                        held.tenant, held.chain, held.chain_id, held.step, held.component,
                        held.since_ns, round(rate, 6), e, a, held.repeats, held.message)
        return events

    def _escalation_event(self, watch: _ChainWatch, i: int, rate: float, e: int, a: int,
                          fields: dict[str, Any], now: float) -> AlertEvent:
        """The escalation alert of step ``i`` (first or repeated); updates its held state."""
        d = watch.definition
        step = d.steps[i]
        since = int(watch.escalated_at[i])
        at = time.time_ns()
        repeats = int(watch.repeats[i])
        lasting = f"; escalated for {(at - since) / 1e9:.0f} s" if repeats else ""
        window = ("in the last window with attempts (none in the last "
                  f"{self.window_s:g} s)") if fields.get("idle") else \
            f"in the last {self.window_s:g} s"
        message = (f"step {step.name!r} ({step.component}) of chain {d.name!r} failed {e} of "
                   f"{a} attempts ({rate:.1%}) {window}, above the "
                   f"{self.error_threshold:.0%} threshold{lasting}")
        fields.update(since_ns=since, repeat=repeats)
        watch.alerted_at[i] = now
        self._escalations[(d.chain_id, i)] = Escalation(
            self.tenant, d.name, d.chain_id, step.name, step.component, since, round(rate, 6),
            e, a, repeats, message)
        return AlertEvent(ESCALATION, d.name, d.chain_id, step.name, message, at, fields)

    def _sample_executions(self, watch: _ChainWatch, now: float) -> None:
        """Add (now, executions) to the chain's throughput samples; keep the longest window."""
        samples = watch.executions
        samples.append((now, int(watch.runner.executions)))
        horizon = now - THROUGHPUT_WINDOWS_S[-1]
        while len(samples) > 2 and samples[1][0] <= horizon:
            samples.popleft()

    # ------------------------------------------------------------------ views

    def live(self) -> list[dict[str, Any]]:
        """Return the running executions: current step, completed steps, progress, ETA."""
        out = []
        for record in self.registry.active_executions():
            data = record.to_dict()
            data["completed_steps"] = list(record.completed_steps)
            out.append(data)
        return out

    def step_health(self) -> dict[str, list[dict[str, Any]]]:
        """Return, per chain id, each step's window error rate, escalation and slow count."""
        with self._lock:
            out = {}
            for chain_id, watch in self._watches.items():
                if watch.window:
                    attempts = np.sum([w[1] for w in watch.window], axis=0)
                    errors = np.sum([w[2] for w in watch.window], axis=0)
                else:
                    attempts = errors = np.zeros(len(watch.definition.steps), dtype=np.int64)
                out[chain_id] = [
                    {"step": s.name, "attempts": int(attempts[i]), "errors": int(errors[i]),
                     "error_rate": float(errors[i] / attempts[i]) if attempts[i] else 0.0,
                     "escalated": bool(watch.escalated[i]), "slow": int(watch.slow_total[i])}
                    for i, s in enumerate(watch.definition.steps)]
            return out

    def escalations(self) -> list[Escalation]:
        """Return every step escalated now (oldest first); each stays until it recovers."""
        with self._lock:
            return sorted(self._escalations.values(), key=lambda e: (e.since_ns, e.chain,
                                                                      e.step))

    def is_escalated(self, chain_id: str, step_index: int) -> bool:
        """Whether step ``step_index`` of chain ``chain_id`` is escalated now."""
        return (chain_id, step_index) in self._escalations

    def throughput(self, chain_id: str) -> dict[str, float | None]:
        """Return executions per second over the last 1 s and 10 s of the monitor's clock.

        Keys ``per_1s`` and ``per_10s``. Each rate is the change in executions between the
        newest sample and the newest one at least that window older (the oldest held while the
        monitor has not yet watched for that long), divided by the time between them; None
        before two samples exist. It changes only when the monitor polls, so every client
        sees the same figure.
        """
        with self._lock:
            watch = self._watches.get(chain_id)
            samples = list(watch.executions) if watch is not None else []
        out: dict[str, float | None] = {}
        for window in THROUGHPUT_WINDOWS_S:
            key = f"per_{window:g}s"
            if len(samples) < 2:
                out[key] = None
                continue
            t1, n1 = samples[-1]
            t0, n0 = samples[0]
            for t, n in reversed(samples[:-1]):
                if t1 - t >= window:
                    t0, n0 = t, n
                    break
            out[key] = round((n1 - n0) / (t1 - t0), 1) if t1 > t0 else None
        return out

    def recent_events(self, limit: int = 50) -> list[dict[str, Any]]:
        """Return the newest events as dicts, newest first."""
        return [e.to_dict() for e in self.events.latest(limit)]


def step_statuses(health: Sequence[dict[str, Any]]) -> list[str]:
    """Map each step's health (from :meth:`Monitor.step_health`) to a display status.

    ``failing`` when escalated, ``erroring`` with errors in the window, ``slow`` with slow
    executions seen, ``ok`` otherwise.
    """
    out = []
    for h in health:
        if h["escalated"]:
            out.append("failing")
        elif h["errors"]:
            out.append("erroring")
        elif h["slow"]:
            out.append("slow")
        else:
            out.append("ok")
    return out
