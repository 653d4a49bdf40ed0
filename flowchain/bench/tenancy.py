"""Tenancy costs, each against a baseline measured in the same run:

* ``admitted`` vs ``plain``: a 4-step trivial chain run through the tenant manager's admitted
  handle (tenant and chain looked up once, as ``registry.runner``; per execution: the rate
  bucket, the concurrency limit, the daily quota and the per-user meter, in the engine)
  against the same chain's plain runner, interleaved; ``execute`` (the lookup on every call,
  ``manager.execute``) is reported beside them, and ``sampled_1pct``: the admitted handle of a
  manager measuring 1% of executions (CPU time and allocated memory per step, see
  :mod:`flowchain.tenancy.resources`), the cost of resource sampling averaged over all calls.
* ``process_rtt`` vs ``pipe_rtt``: one execution in a ``process``-isolated tenant's worker
  against a bare ``multiprocessing`` pipe round trip of the same payload to an echo process,
  per call, interleaved; p50 of each.
* ``rss_per_shared_tenant_bytes`` and ``rss_per_dedicated_tenant_bytes``: the resident-size
  growth of a fresh interpreter adding 1,000 tenants of 10 chains each (every chain executed
  once, so runners and meters exist), divided by 1,000.
* ``analytics_s`` vs ``scan_s``: ``flowchain analytics`` over a synthetic 7-day history of
  1,000 tenants against one plain SQL scan of the same rows.
"""
from __future__ import annotations

import gc
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from flowchain.bench.distribution import interleave, median_summary, summarize_ns
from flowchain.bench.environment import cpu, versions

BUDGET = {"admitted_vs_plain_max": 1.25, "process_vs_pipe_p50_max": 2.0,
          "rss_per_shared_tenant_bytes_max": 64 * 1024,
          "rss_per_dedicated_tenant_bytes_max": 4 * 1024 * 1024,
          "analytics_vs_scan_max": 3.0}

BENCH_TIERS = """
[tiers.bench_shared]
isolation = "shared"
chains = 10
executions_per_second = 1000000000.0
burst = 1000000000
executions_per_day = 1000000000000
concurrent = 10

[tiers.bench_dedicated]
isolation = "dedicated"
chains = 10
executions_per_second = 1000000000.0
burst = 1000000000
executions_per_day = 1000000000000
concurrent = 10
ring_capacity = 256

[tiers.bench_process]
isolation = "process"
concurrent = 10
"""

PAYLOAD = ("EURUSD", 1.08421, 1.08424, 1_700_000_000_123)
"""What the round-trip ways send: a tick-sized tuple."""


def _step0(x: Any) -> Any:
    return x


def _step1(x: Any) -> Any:
    return x


def _step2(x: Any) -> Any:
    return x


def _step3(x: Any) -> Any:
    return x


def _inc0(x: int) -> int:
    return x + 1


def _inc1(x: int) -> int:
    return x + 1


def _inc2(x: int) -> int:
    return x + 1


def _inc3(x: int) -> int:
    return x + 1


def _components(fns: tuple) -> Any:
    from flowchain import ComponentRegistry

    reg = ComponentRegistry()
    for i, fn in enumerate(fns):
        reg.register(f"Step{i}", fn)
    return reg


def _chain(name: str) -> Any:
    from flowchain import ChainBuilder

    builder = ChainBuilder(name)
    for i in range(4):
        builder.step(f"step_{i}", f"Step{i}", "data", "data", 0.001)
    return builder.build()


def _time_per_call(fn: Callable[[Any], Any], n: int) -> float:
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn(1)
        return (time.perf_counter_ns() - t0) / n
    finally:
        if gc_was:
            gc.enable()


