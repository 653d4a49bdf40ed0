"""``flowchain bench observe``'s two ratio measurements, run small: real figures, both ways."""
import threading

import pytest

from flowchain.bench.observe import SwitchedFailure, measure_scrape_vs_status


def test_switched_failure_raises_only_while_on():
    switch = threading.Event()
    component = SwitchedFailure(lambda x: x + 1, switch)
    assert component(1) == 2
    switch.set()
    with pytest.raises(RuntimeError, match="switched off"):
        component(1)
    switch.clear()
    assert component(2) == 3


def test_scrape_vs_status_times_both_over_http_with_every_chain_registered():
    result = measure_scrape_vs_status(chains=5, requests=20, executions=60)
    assert result["chains"] == 5 and result["requests"] == 20
    assert 0 < result["metrics_scrape_p50_ns"] <= result["metrics_scrape_p99_ns"]
    assert 0 < result["status_call_p50_ns"] <= result["status_call_p99_ns"]
    assert result["scrape_vs_status_p99"] == pytest.approx(
        result["metrics_scrape_p99_ns"] / result["status_call_p99_ns"], abs=5e-4)  # 3 decimals
    assert result["metrics_bytes"] > result["status_bytes"] > 0
    assert result["exposition"]["served"] == 21               # one untimed, then 20
    assert result["exposition"]["render_errors"] == 0


def test_failing_vs_healthy_throughput_runs_the_node_path(tmp_path):
    from flowchain.bench.node import SYMBOLS, NodePath
    from flowchain.bench.observe import measure_failing_throughput

    path = NodePath(tmp_path, SYMBOLS, 3)
    try:
        result = measure_failing_throughput(path, ticks=300, repetitions=5,
                                            history_db=str(tmp_path / "h.db"))
    finally:
        path.close()
    assert result["failures"] == {"trading_execution": 5 * 300}   # every failing tick, only
    assert result["ticks_per_s_healthy"] > 0 and result["ticks_per_s_failing"] > 0
    assert result["failing_vs_healthy_ticks"] == pytest.approx(
        result["ticks_per_s_failing"] / result["ticks_per_s_healthy"], abs=5e-4)  # 3 decimals
    assert [len(v) for v in result["per_repetition"].values()] == [5, 5]
