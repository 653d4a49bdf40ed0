"""Business workflows on the hub: a tenant registers chains and runs them for its users.

:class:`WorkflowService` hosts a :class:`~flowchain.tenancy.TenantManager` in the hub process:

* :meth:`WorkflowService.register_business_chain` parses a tenant's chain (YAML text, or JSON),
  validates it and gates it by the tenant's tier (a component of a feature the tier lacks, too
  many steps, one chain more than the tier allows: refused with the reason), then stores it;
* :meth:`WorkflowService.execute_business_workflow` (and :meth:`WorkflowService.submit`, which
  returns while the execution runs) admits the execution first (the tier's rate, concurrency and
  daily quota; a refusal is :class:`~flowchain.tenancy.QuotaExceeded` naming the limit) and runs
  it on the hub's execution threads through the tenant's isolation level: ``shared`` and
  ``dedicated`` tenants in the hub process, ``process`` tenants in their own worker process;
* :meth:`WorkflowService.follow` reads an execution: while it runs on this hub, its current
  step, completed steps, progress and ETA from the engine's live record; once it ended, from
  the store (any hub);
* user history and performance, the tenant's analytics, and the optimizer's suggestions.

The hub holds no state of its own: tenants (with their tier and token hash), registered chains
and finished executions are in the hub's store (:mod:`flowchain.hub.workflow_store`), and each
request first brings this hub's manager up to date with them (a chain registered through
another hub is registered here on the tenant's next request). What only the hub running an
execution knows is the execution in progress: its live step and ETA are answered by that hub;
another hub answers ``running`` with the hub's id from the store. Admission counters (rate,
concurrency, daily quota) are each hub's own: with several hubs, a tenant's limits hold per hub.
"""
from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowchain._native import engine
from flowchain.chain import ChainDefinition, dump_chains, load_chains
from flowchain.components import ComponentRegistry
from flowchain.context import UserContext
from flowchain.errors import ChainStepError, FlowChainError, UnknownChainError
from flowchain.execution import ChainExecution
from flowchain.histograms import LatencyHistogram
from flowchain.hub.workflow_store import StoredChain, StoredExecution, WorkflowStore
from flowchain.tenancy import QuotaExceeded, TenantManager, TierSet, UnknownTenantError
from flowchain.tenancy import manager as tenancy_manager
from flowchain.tenancy.errors import WorkerCrashed
from flowchain.tenancy.manager import SHARED_KEY

log = logging.getLogger("flowchain.hub.workflows")

DEFAULT_THREADS = 16
"""Executions the hub runs at once (a tenant's ``concurrent`` limit applies within them)."""
MAX_DEFINITION_CHARS = 256 * 1024
"""The longest chain definition accepted."""


class WorkflowError(FlowChainError):
    """A workflow request that cannot be served; the message says why."""


class UnknownExecutionError(WorkflowError, LookupError):
    """No execution of that id for the tenant (another tenant's ids read the same)."""


class OptimizerUnavailable(WorkflowError, RuntimeError):
    """The optimizer is not installed, or has no history to read."""


@dataclass
class LiveExecution:
    """An execution submitted on this hub: running, or ended and stored."""

    execution_id: str
    tenant: str
    user: str
    workflow: str
    chain_id: str
    start_ns: int
    future: Future[StoredExecution] = field(repr=False)
    seq: int | None = None
    state: str = "queued"
    output: Any = None


def parse_definition(definition: str | dict | list, tenant: str) -> list[ChainDefinition]:
    """Return the chains of a tenant's definition: YAML text (JSON text is YAML too) or a
    mapping as parsed from JSON (chain name -> chain, optionally under ``Data_Flow_Chains``).

    Raises
    ------
    ChainValidationError
        On malformed text or an invalid chain (naming the line, chain and step).
    ValueError
        On a definition that is neither text nor a mapping, or too long.
    """
    if isinstance(definition, dict):
        text = json.dumps(definition)
    elif isinstance(definition, str):
        text = definition
    else:
        raise ValueError("a chain definition is YAML text or a JSON object of chains, got "
                         f"{type(definition).__name__}")
    if len(text) > MAX_DEFINITION_CHARS:
        raise ValueError(f"the chain definition has {len(text)} characters; at most "
                         f"{MAX_DEFINITION_CHARS} are accepted")
    return load_chains(text, source=f"the chain definition of tenant {tenant!r}")


