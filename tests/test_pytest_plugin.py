"""The ``chain_latency`` fixture, as an author's project uses it: a real pytest run in a
subprocess, with the plugin loaded through its ``pytest11`` entry point."""
import json
import subprocess
import sys
import textwrap

AUTHOR_TESTS = '''
import time

import pytest

from flowchain import ChainBuilder, ChainRegistry, ComponentRegistry

components = ComponentRegistry()
components.register("Double", lambda x: x * 2)
components.register("Slow", lambda x: time.sleep(0.003) or x)
components.register("Boom", lambda x: 1 / 0)


def _chain(name, *parts):
    builder = ChainBuilder(name)
    for i, (component, ms) in enumerate(parts):
        builder.step(f"s{i}_{component.lower()}", component, "n", "n", ms)
    return builder.build()


def test_fast_chain_passes(chain_latency):
    report = chain_latency(_chain("Fast", ("Double", 50), ("Double", 50)), range(200),
                           registry=ChainRegistry(components), rounds=3)
    assert report.executions == 600 and report.whole.count == 600
    assert not report.violations and report.whole.p99_ns > 0


def test_slow_step_fails(chain_latency):
    chain_latency(_chain("Slowish", ("Double", 50), ("Slow", 1)), [1, 2],
                  registry=ChainRegistry(components), rounds=2)


def test_chain_budget_fails(chain_latency):
    chain_latency(_chain("Budget", ("Slow", 50)), [1], budget_ms=0.5,
                  registry=ChainRegistry(components), rounds=1)


def test_step_budget_replaces_expected(chain_latency):
    report = chain_latency(_chain("Tight", ("Slow", 50)), [1], step_budgets_ms={"s0_slow": 0.1},
                           registry=ChainRegistry(components), rounds=1, check=False)
    assert report.violations == [
        f"step 's0_slow': p99 {report.steps[0].gated_ns / 1e6:.3f} ms > 0.100 ms"]


def test_failing_step_fails_with_its_error(chain_latency):
    chain_latency(_chain("Broken", ("Boom", 50)), [1], registry=ChainRegistry(components))


def test_unknown_step_budget_is_refused(chain_latency):
    with pytest.raises(ValueError, match="names 'nope', which is not a step of 'Fast2'"):
        chain_latency(_chain("Fast2", ("Double", 50)), [1], step_budgets_ms={"nope": 1},
                      registry=ChainRegistry(components))
'''


def _run_pytest(tmp_path, *args):
    (tmp_path / "test_author.py").write_text(textwrap.dedent(AUTHOR_TESTS))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "-o", "asyncio_default_fixture_loop_scope=function",
         str(tmp_path / "test_author.py"), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_gates_pass_and_fail_and_report_hdr_percentiles_in_benchmark_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = _run_pytest(tmp_path, f"--benchmark-json={out}")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "3 failed, 3 passed" in text, text
    assert "latency gate of 'Slowish'" in text and "step 's1_slow': p99" in text
    assert "> 1.000 ms" in text
    assert "latency gate of 'Budget'" in text and "whole chain: p99" in text
    assert "> 0.500 ms" in text
    assert "Broken: chain 'Broken'" in text and "ZeroDivisionError" in text
    assert "flowchain latency gates (the engine's HDR histograms, us)" in text
    data = json.loads(out.read_text())
    by_test = {b["name"]: b for b in data["benchmarks"]}
    fast = by_test["test_fast_chain_passes"]["extra_info"]["flowchain"]["Fast"]
    assert fast["executions"] == 600 and fast["violations"] == []
    assert set(fast["steps"]) == {"s0_double", "s1_double"}
    assert fast["whole_chain"]["count"] == 600
    assert 0 < fast["whole_chain"]["p50_ns"] <= fast["whole_chain"]["p99_ns"]
    assert fast["whole_chain"]["limit_ns"] == 100_000_000
    slow = by_test["test_slow_step_fails"]["extra_info"]["flowchain"]["Slowish"]
    assert slow["steps"]["s1_slow"]["p99_ns"] >= 3_000_000 and not slow["steps"]["s1_slow"]["passed"]


def test_gates_work_without_pytest_benchmark(tmp_path):
    proc = _run_pytest(tmp_path, "-p", "no:benchmark", "-k", "fast_chain or chain_budget")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "1 failed, 1 passed" in text, text
    assert "latency gate of 'Budget'" in text
