"""Alert events and where they go: a structured log, a Python callback, a webhook.

The :class:`~flowchain.observe.monitor.Monitor` turns what the engine recorded into
:class:`AlertEvent` objects and hands each to every sink. A sink never blocks the monitor:
the log and callback sinks run inline (a raising callback is counted, never propagated), the
webhook sink queues the event (bounded; a full queue drops the event and counts it) and POSTs
it from its own thread with retries and exponential backoff.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("flowchain.alerts")

SLOW_STEP = "slow_step"
"""A step took longer than its expected duration."""
ESCALATION = "escalation"
"""A step's error rate over the rolling window rose above the threshold."""
RECOVERY = "recovery"
"""A step's error rate fell back below the threshold after an escalation."""
EVENT_KINDS = (SLOW_STEP, ESCALATION, RECOVERY)

_SEVERITY = {SLOW_STEP: "warning", ESCALATION: "critical", RECOVERY: "info"}
_LOG_LEVEL = {"warning": logging.WARNING, "critical": logging.ERROR, "info": logging.INFO}


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One thing the monitor wants someone to know.

    Attributes
    ----------
    kind : str
        One of :data:`EVENT_KINDS`.
    chain, chain_id, step : str
        Where it happened (chain name, its content-hash id, the step name).
    message : str
        A sentence for humans, naming what was observed against what was expected.
    time_ns : int
        Wall-clock time of the event (``time.time_ns()``).
    fields : dict
        The figures behind the message (``execution_id``, ``observed_ns``, ``expected_ns``,
        ``error_rate``, ``window_s``, ``suppressed`` ...).
    """

    kind: str
    chain: str
    chain_id: str
    step: str
    message: str
    time_ns: int
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def severity(self) -> str:
        """``warning`` for slow steps, ``critical`` for escalations, ``info`` for recoveries."""
        return _SEVERITY.get(self.kind, "warning")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready description."""
        return {"kind": self.kind, "severity": self.severity, "chain": self.chain,
                "chain_id": self.chain_id, "step": self.step, "message": self.message,
                "time_ns": self.time_ns, **self.fields}


class AlertSink(Protocol):
    """Anything with ``emit(event)``; it must return quickly and never raise."""

    def emit(self, event: AlertEvent) -> None: ...


class LogSink:
    """Log each event through :mod:`logging`, its fields as ``extra`` and as one JSON line.

    Records carry ``event`` (the event's dict) and ``flowchain_kind`` as attributes, so a JSON
    formatter picks them up; the message itself is the event as JSON, so plain handlers keep it.

    Parameters
    ----------
    logger : logging.Logger, optional
        Where to log; ``flowchain.alerts`` by default.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else log

    def emit(self, event: AlertEvent) -> None:
        data = event.to_dict()
        self.logger.log(_LOG_LEVEL[event.severity], "%s", json.dumps(data, default=str),
                        extra={"event": data, "flowchain_kind": event.kind})


class CallbackSink:
    """Call a Python function with each event; exceptions are logged and counted, never raised.

    Parameters
    ----------
    callback : callable
        ``callback(event)``; it runs on the monitor's thread, so keep it short.
    """

    def __init__(self, callback: Callable[[AlertEvent], None]) -> None:
        if not callable(callback):
            raise TypeError(f"CallbackSink needs a callable, got {callback!r}")
        self.callback = callback
        self.errors = 0

    def emit(self, event: AlertEvent) -> None:
        try:
            self.callback(event)
        except Exception:
            self.errors += 1
            log.exception("alert callback %r raised on a %s event for %s/%s", self.callback,
                          event.kind, event.chain, event.step)


class WebhookSink:
    """POST each event as JSON to a URL, from a thread of its own, with retries and backoff.

    ``emit`` only enqueues (bounded): the monitor never waits for the network. A full queue
    drops the event and counts it in ``counters["dropped_queue_full"]``. A POST is retried on
    connection errors, timeouts and 5xx/429 answers, waiting ``backoff_s * 2**attempt``
    (capped at ``max_backoff_s``) between tries; after ``retries`` retries the event is counted
    in ``counters["failed"]``. A 4xx answer (other than 429) is not retried: counted in
    ``counters["rejected"]``.

    Parameters
    ----------
    url : str
        An ``http://`` or ``https://`` URL.
    retries : int
        Retries after the first attempt.
    backoff_s, max_backoff_s : float
        The first wait between attempts and its cap.
    timeout_s : float
        Per-request timeout.
    queue_size : int
        Events waiting to be sent at most.
    headers : dict, optional
        Extra HTTP headers (for example an authorization token).

    Raises
    ------
    ValueError
        When the URL is not http(s) or a number is out of range.
    """

    def __init__(self, url: str, *, retries: int = 3, backoff_s: float = 0.2,
                 max_backoff_s: float = 5.0, timeout_s: float = 2.0, queue_size: int = 1000,
                 headers: dict[str, str] | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL {url!r} is not http:// or https://; give a full URL")
        if retries < 0 or backoff_s < 0 or timeout_s <= 0 or queue_size < 1:
            raise ValueError(f"webhook settings out of range: retries={retries}, "
                             f"backoff_s={backoff_s}, timeout_s={timeout_s}, "
                             f"queue_size={queue_size}")
        self.url = url
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.counters = {"sent": 0, "retried": 0, "failed": 0, "rejected": 0,
                         "dropped_queue_full": 0}
        self._queue: queue.Queue[AlertEvent | None] = queue.Queue(maxsize=queue_size)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flowchain-webhook", daemon=True)
        self._thread.start()

    def emit(self, event: AlertEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.counters["dropped_queue_full"] += 1

    @property
    def pending(self) -> int:
        """Events queued and not yet sent or given up on."""
        return self._queue.qsize()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (within ``timeout``), then stop the thread."""
        deadline = time.monotonic() + timeout
        while self._queue.qsize() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stopping.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()) + 0.5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            event = self._queue.get()
            if event is None:
                continue
            self._deliver(event)

    def _deliver(self, event: AlertEvent) -> None:
        body = json.dumps(event.to_dict(), default=str).encode()
        for attempt in range(self.retries + 1):
            if attempt:
                self.counters["retried"] += 1
                if self._stopping.wait(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))):
                    break
            request = urllib.request.Request(self.url, data=body, headers=self.headers,
                                             method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    response.read()
                self.counters["sent"] += 1
                return
            except urllib.error.HTTPError as exc:
                if exc.code != 429 and exc.code < 500:
                    self.counters["rejected"] += 1
                    log.warning("webhook %s rejected a %s event with HTTP %d; not retried",
                                self.url, event.kind, exc.code)
                    return
                reason = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                reason = str(exc)
            log.debug("webhook %s attempt %d failed: %s", self.url, attempt + 1, reason)
        self.counters["failed"] += 1
        log.warning("webhook %s: gave up on a %s event for %s/%s after %d attempts", self.url,
                    event.kind, event.chain, event.step, self.retries + 1)


class MemorySink:
    """Keep the latest events in memory (for the dashboard and the CLI), newest last."""

    def __init__(self, capacity: int = 200) -> None:
        from collections import deque

        self.events: deque[AlertEvent] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def emit(self, event: AlertEvent) -> None:
        with self._lock:
            self.events.append(event)

    def latest(self, limit: int = 50) -> list[AlertEvent]:
        """Return up to ``limit`` of the newest events, newest first."""
        with self._lock:
            items = list(self.events)
        return items[::-1][:limit]
