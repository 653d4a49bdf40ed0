"""Measure the AI decision chain's four components per tick, bare and through FlowChain.

What it measures, per tick of a seeded random-walk series (one symbol, paper broker, SQLite WAL
journal in a temp dir):

* ``bare``: the four components as plain nested calls ``te(ce(orch(fe(ctx))))`` (the baseline),
  each whole decision timed with ``perf_counter_ns``;
* ``flowchain``: the same four components as a registered chain, ``runner.run(ctx)`` (every step
  timed by the engine), timed the same way;
* ``execution``: the trading_execution step alone (``TradingEngine`` with the paper broker);
* ``agents``: the orchestrator's fused numba kernel versus calling each agent's ``analyze``.

Repetitions interleave bare and FlowChain (A B A B ...); each prints p50/p99/p99.9/max from an
HDR histogram, and the summary is the median over repetitions. ``--json`` prints one object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from flowchain_bridge.ticks import TICK_DTYPE
from hdrh.histogram import HdrHistogram

from flowchain import ChainRegistry, ComponentRegistry
from flowchain.bench.distribution import SUMMARY_KEYS, interleave, new_histogram, summarize_histogram
from flowchain.bench.environment import cpu, versions
from flowchain.trading.components import ai_decision_chain, register_decision_components
from flowchain.trading.consensus import ConsensusEngine
from flowchain.trading.context import DecisionContext
from flowchain.trading.engine import TradingEngine
from flowchain.trading.features import FeatureEngine
from flowchain.trading.orchestrator import MultiAgentOrchestrator
from flowchain.trading.risk import RiskGuard


def make_ticks(n: int, seed: int = 42) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ticks = np.zeros(n, dtype=TICK_DTYPE)
    drift = np.where(np.arange(n) % 2000 < 1000, 2e-5, -2e-5)
    mid = 1.1 * np.exp(np.cumsum(drift + rng.normal(0, 4e-5, n)))
    spread = rng.uniform(5e-5, 1.5e-4, n)
    ticks["bid"], ticks["ask"] = mid - spread / 2, mid + spread / 2
    ticks["time_msc"] = 1_700_000_000_000 + np.cumsum(rng.integers(1, 200, n))
    ticks["time"] = ticks["time_msc"] // 1000
    ticks["flags"] = 0x06
    return ticks


def summary(h: HdrHistogram) -> dict:
    """Return p50/p99/p99.9/max (ns) and ``samples``, the number of values recorded."""
    s = summarize_histogram(h)
    return {**{key: s[key] for key in SUMMARY_KEYS}, "samples": s["count"]}


def run_bare(ticks, fe, orch, ce, te, ctx):
    whole, execution = new_histogram(), new_histogram()
    clock = time.perf_counter_ns
    for i in range(len(ticks)):
        ctx.point_at(ticks, i)
        t0 = clock()
        c = ce(orch(fe(ctx)))
        t1 = clock()
        te(c)
        t2 = clock()
        whole.record_value(max(1, t2 - t0))
        execution.record_value(max(1, t2 - t1))
    return whole, execution


def run_flowchain(ticks, runner, ctx):
    whole = new_histogram()
    clock = time.perf_counter_ns
    run = runner.run
    for i in range(len(ticks)):
        ctx.point_at(ticks, i)
        t0 = clock()
        run(ctx)
        whole.record_value(max(1, clock() - t0))
    return whole


def run_agents(ticks, fe, orch, ctx):
    fused, python = new_histogram(), new_histogram()
    clock = time.perf_counter_ns
    agents = orch.agents
    for i in range(len(ticks)):
        ctx.point_at(ticks, i)
        fe(ctx)
        t0 = clock()
        orch(ctx)
        t1 = clock()
        for agent in agents:
            agent.analyze(ctx.features)
        t2 = clock()
        fused.record_value(max(1, t1 - t0))
        python.record_value(max(1, t2 - t1))
    return fused, python


def build(tmp: Path, tag: str):
    risk = RiskGuard(max_position=5.0, max_orders_per_second=20, max_daily_loss=1e12)
    fe, orch, ce = FeatureEngine(), MultiAgentOrchestrator(), ConsensusEngine()
    te = TradingEngine(journal=tmp / f"journal-{tag}.db", risk=risk, node_id=tag)
    return fe, orch, ce, te


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=20_000, help="ticks per repetition")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each (>= 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    ticks = make_ticks(args.ticks)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        bare = build(tmp, "bare")
        chain = build(tmp, "chain")
        components = ComponentRegistry()
        register_decision_components(components, features=chain[0], orchestrator=chain[1],
                                     consensus=chain[2], trading=chain[3])
        registry = ChainRegistry(components)
        runner = registry.runner(registry.register_chain(ai_decision_chain()))
        bare_ctx, chain_ctx, agent_ctx = (DecisionContext("EURUSD") for _ in range(3))
        run_bare(ticks[:2000], *bare, bare_ctx)  # warm caches and code paths
        run_flowchain(ticks[:2000], runner, chain_ctx)
        ways = {
            "bare": lambda rep: dict(zip(("bare", "execution"),
                                         map(summary, run_bare(ticks, *bare, bare_ctx)),
                                         strict=True)),
            "flowchain": lambda rep: {"flowchain": summary(run_flowchain(ticks, runner,
                                                                         chain_ctx))},
            "agents": lambda rep: dict(zip(("agents_fused", "agents_python"),
                                           map(summary, run_agents(ticks, bare[0], bare[1],
                                                                   agent_ctx)),
                                           strict=True)),
        }
        reps: dict[str, list[dict]] = {}
        for per_way in interleave(ways, max(5, args.reps)).values():
            for rep in per_way:
                for name, s in rep.items():
                    reps.setdefault(name, []).append(s)
        orders = dict(bare[3].outcomes)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
           for name, rs in reps.items()}
    result = {
        "decision_p50_ns": med["flowchain"]["p50_ns"],
        "decision_p99_ns": med["flowchain"]["p99_ns"],
        "decision_p999_ns": med["flowchain"]["p999_ns"],
        "bare_decision_p50_ns": med["bare"]["p50_ns"],
        "bare_decision_p99_ns": med["bare"]["p99_ns"],
        "tracking_ratio_p50": med["flowchain"]["p50_ns"] / med["bare"]["p50_ns"],
        "execution_step_p99_ns": med["execution"]["p99_ns"],
        "execution_step_p999_ns": med["execution"]["p999_ns"],
        "agents_fused_p50_ns": med["agents_fused"]["p50_ns"],
        "agents_python_p50_ns": med["agents_python"]["p50_ns"],
        "budget_decision_p99_ns": 30_000, "budget_execution_p99_ns": 12_000,
        "orders_bare_run": orders, "ticks_per_rep": args.ticks, "reps": max(5, args.reps),
        "distributions": med,
        "versions": versions(),
        "cpu": cpu(),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"CPU: {result['cpu']}  versions: {result['versions']}")
    print(f"{args.ticks} ticks x {result['reps']} reps, medians over reps (ns):")
    for name, d in med.items():
        print(f"  {name:14s} p50 {d['p50_ns']:>8.0f}  p99 {d['p99_ns']:>8.0f}  "
              f"p99.9 {d['p999_ns']:>9.0f}  max {d['max_ns']:>10.0f}  n={d['samples']:.0f}")
    print(f"FlowChain / bare p50: {result['tracking_ratio_p50']:.2f}x; decision p99 "
          f"{result['decision_p99_ns']:.0f} ns (budget 30000); execution p99 "
          f"{result['execution_step_p99_ns']:.0f} ns (budget 12000); orders {orders}")


if __name__ == "__main__":
    main()
