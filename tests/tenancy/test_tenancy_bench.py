"""The tenancy bench runs end to end at small sizes and reports every key with its budget."""
from flowchain.bench import tenancy as bench


def test_bench_reports_every_key_and_the_verdict():
    result = bench.run(repetitions=5, executions=2000, round_trips=100, tenants=20)
    for key in ("admitted_ns", "plain_ns", "admitted_vs_plain", "process_rtt_p50_ns",
                "pipe_rtt_p50_ns", "process_vs_pipe_p50", "rss_per_shared_tenant_bytes",
                "rss_per_dedicated_tenant_bytes", "analytics_s", "scan_s",
                "analytics_vs_scan", "sampled_1pct_ns", "sampled_1pct_vs_plain",
                "within_budget"):
        assert key in result, key
    assert result["plain_ns"] > 0 and result["process_rtt_p50_ns"] > 0
    assert result["rss"]["shared"]["tenants"] == 20
    expected = (result["admitted_vs_plain"] <= 1.25 and result["process_vs_pipe_p50"] <= 2.0
                and result["rss_per_shared_tenant_bytes"] <= 64 * 1024
                and result["rss_per_dedicated_tenant_bytes"] <= 4 * 1024 * 1024
                and result["analytics_vs_scan"] <= 3.0)
    assert result["within_budget"] is expected
