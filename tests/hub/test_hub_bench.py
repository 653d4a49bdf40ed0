"""``flowchain bench hub``: its figures come from real measurements and its verdict from them."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hub_running import LAUNCH

from flowchain.bench import hub as bench


def test_shipping_is_measured_against_quiet_repetitions_of_the_same_path(tmp_path,
                                                                          monkeypatch) -> None:
    monkeypatch.delenv("FLOWCHAIN_BENCH_PG", raising=False)
    result = bench.run(ticks=3_000, repetitions=5, workdir=str(tmp_path))
    assert result["shipped"]["posts"] > 0 and result["shipped"]["failures"] == 0
    assert result["history_intervals"] > 0
    reps = result["decision_repetitions"]
    assert len(reps["quiet"]) == len(reps["shipping"]) == 5
    ratio = result["decision_p99_shipping"] / result["decision_p99_quiet"]
    assert abs(result["decision_p99_shipping_vs_quiet"] - ratio) < 5e-4
    assert result["checks"]["decision_p99_shipping_vs_quiet"] == (
        result["decision_p99_shipping_vs_quiet"] <= bench.BUDGET_SHIPPING_VS_QUIET_P99)
    # no PostgreSQL named: the store's figures are missing, not invented, and the verdict says so
    assert result["missing"] == ["ingest_vs_bare", "merged_query_vs_scan"]
    assert "--pg" in result["store_error"] and result["within_budget"] is False


def test_the_store_figures_join_the_verdict(postgres_url: str) -> None:
    pytest.importorskip("flowchain.bench.hub_store")
    figures, missing = bench.store_figures(postgres_url, ingest_rows=2_000, nodes=2, days=0.1)
    assert missing == [], figures.get("store_error")
    assert figures["ingest_rows_per_s"] > 0 and figures["bare_rows_per_s"] > 0
    assert figures["checks"]["ingest_vs_bare"] == (figures["ingest_vs_bare"] >= 0.5)
    assert figures["checks"]["merged_query_vs_scan"] == (figures["merged_query_vs_scan"] <= 3.0)


def test_the_command_prints_one_json_object_and_exits_1_outside_budget(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-c", LAUNCH, "bench", "hub", "--json", "--ticks",
                           "1000", "--repetitions", "5"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "FLOWCHAIN_BENCH_PG": ""})
    result = json.loads(proc.stdout)
    assert proc.returncode == (0 if result["within_budget"] else 1)
    for key in ("decision_p99_shipping", "decision_p99_quiet", "within_budget"):
        assert key in result
