"""The author's own tests: behaviour, and latency gates with flowchain's ``chain_latency``
fixture (a pytest plugin installed with flowchain; pytest-benchmark shows the timings and
``--benchmark-json`` keeps the engine's HDR percentiles in each benchmark's ``extra_info``).

Run from this directory: ``python -m pytest test_strategy.py``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import my_components
import numpy as np
import pytest
from flowchain_bridge.ticks import TICK_DTYPE

import flowchain.trading.components  # noqa: F401  (registers the built-in decision components)
from flowchain import ChainRegistry
from flowchain.trading.context import DecisionContext

HERE = Path(__file__).parent
CHAINS = HERE / "chains.yaml"


def replay_ticks(symbol: str) -> np.ndarray:
    """The symbol's ticks of ticks.csv, in the MT5 dtype."""
    with open(HERE / "ticks.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["symbol"] == symbol]
    ticks = np.zeros(len(rows), dtype=TICK_DTYPE)
    for i, r in enumerate(rows):
        ticks[i]["time_msc"] = int(r["time_msc"])
        ticks[i]["time"] = int(r["time_msc"]) // 1000
        ticks[i]["bid"], ticks[i]["ask"] = float(r["bid"]), float(r["ask"])
        ticks[i]["volume_real"] = float(r["volume_real"])
    return ticks


def price_windows() -> list[list[float]]:
    mids = (replay_ticks("EURUSD")["bid"] + replay_ticks("EURUSD")["ask"]) / 2
    return [mids[i:i + 20].tolist() for i in range(0, len(mids) - 20, 5)]


def test_price_signal_chain_signals_on_a_jump():
    registry = ChainRegistry()
    registry.register_file(CHAINS)
    runner = registry.runner("Price_Signal_Chain")
    jump = runner.run([1.0, 1.001, 0.999, 1.0, 1.001, 1.05])
    assert jump["action"] == "sell" and jump["z"] > 2.0
    assert runner.run([1.0, 1.001, 0.999, 1.0, 1.001, 1.0005])["action"] == "hold"
    with pytest.raises(Exception, match="at least 3 prices"):
        runner.run([1.0])


def test_the_custom_agent_votes_beside_the_built_in_four():
    registry = ChainRegistry()
    registry.register_file(CHAINS)
    decide = registry.runner("AI_Decision_Chain").run
    ticks = replay_ticks("EURUSD")
    ctx = DecisionContext("EURUSD")
    voted = 0
    for i in range(len(ticks)):
        ctx.point_at(ticks, i)
        decide(ctx)
        voted += ctx.confidences[-1] > 0
    assert ctx.agent_names[-1] == my_components.SpreadReversionAgent.name
    assert len(ctx.agent_names) == 5
    assert voted > 0, "the custom agent never voted on the replayed ticks"


def test_price_signal_chain_latency(chain_latency):
    # every step within its expected_duration at p99, the chain within 2 ms
    chain_latency("Price_Signal_Chain", price_windows(), file=CHAINS, budget_ms=2.0)


def test_decision_chain_latency(chain_latency):
    ticks = replay_ticks("GBPUSD")

    def contexts():  # the chain fills the context in place: a fresh one, tick by tick
        ctx = DecisionContext("GBPUSD")
        for i in range(len(ticks)):
            ctx.point_at(ticks, i)
            yield ctx

    # p99 within expected_duration for every step; spread_guard and trading_execution get
    # headroom for a busy CI machine (the order journal writes SQLite)
    report = chain_latency("AI_Decision_Chain", contexts, file=CHAINS,
                           step_budgets_ms={"spread_guard": 2.0, "trading_execution": 5.0},
                           rounds=3)
    assert report.executions == 3 * len(ticks)
