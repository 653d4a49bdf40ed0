"""``flowchain bench hub``: its figures come from real measurements and its verdict from them."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hub_running import LAUNCH

from flowchain.bench import hub as bench
from flowchain.hub.local_postgres import server_binaries

SMALL_STORE = ["--ingest-rows", "500", "--store-nodes", "2", "--store-days", "0.05"]


def test_shipping_is_measured_against_quiet_repetitions_of_the_same_path(tmp_path,
                                                                          monkeypatch) -> None:
    monkeypatch.delenv("FLOWCHAIN_BENCH_PG", raising=False)
    monkeypatch.setenv("FLOWCHAIN_PG_BINDIR", str(tmp_path))  # no server binaries there
    result = bench.run(ticks=2_000, repetitions=5, workdir=str(tmp_path))
    assert result["shipped"]["posts"] > 0 and result["shipped"]["failures"] == 0
    assert result["history_intervals"] > 0
    reps = result["decision_repetitions"]
    assert len(reps["quiet"]) == len(reps["shipping"]) == 5
    # the budgeted figure is the median of the pairs' p99 ratios, within their spread
    ratios = sorted(s["p99_ns"] / q["p99_ns"]
                    for s, q in zip(reps["shipping"], reps["quiet"], strict=True))
    spread = result["decision_p99_ratio_spread"]
    assert spread["pairs"] == 5
    assert abs(result["decision_p99_shipping_vs_quiet"] - ratios[2]) < 5e-4
    assert spread["min"] <= spread["q1"] <= spread["median"] <= spread["q3"] <= spread["max"]
    assert abs(spread["min"] - ratios[0]) < 5e-4 and abs(spread["max"] - ratios[-1]) < 5e-4
    # every tick of a way in one distribution: as many samples as were timed
    assert result["decision_p99_pooled_shipping"] > 0 and result["decision_p99_pooled_quiet"] > 0
    assert abs(result["decision_p99_pooled_shipping_vs_quiet"] - result[
        "decision_p99_pooled_shipping"] / result["decision_p99_pooled_quiet"]) < 5e-4
    assert result["checks"]["decision_p99_shipping_vs_quiet"] == (
        result["decision_p99_shipping_vs_quiet"] <= bench.BUDGET_SHIPPING_VS_QUIET_P99)
    # no PostgreSQL given and none to start: missing, with the reason, not invented
    assert result["missing"] == ["ingest_vs_bare", "merged_query_vs_scan"]
    assert "install Debian's postgresql package or pass --pg URL" in result["store_error"]
    assert str(tmp_path) in result["store_error"]
    assert result["within_budget"] is False and "ingest_vs_bare" not in result


def test_the_store_figures_join_the_verdict(postgres_url: str) -> None:
    pytest.importorskip("flowchain.bench.hub_store")
    figures, missing = bench.store_figures(postgres_url, ingest_rows=2_000, nodes=2, days=0.1)
    assert missing == [], figures.get("store_error")
    assert figures["ingest_rows_per_s"] > 0 and figures["bare_rows_per_s"] > 0
    assert figures["checks"]["ingest_vs_bare"] == (figures["ingest_vs_bare"] >= 0.5)
    assert figures["checks"]["merged_query_vs_scan"] == (figures["merged_query_vs_scan"] <= 3.0)


def test_an_unreachable_database_is_a_missing_figure_with_its_reason(tmp_path) -> None:
    figures, missing = bench.store_figures("postgresql://nobody@127.0.0.1:1/none",
                                           ingest_rows=500, nodes=1, days=0.01)
    assert missing == ["ingest_vs_bare", "merged_query_vs_scan"]
    assert "127.0.0.1" in figures["store_error"] or "connect" in figures["store_error"].lower()


def _bench(*extra: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LAUNCH, "bench", "hub", "--json", "--ticks",
                           "1000", "--repetitions", "5", *SMALL_STORE, *extra],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "FLOWCHAIN_BENCH_PG": "", **env})


def test_without_pg_the_command_measures_the_store_on_a_throwaway_server() -> None:
    if server_binaries() is None:
        pytest.skip("PostgreSQL server binaries not found: install Debian's postgresql package")
    proc = _bench(env={})
    assert proc.returncode in (0, 1), proc.stderr
    result = json.loads(proc.stdout)
    assert proc.returncode == (0 if result["within_budget"] else 1)
    assert result["missing"] == [] and result["store_server"] == "throwaway"
    assert result["ingest_rows_per_s"] > 0 and result["merged_query_s"] > 0
    assert set(result["checks"]) == {"decision_p99_shipping_vs_quiet", "ingest_vs_bare",
                                     "merged_query_vs_scan"}
    assert "started a throwaway PostgreSQL" in proc.stderr
    assert "stopped the throwaway PostgreSQL" in proc.stderr


def test_without_pg_or_binaries_the_command_names_what_is_missing_and_fails(tmp_path) -> None:
    proc = _bench(env={"FLOWCHAIN_PG_BINDIR": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    result = json.loads(proc.stdout)
    assert result["missing"] == ["ingest_vs_bare", "merged_query_vs_scan"]
    assert result["within_budget"] is False
    assert "not measured: ingest_vs_bare, merged_query_vs_scan" in proc.stderr
    assert "install Debian's postgresql package or pass --pg URL" in proc.stderr