def measure_admission(repetitions: int, n: int) -> dict[str, Any]:
    """The admitted handle, the per-call lookup and the plain runner, interleaved."""
    from flowchain import ChainRegistry
    from flowchain.tenancy import TenantManager, tiers_from_toml

    components = _components((_inc0, _inc1, _inc2, _inc3))
    definition = _chain("admission_bench")
    plain_registry = ChainRegistry(components)
    plain = plain_registry.runner(plain_registry.register_chain(definition)).run
    manager = TenantManager(tiers_from_toml(BENCH_TIERS), components=components)
    manager.add_tenant("bench", "bench_dedicated")
    manager.register_chain("bench", definition)
    admitted = manager.runner("bench", "admission_bench", "trader").run
    execute = manager.execute
    sampling = TenantManager(tiers_from_toml(BENCH_TIERS), components=components,
                             sample_rate=0.01)
    sampling.add_tenant("bench", "bench_dedicated")
    sampling.register_chain("bench", definition)
    sampled = sampling.runner("bench", "admission_bench", "trader").run

    def by_lookup(x: int) -> int:
        return execute("bench", "admission_bench", x, user_id="trader")

    ways = {"plain": plain, "admitted": admitted, "execute": by_lookup,
            "sampled_1pct": sampled}
    for fn in ways.values():
        _time_per_call(fn, max(n // 10, 100))
    samples = interleave({k: (lambda rep, fn=fn: _time_per_call(fn, n)) for k, fn in
                          ways.items()}, repetitions)
    med = {k: statistics.median(v) for k, v in samples.items()}
    manager.close()
    sampling.close()
    return {"plain_ns": round(med["plain"], 1), "admitted_ns": round(med["admitted"], 1),
            "execute_ns": round(med["execute"], 1),
            "sampled_1pct_ns": round(med["sampled_1pct"], 1),
            "sampled_1pct_vs_plain": round(med["sampled_1pct"] / med["plain"], 3),
            "sampled_1pct_vs_admitted": round(med["sampled_1pct"] / med["admitted"], 3),
            "admitted_vs_plain": round(med["admitted"] / med["plain"], 3),
            "execute_vs_plain": round(med["execute"] / med["plain"], 3),
            "admission_samples_ns": {k: [round(x, 1) for x in v] for k, v in samples.items()}}


def _echo(conn: Any) -> None:  # pragma: no cover - runs in the echo process
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        conn.send(msg)


def measure_process(repetitions: int, n: int) -> dict[str, Any]:
    """Round trips to a process-isolated tenant and to a bare echo process, interleaved."""
    import numpy as np

    from flowchain.tenancy import TenantManager, tiers_from_toml

    components = _components((_step0, _step1, _step2, _step3))
    manager = TenantManager(tiers_from_toml(BENCH_TIERS), components=components)
    manager.add_tenant("bench", "bench_process")
    manager.register_chain("bench", _chain("process_bench"))
    run = manager.runner("bench", "process_bench").run
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    mp = multiprocessing.get_context(method)
    parent, child = mp.Pipe(duplex=True)
    echo = mp.Process(target=_echo, args=(child,), daemon=True)
    echo.start()
    child.close()
    perf = time.perf_counter_ns

    def pipe_rtt(rep: int) -> dict[str, int]:
        out = np.empty(n, dtype=np.int64)
        send, recv = parent.send, parent.recv
        for i in range(n):
            t0 = perf()
            send(PAYLOAD)
            recv()
            out[i] = perf() - t0
        return summarize_ns(out)

    def process_rtt(rep: int) -> dict[str, int]:
        out = np.empty(n, dtype=np.int64)
        for i in range(n):
            t0 = perf()
            run(PAYLOAD)
            out[i] = perf() - t0
        return summarize_ns(out)

    for _ in range(200):
        run(PAYLOAD)
        parent.send(PAYLOAD)
        parent.recv()
    reps = interleave({"pipe_rtt": pipe_rtt, "process_rtt": process_rtt}, repetitions)
    parent.send(None)
    echo.join(5)
    parent.close()
    manager.close()
    pipe, proc = median_summary(reps["pipe_rtt"]), median_summary(reps["process_rtt"])
    return {"pipe_rtt_p50_ns": pipe["p50_ns"], "process_rtt_p50_ns": proc["p50_ns"],
            "pipe_rtt": pipe, "process_rtt": proc,
            "process_vs_pipe_p50": round(proc["p50_ns"] / max(1, pipe["p50_ns"]), 3)}


def _rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_probe(isolation: str, tenants: int, chains: int) -> dict[str, Any]:
    """In this (fresh) process: add ``tenants`` tenants of ``chains`` chains each, run each
    chain once; return the resident-size growth per tenant."""
    from flowchain.tenancy import TenantManager, tiers_from_toml

    components = _components((_inc0, _inc1, _inc2, _inc3))
    definitions = [_chain(f"chain_{i}") for i in range(chains)]
    manager = TenantManager(tiers_from_toml(BENCH_TIERS), components=components)
    tier = f"bench_{isolation}"

    def add(tenant: str) -> None:
        manager.add_tenant(tenant, tier)
        manager.register_chains(tenant, definitions)
        for d in definitions:
            manager.execute(tenant, d.name, 1)

    add("warm-up")  # imports, shared runners, caches: not per-tenant costs
    gc.collect()
    before = _rss_bytes()
    for i in range(tenants):
        add(f"tenant-{i:05d}")
    gc.collect()
    after = _rss_bytes()
    return {"isolation": isolation, "tenants": tenants, "chains_per_tenant": chains,
            "rss_before_bytes": before, "rss_after_bytes": after,
            "rss_per_tenant_bytes": round((after - before) / tenants)}


def measure_rss(tenants: int, chains: int) -> dict[str, Any]:
    """Run :func:`rss_probe` for shared and dedicated tenants, each in a fresh interpreter."""
    out = {}
    for isolation in ("shared", "dedicated"):
        proc = subprocess.run(
            [sys.executable, "-c",
             "import json, sys; from flowchain.bench.tenancy import rss_probe; "
             f"print(json.dumps(rss_probe({isolation!r}, {tenants}, {chains})))"],
            capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"the {isolation} RSS probe failed: {proc.stderr[-2000:]}")
        out[isolation] = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"rss_per_shared_tenant_bytes": out["shared"]["rss_per_tenant_bytes"],
            "rss_per_dedicated_tenant_bytes": out["dedicated"]["rss_per_tenant_bytes"],
            "rss": out}


def measure_analytics(repetitions: int, tenants: int, days: int) -> dict[str, Any]:
    """``flowchain analytics`` over a synthetic history against one plain scan, interleaved."""
    from flowchain.tenancy.analytics import analyze, synthetic_history

    with tempfile.TemporaryDirectory(prefix="flowchain-bench-") as tmp:
        db = os.path.join(tmp, "history.db")
        rows = synthetic_history(db, tenants=tenants, days=days)
        from flowchain.store import open_database

        conn = open_database(db, readonly=True)

        def scan(rep: int) -> float:
            t0 = time.perf_counter()
            for _ in conn.execute("SELECT * FROM tenant_intervals"):
                pass
            return time.perf_counter() - t0

        def analytics(rep: int) -> float:
            t0 = time.perf_counter()
            analyze(db)
            return time.perf_counter() - t0

        reps = interleave({"scan": scan, "analytics": analytics}, repetitions)
        conn.close()
    med = {k: statistics.median(v) for k, v in reps.items()}
    return {"analytics_s": round(med["analytics"], 4), "scan_s": round(med["scan"], 4),
            "analytics_vs_scan": round(med["analytics"] / med["scan"], 3),
            "analytics_rows": rows, "analytics_tenants": tenants, "analytics_days": days}


def run(repetitions: int = 7, executions: int = 50_000, round_trips: int = 2_000,
        tenants: int = 1000, chains: int = 10, analytics: bool = True) -> dict[str, Any]:
    """Measure every figure; return the JSON object ``flowchain bench tenancy`` prints."""
    if repetitions < 5:
        raise ValueError(f"at least 5 interleaved repetitions are needed, got {repetitions}")
    result: dict[str, Any] = {}
    result.update(measure_admission(repetitions, executions))
    result.update(measure_process(repetitions, round_trips))
    result.update(measure_rss(tenants, chains))
    if analytics:
        result.update(measure_analytics(repetitions, tenants, 7))
    checks = [result["admitted_vs_plain"] <= BUDGET["admitted_vs_plain_max"],
              result["process_vs_pipe_p50"] <= BUDGET["process_vs_pipe_p50_max"],
              result["rss_per_shared_tenant_bytes"] <= BUDGET["rss_per_shared_tenant_bytes_max"],
              result["rss_per_dedicated_tenant_bytes"]
              <= BUDGET["rss_per_dedicated_tenant_bytes_max"]]
    if analytics:
        checks.append(result["analytics_vs_scan"] <= BUDGET["analytics_vs_scan_max"])
    result.update({"budget": BUDGET, "within_budget": all(checks), "repetitions": repetitions,
                   "executions_per_repetition": executions,
                   "round_trips_per_repetition": round_trips, "versions": versions(),
                   "cpu": cpu()})
    return result
