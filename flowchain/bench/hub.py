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
  repetitions it does not run: the one shipper process is held with SIGSTOP (it takes no CPU
  and posts nothing) and let go with SIGCONT before the next shipping repetition, whose clock
  starts once it has posted again; so switching ways costs no process start (a held shipper
  caught inside a write of its cursor makes the history writer wait, at most one quiet
  repetition, well inside the SQLite busy timeout). The two ways run in pairs, in alternating
  order (quiet shipping, shipping quiet, ...), many short repetitions rather than a few long
  ones; the budgeted figure is the median over pairs of the pair's p99 ratio (shipping /
  quiet), so a burst of load on the host spoils one pair instead of one way, and
  ``decision_p99_ratio_spread`` reports the quartiles and extremes of those ratios.
  ``decision_p99_shipping`` / ``_quiet`` are the medians of each way's per-repetition p99
  (``decision_p99_medians_shipping_vs_quiet`` their ratio) and
  ``decision_p99_pooled_*`` the p99 of every tick of a way together, which shows a change in how
  often the slow repetitions come that the median of pairs does not. Budget: ratio <= 1.05.
* **the store** (``ingest_rows_per_s`` / ``bare_rows_per_s`` >= 0.5, ``merged_query_s`` /
  ``scan_s`` <= 3.0): from :mod:`flowchain.bench.hub_store` (interval rows stored through the
  hub's store into PostgreSQL against a bare ``COPY``; the merged p99 of one chain over 10
  nodes x 7 days against one plain scan), on the PostgreSQL given, else on a throwaway one
  started for the run (:class:`~flowchain.hub.local_postgres.LocalPostgres`); when neither is
  possible (no server binaries) both are named in ``missing``, ``store_error`` says why and
  ``within_budget`` is false.
