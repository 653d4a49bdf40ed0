"""``flowchain analytics --db PATH [--since] [--tenant] [--json]``: usage analytics."""
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from flowchain.cli.app import app

err = Console(stderr=True)


@app.command("analytics")
def analytics(
    db: Path = typer.Option(..., "--db", help="The node's database (per-user history)."),
    since: str | None = typer.Option(None, "--since", help="Only data since then: 30s, 15m, "
                                        "2h, 7d or an ISO date-time (UTC if no zone)."),
    tenant: str | None = typer.Option(None, "--tenant", help="One tenant only."),
    bucket: str = typer.Option("day", "--bucket", help="Trend buckets: hour or day."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Most-used chains (by tenant, user, tier), latency trends and the chain versions that
    regressed, error patterns (by chain x tier, step x tier, repeated failing inputs), usage
    by tier, and the chains and steps that consume most (CPU and allocated memory per call,
    measured on sampled executions)."""
    from flowchain.observe.history import parse_since
    from flowchain.tenancy.analytics import analyze

    try:
        since_ns = parse_since(since)
        result = analyze(db, since_ns=since_ns, tenant=tenant, bucket=bucket)
    except (FileNotFoundError, ValueError) as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(result))
        return
    console = Console()
    if result.get("note"):
        console.print(result["note"])
        return
    console.print(f"{result['tenants']} tenant(s) in {result['db']}")
    used = Table(title="most-used chains by tenant")
    for col in ("tenant", "chain", "executions"):
        used.add_column(col, justify="right" if col == "executions" else "left")
    for row in result["most_used"]["by_tenant"]:
        used.add_row(row["tenant"], row["chain"], f"{row['executions']:,}")
    console.print(used)
    tiers = Table(title="usage by tier")
    for col in ("tier", "tenants", "executions", "errors"):
        tiers.add_column(col, justify="left" if col == "tier" else "right")
    for row in result["usage_by_tier"]:
        tiers.add_row(row["tier"], str(row["tenants"]), f"{row['executions']:,}",
                      f"{row['errors']:,}")
    console.print(tiers)
    trends = Table(title=f"p50 trend per chain (per {result['bucket']})")
    for col in ("chain", "first p50 ns", "last p50 ns", "change", "direction"):
        trends.add_column(col, justify="left" if col in ("chain", "direction") else "right")
    for t in result["trends"]:
        trends.add_row(t["chain"], f"{t['points'][0]['p50_ns']:,}",
                       f"{t['points'][-1]['p50_ns']:,}", f"{t['p50_change']:+.1%}",
                       t["direction"])
    console.print(trends)
    for r in result["regressions"]:
        console.print(f"[yellow]regression[/]: {r['chain']} version {r['chain_id']} p50 "
                      f"{r['p50_ns']:,} ns, {r['ratio']}x {r['previous_chain_id']}")
    resources = result.get("resources", {})
    if resources.get("by_chain") or resources.get("by_step"):
        used_most = Table(title="resource use per call (sampled executions; step '' is the "
                                "whole chain)")
        for col in ("chain", "step", "tier", "samples", "cpu ms mean", "cpu ms p99",
                    "alloc KiB mean", "alloc KiB p99", "wall ms mean"):
            used_most.add_column(col, justify="left" if col in ("chain", "step", "tier")
                                 else "right")
        for row in resources["by_chain"][:20] + resources["by_step"][:20]:
            used_most.add_row(row["chain"], row["step"], row["tier"], f"{row['samples']:,}",
                              f"{row['cpu_ms']['mean']:.4f}", f"{row['cpu_ms']['p99']:.4f}",
                              f"{row['alloc_kib']['mean']:.1f}",
                              f"{row['alloc_kib']['p99']:.1f}", f"{row['wall_ms_mean']:.4f}")
        console.print(used_most)
    errors = Table(title="failures by step x tier")
    for col in ("chain", "step", "tier", "failures"):
        errors.add_column(col, justify="right" if col == "failures" else "left")
    for row in result["errors"]["by_step_tier"][:20]:
        errors.add_row(row["chain"], row["step"], row["tier"], str(row["failures"]))
    console.print(errors)
