"""``flowchain bench observe``: decision p99 with the dashboard, /metrics and monitor running."""
import json

import typer
from rich.console import Console
from rich.table import Table

from flowchain.cli.app import bench_app


@bench_app.command("observe")
def observe(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    repetitions: int = typer.Option(5, min=5, help="Interleaved repetitions of each way."),
    ticks: int = typer.Option(300_000, min=1000, help="Ticks per repetition (make a repetition last seconds, so the observers run through it)."),
) -> None:
    """Time the node's per-tick decision quiet and while watched (dashboard with an SSE
    client, /metrics scraped every second, monitor polling), interleaved; print both p99s."""
    from flowchain.bench import observe as bench

    result = bench.run(repetitions=repetitions, ticks=ticks)
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
    verdict = "within budget" if result["within_budget"] else "OUTSIDE budget"
    console.print(f"observed/quiet p99 {result['observed_vs_quiet_p99']}x "
                  f"(<= {result['budget_ratio']}): {verdict}; "
                  f"{result['samples_per_way']:,} samples per way; observers {result['observers']}")
    console.print(f"{result['cpu']}; {result['versions']}")