"""
from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from flowchain.bench.distribution import median_summary, summarize_ns

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


def wait_for_posts(shipper: Any, posts: int, timeout_s: float = 60.0) -> None:
    """Wait until ``shipper`` has posted ``posts`` times.

    Raises
    ------
    RuntimeError
        When it has not within ``timeout_s`` (its last error in the message).
    """
    deadline = time.monotonic() + timeout_s
    while (status := shipper.status())["posts"] < posts:
        if time.monotonic() > deadline or status["state"] == "stopped":
            raise RuntimeError(f"the bench's shipper did not post ({status['state']}): "
                               f"{status['last_error']}")
        time.sleep(0.005)


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
        # as the node runs it: a process of its own; held (SIGSTOP) through the quiet
        # repetitions, so switching ways costs no process start and the pairs can be short
        shipper = ShipperProcess(hub.url, token_file, history_db, NODE_ID,
                                 interval_s=history_interval_s, batch_rows=500).start()
        wait_for_posts(shipper, 2)
        paused = False
        pooled = {name: np.zeros(ticks * repetitions, dtype=np.int64)
                  for name in ("quiet", "shipping")}

        def repetition(shipping: bool) -> Callable[[int], dict[str, int]]:
            def measure(rep: int) -> dict[str, int]:
                nonlocal seq, paused
                ids, t = path.ticks(ticks)
                if shipping and paused:  # resumed and posting again before the clock runs
                    os.kill(shipper.pid, signal.SIGCONT)
                    paused = False
                    wait_for_posts(shipper, shipper.status()["posts"] + 1)
                elif not shipping and not paused:
                    os.kill(shipper.pid, signal.SIGSTOP)
                    paused = True
                gc.collect()
                decision_repetition(path, path.decide, ids, memoryview(t.view(np.uint8)),
                                    seq, durations)
                seq += ticks
                pooled["shipping" if shipping else "quiet"][rep * ticks:(rep + 1) * ticks] = \
                    durations
                return summarize_ns(durations)
            return measure

        gc.freeze()
        ways = {"quiet": repetition(False), "shipping": repetition(True)}
        per_rep: dict[str, list[dict[str, int]]] = {"quiet": [], "shipping": []}
        try:
            for rep in range(repetitions):  # pairs in alternating order: drift favours neither
                for name in (("quiet", "shipping") if rep % 2 == 0 else ("shipping", "quiet")):
                    per_rep[name].append(ways[name](rep))
        finally:
            if paused:
                os.kill(shipper.pid, signal.SIGCONT)
            shipper.close()
            status = shipper.status()
            shipped.update(posts=status["posts"], failures=status["failures"],
                           rows=sum(status["shipped"].values()))
    finally:
        gc.unfreeze()
        history.close()
        hub.close()
        path.close()
    ratios = [on["p99_ns"] / max(1, off["p99_ns"])
              for on, off in zip(per_rep["shipping"], per_rep["quiet"], strict=True)]
    return {"medians": {name: median_summary(reps) for name, reps in per_rep.items()},
            "pooled": {name: summarize_ns(values) for name, values in pooled.items()},
            "repetitions": per_rep, "p99_ratios": ratios, "shipped": shipped,
            "history_intervals": history.counters["intervals"]}


def ratio_spread(ratios: list[float]) -> dict[str, float]:
    """Return the median of the per-pair ratios with their quartiles and extremes (rounded).

    Raises
    ------
    ValueError
        When ``ratios`` is empty.
    """
    if not ratios:
        raise ValueError("ratio_spread: no ratios")
    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
    return {"median": round(float(median), 3), "q1": round(float(q1), 3),
            "q3": round(float(q3), 3), "min": round(min(ratios), 3),
            "max": round(max(ratios), 3), "pairs": len(ratios)}


def store_figures(pg_url: str | None, **sizes: Any) -> tuple[dict[str, Any], list[str]]:
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


def store_figures_on_local_server(announce: Callable[[str], None] = lambda line: None,
                                  **sizes: Any) -> tuple[dict[str, Any], list[str]]:
    """Start a throwaway PostgreSQL (:class:`~flowchain.hub.local_postgres.LocalPostgres`), run
    :func:`store_figures` on it and stop it; ``announce`` is told what is started and stopped.
    Without the server's binaries (or when it does not start) both figures are missing and
    ``store_error`` says why."""
    from flowchain.hub.local_postgres import LocalPostgres, PostgresNotInstalled

    try:
        server = LocalPostgres(start=False)
    except (PostgresNotInstalled, RuntimeError) as exc:
        return {"store_error": str(exc), "store_server": "none"}, \
            ["ingest_vs_bare", "merged_query_vs_scan"]
    try:
        server.start()
        announce(f"started a throwaway PostgreSQL ({server.bindir}) at {server.url} in "
                 f"{server.root} for the store's figures")
        figures, missing = store_figures(server.url, **sizes)
    except RuntimeError as exc:
        figures, missing = {"store_error": str(exc)}, ["ingest_vs_bare", "merged_query_vs_scan"]
    finally:
        server.close()
        announce("stopped the throwaway PostgreSQL and removed its directory")
    figures["store_server"] = "throwaway"
    return figures, missing


def run(*, ticks: int = 10_000, repetitions: int = 31, seed: int = 0,
        pg_url: str | None = None, workdir: str | None = None,
        store_sizes: dict[str, Any] | None = None,
        announce: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Run every measurement of ``flowchain bench hub`` and return one JSON-ready object.

    The store's figures are measured on ``pg_url``, else ``$FLOWCHAIN_BENCH_PG``, else on a
    throwaway server started for the run (:func:`store_figures_on_local_server`; ``announce``
    is told). ``store_sizes`` go to :func:`flowchain.bench.hub_store.run`.

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
    spread = ratio_spread(shipping["p99_ratios"])
    ratio = spread["median"]
    url = pg_url or os.environ.get("FLOWCHAIN_BENCH_PG") or None
    if url:
        store, missing = store_figures(url, **(store_sizes or {}))
        store["store_server"] = "given"
    else:
        store, missing = store_figures_on_local_server(announce, **(store_sizes or {}))
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
        "decision_p99_shipping_vs_quiet": ratio,
        "decision_p99_ratio_spread": spread,
        "decision_p99_pooled_shipping": shipping["pooled"]["shipping"]["p99_ns"],
        "decision_p99_pooled_quiet": shipping["pooled"]["quiet"]["p99_ns"],
        "decision_p99_pooled_shipping_vs_quiet": round(
            shipping["pooled"]["shipping"]["p99_ns"]
            / max(1, shipping["pooled"]["quiet"]["p99_ns"]), 3),
        "decision_p99_medians_shipping_vs_quiet": round(on["p99_ns"] / max(1, quiet["p99_ns"]), 3),
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
