"""``flowchain bench hub``: what shipping to a hub costs a node; the hub store's figures."""
from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console

from flowchain.cli.app import bench_app


@bench_app.command("hub")
def bench_hub(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ticks: int = typer.Option(50_000, min=1_000, help="Ticks per decision repetition, each way."),
    repetitions: int = typer.Option(7, min=5, help="Interleaved repetitions of each way."),
    pg: Optional[str] = typer.Option(
        None, "--pg", metavar="URL",
        help="PostgreSQL for the store's figures (default: $FLOWCHAIN_BENCH_PG, else the store "
             "benchmark's own)."),
    seed: int = typer.Option(0, help="The simulator's seed."),
) -> None:
    """Measure the node's decision p99 with shipping to a hub on and off (interleaved), and the
    hub store's ingest and merged-query ratios; exit 1 when outside budget."""
    from flowchain.bench import hub as bench

    result = bench.run(ticks=ticks, repetitions=repetitions, seed=seed, pg_url=pg)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        _print(result)
    if not result["within_budget"]:
        raise typer.Exit(1)


def _print(r: dict) -> None:
    console = Console()

    def mark(ok: Optional[bool]) -> str:
        return "[yellow]not measured[/]" if ok is None else "[green]ok[/]" if ok else "[red]OVER[/]"

    c = r["checks"]
    console.print(f"decision p99 shipping {r['decision_p99_shipping']:,} ns vs quiet "
                  f"{r['decision_p99_quiet']:,} ns = {r['decision_p99_shipping_vs_quiet']}x "
                  f"(<= 1.05) {mark(c['decision_p99_shipping_vs_quiet'])}; "
                  f"{r['shipped']['rows']:,} rows in {r['shipped']['posts']:,} posts")
    if "ingest_rows_per_s" in r:
        console.print(f"ingest {r['ingest_rows_per_s']:,} rows/s vs bare "
                      f"{r['bare_rows_per_s']:,} rows/s (>= 0.5) {mark(c.get('ingest_vs_bare'))}")
    if "merged_query_s" in r:
        console.print(f"merged query {r['merged_query_s']} s vs scan {r['scan_s']} s (<= 3.0) "
                      f"{mark(c.get('merged_query_vs_scan'))}")
    if r["missing"]:
        console.print(f"[yellow]not measured:[/] {', '.join(r['missing'])} "
                      f"{r.get('store_error', '')}")
    console.print(f"{r['cpu']}; {r['versions']}; {r['seconds']} s")
