"""Chain diagrams: SVG (valid XML), Mermaid and dot, with live or stored figures, and the CLI."""
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry
from flowchain.chain import dump_chains
from flowchain.observe.diagram import StepFigures, figures_from_registry, format_ns, render, status_of, step_views
from flowchain.observe.history import HistoryWriter

SVG = "{http://www.w3.org/2000/svg}"


def chain():
    return (ChainBuilder("AI_Decision_Chain")
            .step("feature_extraction", "FeatureEngine", "market_data", "feature_vectors", 30)
            .step("multi_agent_analysis", "Agents", "feature_vectors", "agent_results", 15)
            .step("trading_execution", "Executor", "agent_results", "orders", 1.2)
            .build())


def test_status_rules():
    assert status_of(1000, None) == "idle"
    assert status_of(1000, StepFigures(100, 0, 10, 900)) == "ok"
    assert status_of(1000, StepFigures(100, 0, 10, 1500)) == "slow"
    assert status_of(1000, StepFigures(100, 1, 10, 900)) == "erroring"
    assert status_of(1000, StepFigures(100, 10, 10, 900)) == "failing"
    assert format_ns(850) == "850 ns" and format_ns(12_300) == "12.3 us"
    assert format_ns(1_200_000) == "1.2 ms"


def test_svg_is_valid_xml_with_a_node_per_step_and_typed_edges():
    figures = {"feature_extraction": StepFigures(50, 0, 2_000, 9_000),
               "multi_agent_analysis": StepFigures(50, 9, 5_000, 20_000_000)}
    root = ET.fromstring(render(chain(), "svg", figures))
    steps = root.findall(f".//{SVG}g[@class='step']")
    assert [g.get("data-step") for g in steps] == ["feature_extraction",
                                                   "multi_agent_analysis", "trading_execution"]
    assert [g.get("data-status") for g in steps] == ["ok", "failing", "idle"]
    texts = ["".join(t.itertext()) for t in steps[0].iter(f"{SVG}text")]
    assert "FeatureEngine" in texts and "expected 30 ms" in texts
    assert "p50 2 us / p99 9 us" in texts
    rect = steps[1].find(f"{SVG}rect")
    assert rect.get("fill") == "#c62828"
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "edge-label"]
    assert labels == ["market_data", "feature_vectors", "agent_results", "orders"]


def test_mermaid_and_dot_name_steps_components_and_contracts():
    mermaid = render(chain(), "mermaid")
    assert mermaid.startswith("flowchart LR")
    assert 's0 -- "feature_vectors" --> s1' in mermaid
    assert "Agents" in mermaid and "class s2 idle" in mermaid
    dot = render(chain(), "dot")
    assert dot.startswith('digraph "AI_Decision_Chain"')
    assert 's1 -> s2 [label="agent_results"];' in dot
    assert "expected 1.2 ms" in dot
    with pytest.raises(ValueError, match="unknown diagram format"):
        render(chain(), "png")


def test_live_figures_from_a_registry():
    components = ComponentRegistry()

    def agents(x):
        if x == 3:
            raise RuntimeError("agent timeout")
        return x

    for name, fn in (("FeatureEngine", lambda x: x), ("Agents", agents),
                     ("Executor", lambda x: x)):
        components.register(name, fn)
    reg = ChainRegistry(components, ring_capacity=64)
    cid = reg.register_chain(chain())
    for x in range(10):
        try:
            reg.runner(cid).run(x)
        except ChainStepError:
            pass
    figures = figures_from_registry(reg, chain())
    assert figures["multi_agent_analysis"].errors == 1
    assert figures["feature_extraction"].count == 10 and figures["trading_execution"].count == 9
    assert [v.status for v in step_views(chain(), figures)] == ["ok", "failing", "ok"]


def test_cli_draws_from_file_and_history_db(tmp_path):
    from flowchain.cli import diagram  # noqa: F401  (registers the command)
    from flowchain.cli.app import app

    path = tmp_path / "chains.yaml"
    path.write_text(dump_chains([chain()]))
    runner = CliRunner()
    result = runner.invoke(app, ["chains", "diagram", str(path), "AI_Decision_Chain",
                                 "--format", "mermaid"])
    assert result.exit_code == 0, result.output
    assert "flowchart LR" in result.stdout

    components = ComponentRegistry()
    for name in ("FeatureEngine", "Agents", "Executor"):
        components.register(name, lambda x: x)
    reg = ChainRegistry(components, ring_capacity=64)
    cid = reg.register_chain(chain())
    for x in range(20):
        reg.runner(cid).run(x)
    HistoryWriter(reg, tmp_path / "h.db", sample_rate=0).close()
    out = tmp_path / "d.svg"
    result = runner.invoke(app, ["chains", "diagram", str(path), "AI_Decision_Chain",
                                 "--db", str(tmp_path / "h.db"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    root = ET.parse(out).getroot()
    statuses = [g.get("data-status") for g in root.findall(f".//{SVG}g[@class='step']")]
    assert statuses == ["ok", "ok", "ok"]
    assert "20 ok, 0 errors (ok)" in out.read_text()

    bad = runner.invoke(app, ["chains", "diagram", str(path), "AI_Decision_Chain",
                              "--format", "png"])
    assert bad.exit_code == 2
    missing = runner.invoke(app, ["chains", "diagram", str(path), "AI_Decision_Chain",
                                  "--db", str(tmp_path / "none.db")])
    assert missing.exit_code == 1 and "no history database" in missing.output
