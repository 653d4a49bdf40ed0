"""TenantManager: one chain registry per tenant, tiers that gate and limit, isolation levels.

The hot path is :meth:`TenantManager.runner` -> ``AdmittedCall.run(data)``: admission (the
tenant's rate, concurrency and daily quota) and a per-user meter run in the native engine
before and after the chain's own runner. :meth:`TenantManager.execute` is the same with the
lookup on every call, and :meth:`TenantManager.execute_user_chain` returns the full record.

Every read takes the tenant id first and resolves chains in that tenant's registry only: a
name or id of another tenant's chain is unknown there, and records on shared runners are
returned only when their label carries the tenant.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowchain._native import engine
from flowchain.chain import ChainDefinition, load_chains_file
from flowchain.components import ComponentRegistry, default_components
from flowchain.context import UserContext
from flowchain.errors import ChainStepError, ChainValidationError
from flowchain.execution import ChainExecution, ExecutionStatus
from flowchain.histograms import DEFAULT_SETTINGS, HistogramSettings, LatencyHistogram
from flowchain.periodic import PeriodicThread
from flowchain.registry import ChainRegistry
from flowchain.stats import ChainStats, StepStats
from flowchain.tenancy.errors import (
    FeatureGatedError,
    QuotaExceeded,
    TenancyError,
    UnknownTenantError,
)
from flowchain.tenancy.meters import MeterArena
from flowchain.tenancy.resources import ResourceProbe, sample_every
from flowchain.tenancy.tenant_id import check_tenant_id
from flowchain.tenancy.tiers import Tier, TierSet, load_tiers
from flowchain.tenancy.triggers import UpgradeTriggers
from flowchain.tenancy.usage import LIFETIME, UsageStore, utc_day, utc_day_end
from flowchain.tenancy.worker import ProcessWorker

log = logging.getLogger("flowchain.tenancy")

SHARED_KEY = ""
"""The key of the shared runners' registry in :meth:`TenantManager.registries` (no tenant id
is empty)."""

_REFUSAL_LIMIT = {engine.ADMIT_CONCURRENT: "concurrent", engine.ADMIT_RATE:
                  "executions_per_second", engine.ADMIT_DAILY: "executions_per_day"}


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """A tenant's usage against its tier, now.

    ``ratios`` maps each limit the tier sets to usage / limit (the rate's is the share of the
    burst used at the peak today; 1.0 once refused).
    """

    tenant_id: str
    tier: str
    isolation: str
    period: str
    executions_today: int
    running: int
    peak_running: int
    admitted: int
    refused: dict[str, int]
    chains: int
    ratios: dict[str, float]
    worker_restarts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant_id, "tier": self.tier, "isolation": self.isolation,
                "period": self.period, "executions_today": self.executions_today,
                "running": self.running, "peak_running": self.peak_running,
                "admitted": self.admitted, "refused": dict(self.refused),
                "chains": self.chains, "ratios": dict(self.ratios),
                "worker_restarts": dict(self.worker_restarts)}


@dataclass(frozen=True, slots=True)
class UserPerformance:
    """One user's executions through the manager since it started (exact, from the meters)."""

    tenant_id: str
    user_id: str
    tier: str
    executions: int
    failures: int
    histogram: LatencyHistogram
    by_chain: dict[str, int]

    @property
    def success_rate(self) -> float | None:
        return (self.executions - self.failures) / self.executions if self.executions else None

    def most_used(self, n: int = 5) -> list[tuple[str, int]]:
        return sorted(self.by_chain.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def to_dict(self) -> dict[str, Any]:
        s = self.histogram.summary()
        return {"tenant": self.tenant_id, "user": self.user_id, "tier": self.tier,
                "executions": self.executions, "failures": self.failures,
                "success_rate": self.success_rate, "latency": s,
                "most_used": [{"chain": c, "executions": n} for c, n in self.most_used()]}


class _Tenant:
    __slots__ = ("id", "tier", "registry", "components", "gate", "calls", "resolved",
                 "contexts", "worker", "period", "block", "refused_base", "refused_chains",
                 "day_refused_rate", "lock")

    def __init__(self, tenant_id: str, tier: Tier) -> None:
        self.id = tenant_id
        self.tier = tier
        self.registry: ChainRegistry = None  # type: ignore[assignment]
        self.components: ComponentRegistry | None = None
        self.gate = engine.TenantGate()
        self.calls: dict[tuple[str, str], Any] = {}
        self.resolved: dict[tuple[str, str], Any] = {}
        self.contexts: dict[str, TenantContext] = {}
        self.worker: ProcessWorker | None = None
        self.period = ""
        self.block = 1
        self.refused_base = 0
        self.refused_chains = 0
        self.day_refused_rate = 0
        self.lock = threading.Lock()


ChainRef = str | ChainDefinition


class TenantContext(UserContext):
    """The manager's interned user context: one object per tenant, user and tier.

    The runner interns every execution's context in a dict; hashing by identity keeps that
    lookup in C (a dataclass ``__hash__`` is a Python call per execution). It compares equal
    to any :class:`UserContext` with the same fields.
    """

    __slots__ = ()
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UserContext):
            return NotImplemented
        return (self.tenant_id, self.user_id, self.tier) == \
            (other.tenant_id, other.user_id, other.tier)


