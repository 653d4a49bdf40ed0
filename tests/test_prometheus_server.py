"""A real Prometheus (Debian's package) scrapes FlowChain's /metrics on loopback.

Skips only when the ``prometheus`` binary is absent (CI installs it: see .ci/run).
"""
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from flowchain import ChainBuilder, ChainRegistry, ComponentRegistry
from flowchain.metrics import FlowChainCollector, MetricsServer

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


def test_prometheus_scrapes_and_answers_queries(tmp_path, eventually):
    components = ComponentRegistry()
    components.register("Inc", lambda x: x + 1)
    reg = ChainRegistry(components, ring_capacity=64)
    cid = reg.register_chain(ChainBuilder("decision").step("a", "Inc", "x", "x", 1)
                             .step("b", "Inc", "x", "x", 1).build())
    runner = reg.runner(cid)
    for i in range(25):
        runner.run(i)
    with MetricsServer(FlowChainCollector(reg)) as metrics:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: flowchain\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{metrics.port}']\n")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
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
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
