"""The dashboard's HTTP server: stdlib asyncio streams (uvloop in the node), no framework.

Routes (GET only):

``/``                    the page (HTML; its script and style come from ``/static/``)
``/static/app.js|.css``  the page's script and style (no network, no CDN)
``/api/status``          the current snapshot as JSON (``flowchain status`` reads it)
``/api/chains``          every chain's SVG diagram
``/api/events``          server-sent events: one ``snapshot`` event every ``interval_s``
``/metrics``             Prometheus exposition, when a collector is given

One snapshot is computed per interval and sent to every connected client. Malformed requests
get a 400, and a ``Host`` header naming another site a 421 (DNS rebinding); both are counted in
:attr:`DashboardServer.counters` by reason and never stop it.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Iterable
from importlib import resources
from typing import Any

from flowchain.observe.web.state import DashboardState

log = logging.getLogger("flowchain.web")

DEFAULT_PORT = 8750
"""The dashboard's port unless the node is told otherwise (``flowchain status`` asks here)."""
MAX_HEADER_BYTES = 16_384
STATIC_TYPES = {"app.js": "text/javascript; charset=utf-8",
                "app.css": "text/css; charset=utf-8",
                "index.html": "text/html; charset=utf-8"}


def _static(name: str) -> bytes:
    return resources.files("flowchain.observe.web").joinpath("static", name).read_bytes()


