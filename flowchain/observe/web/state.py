"""What the dashboard shows, gathered from the cold path into one JSON-ready snapshot.

Figures come from the engine's own counters and native HDR counts (``value_at_percentile``,
cheap), the monitor (escalated steps, events, step health, throughput over the last 1 s and
10 s on its own clock, live executions) and the feeds (state, counters).
Nothing here makes a chain execution wait.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from flowchain.observe._reader import built_runners
from flowchain.observe.diagram import StepFigures, render, status_of

log = logging.getLogger("flowchain.dashboard")

OPTIMIZER_REFRESH_S = 30.0
"""The optimizer's findings are read from the history database at most this often."""


class DashboardState:
    """Build dashboard snapshots for per-tenant registries, a monitor and feeds.

    Parameters
    ----------
    registries : ChainRegistry or mapping of tenant -> ChainRegistry
    monitor : flowchain.observe.monitor.Monitor, optional
        Source of warnings, escalations, step health and live executions.
    feeds : mapping of name -> feed, optional
        Objects with ``state.as_dict()`` and ``stats.as_dict()``.
    failures_shown : int
        Recent failures listed per chain.
    tenants : flowchain.tenancy.TenantManager, optional
        Adds each tenant's usage against its tier and the recent upgrade triggers.
    optimizer : callable, optional
        Returns the optimizer's findings (``optimizer_rows``); read at most every
        ``OPTIMIZER_REFRESH_S`` (it reads the history database), shown as ``optimizer``.
    """

    def __init__(self, registries: Any | Mapping[str, Any], monitor: Any = None,
                 feeds: Mapping[str, Any] | None = None, failures_shown: int = 10,
                 tenants: Any = None, optimizer: Any = None) -> None:
        self.registries = dict(registries) if isinstance(registries, Mapping) \
            else {"default": registries}
        self.monitor = monitor
        self.feeds = dict(feeds or {})
        self.failures_shown = failures_shown
        self.tenants = tenants
        self.shipping: Callable[[], dict[str, Any]] | None = None
        """Returns the node's shipping state to a hub (``hub`` in the snapshot), when it ships."""
        self.optimizer = optimizer
        self._optimizer_rows: list[dict[str, Any]] = []
        self._optimizer_read = -OPTIMIZER_REFRESH_S

    def optimizer_rows(self) -> list[dict[str, Any]]:
        """The optimizer's findings, refreshed at most every ``OPTIMIZER_REFRESH_S``."""
        now = time.monotonic()
        if now - self._optimizer_read >= OPTIMIZER_REFRESH_S:
            self._optimizer_read = now
            try:
                self._optimizer_rows = list(self.optimizer())
            except Exception:  # the page keeps the last findings; the node goes on
                log.exception("reading the optimizer's findings failed")
        return self._optimizer_rows

    def chains(self) -> list[tuple[str, Any, Any, Any | None]]:
        """Return (tenant, registry, definition, runner or None) for each latest chain."""
        out = []
        for tenant, registry in self.registries.items():
            runners = {d.chain_id: r for d, r in built_runners(registry)}
            for definition in registry.list_chains():
                out.append((tenant, registry, definition, runners.get(definition.chain_id)))
        return out

    def diagrams(self) -> list[dict[str, Any]]:
        """Return each chain's SVG diagram (drawn once per page load; updated by snapshots)."""
        return [{"tenant": t, "chain": d.name, "chain_id": d.chain_id,
                 "svg": render(d, "svg")} for t, _, d, _ in self.chains()]

    def snapshot(self) -> dict[str, Any]:
        """Return everything the page shows, as plain data."""
        monitor = self.monitor
        health = monitor.step_health() if monitor is not None else {}
        chains = []
        failures = []
        for tenant, registry, d, runner in self.chains():
            executions = int(runner.executions) if runner is not None else 0
            failed = int(runner.failures) if runner is not None else 0
            rates = monitor.throughput(d.chain_id) if monitor is not None else {}
            steps = []
            step_health = {h["step"]: h for h in health.get(d.chain_id, [])}
            for i, s in enumerate(d.steps):
                if runner is not None:
                    hist = runner.histograms
                    count = int(hist.stats[i, 0])
                    errors = int(runner.step_errors[i])
                    p50 = int(hist.value_at_percentile(i, 50.0))
                    p99 = int(hist.value_at_percentile(i, 99.0))
                else:
                    count = errors = p50 = p99 = 0
                status = status_of(s.expected_duration_ns, StepFigures(count, errors, p50, p99))
                h = step_health.get(s.name)
                if h is not None and h["escalated"]:
                    status = "failing"
                steps.append({"name": s.name, "component": s.component, "status": status,
                              "count": count, "errors": errors, "p50_ns": p50, "p99_ns": p99,
                              "expected_ns": s.expected_duration_ns,
                              "window_error_rate": h["error_rate"] if h else None})
            chain_p50 = chain_p99 = 0
            if runner is not None:
                n = len(d.steps)
                chain_p50 = int(runner.histograms.value_at_percentile(n, 50.0))
                chain_p99 = int(runner.histograms.value_at_percentile(n, 99.0))
                for record in registry.failures(d.chain_id)[-self.failures_shown:]:
                    f = record.failure
                    failures.append({
                        "tenant": tenant, "chain": d.name, "execution_id": record.execution_id,
                        "step": f.step if f else None, "component": f.component if f else None,
                        "exception": f.exception_type if f else None,
                        "message": f.message if f else None, "input": f.input_repr if f else None,
                        "completed_steps": list(record.completed_steps)})
            chains.append({
                "tenant": tenant, "chain": d.name, "chain_id": d.chain_id,
                "executions": executions, "failures": failed,
                "success_ratio": (executions - failed) / executions if executions else None,
                "throughput_per_s": rates.get("per_1s"),
                "throughput_10s_per_s": rates.get("per_10s"), "p50_ns": chain_p50,
                "p99_ns": chain_p99, "steps": steps})
        failures.sort(key=lambda f: f["execution_id"], reverse=True)
        now_ns = time.time_ns()
        return {
            "time_ns": now_ns,
            "escalations": [e.to_dict(now_ns) for e in monitor.escalations()]
            if monitor is not None else [],
            "chains": chains,
            "failures": failures[: self.failures_shown * 2],
            "events": self.monitor.recent_events(50) if self.monitor is not None else [],
            "live": self.monitor.live() if self.monitor is not None else
            [r.to_dict() for reg in self.registries.values() for r in reg.active_executions()],
            "feeds": {name: {**feed.state.as_dict(), **feed.stats.as_dict()}
                      for name, feed in self.feeds.items()},
            **(self.tenants.dashboard_view() if self.tenants is not None else {}),
            **({"hub": self.shipping()} if self.shipping is not None else {}),
            **({"optimizer": self.optimizer_rows()} if self.optimizer is not None else {}),
        }