_want_record = threading.local()
"""Set by execute_user_chain around a process-isolated execution: the worker sends the record
back with the output (other executions skip building it)."""


class TenantManager:
    """Hold one chain registry per tenant; admit, execute and account by tier.

    Parameters
    ----------
    tiers : TierSet, optional
        The tiers (:func:`~flowchain.tenancy.load_tiers`); the shipped defaults when omitted.
    components : ComponentRegistry, optional
        Where component names resolve (dedicated and process tenants get their own instances).
    db : str or Path, optional
        The SQLite database for tenants, daily usage and fired triggers (the node's database);
        usage lives in memory only without it.
    sinks : iterable
        Alert sinks that receive upgrade triggers.
    histograms : HistogramSettings
    shared_ring_capacity : int
        Executions kept per chain by the shared runners.
    wall_clock : callable
        Unix time in seconds (the day's boundaries); ``time.time`` unless testing.
    reserve_fraction : float
        The share of a daily quota claimed in the database per write (a crash over-counts by at
        most this much of the quota; smaller means more writes).
    sample_rate : float
        The share of executions run through the measuring path (per step: wall time, thread
        CPU time, allocated memory; see :mod:`flowchain.tenancy.resources`); 0 (the default)
        turns it off. ``0.01`` measures one execution in 100 of every admitted call.
    """

    def __init__(self, tiers: TierSet | None = None, *,
                 components: ComponentRegistry | None = None,
                 db: str | Path | None = None, sinks: Iterable[Any] = (),
                 histograms: HistogramSettings = DEFAULT_SETTINGS,
                 shared_ring_capacity: int = 4096, wall_clock: Any = time.time,
                 reserve_fraction: float = 0.01, sample_rate: float = 0.0) -> None:
        self._sample_every = sample_every(sample_rate)
        self._probes: dict[tuple[str, str, str], ResourceProbe] = {}
        if not 0 < reserve_fraction <= 1:
            raise ValueError(f"reserve_fraction is a fraction in (0, 1], got {reserve_fraction}")
        self.tiers = tiers if tiers is not None else load_tiers()
        self.components = components if components is not None else default_components
        self.histogram_settings = histograms
        self._layout = histograms.layout()
        self._meters = MeterArena(int(self._layout["counts_len"]))
        self.store = UsageStore(db) if db is not None else None
        self.triggers = UpgradeTriggers(self.tiers, self.store, sinks)
        self.shared = ChainRegistry(self.components, ring_capacity=shared_ring_capacity,
                                    histograms=histograms)
        self.reserve_fraction = reserve_fraction
        self.usage_write_errors = 0
        self._wall = wall_clock
        self._tenants: dict[str, _Tenant] = {}
        self._lock = threading.Lock()
        self._periodic: PeriodicThread | None = None

    # ------------------------------------------------------------------ tenants

    def add_tenant(self, tenant_id: str, tier: str = "free") -> None:
        """Add a tenant on ``tier``; its day resumes from the database's usage.

        Raises
        ------
        UnknownTenantError
            When ``tenant_id`` is not a usable id (see :func:`check_tenant_id`).
        UnknownTierError
            When ``tier`` is not defined.
        TenancyError
            When the tenant already exists (change its tier with :meth:`set_tier`).
        """
        check_tenant_id(tenant_id)
        spec = self.tiers.get(tier)
        with self._lock:
            if tenant_id in self._tenants:
                raise TenancyError(f"tenant {tenant_id!r} already exists (tier "
                                   f"{self._tenants[tenant_id].tier.name!r}); use set_tier to "
                                   "change its tier")
            t = _Tenant(tenant_id, spec)
            self._build_backend(t)
            self._configure_gate(t)
            self._tenants[tenant_id] = t
        if self.store is not None:
            self.store.save_tenant(tenant_id, spec.name)

    def load_tenants(self) -> list[str]:
        """Add every tenant stored in the database (with its stored tier); return their ids."""
        if self.store is None:
            return []
        added = []
        for row in self.store.tenants():
            if row["tenant"] not in self._tenants and row["tier"] in self.tiers:
                self.add_tenant(row["tenant"], row["tier"])
                added.append(row["tenant"])
        return added

    def tenants(self) -> list[str]:
        """The tenant ids, sorted (an operator's view)."""
        return sorted(self._tenants)

    def tier_of(self, tenant_id: str) -> Tier:
        return self._tenant(tenant_id).tier

    def set_tier(self, tenant_id: str, tier: str) -> None:
        """Move a tenant to ``tier``: new limits at once, chains moved to the new isolation.

        Executions already running finish where they started; none is interrupted.

        Raises
        ------
        FeatureGatedError
            When a registered chain needs a feature or size the new tier does not allow.
        """
        t = self._tenant(tenant_id)
        spec = self.tiers.get(tier)
        definitions = [d for name in t.registry.list_chains()
                       for d in [t.registry.get_chain(v.chain_id)
                                 for v in t.registry.versions(name.name)]]
        for d in definitions:
            self._gate_definition(t.id, spec, d)
        with t.lock:
            old_worker = t.worker
            moved = spec.isolation != t.tier.isolation or spec.ring_capacity != \
                t.tier.ring_capacity
            t.tier = spec
            t.contexts.clear()
            t.resolved.clear()
            if moved:
                t.calls = {}
                t.worker = None
                self._build_backend(t)
                for d in definitions:
                    self._register_backend(t, d)
            else:
                t.calls = {}
            self._configure_gate(t, keep_usage=True)
        if old_worker is not None and old_worker is not t.worker:
            old_worker.close()
        if self.store is not None:
            self.store.save_tenant(tenant_id, spec.name)

    def _tenant(self, tenant_id: str) -> _Tenant:
        t = self._tenants.get(tenant_id) if isinstance(tenant_id, str) else None
        if t is None:
            check_tenant_id(tenant_id)
            raise UnknownTenantError(f"unknown tenant {tenant_id!r}; add it with "
                                     "TenantManager.add_tenant (or `flowchain tenants list` to "
                                     "see the known ones)")
        return t

    def _build_backend(self, t: _Tenant) -> None:
        tier = t.tier
        if tier.isolation == "shared":
            t.components = None
            t.registry = ChainRegistry(self.components, ring_capacity=tier.ring_capacity,
                                       histograms=self.histogram_settings)
        else:
            t.components = ComponentRegistry()
            t.registry = ChainRegistry(t.components, ring_capacity=tier.ring_capacity,
                                       histograms=self.histogram_settings)
        if tier.isolation == "process":
            t.worker = ProcessWorker(t.id, t.components, self.histogram_settings,
                                     ring_capacity=tier.ring_capacity,
                                     timeout_s=tier.execution_timeout_s,
                                     memory_limit_mb=tier.worker_memory_mb)

    # ------------------------------------------------------------------ admission state

    def _engine_period_end(self) -> int:
        wall = self._wall()
        return engine.now_ns() + max(0, int((utc_day_end(wall) - wall) * 1e9))

    def _configure_gate(self, t: _Tenant, keep_usage: bool = False) -> None:
        tier, gate = t.tier, t.gate
        rate = tier.executions_per_second
        gate.interval_ns = max(1, int(round(1e9 / rate))) if rate else 0
        gate.tolerance_ns = (tier.effective_burst - 1) * gate.interval_ns
        gate.max_running = tier.concurrent or 0
        gate.day_limit = tier.executions_per_day or 0
        quota = tier.executions_per_day
        t.block = max(1, int(quota * self.reserve_fraction)) if quota else 100_000
        gate.on_refuse = lambda g, code, wait_ns: self._refused(t, code, wait_ns)
        gate.on_period = lambda g, now: self._new_period(t)
        gate.on_reserve = lambda g: self._reserve(t)
        if not keep_usage:
            t.period = utc_day(self._wall())
            used = self.store.day(t.id, t.period).counted if self.store is not None else 0
            gate.day_used = used
            gate.day_reserved = used
        gate.period_end_ns = self._engine_period_end()

    def _reserve(self, t: _Tenant) -> None:
        gate = t.gate
        gate.day_reserved = gate.day_used - 1 + t.block
        if self.store is None:
            return
        try:
            self.store.reserve(t.id, t.period, gate.day_reserved)
        except Exception:  # never fail an admission on the cold store; retried at the flush
            self.usage_write_errors += 1
            log.exception("tenant %r: the usage claim could not be written", t.id)

    def _new_period(self, t: _Tenant) -> None:
        gate = t.gate
        period = utc_day(self._wall())
        if period != t.period:
            used = 0
            try:  # the day must roll even when the database does not answer
                self._persist(t, release=True)
                if self.store is not None:
                    used = self.store.day(t.id, period).counted
            except Exception:
                self.usage_write_errors += 1
                log.exception("tenant %r: usage could not be persisted at the day's end", t.id)
            t.period = period
            gate.day_used = used
            gate.day_reserved = used
            gate.peak_running = gate.running
            gate.max_depth_ns = 0
            t.refused_base = self._refused_total(t)
            t.day_refused_rate = gate.refused_rate
        gate.period_end_ns = self._engine_period_end()

    @staticmethod
    def _refused_total(t: _Tenant) -> int:
        g = t.gate
        return g.refused_concurrent + g.refused_rate + g.refused_daily

    def _refused(self, t: _Tenant, code: int, wait_ns: int) -> QuotaExceeded:
        gate, tier = t.gate, t.tier
        limit = _REFUSAL_LIMIT[code]
        if code == engine.ADMIT_CONCURRENT:
            usage, bound, resets = float(gate.running), float(tier.concurrent or 0), None
        elif code == engine.ADMIT_RATE:
            usage, bound = float(tier.effective_burst), float(tier.executions_per_second or 0)
            resets = wait_ns / 1e9
        else:
            usage, bound = float(gate.day_used), float(tier.executions_per_day or 0)
            resets = wait_ns / 1e9
        nxt = self.tiers.next_above(tier)
        try:
            self.triggers.observe(t.id, tier, limit, tier.limit(limit) or 0, t.period)
        except Exception:  # the refusal itself must still be raised
            log.exception("tenant %r: an upgrade trigger could not be recorded", t.id)
        return QuotaExceeded(tenant_id=t.id, tier=tier.name, limit=limit, limit_value=bound,
                             usage=usage, resets_in_s=resets,
                             resets_at=None if resets is None else self._wall() + resets,
                             next_tier=nxt.name if nxt else None)

    # ------------------------------------------------------------------ registration

    def _gate_definition(self, tenant_id: str, tier: Tier, definition: ChainDefinition) -> None:
        steps = len(definition.steps)
        if tier.steps_per_chain is not None and steps > tier.steps_per_chain:
            allowed = self.tiers.first_allowing("steps_per_chain", steps)
            raise FeatureGatedError(
                f"tenant {tenant_id!r}: chain {definition.name!r} has {steps} steps; tier "
                f"{tier.name!r} allows {tier.steps_per_chain} per chain"
                + (f"; tier {allowed.name!r} allows it" if allowed else "; no tier allows it"),
                tenant_id=tenant_id, tier=tier.name, feature="steps_per_chain",
                allowed_in=allowed.name if allowed else None)
        for step in definition.steps:
            feature = self.tiers.feature_of(step.component) \
                if isinstance(step.component, str) else None
            if feature is not None and feature not in tier.features:
                allowed = self.tiers.first_with_feature(feature)
                raise FeatureGatedError(
                    f"tenant {tenant_id!r}: chain {definition.name!r} step {step.name!r} uses "
                    f"component {step.component!r}, part of feature {feature!r}, which tier "
                    f"{tier.name!r} does not include"
                    + (f"; tier {allowed.name!r} allows it" if allowed
                       else "; no tier allows it"),
                    tenant_id=tenant_id, tier=tier.name, feature=feature,
                    allowed_in=allowed.name if allowed else None)

    def register_chain(self, tenant_id: str, definition: ChainDefinition) -> str:
        """Validate, gate and register a chain for a tenant; return its id.

        Raises
        ------
        FeatureGatedError
            When the chain uses a component of a feature the tier lacks, or has more steps
            than the tier allows; the message names the tier that allows it.
        QuotaExceeded
            When the tenant already has as many chains as its tier allows (``chains``).
        ChainValidationError
            When the definition is invalid or names unknown components.
        """
        return self.register_chains(tenant_id, [definition])[0]

    def register_file(self, tenant_id: str, path: str | Path) -> list[str]:
        """Register every chain of a YAML file for a tenant (all or none)."""
        return self.register_chains(tenant_id, load_chains_file(path))

    def register_chains(self, tenant_id: str, definitions: list[ChainDefinition]) -> list[str]:
        """Register several chains for a tenant: every check passes before any is registered."""
        t = self._tenant(tenant_id)
        with t.lock:
            tier = t.tier
            problems = []
            for d in definitions:
                self._gate_definition(t.id, tier, d)
                self._copy_components(t, d)
                problems.extend(t.registry._problems(d))
            if problems:
                raise ChainValidationError(problems)
            known = {c.name for c in t.registry.list_chains()}
            new = {d.name for d in definitions} - known
            if tier.chains is not None and len(known) + len(new) > tier.chains:
                t.refused_chains += 1
                self.triggers.observe(t.id, tier, "chains", tier.chains, LIFETIME)
                nxt = self.tiers.first_allowing("chains", len(known) + len(new))
                raise QuotaExceeded(tenant_id=t.id, tier=tier.name, limit="chains",
                                    limit_value=tier.chains, usage=len(known),
                                    resets_in_s=None, resets_at=None,
                                    next_tier=nxt.name if nxt else None)
            ids = []
            for d in definitions:
                ids.append(t.registry.register_chain(d))
                self._register_backend(t, d)
            t.resolved.clear()
            if tier.chains is not None:
                self.triggers.observe(t.id, tier, "chains", len(known) + len(new), LIFETIME)
        return ids

    def _copy_components(self, t: _Tenant, definition: ChainDefinition) -> None:
        if t.components is None:
            return
        for step in definition.steps:
            name = step.component
            if isinstance(name, str) and name not in t.components and name in self.components:
                t.components.register(name, self.components.implementation(name))

    def _register_backend(self, t: _Tenant, definition: ChainDefinition) -> None:
        isolation = t.tier.isolation
        if isolation == "shared":
            self.shared.register_chain(definition)
        elif isolation == "process":
            assert t.worker is not None
            t.worker.register(definition)

    # ------------------------------------------------------------------ execution

    def _context(self, t: _Tenant, user_id: str) -> UserContext:
        ctx = t.contexts.get(user_id)
        if ctx is None:
            if not isinstance(user_id, str) or not user_id:
                raise ValueError(f"a user id is a non-empty string, got {user_id!r}")
            ctx = t.contexts[user_id] = TenantContext(t.id, user_id, t.tier.name)
        return ctx

    def runner(self, tenant_id: str, chain: ChainRef, user_id: str = "default") -> Any:
        """Return the admitted hot-path handle of a tenant's chain for a user.

        ``handle.run(data)`` admits (rate, concurrency, daily quota), runs and meters one
        execution and returns its output; ``await handle.run_async(data)`` awaits coroutine
        steps. A refusal raises :class:`QuotaExceeded` before anything runs.

        Raises
        ------
        UnknownTenantError, UnknownChainError
            When the tenant, or the chain in that tenant's registry, is unknown.
        """
        t = self._tenant(tenant_id)
        key = (chain if isinstance(chain, str) else chain.chain_id, user_id)
        call = t.resolved.get(key)
        if call is not None:
            return call
        with t.lock:
            chain_id = t.registry.version_of(chain).chain_id
            ctx = self._context(t, user_id)
            call = t.calls.get((chain_id, user_id))
            if call is None:
                run, run_async = self._backend_calls(t, chain_id)
                call = engine.AdmittedCall(t.gate, run, run_async, ctx, self._layout,
                                           *self._meters.place())
                self._arm(t, chain_id, call)
                t.calls[(chain_id, user_id)] = call
            t.resolved[key] = call
        return call

    def _backend_calls(self, t: _Tenant, chain_id: str) -> tuple[Any, Any]:
        isolation = t.tier.isolation
        if isolation == "process":
            worker = t.worker
            assert worker is not None

            def run(data: Any, context: Any) -> Any:
                if not getattr(_want_record, "on", False):
                    return worker.execute(chain_id, data, context)
                out, _want_record.record = worker.execute(chain_id, data, context,
                                                          with_record=True)
                return out

            async def run_async(data: Any, context: Any) -> Any:
                return await worker.execute_async(chain_id, data, context)

            return run, run_async
        registry = self.shared if isolation == "shared" else t.registry
        r = registry.runner(chain_id)
        return r.run, r.run_async

    # ------------------------------------------------------------------ resource sampling

    @property
    def sample_rate(self) -> float:
        """The share of executions measured (0: off)."""
        return 1 / self._sample_every if self._sample_every else 0.0

    def set_sampling(self, rate: float) -> None:
        """Measure ``rate`` of every admitted call's executions from now on (0: off).

        Raises
        ------
        ValueError
            When ``rate`` is not within [0, 1].
        """
        self._sample_every = sample_every(rate)
        for t in list(self._tenants.values()):
            with t.lock:
                for (chain_id, _), call in list(t.calls.items()):
                    self._arm(t, chain_id, call)

    def _probe(self, t: _Tenant, chain_id: str) -> ResourceProbe:
        key = (t.id, t.tier.name, chain_id)
        probe = self._probes.get(key)
        if probe is None:
            d = t.registry.get_chain(chain_id)
            probe = self._probes[key] = ResourceProbe(t.id, t.tier.name, d.name, chain_id,
                                                      tuple(d.step_names), self._layout)
        return probe

    def _arm(self, t: _Tenant, chain_id: str, call: Any) -> None:
        """Route 1 execution in N of ``call`` through the measuring path (or none)."""
        if not self._sample_every:
            call.sample(None, 0)
            return
        probe = self._probe(t, chain_id)
        if t.tier.isolation == "process":
            worker = t.worker
            assert worker is not None

            def measured(data: Any, context: Any) -> Any:
                want = getattr(_want_record, "on", False)
                try:
                    value, readings = worker.execute(chain_id, data, context,
                                                     with_record=want, measure=True)
                except ChainStepError:
                    probe.failed += 1
                    raise
                for reading in readings:
                    probe.record(*reading)
                if want:
                    value, _want_record.record = value
                return value
        else:
            registry = self.shared if t.tier.isolation == "shared" else t.registry
            run_measured = registry.runner(chain_id).run_measured

            def measured(data: Any, context: Any) -> Any:
                return run_measured(data, context, probe)
        call.sample(measured, self._sample_every)

    def resources(self, tenant_id: str) -> list[dict[str, Any]]:
        """The tenant's measured resource use per chain version and step (sampled
        executions since start; step ``""`` is the whole execution)."""
        t = self._tenant(tenant_id)
        return [{"tenant": p.tenant, "tier": p.tier, "chain": p.chain,
                 "chain_id": p.chain_id, "failed_samples": p.failed, "steps": p.summary()}
                for (tid, _, _), p in list(self._probes.items()) if tid == t.id]

    def resource_probes(self) -> list[ResourceProbe]:
        """Every tenant's probes (for the history writer; an operator's view)."""
        return list(self._probes.values())

    def execute(self, tenant_id: str, chain: ChainRef, data: Any, *,
                user_id: str = "default") -> Any:
        """Admit and run one execution of a tenant's chain; return its output.

        Raises
        ------
        QuotaExceeded
            When the tenant's rate, concurrency or daily quota refuses it (nothing ran).
        ChainStepError
            When a step raised (the record is on the exception).
        WorkerCrashed
            For process isolation, when the worker died or hung (it was restarted).
        """
        return self.runner(tenant_id, chain, user_id).run(data)

    async def execute_async(self, tenant_id: str, chain: ChainRef, data: Any, *,
                            user_id: str = "default") -> Any:
        """:meth:`execute` awaiting coroutine steps; executions interleave on the loop."""
        return await self.runner(tenant_id, chain, user_id).run_async(data)

    def execute_user_chain(self, chain_id: ChainRef, user_context: UserContext,
                           input_data: Any) -> ChainExecution:
        """Run a chain for ``user_context`` and return its record (failures included).

        The tenant comes from the context; its tier is the tenant's own (a context's tier is
        a label, never trusted for admission).

        Raises
        ------
        QuotaExceeded, UnknownTenantError, UnknownChainError, WorkerCrashed
        """
        t = self._tenant(user_context.tenant_id)
        call = self.runner(t.id, chain_id, user_context.user_id)
        isolation = t.tier.isolation
        if isolation == "process":
            _want_record.on = True
            try:
                call.run(input_data)
            except ChainStepError as exc:
                return exc.execution
            finally:
                _want_record.on = False
            return _want_record.record
        registry = self.shared if isolation == "shared" else t.registry
        cid = t.registry.version_of(chain_id).chain_id
        runner = registry.runner(cid)
        seq = runner.executions
        try:
            call.run(input_data)
        except ChainStepError as exc:
            return exc.execution
        record = registry.execution(cid, seq)
        assert record is not None
        return record

    async def execute_user_chain_async(self, chain_id: ChainRef, user_context: UserContext,
                                       input_data: Any) -> ChainExecution:
        """:meth:`execute_user_chain` awaiting coroutine steps (not for process isolation)."""
        t = self._tenant(user_context.tenant_id)
        if t.tier.isolation == "process":
            import asyncio

            return await asyncio.to_thread(self.execute_user_chain, chain_id, user_context,
                                           input_data)
        call = self.runner(t.id, chain_id, user_context.user_id)
        registry = self.shared if t.tier.isolation == "shared" else t.registry
        cid = t.registry.version_of(chain_id).chain_id
        runner = registry.runner(cid)
        seq = runner.executions
        try:
            await call.run_async(input_data)
        except ChainStepError as exc:
            return exc.execution
        record = registry.execution(cid, seq)
        assert record is not None
        return record

    # ------------------------------------------------------------------ reads (tenant-scoped)

    def list_chains(self, tenant_id: str) -> list[ChainDefinition]:
        """The latest version of each of the tenant's chains."""
        return self._tenant(tenant_id).registry.list_chains()

    def get_chain(self, tenant_id: str, chain: ChainRef) -> ChainDefinition:
        """A chain of the tenant, by id or name (latest version)."""
        return self._tenant(tenant_id).registry.get_chain(chain)

    def versions(self, tenant_id: str, name: str) -> list:
        """Every version of one of the tenant's chain names."""
        t = self._tenant(tenant_id)
        t.registry.version_of(name)  # unknown names are refused, not answered with []
        return t.registry.versions(name)

    def _owned(self, t: _Tenant, record: ChainExecution | None) -> ChainExecution | None:
        if record is None or t.tier.isolation != "shared":
            return record
        ctx = record.user_context
        return record if ctx is not None and ctx.tenant_id == t.id else None

    def _where(self, t: _Tenant, chain: ChainRef) -> tuple[str, Any]:
        return t.registry.version_of(chain).chain_id, \
            (self.shared if t.tier.isolation == "shared" else t.registry)

    def execution(self, tenant_id: str, chain: ChainRef, seq: int) -> ChainExecution | None:
        """Execution ``seq`` of a tenant's chain; None when gone or not the tenant's."""
        t = self._tenant(tenant_id)
        cid, registry = self._where(t, chain)
        if t.tier.isolation == "process":
            assert t.worker is not None
            return t.worker.query("execution", cid, seq)
        return self._owned(t, registry.execution(cid, seq))

    def recent_executions(self, tenant_id: str, chain: ChainRef,
                          limit: int = 100) -> list[ChainExecution]:
        """The tenant's latest executions of a chain still held, newest first."""
        t = self._tenant(tenant_id)
        cid, registry = self._where(t, chain)
        if t.tier.isolation == "process":
            assert t.worker is not None
            return t.worker.query("recent_executions", cid, limit)
        if t.tier.isolation != "shared":
            return registry.recent_executions(cid, limit)
        out = []
        for record in registry.recent_executions(cid, registry.ring_capacity):
            if self._owned(t, record) is not None:
                out.append(record)
                if len(out) >= limit:
                    break
        return out

    def last_execution(self, tenant_id: str, chain: ChainRef) -> ChainExecution | None:
        """The tenant's most recent execution of a chain, None before the first."""
        found = self.recent_executions(tenant_id, chain, 1)
        return found[0] if found else None

    def failures(self, tenant_id: str, chain: ChainRef) -> list[ChainExecution]:
        """The tenant's kept failed executions of a chain, oldest first."""
        t = self._tenant(tenant_id)
        cid, registry = self._where(t, chain)
        if t.tier.isolation == "process":
            assert t.worker is not None
            return t.worker.query("failures", cid)
        return [r for r in registry.failures(cid) if self._owned(t, r) is not None]

    def active_executions(self, tenant_id: str) -> list[ChainExecution]:
        """The tenant's executions running now."""
        t = self._tenant(tenant_id)
        if t.tier.isolation == "process":
            assert t.worker is not None
            return t.worker.query("active_executions") if t.worker.pid else []
        registry = self.shared if t.tier.isolation == "shared" else t.registry
        mine = set(t.registry.chain_ids())
        return [r for r in registry.active_executions()
                if r.chain_id in mine and self._owned(t, r) is not None]

    def histogram(self, tenant_id: str, chain: ChainRef,
                  step: str | None = None) -> LatencyHistogram:
        """A tenant's latency histogram of a chain (or step).

        Dedicated and process tenants: the runner's own HDR counts, everything since start.
        Shared tenants: the tenant's labelled records still in the shared ring (the shared
        HDR counts mix tenants and are never handed to one).
        """
        t = self._tenant(tenant_id)
        cid, registry = self._where(t, chain)
        if t.tier.isolation == "process":
            assert t.worker is not None
            return LatencyHistogram.decode(t.worker.query("histogram", cid, step))
        if t.tier.isolation == "dedicated":
            return registry.histogram(cid, step)
        definition = t.registry.get_chain(cid)
        if step is not None and step not in definition.step_names:
            raise KeyError(f"chain {definition.name!r} has no step {step!r}; its steps: "
                           f"{', '.join(definition.step_names)}")
        hist = LatencyHistogram()
        for record in self.recent_executions(tenant_id, cid, registry.ring_capacity):
            if not record.is_successful():
                continue
            if step is None:
                hist.hdr.record_value(max(1, record.total_duration))
            else:
                hist.hdr.record_value(max(1, next(
                    s.duration_ns for s in record.steps if s.name == step)))
        return hist

    def stats(self, tenant_id: str, chain: ChainRef) -> ChainStats:
        """Executions, outcomes and latency of a tenant's chain (see :meth:`histogram`).

        Shared tenants: ``executions``, ``succeeded`` and ``failures`` are exact (the tenant's
        admitted calls and meters); the latency series and step errors are those of the
        tenant's records still in the shared ring.
        """
        t = self._tenant(tenant_id)
        cid, registry = self._where(t, chain)
        if t.tier.isolation == "process":
            assert t.worker is not None
            return t.worker.query("stats", cid)
        if t.tier.isolation == "dedicated":
            return registry.stats(cid)
        calls = [c for (c_id, _), c in t.calls.items() if c_id == cid]
        executions = sum(c.executions for c in calls)
        failures = sum(c.failures for c in calls)
        succeeded = sum(int(c.meter.snapshot(0)[1][0]) for c in calls)
        definition = t.registry.get_chain(cid)
        n = len(definition.steps)
        ok = [LatencyHistogram() for _ in range(n + 1)]
        failed = [LatencyHistogram() for _ in range(n + 1)]
        errors = [0] * n
        for record in self.recent_executions(tenant_id, cid, registry.ring_capacity):
            total = record.total_duration
            if not record.is_complete() or total is None:
                continue
            for i, step in enumerate(record.steps):
                series = ok if step.status is ExecutionStatus.SUCCEEDED else failed
                series[i].hdr.record_value(max(1, step.duration_ns))
                if step.status is ExecutionStatus.FAILED:
                    errors[i] += 1
            whole = ok if record.is_successful() else failed
            whole[n].hdr.record_value(max(1, total))
        return ChainStats(
            chain_id=cid, chain=definition.name, version=t.registry.version_of(cid).version,
            executions=executions, succeeded=succeeded, failures=failures,
            running=max(0, executions - succeeded - failures),
            success_ratio=(executions - failures) / executions if executions else None,
            latency=ok[n].latency(), failure_latency=failed[n].latency(),
            steps=tuple(StepStats(s.name, s.component, s.expected_duration_ns, errors[i],
                                  ok[i].latency(), failed[i].latency())
                        for i, s in enumerate(definition.steps)))

    def user_performance(self, tenant_id: str, user_id: str) -> UserPerformance:
        """A user's executions, failures, latency and most-used chains (exact, since start)."""
        t = self._tenant(tenant_id)
        merged = LatencyHistogram()
        executions = failures = 0
        by_chain: dict[str, int] = {}
        for (cid, uid), call in list(t.calls.items()):
            if uid != user_id:
                continue
            counts, stats = call.meter.snapshot(0)
            merged.merge(LatencyHistogram.from_counts(counts, stats, self.histogram_settings))
            executions += call.executions
            failures += call.failures
            name = t.registry.get_chain(cid).name
            by_chain[name] = by_chain.get(name, 0) + call.executions
        return UserPerformance(t.id, user_id, t.tier.name, executions, failures, merged,
                               by_chain)

    def meters(self, tenant_id: str | None = None) -> list[tuple[UserContext, str, str, Any]]:
        """(context, chain name, chain id, admitted call) of every metered path (cold path)."""
        out = []
        for t in ([self._tenant(tenant_id)] if tenant_id is not None
                  else list(self._tenants.values())):
            for (cid, _), call in list(t.calls.items()):
                out.append((call.context, t.registry.get_chain(cid).name, cid, call))
        return out

    # ------------------------------------------------------------------ usage

    def usage(self, tenant_id: str) -> TenantUsage:
        """The tenant's usage against its tier now."""
        t = self._tenant(tenant_id)
        gate, tier = t.gate, t.tier
        chains = len(t.registry.list_chains())
        ratios: dict[str, float] = {}
        if tier.executions_per_day:
            ratios["executions_per_day"] = gate.day_used / tier.executions_per_day
        if tier.concurrent:
            ratios["concurrent"] = gate.peak_running / tier.concurrent
        if tier.executions_per_second:
            depth = gate.max_depth_ns / max(1, gate.tolerance_ns + gate.interval_ns)
            ratios["executions_per_second"] = 1.0 if gate.refused_rate > t.day_refused_rate \
                else min(1.0, depth)
        if tier.chains:
            ratios["chains"] = chains / tier.chains
        return TenantUsage(
            t.id, tier.name, tier.isolation, t.period, int(gate.day_used), int(gate.running),
            int(gate.peak_running), int(gate.admitted),
            {"concurrent": int(gate.refused_concurrent), "executions_per_second":
             int(gate.refused_rate), "executions_per_day": int(gate.refused_daily),
             "chains": t.refused_chains},
            chains, ratios, dict(t.worker.restarts) if t.worker is not None else {})

    def _persist(self, t: _Tenant, release: bool = False) -> None:
        if self.store is None:
            return
        refused = self._refused_total(t) - t.refused_base
        self.store.record(t.id, t.period, int(t.gate.day_used), refused, release=release)

    def check_usage(self) -> int:
        """Persist every tenant's exact usage and fire the triggers reached; return fired.

        The cold path calls this every ``interval_s`` once :meth:`start` ran.
        """
        fired = 0
        for t in list(self._tenants.values()):
            if engine.now_ns() >= t.gate.period_end_ns:
                with t.lock:
                    self._new_period(t)
            try:
                self._persist(t)
            except Exception:
                self.usage_write_errors += 1
                log.exception("tenant %r: usage could not be persisted", t.id)
            u = self.usage(t.id)
            for limit, ratio in u.ratios.items():
                bound = t.tier.limit(limit) or 0
                period = LIFETIME if limit == "chains" else t.period
                fired += self.triggers.observe(t.id, t.tier, limit, ratio * bound, period)
        return fired

    def dashboard_view(self) -> dict[str, Any]:
        """What the dashboard shows (an operator's view): every tenant's usage and the latest
        upgrade triggers, newest first."""
        return {"tenants": [self.usage(t).to_dict() for t in self.tenants()],
                "upgrade_triggers": [e.to_dict() for e in reversed(self.triggers.recent)]}

    def registries(self) -> dict[str, ChainRegistry]:
        """Tenant id -> registry of every dedicated tenant, plus :data:`SHARED_KEY` -> the
        shared runners (for the history writer, metrics and monitor; an operator's view)."""
        out = {SHARED_KEY: self.shared}
        for t in self._tenants.values():
            if t.tier.isolation == "dedicated":
                out[t.id] = t.registry
        return out

    # ------------------------------------------------------------------ lifecycle

    def start(self, interval_s: float = 1.0) -> TenantManager:
        """Persist usage and check triggers every ``interval_s`` in a daemon thread."""
        if self._periodic is None:
            self._periodic = PeriodicThread(self._guarded_check, interval_s,
                                            "flowchain-tenancy")
            self._periodic.start()
        return self

    def _guarded_check(self) -> None:
        try:
            self.check_usage()
        except Exception:
            log.exception("tenant usage check failed")

    def close(self) -> None:
        """Stop the thread and workers, and persist every tenant's exact usage."""
        if self._periodic is not None:
            self._periodic.stop(10)
            self._periodic = None
        for t in list(self._tenants.values()):
            if t.worker is not None:
                t.worker.close()
            try:
                self._persist(t, release=True)
            except Exception:
                log.exception("tenant %r: usage could not be persisted at close", t.id)
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> TenantManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
