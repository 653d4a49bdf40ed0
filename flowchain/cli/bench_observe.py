"""``flowchain bench observe``: decision p99 with the dashboard, /metrics and monitor running;
ticks/s with a failing step; /metrics scrape vs /api/status call cost."""
import json

import typer
from rich.console import Console
from rich.table import Table

from flowchain.cli.app import bench_app


@bench_app.command("observe")
def observe(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    repetitions: int = typer.Option(5, min=5, help="Interleaved repetitions of each way."),
    ticks: int = typer.Option(
        300_000, min=1000,
        help="Ticks per repetition (make a repetition last seconds, so the observers run through it)."),
    failing_ticks: int = typer.Option(
        20_000, min=1000, help="Ticks per repetition of the failing vs healthy ticks/s measurement."),
    scrape_requests: int = typer.Option(
        200, min=20,
        help="Timed /metrics scrapes (and as many /api/status calls) with 100 chains registered."),
) -> None:
    """Time the node's per-tick decision quiet and while watched (dashboard with an SSE
    client, /metrics scraped every second, monitor polling), interleaved; ticks/s with a step
    failing on every tick vs healthy; /metrics scrape vs /api/status call with 100 chains."""
    from flowchain.bench import observe as bench

    result = bench.run(repetitions=repetitions, ticks=ticks, failing_ticks=failing_ticks,
                       scrape_requests=scrape_requests)
    if as_json:
        typer.echo(json.dumps(result))
        return
    console = Console()
    table = Table(title="decision latency per tick (median of interleaved repetitions)")
    for col in ("way", "p50 ns", "p99 ns", "p99.9 ns", "max ns"):
        table.add_column(col, justify="left" if col == "way" else "right")
    for way in ("quiet", "observed"):
        m = result[way]
        table.add_row(way, f"{m['p50_ns']:,}", f"{m['p99_ns']:,}", f"{m['p999_ns']:,}",
                      f"{m['max_ns']:,}")
    console.print(table)
    verdict = "within budget" if result["checks"]["observed_vs_quiet_p99"] else "OUTSIDE budget"
    console.print(f"observed/quiet p99 {result['observed_vs_quiet_p99']}x "
                  f"(<= {result['budget_ratio']}): {verdict}; "
                  f"{result['samples_per_way']:,} samples per way; observers {result['observers']}")
    checks = result["checks"]

    def verdict_of(key: str) -> str:
        return "within budget" if checks[key] else "OUTSIDE budget"

    console.print(f"ticks/s with a step failing on every tick {result['ticks_per_s_failing']:,.0f}"
                  f" vs healthy {result['ticks_per_s_healthy']:,.0f}: "
                  f"{result['failing_vs_healthy_ticks']}x (>= "
                  f"{result['budget_failing_vs_healthy']}): "
                  f"{verdict_of('failing_vs_healthy_ticks')}")
    console.print(f"/metrics scrape p99 {result['metrics_scrape_p99_ns'] / 1e6:.2f} ms vs "
                  f"/api/status p99 {result['status_call_p99_ns'] / 1e6:.2f} ms with "
                  f"{result['scrapes']['chains']} chains: {result['scrape_vs_status_p99']}x "
                  f"(<= {result['budget_scrape_vs_status']}): "
                  f"{verdict_of('scrape_vs_status_p99')}")
    console.print(f"{result['cpu']}; {result['versions']}")
