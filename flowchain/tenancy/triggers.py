"""Upgrade triggers: a tenant reached 80% or 100% of a limit of its tier.

Each (tenant, limit, threshold, period) fires once: the store's primary key makes that hold
across restarts and across processes sharing the database. An event carries the usage, the
limit, the tier and what the next tier unlocks, and goes to every alert sink (the log, a
callback, a webhook, the dashboard's memory sink) as an :class:`~flowchain.observe.alerts.AlertEvent`
of kind :data:`UPGRADE_TRIGGER`.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from flowchain.observe.alerts import AlertEvent
from flowchain.tenancy.tiers import Tier, TierSet
from flowchain.tenancy.usage import UsageStore

log = logging.getLogger("flowchain.tenancy")

UPGRADE_TRIGGER = "upgrade_trigger"
"""The alert kind of an upgrade trigger."""

THRESHOLDS = (0.8, 1.0)
"""The usage ratios that fire a trigger: 80% and 100% of a limit."""


class UpgradeTriggers:
    """Fire each upgrade trigger once and hand it to the sinks.

    Parameters
    ----------
    tiers : TierSet
        To name the next tier and what it unlocks.
    store : UsageStore or None
        Where fired triggers are kept (once across restarts); in memory only when None.
    sinks : iterable of alert sinks
        Each gets every event (``emit(event)``); a raising sink is counted, never propagated.

    Attributes
    ----------
    fired : int
        Events delivered by this process.
    sink_errors : int
    """

    def __init__(self, tiers: TierSet, store: UsageStore | None = None,
                 sinks: Iterable[Any] = ()) -> None:
        self.tiers = tiers
        self.store = store
        self.sinks = list(sinks)
        self.fired = 0
        self.sink_errors = 0
        self.recent: deque = deque(maxlen=50)
        """The latest events delivered, newest last (the dashboard shows them)."""
        self._seen: set[tuple[str, str, float, str]] = set()

    def add_sink(self, sink: Any) -> None:
        self.sinks.append(sink)

    def observe(self, tenant: str, tier: Tier, limit: str, usage: float, period: str) -> int:
        """Fire the triggers ``usage`` reaches for ``limit`` of ``tier``; return how many fired."""
        bound = tier.limit(limit)
        if not bound:
            return 0
        ratio = usage / bound
        fired = 0
        for threshold in THRESHOLDS:
            if ratio < threshold:
                break
            key = (tenant, limit, threshold, period)
            if key in self._seen:
                continue
            self._seen.add(key)
            nxt = self.tiers.next_above(tier)
            if self.store is not None and not self.store.claim_trigger(
                    tenant, limit, threshold, period, usage=usage, limit_value=bound,
                    tier=tier.name, next_tier=nxt.name if nxt else None):
                continue
            self._emit(self._event(tenant, tier, limit, threshold, usage, bound, period, nxt))
            fired += 1
        return fired

    def _event(self, tenant: str, tier: Tier, limit: str, threshold: float, usage: float,
               bound: float, period: str, nxt: Tier | None) -> AlertEvent:
        unlocks: dict[str, Any] = {}
        if nxt is not None:
            unlocks = {limit: nxt.limit(limit)} if limit in Tier.__dataclass_fields__ else {}
            gained = sorted(nxt.features - tier.features)
            if gained:
                unlocks["features"] = gained
            if nxt.isolation != tier.isolation:
                unlocks["isolation"] = nxt.isolation
        offer = (f"; tier {nxt.name!r} allows {_shown(nxt.limit(limit))}" if nxt is not None
                 else "; no higher tier")
        message = (f"tenant {tenant!r} (tier {tier.name!r}) reached {threshold:.0%} of {limit} "
                   f"({usage:g} of {bound:g}, period {period}){offer}")
        return AlertEvent(UPGRADE_TRIGGER, "", "", "", message, time.time_ns(), {
            "tenant": tenant, "tier": tier.name, "limit": limit, "threshold": threshold,
            "usage": usage, "limit_value": bound, "period": period,
            "next_tier": nxt.name if nxt is not None else None, "unlocks": unlocks})

    def _emit(self, event: AlertEvent) -> None:
        self.fired += 1
        self.recent.append(event)
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:  # a sink must never break admission or the cold path
                self.sink_errors += 1
                log.exception("alert sink %r failed on an upgrade trigger", sink)


def _shown(value: float | None) -> str:
    return "no limit" if value is None else f"{value:g}"
