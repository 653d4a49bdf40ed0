"""The dashboard: HTTP routes, server-sent events, and the page in headless Chromium.

The browser test drives Debian's chromium over the DevTools protocol on a pipe
(``--remote-debugging-pipe``); it skips only when chromium is absent (see .ci/run).
"""
import asyncio
import json
import re
import threading
import urllib.error
import urllib.request

import pytest
import uvloop
from chromium import CHROMIUM, DevTools

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry
from flowchain.feeds.base import FeedState, FeedStats
from flowchain.observe.metrics import FlowChainCollector
from flowchain.observe.monitor import Monitor
from flowchain.observe.web import DashboardServer, DashboardState


class FakeFeed:
    def __init__(self):
        self.stats = FeedStats()
        self.state = FeedState()


def make_node():
    components = ComponentRegistry()
    components.register("Features", lambda x: x)

    def agents(x):
        if x % 10 == 7:
            raise ValueError(f"agent could not read tick {x}")
        return x

    components.register("Agents", agents)
    components.register("Execute", lambda x: x)
    reg = ChainRegistry(components, ring_capacity=256)
    cid = reg.register_chain(ChainBuilder("decision")
                             .step("features", "Features", "tick", "features", 5)
                             .step("agents", "Agents", "features", "votes", 0.000001)
                             .step("execute", "Execute", "votes", "order", 5).build())
    return reg, cid


def run_chain(reg, cid, xs):
    for x in xs:
        try:
            reg.runner(cid).run(x)
        except ChainStepError:
            pass


class ServerThread:
    """The dashboard on its own uvloop loop in a thread, as the node would host it."""

    def __init__(self, state, **kw):
        self.loop = uvloop.new_event_loop()
        self.server = DashboardServer(state, **kw)
        ready = threading.Event()

        def main():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        assert ready.wait(10), "dashboard did not start"

    def close(self):
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def node():
    reg, cid = make_node()
    monitor = Monitor(reg, warning_interval_s=0, min_attempts=10)
    feed = FakeFeed()
    feed.state.update(connected=True)
    feed.stats.received = 123
    state = DashboardState(reg, monitor, {"simulator": feed})
    server = ServerThread(state, interval_s=0.1, collector=FlowChainCollector(reg))
    yield reg, cid, monitor, server.server
    server.close()


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers.get("Content-Type"), response.read()


