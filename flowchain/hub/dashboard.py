"""The central dashboard: every node, tenant, chain and step the hub's store holds.

``GET /`` serves the page (``flowchain/hub/web/``: HTML, script and style, no network), which
polls ``GET /api/v1/overview`` and redraws. The overview is computed from the store only (the
hub keeps no state of its own, so every hub on one PostgreSQL shows the same):

* ``nodes``: each node's first and last contact and its health: ``up`` (shipped within
  ``stale_after_s``), ``silent`` (not since), with its executions and errors in the window;
* ``tenants``: each tenant's executions, errors and nodes;
* ``chains``: per tenant and chain, the whole chain and each step with ``count``, ``errors``
  and ``p50_ns``/``p99_ns`` of the **exact HDR merge** of every node's interval histograms in
  the window (``store.merged_histogram``), never an average of percentiles.

``?window_s=N`` picks the window (default an hour; 0: everything stored). The overview needs a
viewer token when the hub requires one (:mod:`flowchain.hub.viewer_access`); the page itself
carries no figures and asks for the token when refused.
"""
from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from importlib import resources
from typing import Any

from aiohttp import web

from flowchain.hub.ingest_api import STORE_KEY
from flowchain.hub.viewer_access import viewer_only

DEFAULT_WINDOW_S = 3600.0
SETTINGS_KEY: web.AppKey[Any] = web.AppKey("dashboard_settings", object)
STATIC_TYPES = {"app.js": "text/javascript", "app.css": "text/css", "index.html": "text/html"}


def overview(store: Any, *, now_ns: int | None = None, window_s: float = DEFAULT_WINDOW_S,
             stale_after_s: float = 30.0) -> dict[str, Any]:
    """Return the dashboard's figures as plain data (see the module docstring)."""
    now = time.time_ns() if now_ns is None else now_ns
    start = 0 if window_s <= 0 else now - int(window_s * 1e9)
    end = now + 1
    totals = store.interval_totals(start_ns=start, end_ns=end)
    steps: dict[tuple[str, str, str], dict[str, Any]] = {}
    chain_ids: dict[tuple[str, str], str] = {}
    per_node: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_tenant: dict[str, dict[str, Any]] = {}
    for t in totals:
        key = (t.tenant, t.chain, t.step)
        s = steps.setdefault(key, {"count": 0, "errors": 0, "nodes": set()})
        s["count"] += t.count
        s["errors"] += t.errors
        s["nodes"].add(t.node_id)
        chain_ids[(t.tenant, t.chain)] = t.chain_id
        if t.step == "":
            per_node[t.node_id][0] += t.count
            per_node[t.node_id][1] += t.errors
            tenant = per_tenant.setdefault(t.tenant, {"tenant": t.tenant, "executions": 0,
                                                      "errors": 0, "nodes": set()})
            tenant["executions"] += t.count
            tenant["errors"] += t.errors
            tenant["nodes"].add(t.node_id)
    chains: dict[tuple[str, str], dict[str, Any]] = {}
    for (tenant, chain, step), s in sorted(steps.items()):
        hist = store.merged_histogram(chain, step, start_ns=start, end_ns=end, tenant=tenant)
        figures = {"count": s["count"], "errors": s["errors"], "nodes": sorted(s["nodes"]),
                   "p50_ns": int(hist.percentile(50.0)) if hist.count else 0,
                   "p99_ns": int(hist.percentile(99.0)) if hist.count else 0,
                   "max_ns": int(hist.max) if hist.count else 0}
        entry = chains.setdefault((tenant, chain), {
            "tenant": tenant, "chain": chain, "chain_id": chain_ids[(tenant, chain)],
            "executions": 0, "errors": 0, "p50_ns": 0, "p99_ns": 0, "nodes": [], "steps": []})
        if step == "":
            entry.update(executions=s["count"], errors=s["errors"], p50_ns=figures["p50_ns"],
                         p99_ns=figures["p99_ns"], nodes=figures["nodes"])
        else:
            entry["steps"].append({"step": step, **figures})
    nodes = []
    for record in store.nodes():
        age_s = (now - record.last_contact_ns) / 1e9
        executions, errors = per_node.get(record.node_id, (0, 0))
        nodes.append({"node_id": record.node_id, "first_seen_ns": record.first_seen_ns,
                      "last_contact_ns": record.last_contact_ns,
                      "last_contact_age_s": round(age_s, 1),
                      "health": "up" if age_s <= stale_after_s else "silent",
                      "executions": executions, "errors": errors, "info": record.info})
    tenants = [dict(t, nodes=sorted(t["nodes"])) for _, t in sorted(per_tenant.items())]
    return {"time_ns": now, "window_s": window_s, "start_ns": start, "nodes": nodes,
            "tenants": tenants, "chains": list(chains.values()),
            "executions": sum(c["executions"] for c in chains.values()),
            "errors": sum(c["errors"] for c in chains.values())}


async def overview_handler(request: web.Request) -> web.Response:
    """``GET /api/v1/overview[?window_s=N]``."""
    settings = request.app[SETTINGS_KEY]
    text = request.query.get("window_s", "")
    try:
        window_s = float(text) if text else settings["window_s"]
        if window_s != window_s or window_s < 0:
            raise ValueError
    except ValueError:
        return web.json_response({"error": f"window_s must be seconds >= 0 (0: everything), "
                                           f"got {text!r}"}, status=400)
    loop = asyncio.get_running_loop()
    try:
        data = await loop.run_in_executor(
            None, lambda: overview(request.app[STORE_KEY], window_s=window_s,
                                   stale_after_s=settings["stale_after_s"]))
    except Exception as exc:  # the database is down: say so, the page shows it
        return web.json_response({"error": f"the hub's store is unavailable "
                                           f"({type(exc).__name__}: {exc})"}, status=503)
    return web.json_response(data)


def _static(name: str) -> bytes:
    return resources.files("flowchain.hub").joinpath("web", name).read_bytes()


async def page(request: web.Request) -> web.Response:
    """``GET /`` and ``GET /static/{name}``: the page, its script and style."""
    name = request.match_info.get("name", "index.html")
    kind = STATIC_TYPES.get(name)
    if kind is None:
        raise web.HTTPNotFound(text=f"no static file {name!r}")
    return web.Response(body=_static(name), content_type=kind, charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application, *, window_s: float = DEFAULT_WINDOW_S,
               stale_after_s: float = 30.0) -> None:
    """Add the page and ``/api/v1/overview`` to ``app``."""
    app[SETTINGS_KEY] = {"window_s": window_s, "stale_after_s": stale_after_s}
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", page)
    app.router.add_get("/api/v1/overview", viewer_only(overview_handler))
