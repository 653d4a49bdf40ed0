"""Measure the trading node's data path in process: decisions per tick, storage, memory.

What ``flowchain bench node`` measures, in one run:

* **decision** (``decision_p50_ns``/``p99``/``p999``): tick in the ring -> decision made. Seeded
  simulator ticks are appended one by one to the per-symbol :class:`~flowchain.feeds.ring.TickRing`;
  right after each append the node's own per-tick path runs (point the symbol's
  DecisionContext at the ring slot, ``runner.run(ctx)`` over the four tracked steps with the
  paper broker and a SQLite journal, exactly the components ``flowchain node`` builds). Each
  tick is timed with ``perf_counter_ns`` into a preallocated array, recorded into an HDR
  histogram after the repetition.
  The baseline is the same four component instances called as plain nested Python calls
  (``te(ce(orch(fe(ctx))))``), interleaved with FlowChain repetitions (A B A B ..., at least 5
  each); the figures are medians of the per-repetition percentiles.
* **execution step** (``execution_step_p99_ns``): the ``trading_execution`` step's p99 from the
  engine's own HDR histogram over every FlowChain repetition.
* **ingest** (``ingest_ticks_per_s`` vs ``bare_sqlite_rows_per_s``): the whole MT5 -> database
  chain against a bare ``executemany`` of the same rows into the same schema
  (:func:`flowchain.ingest.bench.measure_ingest`).
* **memory** (``rss_growth_bytes``): resident set growth over ``rss_ticks`` simulated ticks
  (a million by default) through both chains (decisions per tick, a stored batch every 4096
  ticks), measured after a warm-up of the same path.

Budgets: decision p99 <= 30 us; execution step p99 <= 12 us; ingest >= 0.5x bare;
RSS growth within :data:`RSS_NOISE_BYTES`.
"""
from __future__ import annotations

import gc
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from flowchain.bench.distribution import interleave, median_summary, summarize_ns
from flowchain.chains import AI_DECISION_CHAIN, MT5_TO_DATABASE_CHAIN, TRADING_NODE_YAML
from flowchain.components import ComponentRegistry
from flowchain.config import NodeConfig, load_config
from flowchain.feeds.ring import TickRing
from flowchain.registry import ChainRegistry

BUDGET_DECISION_P99_NS = 30_000
"""1/500 of the 15 ms multi-agent analysis design target."""
BUDGET_EXECUTION_P99_NS = 12_000
"""1/100 of the 1.2 ms trading execution design target."""
BUDGET_INGEST_VS_BARE_MIN = 0.5
RSS_NOISE_BYTES = 4 * 1024 * 1024
"""Growth below this is allocator and page-cache noise (SQLite's page cache alone is 2 MiB)."""

SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD")


