"""Prometheus families of tenant usage, as a provider for :class:`FlowChainCollector`.

In the manner of Mimir's per-tenant limits: one gauge of usage / limit per tenant and limit,
so an alert rule (``flowchain_tenant_usage_ratio > 0.8``) or a dashboard sees who is close
to their tier's ceiling, plus the counters behind it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


def tenant_metrics(manager: Any) -> Callable[[], Iterable[Metric]]:
    """Return a provider of every tenant's usage families, read at scrape time.

    Families: ``flowchain_tenant_usage_ratio`` (tenant, tier, limit),
    ``flowchain_tenant_executions_today`` (tenant, tier), ``flowchain_tenant_running``
    (tenant, tier), ``flowchain_tenant_refusals_total`` (tenant, limit),
    ``flowchain_tenant_worker_restarts_total`` (tenant, reason) and
    ``flowchain_tenant_upgrade_triggers_total``.
    """
    def provide() -> Iterable[Metric]:
        ratio = GaugeMetricFamily("flowchain_tenant_usage_ratio",
                                  "Usage of a tier limit by a tenant (1.0 is the limit).",
                                  labels=["tenant", "tier", "limit"])
        today = GaugeMetricFamily("flowchain_tenant_executions_today",
                                  "Executions admitted in the current UTC day.",
                                  labels=["tenant", "tier"])
        running = GaugeMetricFamily("flowchain_tenant_running", "Executions in progress.",
                                    labels=["tenant", "tier"])
        refusals = CounterMetricFamily("flowchain_tenant_refusals",
                                       "Executions or registrations refused, by limit.",
                                       labels=["tenant", "limit"])
        restarts = CounterMetricFamily("flowchain_tenant_worker_restarts",
                                       "Process-isolation worker restarts, by reason.",
                                       labels=["tenant", "reason"])
        fired = CounterMetricFamily("flowchain_tenant_upgrade_triggers",
                                    "Upgrade triggers delivered by this process.")
        for tenant in manager.tenants():
            u = manager.usage(tenant)
            for limit, value in sorted(u.ratios.items()):
                ratio.add_metric([tenant, u.tier, limit], float(value))
            today.add_metric([tenant, u.tier], float(u.executions_today))
            running.add_metric([tenant, u.tier], float(u.running))
            for limit, n in sorted(u.refused.items()):
                refusals.add_metric([tenant, limit], float(n))
            for reason, n in sorted(u.worker_restarts.items()):
                restarts.add_metric([tenant, reason], float(n))
        fired.add_metric([], float(manager.triggers.fired))
        yield from (ratio, today, running, refusals, restarts, fired)

    return provide