def test_routes_status_chains_metrics_and_errors(node):
    reg, cid, monitor, server = node
    run_chain(reg, cid, range(20))
    monitor.poll()
    status, ctype, body = get(server.url + "/api/status")
    snap = json.loads(body)
    chain = snap["chains"][0]
    assert chain["executions"] == 20 and chain["failures"] == 2
    assert [s["status"] for s in chain["steps"]] == ["ok", "failing", "ok"]
    assert snap["failures"][0]["step"] == "agents"
    assert "could not read tick" in snap["failures"][0]["message"]
    assert snap["feeds"]["simulator"]["received"] == 123
    assert {e["kind"] for e in snap["events"]} >= {"slow_step", "escalation"}
    diagrams = json.loads(get(server.url + "/api/chains")[2])
    assert diagrams[0]["svg"].startswith("<svg")
    assert b"flowchain_chains_executed_total" in get(server.url + "/metrics")[2]
    page = get(server.url + "/")[2].decode()
    assert "/static/app.js" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)   # no external resource
    carried = re.search(r'<script id="initial" type="application/json">(.*?)</script>', page,
                        re.S)
    initial = json.loads(carried.group(1))   # the page carries a first snapshot and diagrams
    assert initial["snapshot"]["chains"][0]["executions"] == 20
    assert initial["diagrams"][0]["svg"].startswith("<svg")
    assert get(server.url + "/static/app.js")[1].startswith("text/javascript")
    with pytest.raises(urllib.error.HTTPError) as missing:
        get(server.url + "/nothing")
    assert missing.value.code == 404
    request = urllib.request.Request(server.url + "/api/status", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as post:
        urllib.request.urlopen(request, timeout=10)
    assert post.value.code == 405


def test_malformed_request_gets_400_and_is_counted(node):
    import socket
    *_, server = node
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"garbage\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert server.counters["bad_request"] == 1


def _raw_get(port: int, host_header: bytes | None) -> bytes:
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head = b"GET /api/status HTTP/1.1\r\n" + (b"Host: " + host_header + b"\r\n" if host_header is not None else b"")
        s.sendall(head + b"\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
        return reply


def test_a_host_header_naming_another_site_gets_421_dns_rebinding(node):
    *_, server = node
    port = str(server.port).encode()
    for host in (b"evil.example:" + port, b"evil.example", b"127.0.0.1.evil.example:" + port,
                 b"127.0.0.1:1", b"10.0.0.1:" + port, b"[::1", b"127.0.0.1:x"):
        assert _raw_get(server.port, host).startswith(b"HTTP/1.1 421"), host
    for host in (b"127.0.0.1:" + port, b"localhost:" + port, b"LOCALHOST:" + port, b"127.0.0.1", None):
        reply = _raw_get(server.port, host)
        assert reply.startswith(b"HTTP/1.1 200") and b'"chains"' in reply, host
    assert server.counters["misdirected"] == 7


def test_the_host_check_follows_the_bound_address():
    from flowchain.observe.web.server import DashboardServer
    v6 = DashboardServer(None, "::1", 8750)
    assert v6._host_allowed("[::1]:8750") and v6._host_allowed("localhost:8750")
    assert not v6._host_allowed("[::2]:8750") and not v6._host_allowed("rebind.example:8750")
    every = DashboardServer(None, "0.0.0.0", 8750, allowed_hosts=["node7.internal"])
    assert every._host_allowed("192.168.1.5:8750") and every._host_allowed("node7.internal:8750")
    assert not every._host_allowed("rebind.example:8750")


def test_event_stream_pushes_changing_snapshots(node, eventually):
    reg, cid, monitor, server = node
    with urllib.request.urlopen(server.url + "/api/events", timeout=10) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"

        def next_snapshot():
            while True:
                line = stream.readline()
                if line.startswith(b"data: "):
                    return json.loads(line[6:])

        first = next_snapshot()
        run_chain(reg, cid, range(30))
        counts = eventually(lambda: next_snapshot()["chains"][0]["executions"] == 30, timeout=10)
        assert counts and first["chains"][0]["executions"] == 0


@pytest.mark.skipif(CHROMIUM is None,
                    reason="chromium absent (apt-get install chromium)")
def test_page_in_headless_chromium_shows_numbers_that_change(node, tmp_path, eventually):
    reg, cid, monitor, server = node
    run_chain(reg, cid, range(40))
    monitor.poll()
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    try:
        session = browser.open(server.url + "/")

        def text(selector):
            return browser.evaluate(session, f"(document.querySelector({json.dumps(selector)})"
                                             " || {}).textContent || ''")

        eventually(lambda: text("#chains td.executions") == "40", timeout=30,
                   message="executions shown")
        eventually(lambda: text("#connection") == "live", timeout=30, message="stream live")
        status = browser.evaluate(session, "Array.from(document.querySelectorAll("
                                           "'#diagrams g.step')).map(g => g.dataset.status)")
        assert status == ["ok", "failing", "ok"]
        assert "40 ok" in text('#diagrams g.step[data-step="features"] [data-field="counts"]')
        assert "agents (Agents)" in text("#failures tbody")
        assert "could not read tick" in text("#failures tbody")
        assert "escalation" in text("#events")
        assert text("#feeds tbody").startswith("simulatorconnected123")
        success_before = text("#chains td.success")
        run_chain(reg, cid, [0] * 60)         # all succeed: the success rate rises
        eventually(lambda: text("#chains td.executions") == "100", timeout=30,
                   message="executions updated")
        eventually(lambda: "100 ok" in text(
            '#diagrams g.step[data-step="features"] [data-field="counts"]'), timeout=30)
        assert (success_before, text("#chains td.success")) == ("90.00%", "96.00%")
    finally:
        browser.close()


@pytest.mark.skipif(CHROMIUM is None,
                    reason="chromium absent (apt-get install chromium)")
def test_page_shows_its_first_snapshot_and_the_escalation_banner_without_a_stream(
        node, tmp_path, eventually):
    reg, cid, monitor, server = node
    run_chain(reg, cid, range(40))
    monitor.poll()
    assert [e.step for e in monitor.escalations()] == ["agents"]
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        browser.call("Network.enable", {}, session)
        # as behind a proxy that buffers event streams: neither the stream nor the API answers
        browser.call("Network.setBlockedURLs", {"urls": ["*/api/events", "*/api/chains"]},
                     session)
        browser.call("Page.navigate", {"url": server.url + "/"}, session)

        def text(selector):
            return browser.evaluate(session, f"(document.querySelector({json.dumps(selector)})"
                                             " || {}).textContent || ''")

        eventually(lambda: text("#chains td.executions") == "40", timeout=30,
                   message="executions shown from the page's own snapshot")
        assert text("#connection") != "live"
        banner = browser.evaluate(session, "document.getElementById('escalations').hidden")
        assert banner is False
        assert "ESCALATED decision/agents (Agents)" in text("#escalations")
        assert "10.0% of 40 attempts failed" in text("#escalations")
        status = browser.evaluate(session, "Array.from(document.querySelectorAll("
                                           "'#diagrams g.step')).map(g => g.dataset.status)")
        assert status == ["ok", "failing", "ok"]
        assert "could not read tick" in text("#failures tbody")
        assert server.counters["sse_clients"] == 0
    finally:
        browser.close()


def test_throughput_shown_is_the_monitors_whoever_polls(node):
    reg, cid, monitor, server = node
    run_chain(reg, cid, range(10))
    monitor.poll()
    run_chain(reg, cid, range(10))
    monitor.poll()
    first = json.loads(get(server.url + "/api/status")[2])["chains"][0]
    for _ in range(3):                   # other clients polling change nothing
        again = json.loads(get(server.url + "/api/status")[2])["chains"][0]
        assert (again["throughput_per_s"], again["throughput_10s_per_s"]) == \
            (first["throughput_per_s"], first["throughput_10s_per_s"])
    assert first["throughput_per_s"] == monitor.throughput(cid)["per_1s"] > 0


def test_status_cli_reads_a_running_node(node):
    from typer.testing import CliRunner

    from flowchain.cli import status  # noqa: F401  (registers the command)
    from flowchain.cli.app import app

    reg, cid, monitor, server = node
    run_chain(reg, cid, range(12))
    runner = CliRunner()
    result = runner.invoke(app, ["status", "--url", server.url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["chains"][0]["executions"] == 12
    table = runner.invoke(app, ["status", "--url", server.url], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "decision" in table.stdout and "12" in table.stdout
    assert "ESCALATED" not in table.stdout
    run_chain(reg, cid, range(12, 40))        # 10% of the agents' attempts fail
    monitor.poll()
    table = runner.invoke(app, ["status", "--url", server.url], env={"COLUMNS": "200"})
    assert "ESCALATED decision/agents (Agents): 10.0% of 40 attempts failed" in table.stdout
    down = runner.invoke(app, ["status", "--url", "http://127.0.0.1:9"])
    assert down.exit_code == 1 and "no node dashboard" in down.output


def test_bench_observers_run_everything_the_node_runs(tmp_path):
    from flowchain.bench.observe import Observers

    reg, cid = make_node()
    run_chain(reg, cid, range(5))
    for _ in range(2):                     # the bench builds fresh observers every repetition
        observers = Observers(reg, {"simulator": FakeFeed()}, scrape_every_s=0.05,
                              sse_every_s=0.05, monitor_every_s=0.05,
                              history_db=str(tmp_path / "history.db"))
        observers.start()
        observers.stop()
        assert observers.counters["scrapes"] >= 1 and observers.counters["sse_snapshots"] >= 1
        assert observers.counters["errors"] == 0 and observers.monitor.counters["polls"] >= 1
        assert observers.history.counters["intervals"] >= 1  # flushed on close


def test_dashboard_thread_serves_from_its_own_loop_and_closes():
    from flowchain.observe.web import DashboardThread

    reg, cid = make_node()
    run_chain(reg, cid, range(20))
    hosted = DashboardThread(DashboardServer(DashboardState(reg, None, {"sim": FakeFeed()}),
                                             port=0, collector=FlowChainCollector(reg)))
    server = hosted.start()
    assert server.port != 0 and hosted.url == server.url
    try:
        with urllib.request.urlopen(hosted.url + "/api/status", timeout=10) as r:
            snap = json.loads(r.read())
        assert snap["chains"][0]["executions"] == 20
        with urllib.request.urlopen(hosted.url + "/metrics", timeout=10) as r:
            assert b"flowchain_chains_executed_total" in r.read()
        busy = DashboardThread(DashboardServer(DashboardState(reg), port=server.port))
        with pytest.raises(OSError):
            busy.start()
        assert busy._thread is None  # a failed start leaves no loop thread behind
    finally:
        hosted.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(hosted.url + "/api/status", timeout=5)
    hosted.close()  # twice is harmless
