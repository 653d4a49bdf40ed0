"""A real Prometheus (Debian's package) scrapes FlowChain's /metrics on loopback.

Once a bare metrics server over a small registry, once a running ``flowchain node`` (simulated
feed, paper broker, its dashboard on a free port). Skips only when the ``prometheus`` binary is
absent (CI installs it: see .ci/run).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from contextlib import contextmanager

import pytest
from foreign_env import foreign_env

from flowchain import ChainBuilder, ChainRegistry, ComponentRegistry
from flowchain.observe.metrics import FlowChainCollector, MetricsServer

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None,
                                reason="prometheus binary absent (apt-get install prometheus)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(base, expr):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
    except OSError:
        return []
    return body["data"]["result"] if body.get("status") == "success" else []


@contextmanager
def prometheus(tmp_path, target):
    """Run Prometheus scraping ``target`` (host:port) every second; yield (base URL, process)."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: flowchain-node\n    static_configs:\n"
        f"      - targets: ['{target}']\n")
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=foreign_env())
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


NODE = "import flowchain.cli.node; from flowchain.cli import main; main()"


def test_prometheus_scrapes_a_running_node(tmp_path, eventually):
    url_file = tmp_path / "dashboard.url"
    node = subprocess.Popen(
        [sys.executable, "-c", NODE, "node", "--db", str(tmp_path / "node.db"), "--duration",
         "120", "--status-interval", "0", "--dashboard", "127.0.0.1:0", "--dashboard-url-file",
         str(url_file), "--json"], cwd=tmp_path, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = eventually(lambda: node.poll() is not None or (
            url_file.exists() and url_file.read_text().strip()), timeout=60)
        assert node.poll() is None, node.communicate()[1][-2000:]
        with prometheus(tmp_path, url.removeprefix("http://")) as (base, proc):
            decisions = 'flowchain_chains_executed_total{chain="AI_Decision_Chain"}'
            found = eventually(lambda: proc.poll() is not None or query(base, decisions),
                               timeout=40)
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            first = float(found[0]["value"][1])
            assert first > 0 and found[0]["metric"]["tenant"] == "default"
            assert found[0]["metric"]["job"] == "flowchain-node"
            # the node keeps running between scrapes: the next samples are higher
            eventually(lambda: any(float(r["value"][1]) > first
                                   for r in query(base, decisions)), timeout=30)
            rate = eventually(lambda: query(
                base, 'rate(flowchain_feed_ticks_received_total{feed="feed"}[5s])'), timeout=30)
            assert float(rate[0]["value"][1]) > 0
            stored = eventually(lambda: query(
                base, 'flowchain_chains_executed_total{chain="MT5_To_Database_Chain"} > 0'),
                timeout=30)
            assert float(stored[0]["value"][1]) > 0
            p99 = eventually(lambda: query(
                base, 'histogram_quantile(0.99, flowchain_step_execution_seconds_bucket'
                      '{chain="AI_Decision_Chain",step="trading_execution"})'), timeout=30)
            assert 0 < float(p99[0]["value"][1]) < 10
            filled = eventually(lambda: query(base, 'flowchain_orders_total{status="filled"}'),
                                timeout=60)
            assert float(filled[0]["value"][1]) > 0
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
        out, err = node.communicate(timeout=60)
    assert node.returncode == 0, err[-2000:]
    assert json.loads(out)["stopped_by"] == "SIGTERM"


def test_prometheus_scrapes_and_answers_queries(tmp_path, eventually):
    components = ComponentRegistry()
    components.register("Inc", lambda x: x + 1)
    reg = ChainRegistry(components, ring_capacity=64)
    cid = reg.register_chain(ChainBuilder("decision").step("a", "Inc", "x", "x", 1)
                             .step("b", "Inc", "x", "x", 1).build())
    runner = reg.runner(cid)
    for i in range(25):
        runner.run(i)
    with MetricsServer(FlowChainCollector(reg)) as metrics, \
            prometheus(tmp_path, f"127.0.0.1:{metrics.port}") as (base, proc):
        found = eventually(lambda: proc.poll() is not None or query(
            base, 'flowchain_chains_executed_total{chain="decision"}'), timeout=40)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert float(found[0]["value"][1]) == 25
        assert found[0]["metric"]["tenant"] == "default"
        for i in range(25):
            runner.run(i)
        eventually(lambda: any(float(r["value"][1]) == 50 for r in query(
            base, 'flowchain_chains_executed_total{chain="decision"}')), timeout=30)
        buckets = query(base, 'flowchain_step_execution_seconds_bucket'
                              '{chain="decision",step="a",le="+Inf"}')
        assert float(buckets[0]["value"][1]) == 50
        p99 = query(base, 'histogram_quantile(0.99, '
                          'flowchain_chain_execution_seconds_bucket{chain="decision"})')
        assert 0 < float(p99[0]["value"][1]) < 10
