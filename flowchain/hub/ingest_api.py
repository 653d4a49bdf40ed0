"""``POST /api/v1/ingest``: what nodes ship, authenticated by each node's token.

The body is a :class:`~flowchain.hub.rows.Batch` as JSON (``Batch.to_json()``). Answers:

* 200 ``{"stored": {...}, "duplicates": {...}}``: the batch is in the store (a batch sent
  again is stored once: its rows come back as duplicates);
* 400: the body is not a valid batch (the message names the field);
* 401: no ``Authorization: Bearer TOKEN`` header, or a token the hub does not know;
* 403: the batch, or one of its rows, names a node other than the token's;
* 413: the body is larger than the hub's limit (``--max-body-mb``);
* 503: the store could not take it (database down): the node keeps the rows and sends again.

Every accepted request, an empty batch included (a node's heartbeat), updates the node's last
contact.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

log = logging.getLogger("flowchain.hub.ingest")

STORE_KEY: web.AppKey[Any] = web.AppKey("store", object)
TOKENS_KEY: web.AppKey[Any] = web.AppKey("tokens", object)
COUNTERS_KEY: web.AppKey[Any] = web.AppKey("counters", object)
MAX_BODY_KEY: web.AppKey[int] = web.AppKey("max_body", int)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def bearer_token(request: web.Request) -> str:
    """Return the request's bearer token, or ``""``."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def foreign_rows(batch: Any, node_id: str) -> list[str]:
    """Return ``"kind[i]: node X"`` for every row of ``batch`` naming another node."""
    out = []
    for kind in ("intervals", "executions", "alerts", "usage"):
        for i, row in enumerate(getattr(batch, kind)):
            if row.node_id != node_id:
                out.append(f"{kind}[{i}]: node {row.node_id!r}")
    return out


async def ingest(request: web.Request) -> web.Response:
    """Store one batch of the authenticated node's rows."""
    from flowchain.hub.rows import Batch

    counters = request.app[COUNTERS_KEY]
    token = bearer_token(request)
    if not token:
        counters["refused_unauthenticated"] += 1
        return _error(401, "no node token: send 'Authorization: Bearer TOKEN' (flowchain hub "
                           "token add NODE creates one)")
    node_id = request.app[TOKENS_KEY].node_of(token)
    if node_id is None:
        counters["refused_unauthenticated"] += 1
        return _error(401, "unknown node token: the hub's tokens file has no such token")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        counters["refused_too_large"] += 1
        return _error(413, f"batch larger than the hub's limit of "
                           f"{request.app[MAX_BODY_KEY]} bytes: send fewer rows per batch "
                           "([hub] batch_rows)")
    try:
        batch = Batch.from_json(body)
    except (ValueError, TypeError) as exc:
        counters["refused_malformed"] += 1
        return _error(400, f"malformed batch: {exc}")
    if batch.node_id != node_id:
        counters["refused_foreign"] += 1
        return _error(403, f"the token is node {node_id!r}'s; it cannot ship rows of node "
                           f"{batch.node_id!r}")
    foreign = foreign_rows(batch, node_id)
    if foreign:
        counters["refused_foreign"] += 1
        return _error(403, f"the token is node {node_id!r}'s; rows of other nodes: "
                           + ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else ""))
    store = request.app[STORE_KEY]
    peer = request.remote or ""
    loop = asyncio.get_running_loop()
    try:
        result = await loop.run_in_executor(None, _store_batch, store, batch, node_id, peer)
    except Exception as exc:  # the database is down or refused the write
        counters["store_errors"] += 1
        log.warning("storing a batch of node %s failed: %s", node_id, exc)
        return _error(503, f"the hub's store could not take the batch ({type(exc).__name__}: "
                           f"{exc}); send it again later")
    counters["batches"] += 1
    return web.json_response({"node_id": node_id, "stored": dict(result.stored),
                              "duplicates": dict(result.duplicates)})


def _store_batch(store: Any, batch: Any, node_id: str, peer: str) -> Any:
    result = store.ingest(batch)
    store.touch_node(node_id, time.time_ns(), {"address": peer})
    return result


def add_routes(app: web.Application) -> None:
    """Add the ingest route to ``app``."""
    app.router.add_post("/api/v1/ingest", ingest)
