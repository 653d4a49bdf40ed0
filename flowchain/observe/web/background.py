"""Run the dashboard server on an event loop of its own, in a daemon thread.

The trading node's event loop carries the tick path; the dashboard (page, server-sent events,
``/api/status``, ``/metrics``) is cold path, so the node serves it from a second loop in its own
thread, exactly as ``flowchain bench observe`` measures it. Nothing the dashboard does (a slow
client, a large scrape) then sits in the node's loop between two ticks.
"""
from __future__ import annotations

import asyncio
import threading

from flowchain.observe.web.server import DashboardServer


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # Windows: stock asyncio
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class DashboardThread:
    """Serve a :class:`DashboardServer` from its own event loop in a daemon thread.

    Parameters
    ----------
    server : DashboardServer
        Not yet started; :meth:`start` starts it on the thread's loop.

    Examples
    --------
    >>> thread = DashboardThread(DashboardServer(state, "127.0.0.1", 0))
    >>> url = thread.start().url
    >>> thread.close()
    """

    def __init__(self, server: DashboardServer) -> None:
        self.server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's base URL (its bound port once started)."""
        return self.server.url

    def start(self, timeout: float = 10.0) -> DashboardServer:
        """Start the loop thread and the server on it; return once it listens.

        Raises
        ------
        OSError
            When the address cannot be bound (in use, not local); the thread is stopped.
        TimeoutError
            When the server does not listen within ``timeout`` seconds.
        """
        if self._thread is not None:
            return self.server
        loop = self._loop = _new_loop()
        self._thread = threading.Thread(target=self._serve, name="flowchain-dashboard",
                                        daemon=True)
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self.server.start(), loop)
        try:
            started.result(timeout)
        except BaseException:
            started.cancel()
            self._stop_loop(timeout)
            raise
        return self.server

    def close(self, timeout: float = 10.0) -> None:
        """Close the server (ending every event stream), then stop the loop and the thread."""
        if self._thread is None or self._loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.server.close(), self._loop).result(timeout)
        finally:
            self._stop_loop(timeout)

    def _serve(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    def _stop_loop(self, timeout: float) -> None:
        assert self._loop is not None and self._thread is not None
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._thread = None
