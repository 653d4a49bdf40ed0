"""``flowchain bench node``: the node's decision latency, execution step, ingest rate and memory."""
from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from flowchain.cli.app import bench_app


@bench_app.command("node")
def bench_node(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ticks: int = typer.Option(1_000_000, min=10_000,
                              help="Simulated ticks of the memory (RSS growth) measurement."),
    decision_ticks: int = typer.Option(20_000, min=1_000,
                                       help="Ticks per decision repetition, each way."),
    repetitions: int = typer.Option(5, min=5, help="Interleaved repetitions of each way."),
    ingest_ticks: int = typer.Option(100_000, min=1_000, help="Ticks per ingest repetition."),
    seed: int = typer.Option(0, help="The simulator's seed."),
) -> None:
    """Measure tick-in-ring -> decision (all four steps tracked) against bare nested calls, the
    trading_execution step with the paper broker, the MT5 -> database chain against a bare
    executemany, and RSS growth over --ticks simulated ticks; exit 1 when outside budget."""
    from flowchain.bench import node as bench

    result = bench.run(ticks=decision_ticks, repetitions=repetitions, rss_ticks=ticks,
                       ingest_ticks=ingest_ticks, seed=seed)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        _print(result)
    if not result["within_budget"]:
        raise typer.Exit(1)


def _print(r: dict) -> None:
    console = Console()
    table = Table(title="tick in the ring -> decision, ns (median of interleaved repetitions)")
    for col in ("way", "p50", "p99", "p99.9", "max"):
        table.add_column(col, justify="left" if col == "way" else "right")
    table.add_row("bare nested calls", f"{r['bare_decision_p50_ns']:,}",
                  f"{r['bare_decision_p99_ns']:,}", f"{r['bare_decision_p999_ns']:,}", "")
    table.add_row("flowchain (4 steps tracked)", f"{r['decision_p50_ns']:,}",
                  f"{r['decision_p99_ns']:,}", f"{r['decision_p999_ns']:,}",
                  f"{r['decision_max_ns']:,}")
    console.print(table)
    steps = Table(title="per step (the engine's HDR histograms), ns")
    for col in ("step", "count", "p50", "p99", "p99.9"):
        steps.add_column(col, justify="left" if col == "step" else "right")
    for name, s in r["step_latency"].items():
        steps.add_row(name, f"{s['count']:,}", f"{s['p50_ns']:,}", f"{s['p99_ns']:,}",
                      f"{s['p999_ns']:,}")
    console.print(steps)
    b, c = r["budget"], r["checks"]

    def mark(ok: bool) -> str:
        return "[green]ok[/]" if ok else "[red]OVER[/]"

    console.print(f"decision p99 {r['decision_p99_ns']:,} ns (<= {b['decision_p99_ns']:,}) "
                  f"{mark(c['decision_p99'])}; {r['decision_p99_vs_bare']}x bare")
    console.print(f"execution step p99 {r['execution_step_p99_ns']:,} ns "
                  f"(<= {b['execution_step_p99_ns']:,}) {mark(c['execution_step_p99'])}")
    console.print(f"ingest {r['ingest_ticks_per_s']:,} ticks/s vs bare SQLite "
                  f"{r['bare_sqlite_rows_per_s']:,} rows/s = {r['ingest_vs_bare']}x "
                  f"(>= {b['ingest_vs_bare_min']}) {mark(c['ingest_vs_bare'])}")
    console.print(f"RSS growth over {r['rss_ticks']:,} ticks: {r['rss_growth_bytes']:,} bytes "
                  f"(<= {b['rss_growth_bytes_max']:,}) {mark(c['rss_growth'])}")
    console.print(f"{r['cpu']}; {r['versions']}; {r['seconds']} s")
