"""The trading node's chains file: `Data_Flow_Chains:` shape, the chains' names, real contracts, registrable,
CLI-valid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from typer.testing import CliRunner

from flowchain import ChainRegistry, ComponentRegistry, load_chains_file
from flowchain.chain import WRAPPER_KEY
from flowchain.chains import AI_DECISION_CHAIN, MT5_TO_DATABASE_CHAIN, TRADING_NODE_YAML
from flowchain.config import load_config
from flowchain.feeds.simulator import SimulatorFeed
from flowchain.ingest.batch import RawTickBatch, TickBatch
from flowchain.node_parts import build_parts
from flowchain.trading.context import DecisionContext

SEED_STEPS = {
    MT5_TO_DATABASE_CHAIN: [("mt5_data_ingestion", "DataBridge", 50),
                            ("data_validation", "DataValidator", 20),
                            ("data_processing", "DataProcessor", 100),
                            ("database_storage", "DatabaseService", 80)],
    AI_DECISION_CHAIN: [("feature_extraction", "FeatureEngine", 30),
                        ("multi_agent_analysis", "MultiAgentOrchestrator", 15),
                        ("consensus_generation", "ConsensusEngine", 10),
                        ("trading_execution", "TradingEngine", 1.2)],
}


def chains() -> dict:
    return {c.name: c for c in load_chains_file(TRADING_NODE_YAML)}


def test_file_has_the_seed_shape() -> None:
    raw = yaml.safe_load(TRADING_NODE_YAML.read_text(encoding="utf-8"))
    assert list(raw) == [WRAPPER_KEY]
    assert set(raw[WRAPPER_KEY]) == set(SEED_STEPS)


def test_steps_components_and_durations_are_the_seeds() -> None:
    loaded = chains()
    for name, expected in SEED_STEPS.items():
        steps = loaded[name].steps
        assert [(s.name, s.component, s.expected_duration_ms) for s in steps] == expected
        # within the chain's own targets, never looser
        assert all(s.expected_duration_ms <= d for s, (_, _, d) in zip(steps, expected, strict=True))


def test_registers_once_the_component_modules_are_imported() -> None:
    import flowchain.ingest.components  # noqa: F401
    import flowchain.trading.components  # noqa: F401

    registry = ChainRegistry()
    ids = registry.register_file(TRADING_NODE_YAML)
    assert {registry.get_chain(i).name for i in ids} == set(SEED_STEPS)


def test_chains_validate_accepts_it_as_it_is() -> None:
    from flowchain.cli import app

    result = CliRunner().invoke(app, ["chains", "validate", str(TRADING_NODE_YAML),
                                      "--import", "flowchain.trading.components"])
    assert result.exit_code == 0, result.output
    assert "2 valid chain(s)" in " ".join(result.output.split())


def _contract(value: object) -> str:
    if isinstance(value, TickBatch):
        return f"TickBatch:{value.stage.name.lower()}"
    return type(value).__name__


def test_contracts_name_what_the_components_really_pass(tmp_path: Path) -> None:
    config = load_config(None, {"db": str(tmp_path / "c.db"), "symbols": ["EURUSD"]})
    parts = build_parts(config)
    try:
        loaded = chains()
        feed = SimulatorFeed(("EURUSD",), seed=3)
        feed.pump(300)
        ring = feed.ring("EURUSD")

        # MT5 -> database: each step's output type (and batch stage) is its output contract.
        data: object = RawTickBatch("EURUSD", 0, ring.latest(200).tobytes())
        assert _contract(data) == loaded[MT5_TO_DATABASE_CHAIN].steps[0].input
        for step in loaded[MT5_TO_DATABASE_CHAIN].steps:
            data = parts.components[step.component](data)
            assert _contract(data) == step.output, step.name

        # AI decision: one DecisionContext flows through three steps, then a TradeResult.
        ctx = DecisionContext("EURUSD", history=max(1024, parts.min_history))
        steps = loaded[AI_DECISION_CHAIN].steps
        assert steps[0].input.split(":")[0] == "DecisionContext"
        for i in range(ring.size):
            ctx.point_at(ring.ticks, ring.head - ring.size + 1 + i)
            out: object = ctx
            for step in steps:
                out = parts.components[step.component](out)
                assert _contract(out) == step.output.split(":")[0], step.name
        assert np.isfinite(ctx.features).all()
    finally:
        import asyncio

        asyncio.run(parts.close())


def test_node_registry_builds_runners_for_both_chains(tmp_path: Path) -> None:
    config = load_config(None, {"db": str(tmp_path / "r.db")})
    parts = build_parts(config)
    try:
        components = ComponentRegistry()
        for name, impl in parts.components.items():
            components.register(name, impl)
        registry = ChainRegistry(components)
        registry.register_file(TRADING_NODE_YAML)
        for name in SEED_STEPS:
            assert registry.runner(name).executions == 0
    finally:
        import asyncio

        asyncio.run(parts.close())
