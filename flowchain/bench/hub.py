"""Measure what shipping to a hub costs a node, and the hub store's ingest and merged queries.

What ``flowchain bench hub`` measures, in one run:

* **decision with shipping on vs off** (``decision_p99_shipping`` / ``decision_p99_quiet``):
  the node's per-tick path (tick appended to its ring -> AI decision chain, exactly as
  ``flowchain bench node`` times it) while its history writer stores an interval every
  ``history_interval_s`` (0.02 s: 500 times the default rate, so the shipper always has
  rows to send) into the node's SQLite file. In the *shipping* repetitions the node's shipper
  runs beside it as the node runs it (:class:`~flowchain.hub.shipper_process.ShipperProcess`,
  already posting when the repetition starts), sending every new row every
  ``history_interval_s`` to a real ``flowchain hub`` process on loopback; in the *quiet*
  repetitions it does not run. The two ways are interleaved (quiet, shipping, quiet, ...), and the
  figures are medians of the per-repetition percentiles. Budget: ratio <= 1.05.
* **the store** (``ingest_rows_per_s`` / ``bare_rows_per_s`` >= 0.5, ``merged_query_s`` /
  ``scan_s`` <= 3.0): from :mod:`flowchain.bench.hub_store` (interval rows stored through the
  hub's store into PostgreSQL against a bare ``COPY``; the merged p99 of one chain over 10
  nodes x 7 days against one plain scan), when that module and a PostgreSQL are available;
  otherwise named in ``missing`` and ``within_budget`` is false.
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from flowchain.bench.distribution import interleave, median_summary, summarize_ns

BUDGET_SHIPPING_VS_QUIET_P99 = 1.05
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD")
NODE_ID = "bench_node"


class HubProcess:
    """A ``flowchain hub`` process on loopback over a SQLite file in ``workdir``, with one
    node token (:attr:`token`)."""

    def __init__(self, workdir: Path) -> None:
        from flowchain.hub.auth import add_token

        tokens = workdir / "tokens"
        self.token = add_token(tokens, NODE_ID)
        url_file = workdir / "hub.url"
        self.log = workdir / "hub.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from flowchain.cli import main; main()", "hub", "--db",
                 str(workdir / "hub.db"), "--port", "0", "--tokens", str(tokens),
                 "--url-file", str(url_file)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not url_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the bench's hub did not start: {self.log.read_text()}")
            time.sleep(0.05)
        self.url = url_file.read_text().strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def measure_shipping(workdir: Path, *, ticks: int, repetitions: int, seed: int,
                     history_interval_s: float = 0.02) -> dict[str, Any]:
    """Interleave quiet and shipping repetitions of the node's per-tick path (see the module
    docstring); return the per-way medians, the repetitions and the shipper's counters.

    Raises
    ------
    ValueError
        When ``repetitions`` is below 5 or ``ticks`` is not positive.
    RuntimeError
        When the hub process does not start.
    """
    from flowchain.bench.node import NodePath, check_counts, decision_repetition
    from flowchain.hub.shipper_process import ShipperProcess
    from flowchain.observe.history import HistoryWriter

    check_counts(ticks=ticks, repetitions=repetitions)
    path = NodePath(workdir, SYMBOLS, seed)
    hub = HubProcess(workdir)
    token_file = workdir / "node.token"
    token_file.write_text(hub.token + "\n", encoding="utf-8")
    history_db = workdir / "history.db"
    history = HistoryWriter(path.registry, history_db, interval_s=history_interval_s,
                            sample_rate=0.001).start()
    shipped: dict[str, int] = {"posts": 0, "rows": 0, "failures": 0}
    try:
        seq = 0
        ids, t = path.ticks(5_000)
        decision_repetition(path, path.decide, ids, memoryview(t.view(np.uint8)), seq,
                            np.zeros(5_000, dtype=np.int64))
        seq += 5_000
        durations = np.zeros(ticks, dtype=np.int64)

        def repetition(shipping: bool) -> Callable[[int], dict[str, int]]:
            def measure(rep: int) -> dict[str, int]:
                nonlocal seq
                ids, t = path.ticks(ticks)
                shipper = None
                if shipping:  # as the node runs it: a process of its own, already posting
                    shipper = ShipperProcess(hub.url, token_file, history_db, NODE_ID,
                                             interval_s=history_interval_s,
                                             batch_rows=500).start()
                    deadline = time.monotonic() + 60
                    while shipper.status()["posts"] < 2 and time.monotonic() < deadline:
                        time.sleep(0.01)
                gc.collect()
                try:
                    decision_repetition(path, path.decide, ids, memoryview(t.view(np.uint8)),
                                        seq, durations)
                finally:
                    if shipper is not None:
                        shipper.close()
                        status = shipper.status()
                        shipped["posts"] += status["posts"]
                        shipped["failures"] += status["failures"]
                        shipped["rows"] += sum(status["shipped"].values())
                seq += ticks
                return summarize_ns(durations)
            return measure

        gc.freeze()
        per_rep = interleave({"quiet": repetition(False), "shipping": repetition(True)},
                             repetitions)
    finally:
        gc.unfreeze()
        history.close()
        hub.close()
        path.close()
    return {"medians": {name: median_summary(reps) for name, reps in per_rep.items()},
            "repetitions": per_rep, "shipped": shipped,
            "history_intervals": history.counters["intervals"]}


def store_figures(pg_url: Optional[str], **sizes: Any) -> tuple[dict[str, Any], list[str]]:
    """Run the hub store's benchmark (:func:`flowchain.bench.hub_store.run`) on ``pg_url``;
    return its figures (flattened) and what could not be measured (no URL, no module, or the
    database refused: the reason is in ``store_error``; no figure is invented). ``sizes`` go to
    :func:`flowchain.bench.hub_store.run` (``ingest_rows``, ``nodes``, ``days``)."""
    unmeasured = ["ingest_vs_bare", "merged_query_vs_scan"]
    if not pg_url:
        return {"store_error": "no PostgreSQL given: pass --pg postgresql://USER@HOST/DB (a "
                               "login that may create databases) or set FLOWCHAIN_BENCH_PG"}, \
            unmeasured
    try:
        from flowchain.bench import hub_store  # type: ignore[attr-defined]
    except ImportError as exc:
        return {"store_error": f"the store benchmark is not installed: {exc}"}, unmeasured
    try:
        result = hub_store.run(pg_url, **sizes)
    except Exception as exc:  # the database is unreachable or refused
        return {"store_error": f"{type(exc).__name__}: {exc}"}, unmeasured
    ingest, query = result["ingest"], result["merged_query"]
    budget = result["budget"]
    return {"ingest_rows_per_s": ingest["ingest_rows_per_s"],
            "bare_rows_per_s": ingest["bare_rows_per_s"],
            "ingest_vs_bare": ingest["ingest_vs_bare"],
            "merged_query_s": query["merged_query_s"], "scan_s": query["scan_s"],
            "merged_query_vs_scan": query["merged_query_vs_scan"],
            "store": result,
            "budget": budget,
            "checks": {"ingest_vs_bare": ingest["ingest_vs_bare"] >= budget["ingest_vs_bare_min"],
                       "merged_query_vs_scan": query["merged_query_vs_scan"]
                       <= budget["merged_query_vs_scan_max"]}}, []


def run(*, ticks: int = 50_000, repetitions: int = 7, seed: int = 0,
        pg_url: Optional[str] = None, workdir: Optional[str] = None) -> dict[str, Any]:
    """Run every measurement of ``flowchain bench hub`` and return one JSON-ready object.

    Raises
    ------
    ValueError
        When a count is out of range.
    """
    from flowchain.bench.environment import cpu, versions

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flowchain-bench-hub-", dir=workdir) as tmp:
        shipping = measure_shipping(Path(tmp), ticks=ticks, repetitions=repetitions, seed=seed)
    quiet, on = shipping["medians"]["quiet"], shipping["medians"]["shipping"]
    ratio = on["p99_ns"] / quiet["p99_ns"]
    store, missing = store_figures(pg_url or os.environ.get("FLOWCHAIN_BENCH_PG") or None)
    checks = {"decision_p99_shipping_vs_quiet": ratio <= BUDGET_SHIPPING_VS_QUIET_P99}
    for key in ("ingest_vs_bare", "merged_query_vs_scan"):
        if key in store.get("checks", {}):
            checks[key] = bool(store["checks"][key])
    return {
        "decision_p99_shipping": on["p99_ns"],
        "decision_p99_quiet": quiet["p99_ns"],
        "decision_p50_shipping": on["p50_ns"],
        "decision_p50_quiet": quiet["p50_ns"],
        "decision_p999_shipping": on["p999_ns"],
        "decision_p999_quiet": quiet["p999_ns"],
        "decision_p99_shipping_vs_quiet": round(ratio, 3),
        "shipped": shipping["shipped"],
        "history_intervals": shipping["history_intervals"],
        **{k: v for k, v in store.items() if k not in ("checks", "within_budget")},
        "budget": {"decision_p99_shipping_vs_quiet_max": BUDGET_SHIPPING_VS_QUIET_P99,
                   **store.get("budget", {})},
        "checks": checks,
        "missing": missing,
        "within_budget": all(checks.values()) and not missing,
        "repetitions": repetitions,
        "ticks_per_repetition": ticks,
        "decision_repetitions": shipping["repetitions"],
        "seconds": round(time.perf_counter() - started, 1),
        "versions": versions(),
        "cpu": cpu(),
    }