def _hub_id() -> str:
    return f"{socket.gethostname()}:{secrets.token_hex(3)}"


class WorkflowService:
    """The tenant manager of the hub, over the hub's store.

    Parameters
    ----------
    store : HubStore
        The hub's own store (not a tenant view): the workflow tables are created in it.
    tiers : TierSet, optional
        The tiers tenants are on (the shipped free / pro / enterprise by default).
    components : ComponentRegistry, optional
        Where chain steps' component names resolve (the process-wide registry by default: what
        the hub's imported modules registered).
    threads : int
        Executions run at once on this hub.
    optimizer_db : path, optional
        A history database for the optimizer's suggestions (``flowchain.optimizer``).
    """

    def __init__(self, store: Any, *, tiers: TierSet | None = None,
                 components: ComponentRegistry | None = None,
                 threads: int = DEFAULT_THREADS, hub_id: str | None = None,
                 optimizer_db: str | Path | None = None) -> None:
        self.workflows = WorkflowStore(store)
        self.manager = TenantManager(tiers, components=components)
        self.hub_id = hub_id or _hub_id()
        self.optimizer_db = optimizer_db
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="flowchain-workflow")
        self._lock = threading.Lock()
        self._known: dict[str, set[str]] = {}
        self._live: dict[tuple[str, str], LiveExecution] = {}
        self._runner_locks: dict[int, tuple[Any, threading.Lock]] = {}

    # ------------------------------------------------------------------ tenants

    def tenant(self, tenant: str) -> str:
        """Bring this hub's manager up to date with ``tenant`` in the store; return its tier.

        Raises
        ------
        UnknownTenantError
            When the tenant is not in the store, or was deleted.
        """
        record = self.workflows.tenant(tenant)
        if record is None or record.deleted_ns is not None:
            raise UnknownTenantError(f"tenant {tenant!r} is not a tenant of this hub")
        with self._lock:
            if tenant not in self.manager.tenants():
                self.manager.add_tenant(tenant, record.tier)
            elif self.manager.tier_of(tenant).name != record.tier:
                self.manager.set_tier(tenant, record.tier)
            known = self._known.setdefault(tenant, set())
            for chain in self.workflows.for_tenant(tenant).chains():
                if chain.chain_id in known:
                    continue
                try:
                    for definition in parse_definition(chain.definition, tenant):
                        self.manager.register_chain(tenant, definition)
                except Exception as exc:  # e.g. a component this hub did not import
                    log.warning("tenant %r: stored chain %s cannot be registered on this hub: "
                                "%s", tenant, chain.chain_id, exc)
                known.add(chain.chain_id)
        return record.tier

    # ------------------------------------------------------------------ registration

    def register_business_chain(self, definition: str | dict,
                                tenant_context: UserContext) -> list[dict[str, Any]]:
        """Validate, gate and register a tenant's chains (all or none); store them.

        Returns one ``{"name", "chain_id", "version"}`` per chain.

        Raises
        ------
        ChainValidationError, ValueError
            When the definition is malformed or invalid.
        FeatureGatedError
            When a step uses a component the tier may not use, or the chain has more steps
            than the tier allows (the message names the tier that allows it).
        QuotaExceeded
            When the tenant would have more chains than its tier allows.
        UnknownTenantError
        """
        tenant = tenant_context.tenant_id
        self.tenant(tenant)
        definitions = parse_definition(definition, tenant)
        with self._lock:
            ids = self.manager.register_chains(tenant, definitions)
            self._known.setdefault(tenant, set()).update(ids)
        view = self.workflows.for_tenant(tenant)
        out = []
        now = time.time_ns()
        for definition, chain_id in zip(definitions, ids, strict=False):
            version = self._version(tenant, definition.name, chain_id)
            view.save_chain(StoredChain(chain_id, definition.name, str(version),
                                        dump_chains([definition]), now))
            out.append({"name": definition.name, "chain_id": chain_id,
                        "version": str(version)})
        return out

    def chains(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's chains (latest version of each name) with their steps."""
        self.tenant(tenant)
        return [{"name": d.name, "chain_id": d.chain_id,
                 "version": self._version(tenant, d.name, d.chain_id),
                 "steps": [{"name": s.name, "component": s.component} for s in d.steps]}
                for d in self.manager.list_chains(tenant)]

    def _version(self, tenant: str, name: str, chain_id: str) -> str:
        """The version number of a registered chain (1, 2, ... per name, on this hub)."""
        for v in self.manager.versions(tenant, name):
            if v.chain_id == chain_id:
                return str(v.version)
        return "?"

    # ------------------------------------------------------------------ execution

    def submit(self, workflow_name: str, user_context: UserContext,
               input_data: Any) -> LiveExecution:
        """Start an execution on the hub's threads and return it (``future`` ends with the
        stored execution, or raises :class:`QuotaExceeded` when admission refused it).

        Raises
        ------
        UnknownTenantError, UnknownChainError
            Before anything is submitted.
        """
        tenant, user = user_context.tenant_id, user_context.user_id
        if not isinstance(user, str) or not user.strip():
            raise ValueError(f"a user is a non-empty string, got {user!r}")
        self.tenant(tenant)
        chain_id = self.manager.get_chain(tenant, workflow_name).chain_id
        live = LiveExecution(secrets.token_urlsafe(16), tenant, user, workflow_name, chain_id,
                             time.time_ns(), Future())
        with self._lock:
            self._live[(tenant, live.execution_id)] = live
        self._pool.submit(self._run, live, input_data)
        return live

    def execute_business_workflow(self, workflow_name: str, user_context: UserContext,
                                  input_data: Any) -> StoredExecution:
        """Run a tenant's workflow for a user and return the stored execution (its output is
        ``record["output"]`` when it pickles to JSON).

        Raises
        ------
        QuotaExceeded
            When the tenant's tier refused it (nothing ran); ``limit`` names the limit.
        UnknownTenantError, UnknownChainError
        """
        return self.submit(workflow_name, user_context, input_data).future.result()

    def _run(self, live: LiveExecution, input_data: Any) -> None:
        try:
            stored = self._execute(live, input_data)
        except QuotaExceeded as exc:  # nothing ran: kept so that a follow says why
            self._store_refusal(live, exc)
            with self._lock:
                self._live.pop((live.tenant, live.execution_id), None)
            live.future.set_exception(exc)
            return
        except BaseException as exc:  # the store or the engine failed: the caller is told
            log.warning("tenant %r: execution %s of %r failed in the hub: %s", live.tenant,
                        live.execution_id, live.workflow, exc)
            with self._lock:
                self._live.pop((live.tenant, live.execution_id), None)
            live.future.set_exception(exc)
            return
        with self._lock:
            self._live.pop((live.tenant, live.execution_id), None)
        live.future.set_result(stored)

    def _execute(self, live: LiveExecution, input_data: Any) -> StoredExecution:
        tenant = live.tenant
        isolation = self.manager.tier_of(tenant).isolation
        call = self.manager.runner(tenant, live.chain_id, live.user)
        record: ChainExecution | None = None
        error: str | None = None
        output: Any = None
        if isolation == "process":
            live.state = "running"  # the worker takes one request at a time, in order
            # the manager's own way to have the worker send the record with the output
            # (as execute_user_chain does): both are kept, the output for the caller
            flag = tenancy_manager._want_record
            flag.on = True
            try:
                output = call.run(input_data)
                record = flag.record
            except ChainStepError as exc:
                record = exc.execution
            except WorkerCrashed as exc:
                error = str(exc)
            finally:
                flag.on = False
        else:
            registry = self.manager.registries()[
                SHARED_KEY if isolation == "shared" else tenant]
            runner = registry.runner(live.chain_id)
            with self._runner_lock(runner):  # a runner runs one execution at a time
                live.state = "running"
                live.seq = runner.executions
                try:
                    output = call.run(input_data)
                    record = self.manager.execution(tenant, live.chain_id, live.seq)
                except ChainStepError as exc:
                    record = exc.execution
        live.output = output
        stored = self._stored(live, record, output, error)
        self.workflows.for_tenant(tenant).save_execution(stored)
        return stored

    def _runner_lock(self, runner: Any) -> threading.Lock:
        """The lock of an engine runner: a runner is not re-entrant, so executions of one
        chain (or of identical shared chains) on this hub run one after the other, while
        different chains run in parallel on the hub's threads."""
        with self._lock:
            held = self._runner_locks.get(id(runner))
            if held is None or held[0] is not runner:
                held = self._runner_locks[id(runner)] = (runner, threading.Lock())
            return held[1]

    def _stored(self, live: LiveExecution, record: ChainExecution | None, output: Any,
                error: str | None) -> StoredExecution:
        if record is None:
            detail: dict[str, Any] = {"error": error or "the execution's record is gone",
                                      "steps": [], "completed_steps": [], "progress": 0.0}
            return StoredExecution(live.execution_id, live.workflow, live.chain_id, live.user,
                                   self.hub_id, "failed", live.start_ns, None, None, detail)
        detail = record.to_dict()
        for key in ("user_context", "execution_id", "start_ns", "end_ns"):
            detail.pop(key, None)
        detail["completed_steps"] = list(record.completed_steps)
        detail["engine_execution_id"] = record.execution_id
        try:
            detail["output"] = json.loads(json.dumps(output))
        except (TypeError, ValueError):
            detail["output"] = repr(output)[:1000]
        failed = record.failure.step if record.failure is not None else None
        return StoredExecution(live.execution_id, live.workflow, live.chain_id, live.user,
                               self.hub_id, record.status.value, live.start_ns,
                               record.total_duration, failed, detail)

    def _store_refusal(self, live: LiveExecution, exc: QuotaExceeded) -> None:
        row = StoredExecution(live.execution_id, live.workflow, live.chain_id, live.user,
                              self.hub_id, "refused", live.start_ns, None, None,
                              {"error": str(exc), "limit": exc.limit,
                               "limit_value": exc.limit_value, "usage": exc.usage,
                               "resets_in_s": exc.resets_in_s, "next_tier": exc.next_tier})
        try:
            self.workflows.for_tenant(live.tenant).save_execution(row)
        except Exception:
            log.exception("tenant %r: a refused execution could not be stored", live.tenant)

    def store_running(self, live: LiveExecution) -> None:
        """Store ``live`` as running on this hub (for other hubs and for restarts to see);
        the ended execution replaces it, whichever write comes last."""
        row = StoredExecution(live.execution_id, live.workflow, live.chain_id, live.user,
                              self.hub_id, "running", live.start_ns, None, None,
                              {"detail": f"running on hub {self.hub_id}; its current step is "
                                         "answered by that hub"})
        self.workflows.for_tenant(live.tenant).save_execution(row, replace=False)

    def follow(self, tenant: str, execution_id: str) -> dict[str, Any]:
        """Where an execution of ``tenant`` stands.

        Running on this hub: ``status`` running, ``current_step``, ``completed_steps``,
        ``progress`` (percent) and ``eta_ns`` from the engine's live record (a ``process``
        tenant's worker answers only between executions: its steps show once it ended).
        Ended (on any hub): the stored execution.

        Raises
        ------
        UnknownExecutionError
            When the tenant has no such execution (another tenant's ids included).
        """
        self.tenant(tenant)
        with self._lock:
            live = self._live.get((tenant, execution_id))
        if live is not None:
            return self._live_view(live)
        stored = self.workflows.for_tenant(tenant).execution(execution_id)
        if stored is None:
            raise UnknownExecutionError(f"tenant {tenant!r} has no execution {execution_id!r}")
        return stored.to_dict()

    def _live_view(self, live: LiveExecution) -> dict[str, Any]:
        definition = self.manager.get_chain(live.tenant, live.chain_id)
        view: dict[str, Any] = {
            "execution_id": live.execution_id, "workflow": live.workflow,
            "chain_id": live.chain_id, "user": live.user, "hub": self.hub_id,
            "status": live.state, "start_ns": live.start_ns, "current_step": None,
            "completed_steps": [], "progress": 0.0, "eta_ns": None,
            "steps_total": len(definition.steps)}
        if live.seq is None:
            return view
        record = self.manager.execution(live.tenant, live.chain_id, live.seq)
        if record is None or record.user_context is None or \
                record.user_context.user_id != live.user or record.is_complete():
            return view  # not started yet, or already being stored
        view.update(current_step=record.current_step,
                    completed_steps=list(record.completed_steps),
                    progress=round(record.progress, 1), eta_ns=record.eta_ns,
                    elapsed_ns=engine.now_ns() - record.start_ns)
        return view

    # ------------------------------------------------------------------ reads

    def user_history(self, tenant: str, user: str, *, limit: int = 100) -> dict[str, Any]:
        """A user's executions (newest first, at most ``limit``) and performance over all of
        the user's stored executions: counts, success rate, latency, most-used workflows."""
        self.tenant(tenant)
        rows = self.workflows.for_tenant(tenant).executions(user=user)
        performance = _performance(rows)
        return {"tenant": tenant, "user": user, "performance": performance,
                "executions": [r.to_dict() for r in rows[:limit]]}

    def analytics(self, tenant: str, *, since_ns: int = 0) -> dict[str, Any]:
        """The tenant's workflows since ``since_ns``: per workflow counts, error rate, latency
        (exact percentiles of the stored durations), users, failing steps; and this hub's
        admission usage of the tenant."""
        self.tenant(tenant)
        rows = self.workflows.for_tenant(tenant).executions(since_ns=since_ns)
        by_workflow: dict[str, list[StoredExecution]] = {}
        for r in rows:
            by_workflow.setdefault(r.workflow, []).append(r)
        workflows = []
        for name, items in sorted(by_workflow.items()):
            p = _performance(items)
            users: dict[str, int] = {}
            failing: dict[str, int] = {}
            for r in items:
                users[r.user_id] = users.get(r.user_id, 0) + 1
                if r.failed_step:
                    failing[r.failed_step] = failing.get(r.failed_step, 0) + 1
            workflows.append({
                "workflow": name, "executions": p["executions"], "failures": p["failures"],
                "error_rate": None if not p["executions"] else p["failures"] / p["executions"],
                "latency": p["latency"],
                "users": [{"user": u, "executions": n} for u, n in
                          sorted(users.items(), key=lambda kv: (-kv[1], kv[0]))],
                "failures_by_step": [{"step": s, "failures": n} for s, n in
                                     sorted(failing.items(), key=lambda kv: (-kv[1], kv[0]))]})
        return {"tenant": tenant, "since_ns": since_ns,
                "executions": len(rows), "workflows": workflows,
                "usage_on_this_hub": self.manager.usage(tenant).to_dict()}

    def suggestions(self, tenant: str, chain: str) -> dict[str, Any]:
        """The optimizer's suggestions for one of the tenant's chains.

        Raises
        ------
        OptimizerUnavailable
            When ``flowchain.optimizer`` is not importable, or the hub has no history
            database for it.
        UnknownChainError
        """
        self.tenant(tenant)
        definition = self.manager.get_chain(tenant, chain)
        try:
            from flowchain.optimizer import ChainOptimizer
        except ImportError as exc:
            raise OptimizerUnavailable(f"optimizer not available: flowchain.optimizer cannot "
                                       f"be imported on this hub ({exc})") from None
        if self.optimizer_db is None:
            raise OptimizerUnavailable("optimizer not available: the hub was started without "
                                       "a history database for it (--optimizer-db PATH)")
        result = ChainOptimizer(self.optimizer_db, size_parallelism=False).analyze(definition)
        return {"tenant": tenant, "chain": definition.name, "chain_id": definition.chain_id,
                **result.to_dict()}

    def close(self) -> None:
        """Wait for running executions, stop the workers."""
        self._pool.shutdown(wait=True)
        self.manager.close()


def _performance(rows: list[StoredExecution]) -> dict[str, Any]:
    refused = sum(1 for r in rows if r.status == "refused")
    rows = [r for r in rows if r.status not in ("refused", "running")]
    executions = len(rows)
    failures = sum(1 for r in rows if r.status != "succeeded")
    durations = [max(1, r.duration_ns) for r in rows
                 if r.status == "succeeded" and r.duration_ns is not None]
    used: dict[str, int] = {}
    for r in rows:
        used[r.workflow] = used.get(r.workflow, 0) + 1
    return {"executions": executions, "failures": failures, "refused": refused,
            "success_rate": None if not executions else (executions - failures) / executions,
            "latency": LatencyHistogram.from_values(durations).summary() if durations else None,
            "most_used": [{"workflow": w, "executions": n} for w, n in
                          sorted(used.items(), key=lambda kv: (-kv[1], kv[0]))[:5]]}


__all__ = ["LiveExecution", "OptimizerUnavailable", "QuotaExceeded", "UnknownChainError",
           "UnknownExecutionError", "WorkflowError", "WorkflowService", "parse_definition"]
