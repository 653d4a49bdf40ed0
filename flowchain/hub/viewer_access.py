"""Who may read the hub's cross-tenant views: ``GET /api/v1/overview`` and ``GET /metrics``.

Both show every tenant's chains, latencies and counts. When the hub is given viewer tokens
(:class:`flowchain.hub.auth.ViewerTokens`; always when it listens beyond loopback, on loopback
with ``--require-viewer-token``), each request needs ``Authorization: Bearer TOKEN`` with an
operator's viewer token:

* 401 (with ``WWW-Authenticate: Bearer``): no token, or one the hub does not know;
* 403: a node token (it only ships rows) or a tenant token (it reaches its own tenant's data
  through ``/api/v1/tenants/{tenant}/...`` only).

Without viewer tokens (a loopback hub by default) the views stay open to whoever reaches the
loopback address. The page ``GET /`` and its static files carry no figures: they load without
a token, and the page sends the one it is given with each fetch of the overview.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from flowchain.hub.ingest_api import TOKENS_KEY, bearer_token

VIEWERS_KEY: web.AppKey[Any] = web.AppKey("viewer_tokens", object)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _refused(status: int, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="flowchain hub"'} if status == 401 else {}
    return web.Response(status=status, text=json.dumps({"error": message}),
                        content_type="application/json", headers=headers)


def _tenant_token(request: web.Request, token: str) -> bool:
    """Whether ``token`` is a live tenant's API token (False when the hub has no tenant API or
    its store cannot say)."""
    from flowchain.hub.workflow_api import WORKFLOWS_KEY

    service = request.app.get(WORKFLOWS_KEY)
    if service is None:
        return False
    try:
        record = service.workflows.tenant_of_token(token)
    except Exception:  # the store is down: the token is refused as unknown either way
        return False
    return record is not None and record.deleted_ns is None


async def refusal(request: web.Request) -> web.Response | None:
    """The answer refusing ``request`` a cross-tenant view, or None when it may have it."""
    viewers = request.app.get(VIEWERS_KEY)
    if viewers is None:
        return None
    token = bearer_token(request)
    if not token:
        return _refused(401, "no viewer token: send 'Authorization: Bearer TOKEN' (flowchain "
                             "hub token add-viewer NAME creates one)")
    if viewers.viewer_of(token) is not None:
        return None
    if request.app[TOKENS_KEY].node_of(token) is not None:
        return _refused(403, "this is a node token: it ships rows to /api/v1/ingest and opens "
                             "no cross-tenant view; use a viewer token")
    loop = asyncio.get_running_loop()
    if await loop.run_in_executor(None, _tenant_token, request, token):
        return _refused(403, "this is a tenant token: it reaches its own tenant's data under "
                             "/api/v1/tenants/{tenant}/ only, not every tenant's figures")
    return _refused(401, "unknown viewer token: no viewer of this hub has it")


def viewer_only(handler: Handler) -> Handler:
    """Wrap a cross-tenant view's handler so it answers only a viewer (when required)."""
    async def guarded(request: web.Request) -> web.StreamResponse:
        refused = await refusal(request)
        return refused if refused is not None else await handler(request)

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded
