"""flowchain optimize: its JSON, and its refusals (exit 2, nothing written)."""
import json
import sys

import pytest
from typer.testing import CliRunner

from flowchain import default_components
from flowchain.cli import app
from tests.optimizer.recording import record

runner = CliRunner()

CHAINS = """
Data_Flow_Chains:
  stateful_tables:
    steps:
      - {name: key, component: OptCliKey, input: request, output: key, expected_duration: 5}
      - {name: table, component: OptCliStatefulTable, input: key, output: total,
         expected_duration: 0.1}
  repeated_tables:
    steps:
      - {name: key, component: OptCliKey, input: request, output: key, expected_duration: 5}
      - {name: table, component: OptCliTable, input: key, output: total, expected_duration: 0.1}
  never_run:
    steps:
      - {name: key, component: OptCliKey, input: request, output: key, expected_duration: 5}
"""


COMPONENTS = """
import numpy as np

import flowchain


@flowchain.component("OptCliKey")
def key(request):
    return int(request["key"])


@flowchain.component("OptCliStatefulTable")
class StatefulTable:
    \"\"\"Memory-heavy on repeating inputs, but its output depends on a call counter.\"\"\"

    def __init__(self):
        self.calls = 0

    def __call__(self, key):
        self.calls += 1
        return float(np.full(400_000, float(key)).sum()) + self.calls  # 3.2 MB


@flowchain.component("OptCliTable", deterministic=True)
def table(key):
    return float(np.full(400_000, float(key)).sum())
"""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Chains recorded once (profiles at every execution, inputs), in a real SQLite file."""
    folder = tmp_path_factory.mktemp("optimize_cli")
    (folder / "opt_cli_components.py").write_text(COMPONENTS)
    chains = folder / "chains.yaml"
    chains.write_text(CHAINS)
    inputs = folder / "inputs.jsonl"
    inputs.write_text("".join(json.dumps({"key": k % 3}) + "\n" for k in range(24)))
    db = folder / "history.db"
    record(chains, "stateful_tables", inputs, db, "opt_cli_components")
    record(chains, "repeated_tables", inputs, db, "opt_cli_components")
    sys.path.insert(0, str(folder))
    import opt_cli_components  # noqa: F401  (registers the components here too)
    yield folder, chains, db, inputs
    sys.path.remove(str(folder))
    for name in ("OptCliKey", "OptCliStatefulTable", "OptCliTable"):
        default_components.unregister(name)


def invoke(*args):
    result = runner.invoke(app, ["optimize", *map(str, args), "--import", "opt_cli_components"],
                           catch_exceptions=False)
    return result.exit_code, result.stdout, " ".join(result.stderr.split())


def test_json_names_the_bottleneck_its_evidence_and_the_cache_size(recorded):
    _, chains, db, _ = recorded
    code, out, _ = invoke(chains, "repeated_tables", "--db", db, "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) >= {"bottlenecks", "optimizations", "estimated_improvement"}
    [b] = data["bottlenecks"]
    assert (b["step"], b["type"]) == ("table", "memory_intensive")
    assert b["evidence"]["alloc_per_call_bytes"] >= 3_000_000
    assert b["evidence"]["input_repeat_ratio"] == pytest.approx(21 / 24, abs=1e-3)
    [o] = data["optimizations"]
    assert (o["step"], o["kind"], o["cache_size"]) == ("table", "cache", 3)
    assert data["estimated_improvement"]["p50"]["speedup"] > 1
    assert set(data["estimated_improvement"]["p99"]) == {"before_ns", "after_ns", "speedup"}


def test_apply_writes_a_new_version_with_the_step_field(recorded):
    folder, chains, db, _ = recorded
    out_file = folder / "optimized.yaml"
    code, out, _ = invoke(chains, "repeated_tables", "--db", db, "--apply", "--out", out_file)
    assert code == 0, out
    from flowchain.chain import load_chains_file
    new = {c.name: c for c in load_chains_file(out_file)}
    old = {c.name: c for c in load_chains_file(chains)}
    assert new["repeated_tables"].steps[1].cache.size == 3
    assert new["repeated_tables"].chain_id != old["repeated_tables"].chain_id
    assert new["never_run"].chain_id == old["never_run"].chain_id  # the others unchanged
    assert "repeated_tables@" in out


def test_apply_refuses_a_cache_on_a_component_not_declared_deterministic(recorded):
    folder, chains, db, _ = recorded
    out_file = folder / "refused.yaml"
    code, out, err = invoke(chains, "stateful_tables", "--db", db, "--json")
    assert code == 0
    data = json.loads(out)
    assert [b["type"] for b in data["bottlenecks"]] == ["memory_intensive"]
    assert data["optimizations"] == []  # never suggested
    assert data["blocked"][0]["needs_trait"] == "deterministic"
    code, _, err = invoke(chains, "stateful_tables", "--db", db, "--apply", "--out", out_file)
    assert code == 2 and not out_file.exists()
    assert "not declared deterministic" in err and "deterministic=True" in err


def test_unknown_chain_and_no_history_are_refused_with_the_reason(recorded, tmp_path):
    _, chains, db, _ = recorded
    out_file = tmp_path / "x.yaml"
    code, _, err = invoke(chains, "nope", "--db", db, "--apply", "--out", out_file)
    assert code == 2 and "has no chain 'nope'" in err and not out_file.exists()
    code, _, err = invoke(chains, "never_run", "--db", db, "--apply", "--out", out_file)
    assert code == 2 and not out_file.exists()
    assert "no data" in err and "run it first with `flowchain run" in err and "--profile" in err
    code, _, err = invoke(chains, "never_run", "--db", tmp_path / "missing.db")
    assert code == 2 and "no data" in err and not (tmp_path / "missing.db").exists()


def test_history_without_profiles_is_no_data(recorded, tmp_path):
    from flowchain.observe.history import HistoryWriter
    from flowchain.registry import ChainRegistry

    _, chains, _, _ = recorded
    registry = ChainRegistry()
    [cid] = [i for i in registry.register_file(chains) if i.startswith("never_run@")]
    for k in range(5):
        registry.runner(cid).run({"key": k})
    db = tmp_path / "plain.db"
    writer = HistoryWriter(registry, db)
    writer.close()
    code, _, err = invoke(chains, "never_run", "--db", db)
    assert code == 2 and "no step profile" in err


def test_option_mistakes_are_refused(recorded, tmp_path):
    _, chains, db, _ = recorded
    code, _, err = invoke(chains, "repeated_tables", "--db", db, "--apply")
    assert code == 2 and "--out" in err
    code, _, err = invoke(chains, "repeated_tables", "--db", db, "--out", tmp_path / "o.yaml")
    assert code == 2 and "add --apply" in err


def test_verify_replays_the_recorded_inputs_side_by_side(recorded):
    _, chains, db, _ = recorded
    code, out, _ = invoke(chains, "repeated_tables", "--db", db, "--verify", "--json")
    assert code == 0, out
    v = json.loads(out)["verify"]
    assert v["executions"] == 24 and v["outputs_identical"] is True
    assert v["measured"]["p50"]["speedup"] > 1 and "predicted" in v


def test_report_dashboard_and_summary_show_the_bottleneck_and_its_remedy(recorded, tmp_path):
    from flowchain.observe.web.state import DashboardState
    from flowchain.optimizer.findings import chain_findings, finding_rows
    from flowchain.registry import ChainRegistry

    folder, chains, db, _ = recorded
    # without a registry the remedy is sized as if the trait were declared, and says so
    results = {r.chain: r for r in chain_findings(db)}
    assert set(results) == {"stateful_tables", "repeated_tables"}
    line = results["stateful_tables"].headline()
    assert "table is memory_intensive" in line and "only if its component is declared " \
                                                  "deterministic" in line
    # with the registry the traits are known: no cache for the stateful component
    registry = ChainRegistry()
    registry.register_file(chains)
    known = {r.chain: r for r in chain_findings(db, registry)}
    assert "not declared deterministic" in known["stateful_tables"].headline()
    assert "suggest cache: {strategy: lru, size: 3}" in known["repeated_tables"].headline()
    rows = finding_rows(list(known.values()))
    assert {(r["chain"], r["step"], r["type"]) for r in rows} == {
        ("stateful_tables", "table", "memory_intensive"),
        ("repeated_tables", "table", "memory_intensive")}
    state = DashboardState(registry, optimizer=lambda: rows)
    assert state.snapshot()["optimizer"] == rows
    assert "optimizer" not in DashboardState(registry).snapshot()
    # flowchain report: the optimizer's table
    out_file = tmp_path / "report.html"
    result = runner.invoke(app, ["report", "--db", str(db), "--out", str(out_file)],
                           catch_exceptions=False)
    assert result.exit_code == 0
    html = out_file.read_text()
    assert '<table id="optimizer">' in html and "memory_intensive" in html
    assert "cache: {strategy: lru, size: 3}" in html


def test_the_optimizer_is_public_in_its_package():
    import flowchain.optimizer as package
    from flowchain.optimizer.optimizer import ChainOptimizer, OptimizationResult

    assert package.ChainOptimizer is ChainOptimizer
    assert package.OptimizationResult is OptimizationResult
    with pytest.raises(AttributeError):
        package.NoSuchThing  # noqa: B018


def test_a_file_that_is_no_database_is_refused(recorded, tmp_path):
    _, chains, _, _ = recorded
    bogus = tmp_path / "not.db"
    bogus.write_text("this is not SQLite\n" * 100)
    code, _, err = invoke(chains, "repeated_tables", "--db", bogus)
    assert code == 2 and "cannot read" in err


def test_summaries_never_size_parallelism_but_still_name_a_missing_trait():
    from flowchain.optimizer.optimizer import UNSIZED_PARALLEL, ChainOptimizer
    from tests.optimizer.measured import chain, step

    def no_pool(n):
        raise AssertionError("a summary must not start a worker pool")

    ms = 1_000_000
    split = chain(step("a", 0, [ms] * 20), step("b", 1, [9 * ms] * 20, items=[8] * 20,
                                                 elementwise=True, expected_ns=ms))
    quick = ChainOptimizer("unused.db", size_parallelism=False, cores=4, dispatch_cost=no_pool,
                           cpu_capacity=no_pool)
    [opt] = quick.analyze_measurements(split).blocked
    assert opt.reason == UNSIZED_PARALLEL and "run `flowchain optimize`" in \
        quick.analyze_measurements(split).headline()
    whole = chain(step("a", 0, [ms] * 20), step("b", 1, [9 * ms] * 20, items=[8] * 20,
                                                 expected_ns=ms))
    [opt] = quick.analyze_measurements(whole).blocked
    assert opt.needs_trait == "elementwise"


def test_verify_says_when_a_parallel_steps_workers_were_short_of_cpu():
    from flowchain.cli.optimize import _workers_line

    check = {"workers": 2, "calls": 40, "chunks": 80, "cpu_share": 0.98, "cores_worth": 1.96,
             "speed": 0.56, "effective_cores": 1.12, "assumed_cores_worth": 1.94}
    line = " ".join(_workers_line("score", check).split())
    assert line.startswith("step score: its 2 workers ran its items at 0.56x the original "
                           "step's speed: 1.12 cores' worth at once (on a CPU 98% of their "
                           "time)")
    assert "the prediction was sized for 1.94" in line and "verify again" in line
    check.update(speed=0.97, effective_cores=1.94)
    assert "sized for" not in _workers_line("score", check)
    # some input was not split: only the CPU the workers had is known
    check.update(speed=None, effective_cores=None, cpu_share=0.55, cores_worth=1.1)
    line = " ".join(_workers_line("score", check).split())
    assert line.startswith("step score: its 2 workers had 1.10 cores' worth of CPU (on a CPU "
                           "55% of their time)") and "sized for 1.94" in line
    check.update(assumed_cores_worth=None)  # a step sized without a capacity measured
    assert "sized for" not in _workers_line("score", check)
