"""``flowchain bench hub``: what shipping to a hub costs a node; the hub store's figures."""
from __future__ import annotations

import json

import typer
from rich.console import Console

from flowchain.cli.app import bench_app


@bench_app.command("hub")
def bench_hub(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ticks: int = typer.Option(10_000, min=1_000, help="Ticks per decision repetition, each way."),
    repetitions: int = typer.Option(31, min=5, help="Pairs of repetitions (quiet, shipping)."),
    pg: str | None = typer.Option(
        None, "--pg", metavar="URL",
        help="PostgreSQL for the store's figures, a login that may create databases (default: "
             "$FLOWCHAIN_BENCH_PG, else a throwaway server started for the run)."),
    ingest_rows: int = typer.Option(20_000, min=100, help="Rows of the store's ingest figure."),
    store_nodes: int = typer.Option(10, min=1, help="Nodes of the merged-query history."),
    store_days: float = typer.Option(7.0, min=0.01, help="Days of the merged-query history."),
    seed: int = typer.Option(0, help="The simulator's seed."),
) -> None:
    """Measure the node's decision p99 with shipping to a hub on and off (interleaved pairs),
    and the hub store's ingest and merged-query ratios; exit 1 when outside budget, 2 when a
    figure could not be measured (the reason on stderr)."""
    from flowchain.bench import hub as bench

    result = bench.run(ticks=ticks, repetitions=repetitions, seed=seed, pg_url=pg,
                       store_sizes={"ingest_rows": ingest_rows, "nodes": store_nodes,
                                    "days": store_days},
                       announce=lambda line: typer.echo(f"bench hub: {line}", err=True))
    if as_json:
        typer.echo(json.dumps(result))
    else:
        _print(result)
    if result["missing"]:
        typer.echo(f"bench hub: not measured: {', '.join(result['missing'])}: "
                   f"{result.get('store_error', '')}", err=True)
        raise typer.Exit(2)
    if not result["within_budget"]:
        raise typer.Exit(1)


def _print(r: dict) -> None:
    console = Console()

    def mark(ok: bool | None) -> str:
        return "[yellow]not measured[/]" if ok is None else "[green]ok[/]" if ok else "[red]OVER[/]"

    c = r["checks"]
    console.print(f"decision p99 shipping {r['decision_p99_shipping']:,} ns vs quiet "
                  f"{r['decision_p99_quiet']:,} ns: median pair ratio "
                  f"{r['decision_p99_shipping_vs_quiet']}x (<= 1.05) "
                  f"{mark(c['decision_p99_shipping_vs_quiet'])}, quartiles "
                  f"{r['decision_p99_ratio_spread']['q1']}..{r['decision_p99_ratio_spread']['q3']}; "
                  f"{r['shipped']['rows']:,} rows in {r['shipped']['posts']:,} posts")
    console.print(f"every tick of a way pooled: p99 shipping {r['decision_p99_pooled_shipping']:,} "
                  f"ns vs quiet {r['decision_p99_pooled_quiet']:,} ns = "
                  f"{r['decision_p99_pooled_shipping_vs_quiet']}x")
    if "ingest_rows_per_s" in r:
        console.print(f"ingest {r['ingest_rows_per_s']:,} rows/s vs bare "
                      f"{r['bare_rows_per_s']:,} rows/s (>= 0.5) {mark(c.get('ingest_vs_bare'))}")
    if "merged_query_s" in r:
        console.print(f"merged query {r['merged_query_s']} s vs scan {r['scan_s']} s (<= 3.0) "
                      f"{mark(c.get('merged_query_vs_scan'))}")
    console.print(f"{r['cpu']}; {r['versions']}; {r['seconds']} s")