class DashboardServer:
    """Serve the dashboard of a :class:`DashboardState` on ``host:port``.

    Parameters
    ----------
    state : DashboardState
    host : str
        Listen address: loopback by default; pass ``0.0.0.0`` deliberately to expose it.
    port : int
        0 picks a free port (read :attr:`port` after :meth:`start`).
    interval_s : float
        Seconds between snapshots pushed to event-stream clients.
    collector : flowchain.observe.metrics.FlowChainCollector, optional
        Serves ``/metrics`` when given, from an :class:`~flowchain.observe.metrics.ExpositionCache`.
    metrics_refresh_s : float
        Seconds between background renderings of ``/metrics`` while it is scraped.
    allowed_hosts : iterable of str, optional
        Host names accepted in the ``Host`` header besides the bound address itself.

    Notes
    -----
    A request whose ``Host`` header names anything but the address the dashboard is bound to
    (and, bound to loopback, ``localhost``; bound to every interface, any IP address) or an
    ``allowed_hosts`` name gets 421 Misdirected Request: a web page that re-points its own
    domain at 127.0.0.1 (DNS rebinding) cannot read ``/api/status``.

    Raises
    ------
    ValueError
        When ``interval_s`` is not positive.
    """

    def __init__(self, state: DashboardState, host: str = "127.0.0.1", port: int = 0, *,
                 interval_s: float = 0.5, collector: Any = None,
                 metrics_refresh_s: float = 1.0, allowed_hosts: Iterable[str] = ()) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.state = state
        self.host = host
        self.port = port
        self.interval_s = interval_s
        self.allowed_hosts = frozenset(h.lower().strip("[]") for h in allowed_hosts)
        self.counters: dict[str, int] = {"requests": 0, "bad_request": 0, "misdirected": 0, "not_found": 0,
                                         "method_not_allowed": 0, "errors": 0, "sse_clients": 0}
        self.exposition: Any = None
        if collector is not None:
            from flowchain.observe.metrics import ExpositionCache, exposition_registry

            self.exposition = ExpositionCache(exposition_registry(collector),
                                              refresh_s=metrics_refresh_s)
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Queue] = set()
        self._broadcast: asyncio.Task | None = None
        self._assets = {name: _static(name) for name in STATIC_TYPES}

    @property
    def url(self) -> str:
        """The base URL (``http://host:port``; an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> DashboardServer:
        """Listen and start pushing snapshots.

        Raises
        ------
        OSError
            When the address cannot be bound (in use, not local).
        """
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._broadcast = asyncio.create_task(self._broadcast_loop())
        if self.exposition is not None:
            self.exposition.start()
        return self

    async def close(self) -> None:
        """Stop listening and end every event stream."""
        if self.exposition is not None:
            self.exposition.close()
        if self._broadcast is not None:
            self._broadcast.cancel()
            try:
                await self._broadcast
            except asyncio.CancelledError:
                pass
        for q in list(self._clients):
            q.put_nowait(None)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> DashboardServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ streaming

    async def _broadcast_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if not self._clients:
                continue
            try:
                payload = self._event(self.state.snapshot())
            except Exception:
                self.counters["errors"] += 1
                log.exception("dashboard snapshot failed")
                continue
            for q in list(self._clients):
                if q.qsize() < 4:          # a slow client skips snapshots, never piles them up
                    q.put_nowait(payload)

    @staticmethod
    def _event(snapshot: dict) -> bytes:
        return b"event: snapshot\ndata: " + json.dumps(snapshot, default=str).encode() + b"\n\n"

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Cache-Control: no-cache\r\nConnection: keep-alive\r\n\r\nretry: 1000\n\n")
        writer.write(self._event(self.state.snapshot()))
        await writer.drain()
        q: asyncio.Queue = asyncio.Queue()
        self._clients.add(q)
        self.counters["sse_clients"] += 1
        try:
            while True:
                payload = await q.get()
                if payload is None:
                    break
                writer.write(payload)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(q)

    # ------------------------------------------------------------------ requests

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            except asyncio.LimitOverrunError:
                self.counters["bad_request"] += 1
                await self._respond(writer, 431, "text/plain", b"request headers too large\n")
                return
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                return
            if len(head) > MAX_HEADER_BYTES:
                self.counters["bad_request"] += 1
                await self._respond(writer, 431, "text/plain", b"request headers too large\n")
                return
            try:
                method, target, _ = head.split(b"\r\n", 1)[0].decode("ascii").split(" ")
            except (UnicodeDecodeError, ValueError):
                self.counters["bad_request"] += 1
                await self._respond(writer, 400, "text/plain",
                                    b"malformed request line; expected 'GET /path HTTP/1.1'\n")
                return
            self.counters["requests"] += 1
            host = _host_header(head)
            if host is not None and not self._host_allowed(host):
                self.counters["misdirected"] += 1
                await self._respond(writer, 421, "text/plain",
                                    b"this dashboard answers only to its own address\n")
                return
            path = target.split("?", 1)[0]
            if method != "GET":
                self.counters["method_not_allowed"] += 1
                await self._respond(writer, 405, "text/plain", b"only GET is served\n")
                return
            await self._route(path, writer)
        except ConnectionError:
            pass
        except Exception:
            self.counters["errors"] += 1
            log.exception("dashboard request failed")
            try:
                await self._respond(writer, 500, "text/plain", b"internal error; see the log\n")
            except ConnectionError:
                pass
        finally:
            writer.close()

    def _page(self) -> bytes:
        """The page, carrying the diagrams and a first snapshot: it shows figures at once."""
        initial = json.dumps({"snapshot": self.state.snapshot(),
                              "diagrams": self.state.diagrams()}, default=str)
        # inside <script>, "<" is written as its JSON escape: no "</script>" can end it early
        script = ('<script id="initial" type="application/json">'
                  + initial.replace("<", "\\u003c") + "</script>").encode()
        return self._assets["index.html"].replace(b"<!--initial-->", script, 1)

    def _host_allowed(self, host: str) -> bool:
        """True when a ``Host`` header value names this dashboard (see the class notes)."""
        name, port = _split_host(host)
        if name is None or (port is not None and port != self.port):
            return False
        if name in self.allowed_hosts:
            return True
        bound = self.host.lower().strip("[]")
        try:
            literal = ipaddress.ip_address(name)
        except ValueError:
            literal = None
        if literal is not None and bound in ("0.0.0.0", "::", ""):
            return True
        if literal is not None:
            try:
                return literal == ipaddress.ip_address(bound)
            except ValueError:
                return bound == "localhost" and literal.is_loopback
        if name == "localhost":
            return bound == "localhost" or _is_loopback(bound)
        return name == bound

    async def _route(self, path: str, writer: asyncio.StreamWriter) -> None:
        if path in ("/", "/index.html"):
            await self._respond(writer, 200, STATIC_TYPES["index.html"], self._page())
        elif path.startswith("/static/") and path[8:] in self._assets:
            name = path[8:]
            await self._respond(writer, 200, STATIC_TYPES[name], self._assets[name])
        elif path == "/api/status":
            body = json.dumps(self.state.snapshot(), default=str).encode()
            await self._respond(writer, 200, "application/json", body)
        elif path == "/api/chains":
            body = json.dumps(self.state.diagrams()).encode()
            await self._respond(writer, 200, "application/json", body)
        elif path == "/api/events":
            await self._stream(writer)
        elif path == "/metrics" and self.exposition is not None:
            from prometheus_client import CONTENT_TYPE_LATEST

            body = await asyncio.get_running_loop().run_in_executor(None, self.exposition.get)
            await self._respond(writer, 200, CONTENT_TYPE_LATEST, body)
        else:
            self.counters["not_found"] += 1
            await self._respond(writer, 404, "text/plain",
                                f"no page at {path}; try / or /api/status\n".encode())

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, status: int, content_type: str,
                       body: bytes) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  421: "Misdirected Request",
                  431: "Request Header Fields Too Large", 500: "Internal Server Error"}[status]
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                     f"Content-Length: {len(body)}\r\nCache-Control: no-cache\r\n"
                     "Connection: close\r\n\r\n".encode() + body)
        await writer.drain()


def _host_header(head: bytes) -> str | None:
    """The ``Host`` header's value (lower case), or None when the request has none."""
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"host":
            return value.strip().decode("latin-1").lower()
    return None


def _split_host(host: str) -> tuple[str | None, int | None]:
    """``("name", port or None)`` of a Host value; ``(None, None)`` when malformed."""
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        if end < 0:
            return None, None
        name, rest = host[1:end], host[end + 1:]
        if rest and not rest.startswith(":"):
            return None, None
        port_text = rest[1:] if rest else ""
    elif host.count(":") == 1:
        name, port_text = host.split(":")
    else:
        name, port_text = host, ""
    if not name:
        return None, None
    if port_text:
        if not port_text.isdigit():
            return None, None
        return name, int(port_text)
    return name, None


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
