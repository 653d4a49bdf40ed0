"""The hub's aiohttp application: what nodes ship in, the central view and ``/metrics`` out.

Routes (each in the module that owns it):

``POST /api/v1/ingest``   a node's batch (:mod:`flowchain.hub.ingest_api`; node token)
``GET /``                 the central dashboard (:mod:`flowchain.hub.dashboard`)
``GET /api/v1/overview``  its figures as JSON (viewer token, :mod:`flowchain.hub.viewer_access`)
``GET /metrics``          Prometheus, per tenant, chain and step (:mod:`flowchain.hub.metrics`;
                          viewer token)
``GET /healthz``          ``ok`` while the process serves
``/api/v1/tenants/...``   business workflows, tenant tokens (:mod:`flowchain.hub.workflow_api`)

The hub holds no state of its own: everything is in the store, so several hubs may serve one
PostgreSQL. Listening anywhere but loopback needs TLS (``--tls-cert``/``--tls-key``) or the
explicit ``--allow-insecure-remote``: node tokens must not cross a network in the clear; and
viewer tokens: every tenant's figures must not be readable by whoever reaches the hub.
"""
from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from flowchain.config import is_loopback_host
from flowchain.errors import FlowChainError
from flowchain.hub import dashboard, ingest_api, metrics, workflow_api
from flowchain.hub.ingest_api import COUNTERS_KEY, MAX_BODY_KEY, STORE_KEY, TOKENS_KEY
from flowchain.hub.viewer_access import VIEWERS_KEY

DEFAULT_PORT = 8760
DEFAULT_DB = "flowchain-hub.db"
DEFAULT_MAX_BODY = 32 << 20
"""Largest request body the hub reads (bytes); a larger batch is answered 413."""


class HubStartError(FlowChainError, RuntimeError):
    """The hub could not start: an insecure remote address, unusable TLS files, a busy port."""


def check_listen(host: str, *, tls: bool, allow_insecure_remote: bool) -> None:
    """Refuse a non-loopback ``host`` without TLS unless explicitly allowed.

    Raises
    ------
    HubStartError
        Naming the host and the two ways out.
    """
    if tls or allow_insecure_remote or is_loopback_host(host):
        return
    raise HubStartError(
        f"--host {host!r} is not loopback: node tokens and every tenant's figures would cross "
        "the network in the clear. Give --tls-cert and --tls-key, or pass "
        "--allow-insecure-remote on a trusted network (or keep 127.0.0.1 behind a reverse "
        "proxy)")


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """Return a server TLS context of ``cert`` and ``key`` (PEM files).

    Raises
    ------
    HubStartError
        When a file is missing or the pair does not load.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise HubStartError(f"--tls-cert {cert!r} / --tls-key {key!r}: {exc}") from exc
    return context


def build_app(store: Any, tokens: Any, *, max_body: int = DEFAULT_MAX_BODY,
              window_s: float = dashboard.DEFAULT_WINDOW_S, stale_after_s: float = 30.0,
              metrics_window_s: float = metrics.DEFAULT_WINDOW_S,
              workflows: Any = None, viewers: Any = None) -> web.Application:
    """Return the hub's application over ``store`` (a HubStore) and ``tokens`` (NodeTokens).

    ``viewers``: the ViewerTokens the overview and ``/metrics`` require (None: open, which
    :func:`serve` allows on loopback only).

    ``workflows``: the WorkflowService of the tenant API (one over ``store`` with the shipped
    tiers when omitted, closed with the application). The store is not closed with the
    application: its opener closes it.
    """
    app = web.Application(client_max_size=max_body)
    app[STORE_KEY] = store
    app[TOKENS_KEY] = tokens
    app[COUNTERS_KEY] = Counter()
    app[MAX_BODY_KEY] = max_body
    app[VIEWERS_KEY] = viewers
    ingest_api.add_routes(app)
    dashboard.add_routes(app, window_s=window_s, stale_after_s=stale_after_s)
    metrics.add_routes(app, window_s=metrics_window_s)
    workflow_api.add_workflow_routes(app, workflows)
    app.router.add_get("/healthz", _healthz)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


@dataclass
class RunningHub:
    """A hub serving on a loop: its runner and bound URL (``stop()`` to end it)."""

    runner: web.AppRunner
    url: str

    async def stop(self) -> None:
        await self.runner.cleanup()


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                ssl_context: ssl.SSLContext | None = None,
                allow_insecure_remote: bool = False) -> RunningHub:
    """Start serving ``app`` on ``host:port`` (0: a free port) on the running loop.

    Raises
    ------
    HubStartError
        When the address is refused (see :func:`check_listen`) or cannot be bound.
    """
    check_listen(host, tls=ssl_context is not None, allow_insecure_remote=allow_insecure_remote)
    if app.get(VIEWERS_KEY) is None and not is_loopback_host(host):
        raise HubStartError(f"--host {host!r} is not loopback: every tenant's figures would be "
                            "open to whoever reaches it. Give the hub viewer tokens "
                            "(flowchain hub token add-viewer NAME)")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise HubStartError(f"the hub could not listen on {host}:{port}: {exc.strerror or exc}; "
                            "pick another --port (0 picks a free one)") from exc
    bound = runner.addresses[0]
    scheme = "https" if ssl_context is not None else "http"
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return RunningHub(runner, f"{scheme}://{shown}:{bound[1]}")


async def run_until_stopped(app: web.Application, host: str, port: int, *,
                            ssl_context: ssl.SSLContext | None = None,
                            allow_insecure_remote: bool = False,
                            announce: Any = None) -> None:
    """Serve until SIGINT/SIGTERM; ``announce(url)`` is called once serving."""
    import signal

    hub = await serve(app, host, port, ssl_context=ssl_context,
                      allow_insecure_remote=allow_insecure_remote)
    if announce is not None:
        announce(hub.url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    try:
        await stop.wait()
    finally:
        await hub.stop()
