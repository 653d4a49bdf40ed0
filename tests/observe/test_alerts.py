"""Alert sinks: structured log, callback, and a webhook against a real local HTTP server."""
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flowchain.observe.alerts import ESCALATION, SLOW_STEP, AlertEvent, CallbackSink, LogSink, MemorySink, WebhookSink


def event(kind=SLOW_STEP, step="score"):
    return AlertEvent(kind, "trade", "trade@0123", step, f"{step} was slow", 1_700_000_000_000,
                      {"execution_id": "trade@0123#4", "observed_ns": 900, "expected_ns": 100})


class Receiver:
    """A local HTTP server that answers the first ``fail_first`` POSTs with ``fail_code``."""

    def __init__(self, fail_first=0, fail_code=503):
        self.bodies = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                receiver.attempts += 1
                if receiver.attempts <= fail_first:
                    self.send_response(fail_code)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory():
    made = []

    def make(**kw):
        r = Receiver(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_webhook_posts_event_json(receiver_factory, eventually):
    rx = receiver_factory()
    sink = WebhookSink(rx.url, backoff_s=0.01)
    try:
        sink.emit(event())
        eventually(lambda: rx.bodies, timeout=10)
    finally:
        sink.close()
    body = rx.bodies[0]
    assert body["kind"] == SLOW_STEP and body["severity"] == "warning"
    assert body["execution_id"] == "trade@0123#4" and body["observed_ns"] == 900
    assert sink.counters["sent"] == 1


def test_webhook_retries_server_errors_with_backoff(receiver_factory, eventually):
    rx = receiver_factory(fail_first=2)
    sink = WebhookSink(rx.url, retries=3, backoff_s=0.01)
    try:
        sink.emit(event(ESCALATION))
        eventually(lambda: sink.counters["sent"] == 1, timeout=10)
    finally:
        sink.close()
    assert rx.attempts == 3 and sink.counters["retried"] == 2
    assert rx.bodies[0]["severity"] == "critical"


def test_webhook_gives_up_after_retries_and_counts_it(receiver_factory, eventually):
    rx = receiver_factory(fail_first=100)
    sink = WebhookSink(rx.url, retries=2, backoff_s=0.01)
    try:
        sink.emit(event())
        eventually(lambda: sink.counters["failed"] == 1, timeout=10)
    finally:
        sink.close()
    assert rx.attempts == 3 and sink.counters["sent"] == 0


def test_webhook_does_not_retry_client_errors(receiver_factory, eventually):
    rx = receiver_factory(fail_first=100, fail_code=400)
    sink = WebhookSink(rx.url, retries=3, backoff_s=0.01)
    try:
        sink.emit(event())
        eventually(lambda: sink.counters["rejected"] == 1, timeout=10)
    finally:
        sink.close()
    assert rx.attempts == 1


def test_webhook_unreachable_never_blocks_emit_and_full_queue_is_counted():
    # a port nobody listens on: connection refused on every attempt
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    sink = WebhookSink(f"http://127.0.0.1:{port}/", retries=50, backoff_s=0.5, queue_size=2)
    try:
        for _ in range(10):
            sink.emit(event())          # returns at once, whatever the network does
        assert sink.counters["dropped_queue_full"] >= 7
    finally:
        sink.close(timeout=0.1)


def test_webhook_refuses_bad_url():
    with pytest.raises(ValueError, match="not http"):
        WebhookSink("ftp://example/")


def test_log_sink_carries_fields_as_extra_and_json(caplog):
    caplog.set_level(logging.INFO, logger="flowchain.alerts")
    LogSink().emit(event(ESCALATION))
    record = caplog.records[-1]
    assert record.levelno == logging.ERROR
    assert record.event["kind"] == ESCALATION and record.flowchain_kind == ESCALATION
    assert json.loads(record.getMessage())["execution_id"] == "trade@0123#4"


def test_callback_sink_counts_a_raising_callback():
    def broken(e):
        raise RuntimeError("callback bug")

    sink = CallbackSink(broken)
    sink.emit(event())
    assert sink.errors == 1
    with pytest.raises(TypeError):
        CallbackSink("not callable")


def test_memory_sink_keeps_latest_newest_first():
    sink = MemorySink(capacity=3)
    for step in "abcde":
        sink.emit(event(step=step))
    assert [e.step for e in sink.latest()] == ["e", "d", "c"]
