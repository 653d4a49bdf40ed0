"""``flowchain bench tenancy``: admission, process isolation, memory per tenant, analytics."""
import json

import typer
from rich.console import Console
from rich.table import Table

from flowchain.cli.app import bench_app


@bench_app.command("tenancy")
def tenancy(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    repetitions: int = typer.Option(7, min=5, help="Interleaved repetitions of each way."),
    executions: int = typer.Option(50_000, min=1000, help="Executions per repetition."),
    round_trips: int = typer.Option(2_000, min=100, help="Round trips per repetition."),
    tenants: int = typer.Option(1000, min=10, help="Tenants for the memory and analytics runs."),
) -> None:
    """Time a chain through the tenant manager against a plain runner, a process-isolated
    execution against a bare pipe round trip, the memory of shared and dedicated tenants,
    and analytics against a plain scan; print each with its budget."""
    from flowchain.bench import tenancy as bench

    result = bench.run(repetitions=repetitions, executions=executions,
                       round_trips=round_trips, tenants=tenants)
    if as_json:
        typer.echo(json.dumps(result))
        return
    console = Console()
    table = Table(title="tenancy against its baselines (medians of interleaved repetitions)")
    for col in ("figure", "measured", "baseline", "ratio", "budget"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    b = result["budget"]
    table.add_row("admitted execution (ns)", f"{result['admitted_ns']:,.0f}",
                  f"{result['plain_ns']:,.0f}", f"{result['admitted_vs_plain']}",
                  f"<= {b['admitted_vs_plain_max']}")
    table.add_row("manager.execute, lookup per call (ns)", f"{result['execute_ns']:,.0f}",
                  f"{result['plain_ns']:,.0f}", f"{result['execute_vs_plain']}", "-")
    table.add_row("admitted, 1% of executions measured (ns)",
                  f"{result['sampled_1pct_ns']:,.0f}", f"{result['plain_ns']:,.0f}",
                  f"{result['sampled_1pct_vs_plain']}", "-")
    table.add_row("process round trip p50 (ns)", f"{result['process_rtt_p50_ns']:,}",
                  f"{result['pipe_rtt_p50_ns']:,}", f"{result['process_vs_pipe_p50']}",
                  f"<= {b['process_vs_pipe_p50_max']}")
    table.add_row("RSS per shared tenant (bytes)", f"{result['rss_per_shared_tenant_bytes']:,}",
                  "-", "-", f"<= {b['rss_per_shared_tenant_bytes_max']:,}")
    table.add_row("RSS per dedicated tenant (bytes)",
                  f"{result['rss_per_dedicated_tenant_bytes']:,}", "-", "-",
                  f"<= {b['rss_per_dedicated_tenant_bytes_max']:,}")
    if "analytics_s" in result:
        table.add_row("analytics (s)", f"{result['analytics_s']}", f"{result['scan_s']}",
                      f"{result['analytics_vs_scan']}", f"<= {b['analytics_vs_scan_max']}")
    console.print(table)
    verdict = "within budget" if result["within_budget"] else "OUTSIDE budget"
    console.print(f"{verdict}; {result['cpu']}; {result['versions']}")
