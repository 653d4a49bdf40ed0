"""The cold path: everything that watches the engine without making a chain execution wait.

Each module has one job and reads what the engine recorded only through the private
:mod:`flowchain.observe._reader` (the runners that exist, a runner's execution ring, its status
codes, the value of each HDR counts index, the engine clock's epoch offset):

``alerts``   alert events and where they go (log, callback, webhook, memory)
``monitor``  slow-step warnings, escalated steps (a state, until recovery), throughput windows
``metrics``  the Prometheus exposition from consistent snapshots, rendered off the request path
``history``  interval histograms, executions and alert spans in SQLite, and their reader
``otel``     failed and sampled executions as OpenTelemetry traces (needs the ``otel`` extra)
``diagram``  chain diagrams (DOT, SVG) with live per-step figures
``report``   the offline HTML report of a history database
``web``      the dashboard server: page, server-sent events, ``/api/status``, ``/metrics``

Besides the reader, a module may use another's *output types* only downward (the monitor emits
``alerts`` events and the history stores them; the report reads ``history`` and formats with
``diagram``; the dashboard draws ``diagram`` SVGs and serves the ``metrics`` exposition); none
reads the engine through another.

The public names below are re-exported here and imported on first use, so importing one module
(or this package) never pulls in the others' dependencies (prometheus_client, OpenTelemetry).
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AlertEvent": "alerts", "AlertSink": "alerts", "CallbackSink": "alerts",
    "ESCALATION": "alerts", "EVENT_KINDS": "alerts", "LogSink": "alerts",
    "MemorySink": "alerts", "RECOVERY": "alerts", "SLOW_STEP": "alerts", "WebhookSink": "alerts",
    "Escalation": "monitor", "Monitor": "monitor", "step_statuses": "monitor",
    "ExpositionCache": "metrics", "FlowChainCollector": "metrics", "MetricsServer": "metrics",
    "counter_metrics": "metrics", "feed_metrics": "metrics",
    "HistoryReader": "history", "HistoryWriter": "history", "parse_since": "history",
    "TraceExporter": "otel",
    "build_report": "report",
    "DashboardServer": "web", "DashboardState": "web", "DashboardThread": "web",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flowchain.observe' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"flowchain.observe.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
