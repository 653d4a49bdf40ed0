"""The hub's business-workflow API: each tenant's token reaches only its own tenant's data.

Routes (``{tenant}`` is the tenant id, URL-quoted):

``POST /api/v1/tenants/{tenant}/chains``                     register chains (YAML or JSON)
``GET  /api/v1/tenants/{tenant}/chains``                     the tenant's chains
``POST /api/v1/tenants/{tenant}/workflows/{name}/executions`` run a workflow for a user
``GET  /api/v1/tenants/{tenant}/executions/{id}``            follow an execution
``GET  /api/v1/tenants/{tenant}/users/{user}/history``       a user's history and performance
``GET  /api/v1/tenants/{tenant}/analytics``                  the tenant's analytics
``GET  /api/v1/tenants/{tenant}/chains/{name}/suggestions``  the optimizer's suggestions

Every request carries ``Authorization: Bearer TOKEN``, the tenant's API token (``flowchain hub
tenant-token add TENANT``). Answers: 401 without a token, with an unknown one, or with a deleted
tenant's; 403 with a node token, or with a token of another tenant than the path's (the same
answer whether that tenant exists or not); 404 for a chain, workflow or execution the tenant
does not have (another tenant's ids read the same); 400 for a malformed body or definition;
403 for a chain its tier may not use; 429 when a limit refused (``limit`` named, with
``Retry-After`` when it resets); 501 when the optimizer is not available; 503 when the store
is down.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from typing import Any

from aiohttp import web

from flowchain.context import UserContext
from flowchain.errors import ChainValidationError, UnknownChainError
from flowchain.hub.ingest_api import STORE_KEY, TOKENS_KEY, bearer_token
from flowchain.hub.store import HubStoreError
from flowchain.hub.workflows import OptimizerUnavailable, UnknownExecutionError, WorkflowService
from flowchain.tenancy import FeatureGatedError, QuotaExceeded, UnknownTenantError

log = logging.getLogger("flowchain.hub.workflows")
WORKFLOWS_KEY: web.AppKey[Any] = web.AppKey("workflows", object)
PREFIX = "/api/v1/tenants/{tenant}"
DEFAULT_WAIT_S = 10.0
"""How long ``POST .../executions`` waits for the execution to end before answering 202."""
MAX_WAIT_S = 60.0


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def _blocking(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def _tenant_of(request: web.Request) -> Any:
    """The tenant the request's token authenticates for the path's tenant, or an error
    response."""
    service: WorkflowService = request.app[WORKFLOWS_KEY]
    token = bearer_token(request)
    if not token:
        return _error(401, "no tenant token: send 'Authorization: Bearer TOKEN' (flowchain hub "
                           "tenant-token add TENANT creates one)")
    try:
        record = await _blocking(service.workflows.tenant_of_token, token)
    except HubStoreError as exc:
        return _error(503, f"the hub's store is unavailable ({exc}); try again later")
    if record is None:
        if request.app[TOKENS_KEY].node_of(token) is not None:
            return _error(403, "this is a node token: it ships rows to /api/v1/ingest and "
                               "reaches no tenant's data; use the tenant's API token")
        return _error(401, "unknown tenant token: no tenant of this hub has it")
    if record.deleted_ns is not None:
        return _error(401, f"tenant {record.tenant!r} was deleted: its token no longer works")
    wanted = request.match_info["tenant"]
    if wanted != record.tenant:
        return _error(403, f"the token is tenant {record.tenant!r}'s: it reaches only that "
                           "tenant's data")
    return record.tenant


def _message(exc: BaseException) -> str:
    """The error's message (a KeyError's str() would quote it)."""
    return exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)


def _failure(exc: BaseException) -> web.Response:
    """The answer to a refused or failed request."""
    if isinstance(exc, QuotaExceeded):
        headers = {}
        if exc.resets_in_s is not None:
            headers["Retry-After"] = str(max(1, math.ceil(exc.resets_in_s)))
        return web.json_response(
            {"error": str(exc), "limit": exc.limit, "limit_value": exc.limit_value,
             "usage": exc.usage, "resets_in_s": exc.resets_in_s, "next_tier": exc.next_tier},
            status=429, headers=headers)
    if isinstance(exc, FeatureGatedError):
        return _error(403, str(exc), feature=exc.feature, tier=exc.tier,
                      allowed_in=exc.allowed_in)
    if isinstance(exc, (UnknownChainError, UnknownExecutionError, UnknownTenantError)):
        return _error(404, _message(exc))
    if isinstance(exc, OptimizerUnavailable):
        return _error(501, str(exc))
    if isinstance(exc, HubStoreError):
        return _error(503, f"the hub's store is unavailable ({exc}); try again later")
    if isinstance(exc, (ChainValidationError, ValueError, TypeError)):
        return _error(400, str(exc))
    if isinstance(exc, LookupError):  # the optimizer's NoHistory
        return _error(404, _message(exc))
    log.error("a workflow request failed", exc_info=exc)
    return _error(500, f"the hub failed the request: {type(exc).__name__}: {exc}")


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"null")
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None


def _routed(handler: Callable[..., Any]) -> Callable[[web.Request], Any]:
    async def route(request: web.Request) -> web.Response:
        tenant = await _tenant_of(request)
        if isinstance(tenant, web.Response):
            return tenant
        try:
            return await handler(request, request.app[WORKFLOWS_KEY], tenant)
        except Exception as exc:
            return _failure(exc)

    route.__name__ = handler.__name__
    route.__doc__ = handler.__doc__
    return route


@_routed
async def register_chains(request: web.Request, service: WorkflowService,
                          tenant: str) -> web.Response:
    """Body: YAML text, or JSON: ``{"definition": TEXT_OR_OBJECT}`` or the chains object."""
    if request.content_type == "application/json":
        body = await _json_body(request)
        if isinstance(body, dict) and set(body) == {"definition"}:
            body = body["definition"]
        definition = body
    else:
        try:
            definition = (await request.read()).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"the definition is not UTF-8 text: {exc}") from None
    chains = await _blocking(service.register_business_chain, definition,
                             UserContext(tenant, "api"))
    return web.json_response({"tenant": tenant, "registered": chains}, status=201)


@_routed
async def list_chains(request: web.Request, service: WorkflowService,
                      tenant: str) -> web.Response:
    return web.json_response({"tenant": tenant,
                              "chains": await _blocking(service.chains, tenant)})


def _wait_s(body: dict) -> float:
    value = body.get("wait_s", DEFAULT_WAIT_S)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0 <= value <= MAX_WAIT_S:
        raise ValueError(f"'wait_s' is a number of seconds from 0 to {MAX_WAIT_S:g}, got "
                         f"{value!r}")
    return float(value)


@_routed
async def execute(request: web.Request, service: WorkflowService, tenant: str) -> web.Response:
    """Body: ``{"user": ID, "input": ANY, "wait_s": 10}``: 200 with the ended execution, or
    202 with its id while it still runs after ``wait_s``; 429 when admission refused it."""
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise ValueError("the body is a JSON object: {\"user\": ID, \"input\": ...}")
    unknown = set(body) - {"user", "input", "wait_s"}
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}; the fields are user, "
                         "input, wait_s")
    user = body.get("user")
    if not isinstance(user, str) or not user.strip():
        raise ValueError(f"'user' is a non-empty string, got {user!r}")
    wait_s = _wait_s(body)
    name = request.match_info["name"]
    live = await _blocking(service.submit, name, UserContext(tenant, user), body.get("input"))
    done = asyncio.wrap_future(live.future)
    try:
        stored = await asyncio.wait_for(asyncio.shield(done), wait_s) if wait_s > 0 else None
    except asyncio.TimeoutError:
        stored = None
    if stored is None and done.done():
        stored = done.result()  # raises a refusal
    if stored is None:
        await _blocking(service.store_running, live)
        follow = f"/api/v1/tenants/{request.match_info['tenant']}/executions/" \
                 f"{live.execution_id}"
        return web.json_response({"execution_id": live.execution_id, "status": "running",
                                  "follow": follow}, status=202)
    return web.json_response(stored.to_dict())


@_routed
async def follow(request: web.Request, service: WorkflowService, tenant: str) -> web.Response:
    return web.json_response(await _blocking(service.follow, tenant,
                                             request.match_info["execution_id"]))


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"query '{name}' is an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"query '{name}' is from {low} to {high}, got {value}")
    return value


@_routed
async def user_history(request: web.Request, service: WorkflowService,
                       tenant: str) -> web.Response:
    limit = _int_query(request, "limit", 100, 1, 10_000)
    return web.json_response(await _blocking(
        lambda: service.user_history(tenant, request.match_info["user"], limit=limit)))


@_routed
async def analytics(request: web.Request, service: WorkflowService,
                    tenant: str) -> web.Response:
    since_s = _int_query(request, "since_s", 7 * 86400, 1, 366 * 86400)
    import time

    since_ns = time.time_ns() - since_s * 1_000_000_000
    return web.json_response(await _blocking(
        lambda: service.analytics(tenant, since_ns=since_ns)))


@_routed
async def suggestions(request: web.Request, service: WorkflowService,
                      tenant: str) -> web.Response:
    return web.json_response(await _blocking(service.suggestions, tenant,
                                             request.match_info["name"]))


def add_workflow_routes(app: web.Application, service: WorkflowService | None = None) -> None:
    """Add the workflow routes to the hub's ``app``.

    Without ``service``, one is made over the app's store with the shipped tiers and closed
    with the app.
    """
    if service is None:
        service = WorkflowService(app[STORE_KEY])

        async def close(app: web.Application) -> None:
            await asyncio.get_running_loop().run_in_executor(None, service.close)

        app.on_cleanup.append(close)
    app[WORKFLOWS_KEY] = service
    app.router.add_post(PREFIX + "/chains", register_chains)
    app.router.add_get(PREFIX + "/chains", list_chains)
    app.router.add_post(PREFIX + "/workflows/{name}/executions", execute)
    app.router.add_get(PREFIX + "/executions/{execution_id}", follow)
    app.router.add_get(PREFIX + "/users/{user}/history", user_history)
    app.router.add_get(PREFIX + "/analytics", analytics)
    app.router.add_get(PREFIX + "/chains/{name}/suggestions", suggestions)