def _rss_bytes() -> int:
    """The process's resident set size now (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class NodePath:
    """The node's components, registry and runners, built from its config in ``workdir``.

    What ``flowchain node`` builds for its per-tick path (the same config file shape,
    :func:`~flowchain.node_parts.build_parts`, the trading-node chains file), with
    risk limits a benchmark never trips by accident, plus one :class:`TickRing` and one
    DecisionContext per symbol and a seeded simulator to generate ticks.

    Parameters
    ----------
    workdir : Path
        Where the config file and the journal database are written.
    symbols : tuple of str
        The symbols; a tick's symbol id indexes ``rings`` and ``contexts``.
    seed : int
        The simulator's seed.

    Attributes
    ----------
    decide : callable
        ``runner.run`` of the AI decision chain (the FlowChain way).
    bare : callable
        The same four component instances as plain nested calls (the baseline).
    store : callable
        ``runner.run`` of the MT5 -> database chain.

    Raises
    ------
    flowchain.config.ConfigError
        When the generated config does not load (a bug in this class, not in the caller).
    """

    def __init__(self, workdir: Path, symbols: tuple[str, ...], seed: int) -> None:
        from flowchain.node_parts import build_parts
        from flowchain.trading.context import DEFAULT_HISTORY, DecisionContext

        # Limits a bench never trips by accident: every order decision reaches the broker.
        text = (f'[node]\ndb = "{workdir / "bench.db"}"\nsymbols = {list(symbols)!r}\n'
                "[risk]\nmax_position = 1000000.0\nmax_orders_per_second = 5\n"
                "max_daily_loss = 1e12\nmax_tick_age_ms = 60000\n")
        (workdir / "bench.toml").write_text(text.replace("'", '"'), encoding="utf-8")
        self.config: NodeConfig = load_config(workdir / "bench.toml")
        self.parts = build_parts(self.config)
        # The bench feeds the rings itself; the simulator feed it was built with is "up", as in
        # a running node, so the feed-stale block does not refuse every order.
        self.parts.feed.state.update(connected=True)
        components = ComponentRegistry()
        for name, impl in self.parts.components.items():
            components.register(name, impl)
        self.registry = ChainRegistry(components, ring_capacity=4096)
        self.registry.register_file(TRADING_NODE_YAML)
        self.decide = self.registry.runner(AI_DECISION_CHAIN).run
        self.store = self.registry.runner(MT5_TO_DATABASE_CHAIN).run
        c = self.parts.components
        fe, orch, ce, te = (c["FeatureEngine"], c["MultiAgentOrchestrator"],
                            c["ConsensusEngine"], c["TradingEngine"])
        self.bare: Callable[[Any], Any] = lambda ctx: te(ce(orch(fe(ctx))))
        history = max(DEFAULT_HISTORY, self.parts.min_history)
        self.contexts = [DecisionContext(s, history=history) for s in symbols]
        self.rings = [TickRing(65_536, s, i) for i, s in enumerate(symbols)]
        from flowchain.feeds.simulator import SimulatorFeed

        self.simulator = SimulatorFeed(symbols, seed=seed)

    def ticks(self, n: int) -> tuple[list[int], np.ndarray]:
        """Return ``n`` simulated ticks: their symbol ids and the MT5-dtype records."""
        ids, ticks = self.simulator.generate(n)
        return ids.tolist(), ticks

    def close(self) -> None:
        """Close what :func:`build_parts` opened (journal, broker, feed)."""
        import asyncio

        asyncio.run(self.parts.close())


def decision_repetition(path: NodePath, decide: Callable[[Any], Any], ids: list[int],
                        raw: memoryview, seq0: int, out: np.ndarray) -> None:
    """Run one repetition of the node's per-tick path and time it, tick by tick.

    Each tick is appended to its symbol's ring (seqs from ``seq0``), then the symbol's
    DecisionContext is pointed at the new slot and ``decide(ctx)`` runs; the time from the
    append to the decision (ns) goes into ``out[i]``.

    Parameters
    ----------
    path : NodePath
        The rings and contexts to use.
    decide : callable
        ``path.decide`` (FlowChain) or ``path.bare`` (plain calls).
    ids : list of int
        The symbol id of each tick.
    raw : memoryview
        The ticks' MT5 records as bytes (60 per tick).
    seq0 : int
        The sequence number of the first tick.
    out : numpy.ndarray
        Preallocated int64 durations, at least ``len(ids)`` long.

    Raises
    ------
    IndexError
        When ``out`` or ``raw`` is shorter than ``ids`` or an id names no ring.
    """
    rings, contexts = path.rings, path.contexts
    clock = time.perf_counter_ns
    for i, sid in enumerate(ids):
        ring = rings[sid]
        index = ring.append_record(raw[i * 60:i * 60 + 60], seq0 + i)
        t0 = clock()
        ctx = contexts[sid]
        ctx.point_at(ring.ticks, index)
        decide(ctx)
        out[i] = clock() - t0


def check_counts(*, ticks: int, repetitions: int) -> None:
    """Refuse a decision benchmark of fewer than 5 repetitions or no ticks, before any work.

    Raises
    ------
    ValueError
        When ``repetitions`` is below 5 or ``ticks`` is not positive.
    """
    if repetitions < 5 or ticks <= 0:
        raise ValueError(f"need at least 5 repetitions and positive ticks, got {repetitions}, "
                         f"{ticks}")


def measure_decisions(path: NodePath, *, ticks: int, repetitions: int,
                      warmup: int = 5_000) -> dict[str, Any]:
    """Interleave bare and FlowChain repetitions of the per-tick path; return both summaries.

    Raises
    ------
    ValueError
        When ``repetitions`` is below 5 or ``ticks`` is not positive.
    """
    check_counts(ticks=ticks, repetitions=repetitions)
    ways = {"bare": path.bare, "flowchain": path.decide}
    seq = 0
    ids, t = path.ticks(warmup)
    for way in ways.values():  # caches, branch predictors, the journal's first pages
        decision_repetition(path, way, ids, memoryview(t.view(np.uint8)), seq,
                            np.zeros(warmup, dtype=np.int64))
        seq += warmup
    durations = np.zeros(ticks, dtype=np.int64)

    def repetition_of(decide: Callable[[Any], Any]) -> Callable[[int], dict[str, int]]:
        def measure(rep: int) -> dict[str, int]:
            nonlocal seq
            ids, t = path.ticks(ticks)
            gc.collect()
            decision_repetition(path, decide, ids, memoryview(t.view(np.uint8)), seq, durations)
            seq += ticks
            return summarize_ns(durations)
        return measure

    per_rep = interleave({name: repetition_of(way) for name, way in ways.items()}, repetitions)
    medians: dict[str, dict[str, int]] = {name: median_summary(reps)
                                          for name, reps in per_rep.items()}
    for name in medians:
        medians[name]["samples"] = ticks * repetitions
    return {"medians": medians, "repetitions": per_rep}


def measure_rss(path: NodePath, *, ticks: int, warmup: int = 50_000,
                batch_every: int = 4096) -> dict[str, int]:
    """Run ``ticks`` ticks through both chains after a warm-up; return RSS before and after."""
    from flowchain.ingest.batch import RawTickBatch

    def drive(n: int, seq0: int) -> None:
        chunk = 8192
        cursors = [r.count for r in path.rings]
        done = 0
        while done < n:
            m = min(chunk, n - done)
            ids, t = path.ticks(m)
            decision_repetition(path, path.decide, ids, memoryview(t.view(np.uint8)),
                                seq0 + done, scratch[:m])
            done += m
            if done % batch_every < chunk or done == n:
                for k, ring in enumerate(path.rings):
                    if ring.count == cursors[k]:
                        continue
                    got, seqs, cursors[k], _ = ring.read_since(cursors[k])
                    path.store(RawTickBatch(ring.symbol, int(seqs[0]), got,
                                            seqs.astype(np.int64)))

    scratch = np.zeros(8192, dtype=np.int64)
    drive(warmup, 10_000_000_000)
    gc.collect()
    before = _rss_bytes()
    drive(ticks, 20_000_000_000)
    gc.collect()
    after = _rss_bytes()
    return {"rss_before_bytes": before, "rss_after_bytes": after,
            "rss_growth_bytes": after - before, "rss_ticks": ticks}


def run(*, ticks: int = 20_000, repetitions: int = 5, rss_ticks: int = 1_000_000,
        ingest_ticks: int = 100_000, seed: int = 0,
        workdir: str | None = None) -> dict[str, Any]:
    """Run every measurement of ``flowchain bench node`` and return one JSON-ready object.

    Parameters
    ----------
    ticks : int
        Ticks per decision repetition (each way).
    repetitions : int
        Interleaved repetitions of each way (at least 5).
    rss_ticks : int
        Ticks of the memory measurement (a million by default; ``--ticks`` shortens it).
    ingest_ticks : int
        Ticks per ingest repetition.
    seed : int
        The simulator's seed.
    workdir : str, optional
        Where databases go (a temporary directory, removed after, by default).

    Raises
    ------
    ValueError
        When a count is out of range.
    """
    from flowchain.bench.environment import cpu, versions
    from flowchain.ingest.bench import measure_ingest

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flowchain-bench-node-", dir=workdir) as tmp:
        path = NodePath(Path(tmp), SYMBOLS, seed)
        try:
            gc.freeze()  # what the node's start leaves behind never needs collecting again
            decisions = measure_decisions(path, ticks=ticks, repetitions=repetitions)
            execution = path.registry.histogram(AI_DECISION_CHAIN, "trading_execution").summary()
            steps = {s: path.registry.histogram(AI_DECISION_CHAIN, s).summary()
                     for s in path.registry.get_chain(AI_DECISION_CHAIN).step_names}
            orders = path.parts.orders_summary()
            rss = measure_rss(path, ticks=rss_ticks)
        finally:
            path.close()
            gc.unfreeze()
        ingest = measure_ingest(ticks_total=ingest_ticks, repetitions=max(5, repetitions),
                                workdir=tmp)
    fc, bare = decisions["medians"]["flowchain"], decisions["medians"]["bare"]
    ratio = ingest["ingest_ticks_per_s"] / ingest["bare_sqlite_rows_per_s"]
    checks = {
        "decision_p99": fc["p99_ns"] <= BUDGET_DECISION_P99_NS,
        "execution_step_p99": execution["p99_ns"] <= BUDGET_EXECUTION_P99_NS,
        "ingest_vs_bare": ratio >= BUDGET_INGEST_VS_BARE_MIN,
        "rss_growth": rss["rss_growth_bytes"] <= RSS_NOISE_BYTES,
    }
    return {
        "decision_p50_ns": fc["p50_ns"],
        "decision_p99_ns": fc["p99_ns"],
        "decision_p999_ns": fc["p999_ns"],
        "decision_max_ns": fc["max_ns"],
        "decision_samples": fc["samples"],
        "bare_decision_p50_ns": bare["p50_ns"],
        "bare_decision_p99_ns": bare["p99_ns"],
        "bare_decision_p999_ns": bare["p999_ns"],
        "decision_p50_vs_bare": round(fc["p50_ns"] / bare["p50_ns"], 3),
        "decision_p99_vs_bare": round(fc["p99_ns"] / bare["p99_ns"], 3),
        "execution_step_p50_ns": execution["p50_ns"],
        "execution_step_p99_ns": execution["p99_ns"],
        "execution_step_p999_ns": execution["p999_ns"],
        "step_latency": steps,
        "orders": orders,
        "ingest_ticks_per_s": ingest["ingest_ticks_per_s"],
        "bare_sqlite_rows_per_s": ingest["bare_sqlite_rows_per_s"],
        "ingest_vs_bare": round(ratio, 3),
        **rss,
        "budget": {"decision_p99_ns": BUDGET_DECISION_P99_NS,
                   "execution_step_p99_ns": BUDGET_EXECUTION_P99_NS,
                   "ingest_vs_bare_min": BUDGET_INGEST_VS_BARE_MIN,
                   "rss_growth_bytes_max": RSS_NOISE_BYTES},
        "checks": checks,
        "within_budget": all(checks.values()),
        "repetitions": repetitions,
        "ticks_per_repetition": ticks,
        "decision_repetitions": decisions["repetitions"],
        "ingest": ingest,
        "seconds": round(time.perf_counter() - started, 1),
        "versions": versions(),
        "cpu": cpu(),
    }
