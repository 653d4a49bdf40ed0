"""``flowchain tenants list|show|usage --db PATH``: tenants, tiers and usage from a node database."""
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from flowchain.cli.app import app

err = Console(stderr=True)
tenants_app = typer.Typer(help="Tenants, their tiers and their usage (from a node database).",
                          no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")

DB_HELP = "The node's database (tenants, usage and fired upgrade triggers)."
TIERS_HELP = "A TOML file with [tiers.NAME] tables (the node's config); the defaults if omitted."


def _open(db: Path, tiers_path: Path | None):
    from flowchain.tenancy import TierConfigError, load_tiers
    from flowchain.tenancy.usage import UsageStore

    try:
        tiers = load_tiers(tiers_path)
    except TierConfigError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    if not db.exists():
        err.print(f"[red]no database at {str(db)!r}; pass the node's --db path[/]")
        raise typer.Exit(2)
    return UsageStore(db), tiers


def _known(store, tenant: str) -> str:
    tier = store.tenant_tier(tenant)
    if tier is None:
        known = ", ".join(t["tenant"] for t in store.tenants()[:20]) or "none"
        err.print(f"[red]unknown tenant {tenant!r}; the database holds: {known}[/]")
        raise typer.Exit(2)
    return tier


@tenants_app.command("list")
def list_tenants(
    db: Path | None = typer.Option(None, "--db", help=DB_HELP),
    url: str | None = typer.Option(None, "--url", help="A running node's dashboard address "
                                      "(live usage; the dashboard must host the tenants)."),
    tiers_path: Path | None = typer.Option(None, "--tiers", help=TIERS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """List the tenants with their tier and today's executions (from --db or a live --url)."""
    if (db is None) == (url is None):
        err.print("[red]pass exactly one of --db PATH (a node database) or --url URL (a "
                  "running node's dashboard)[/]")
        raise typer.Exit(2)
    if url is not None:
        rows = _live_rows(url)
    else:
        rows = _stored_rows(db, tiers_path)
    if as_json:
        typer.echo(json.dumps({"tenants": rows}))
        return
    table = Table(title=f"tenants ({rows[0]['today'] if rows else '-'}, UTC)")
    for col in ("tenant", "tier", "executions today", "daily limit", "refused"):
        table.add_column(col, justify="left" if col in ("tenant", "tier") else "right")
    for r in rows:
        limit = "-" if r["executions_per_day"] is None else f"{r['executions_per_day']:,}"
        table.add_row(r["tenant"], r["tier"], f"{r['executions_today']:,}", limit,
                      f"{r['refused_today']:,}")
    Console().print(table)


def _stored_rows(db: Path, tiers_path: Path | None) -> list[dict]:
    import time

    from flowchain.tenancy.usage import utc_day

    store, tiers = _open(db, tiers_path)
    today = utc_day(time.time())
    rows = []
    for t in store.tenants():
        day = store.day(t["tenant"], today)
        limit = tiers.get(t["tier"]).executions_per_day if t["tier"] in tiers else None
        rows.append({"tenant": t["tenant"], "tier": t["tier"], "today": today,
                     "executions_today": day.counted, "executions_per_day": limit,
                     "refused_today": day.refused})
    store.close()
    return rows


def _live_rows(url: str) -> list[dict]:
    from flowchain.cli.status import fetch_status

    try:
        snap = fetch_status(url)
    except ConnectionError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    if "tenants" not in snap:
        err.print(f"[red]the node at {url} hosts no tenants (its dashboard was not given a "
                  "tenant manager); use --db with its database[/]")
        raise typer.Exit(2)
    rows = []
    for u in snap["tenants"]:
        limit = None
        ratio = u["ratios"].get("executions_per_day")
        if ratio:
            limit = round(u["executions_today"] / ratio)
        rows.append({"tenant": u["tenant"], "tier": u["tier"], "today": u["period"],
                     "executions_today": u["executions_today"], "executions_per_day": limit,
                     "refused_today": sum(u["refused"].values())})
    return rows


@tenants_app.command("show")
def show(
    tenant: str = typer.Argument(..., help="The tenant id."),
    db: Path = typer.Option(..., "--db", help=DB_HELP),
    tiers_path: Path | None = typer.Option(None, "--tiers", help=TIERS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show a tenant's tier (limits, features, isolation) and its fired upgrade triggers."""
    from flowchain.tenancy import UnknownTierError

    store, tiers = _open(db, tiers_path)
    tier_name = _known(store, tenant)
    try:
        tier = tiers.get(tier_name).to_dict()
    except UnknownTierError as exc:
        err.print(f"[red]tenant {tenant!r}: {exc}[/]")
        raise typer.Exit(2) from exc
    triggers = store.triggers(tenant)
    store.close()
    if as_json:
        typer.echo(json.dumps({"tenant": tenant, "tier": tier, "triggers": triggers}))
        return
    console = Console()
    table = Table(title=f"tenant {tenant!r}: tier {tier_name!r}")
    table.add_column("setting")
    table.add_column("value", justify="right")
    for key, value in tier.items():
        if key not in ("name", "rank"):
            table.add_row(key, "no limit" if value is None else str(value))
    console.print(table)
    if triggers:
        fired = Table(title="upgrade triggers fired")
        for col in ("limit", "threshold", "period", "usage", "limit value", "next tier"):
            fired.add_column(col)
        for t in triggers:
            fired.add_row(t["limit"], f"{t['threshold']:.0%}", t["period"], f"{t['usage']:g}",
                          f"{t['limit_value']:g}", t["next_tier"] or "-")
        console.print(fired)


@tenants_app.command("usage")
def usage(
    tenant: str | None = typer.Argument(None, help="One tenant; every tenant if omitted."),
    db: Path = typer.Option(..., "--db", help=DB_HELP),
    days: int = typer.Option(7, "--days", min=1, help="Days of usage to show."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show daily usage (executions admitted, refused) per tenant, newest day first."""
    store, _ = _open(db, None)
    if tenant is not None:
        _known(store, tenant)
    limit = days * (1 if tenant is not None else max(1, len(store.tenants())))
    history = store.history(tenant, limit=limit)
    store.close()
    rows = [{"tenant": d.tenant, "day": d.period, "executions": d.counted,
             "exact": d.used >= d.reserved, "refused": d.refused} for d in history]
    if as_json:
        typer.echo(json.dumps({"usage": rows}))
        return
    table = Table(title="daily usage (UTC days)")
    for col in ("day", "tenant", "executions", "refused"):
        table.add_column(col, justify="right" if col in ("executions", "refused") else "left")
    for r in rows:
        mark = "" if r["exact"] else " (claimed)"
        table.add_row(r["day"], r["tenant"], f"{r['executions']:,}{mark}", f"{r['refused']:,}")
    Console().print(table)
