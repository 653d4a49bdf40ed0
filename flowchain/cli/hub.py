"""``flowchain hub``: the central hub nodes ship to (``hub token ...`` manages their tokens)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from flowchain.cli.app import app

err = Console(stderr=True)
DEFAULT_TOKENS = "flowchain-hub-tokens"
DEFAULT_VIEWER_TOKENS = "flowchain-hub-viewers"
hub_app = typer.Typer(
    help="The central hub: receives what nodes ship, serves the central dashboard, "
         "/api/v1/overview and /metrics. See docs/hub.md.", invoke_without_command=True)
token_app = typer.Typer(help="Node and viewer tokens of a hub (files of hashes; the hub re-reads "
                             "them).",
                        no_args_is_help=True)
hub_app.add_typer(token_app, name="token")
tenant_token_app = typer.Typer(
    help="Tenants of the hub's workflow API and their tokens (kept hashed in the hub's store).",
    no_args_is_help=True)
hub_app.add_typer(tenant_token_app, name="tenant-token")
app.add_typer(hub_app, name="hub")


@hub_app.callback()
def hub(
    ctx: typer.Context,
    db: str | None = typer.Option(
        None, "--db", metavar="PATH",
        help="The hub's SQLite file (default ./flowchain-hub.db; one machine, no set-up)."),
    pg: str | None = typer.Option(
        None, "--pg", metavar="URL",
        help="A PostgreSQL database instead (postgresql://user@host/db; several hubs may "
             "share it)."),
    host: str = typer.Option("127.0.0.1", help="Listen address (loopback unless TLS or "
                                               "--allow-insecure-remote)."),
    port: int = typer.Option(8760, min=0, max=65535, help="Listen port (0 picks a free one)."),
    tokens: str = typer.Option(DEFAULT_TOKENS, "--tokens", metavar="FILE",
                               help="The node tokens file (flowchain hub token add NODE)."),
    viewer_tokens: str = typer.Option(
        DEFAULT_VIEWER_TOKENS, "--viewer-tokens", metavar="FILE",
        help="The viewer tokens file (flowchain hub token add-viewer NAME): required for the "
             "dashboard's figures, /api/v1/overview and /metrics beyond loopback."),
    require_viewer_token: bool = typer.Option(
        False, "--require-viewer-token",
        help="Require a viewer token on loopback too (always required on other addresses)."),
    tls_cert: str | None = typer.Option(None, "--tls-cert", metavar="PEM",
                                           help="Serve HTTPS with this certificate chain."),
    tls_key: str | None = typer.Option(None, "--tls-key", metavar="PEM",
                                          help="The certificate's private key."),
    allow_insecure_remote: bool = typer.Option(
        False, "--allow-insecure-remote",
        help="Listen on a non-loopback address over plain HTTP (trusted networks only: node "
             "tokens cross it in the clear)."),
    stale_after_s: float = typer.Option(
        30.0, min=0.1, help="A node not heard from for this long shows as silent."),
    max_body_mb: float = typer.Option(32.0, min=0.01, help="Largest batch body accepted (MiB)."),
    url_file: str | None = typer.Option(None, "--url-file", metavar="PATH",
                                           help="Write the bound URL here once serving."),
    tiers: str | None = typer.Option(
        None, "--tiers", metavar="FILE",
        help="The tenants' tiers ([tiers.*], [features] TOML; the shipped ones by default)."),
    optimizer_db: str | None = typer.Option(
        None, "--optimizer-db", metavar="PATH",
        help="A history database the optimizer's suggestions read (flowchain.optimizer)."),
    imports: list[str] = typer.Option(
        [], "--import", "-i", metavar="MODULE",
        help="A module registering the components tenants' chains use (repeatable)."),
) -> None:
    """Run the hub: POST /api/v1/ingest for nodes (each with its token), the central dashboard
    at /, its JSON at /api/v1/overview, Prometheus at /metrics. Stores in SQLite (--db) or
    PostgreSQL (--pg). Exit codes: 2 invalid options, 3 could not start."""
    if ctx.invoked_subcommand is not None:
        return
    if db and pg:
        err.print("[red]invalid options:[/] give --db PATH or --pg URL, not both")
        raise typer.Exit(2)
    if bool(tls_cert) != bool(tls_key):
        err.print("[red]invalid options:[/] --tls-cert and --tls-key go together")
        raise typer.Exit(2)
    if pg and not pg.startswith(("postgresql://", "postgres://")):
        err.print(f"[red]invalid options:[/] --pg must be a postgresql:// URL, got {escape(pg)!r}")
        raise typer.Exit(2)
    from flowchain.cli.loading import import_components
    from flowchain.config import is_loopback_host
    from flowchain.hub.app import DEFAULT_DB, HubStartError, build_app, check_listen, run_until_stopped, tls_context
    from flowchain.hub.auth import NodeTokens, TokenFileError, ViewerTokens
    from flowchain.tenancy import TenancyError, load_tiers

    import_components(imports)
    try:
        tier_set = load_tiers(tiers) if tiers else None
    except (TenancyError, OSError) as exc:
        err.print(f"[red]invalid options:[/] --tiers: {escape(str(exc))}")
        raise typer.Exit(2) from exc
    try:
        check_listen(host, tls=bool(tls_cert), allow_insecure_remote=allow_insecure_remote)
        context = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
        node_tokens = NodeTokens(tokens)
        viewers = (ViewerTokens(viewer_tokens)
                   if require_viewer_token or not is_loopback_host(host) else None)
    except (HubStartError, TokenFileError) as exc:
        err.print(f"[red]the hub could not start:[/] {escape(str(exc))}")
        raise typer.Exit(3) from exc
    from flowchain.cli.node import log_to_stderr
    from flowchain.hub.store import open_store

    log_to_stderr()
    target = pg or db or DEFAULT_DB
    try:
        store = open_store(target)
    except Exception as exc:  # the store's own errors name the database and the cause
        err.print(f"[red]the hub could not open its store[/] {escape(_redacted(target))}: "
                  f"{escape(str(exc))}")
        raise typer.Exit(3) from exc
    from flowchain.hub.workflows import WorkflowService

    try:
        workflows = WorkflowService(store, tiers=tier_set, optimizer_db=optimizer_db)
    except Exception as exc:
        store.close()
        err.print(f"[red]the hub could not open its workflow tables[/]: {escape(str(exc))}")
        raise typer.Exit(3) from exc
    application = build_app(store, node_tokens, max_body=int(max_body_mb * (1 << 20)),
                            stale_after_s=stale_after_s, workflows=workflows, viewers=viewers)

    def announce(url: str) -> None:
        print(f"[hub] serving {url}/  ingest {url}/api/v1/ingest  metrics {url}/metrics  "
              f"store {_redacted(target)}  tokens {tokens} ({len(node_tokens.nodes())} nodes)  "
              + (f"viewers {viewer_tokens} ({len(viewers.viewers())}; open {url}/#token=TOKEN)"
                 if viewers is not None else "views open on loopback"),
              file=sys.stderr, flush=True)
        if url_file:
            partial = Path(url_file + ".partial")
            partial.write_text(url + "\n", encoding="utf-8")
            partial.replace(url_file)

    try:
        _run(run_until_stopped(application, host, port, ssl_context=context,
                               allow_insecure_remote=allow_insecure_remote, announce=announce))
    except HubStartError as exc:
        err.print(f"[red]the hub could not start:[/] {escape(str(exc))}")
        raise typer.Exit(3) from exc
    finally:
        workflows.close()
        store.close()


def _redacted(target: str) -> str:
    """The store's address without a password."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in target:
        return target
    parts = urlsplit(target)
    if parts.password is None:
        return target
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _run(coro: object) -> None:
    try:
        import uvloop
    except ImportError:
        import asyncio

        asyncio.run(coro)  # type: ignore[arg-type]
        return
    uvloop.run(coro)  # type: ignore[arg-type]


def _hand_out(token: str, out: str | None, written: str) -> None:
    """Print a new token once, or write it to ``out`` (mode 0600) and say ``written`` on stderr."""
    if not out:
        typer.echo(token)
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    err.print(written)


@token_app.command("add")
def token_add(
    node_id: str = typer.Argument(..., help="The node's id (its [node] id / --node-id)."),
    tokens: str = typer.Option(DEFAULT_TOKENS, "--tokens", metavar="FILE",
                               help="The hub's tokens file (created, mode 0600)."),
    out: str | None = typer.Option(None, "--out", metavar="FILE",
                                      help="Write the token to this file (mode 0600) for the "
                                           "node's --hub-token-file, instead of printing it."),
    replace: bool = typer.Option(False, "--replace",
                                 help="Issue a new token for a node that has one."),
) -> None:
    """Create NODE's token: its hash goes to the tokens file, the token itself is printed once
    (or written to --out) for the node's [hub] token_file."""
    from flowchain.hub.auth import TokenFileError, add_token

    try:
        token = add_token(tokens, node_id, replace=replace)
    except (ValueError, TokenFileError, OSError) as exc:
        err.print(f"[red]no token created:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    _hand_out(token, out, f"node {node_id}: token written to {out}; hash added to {tokens}")


@token_app.command("revoke")
def token_revoke(
    node_id: str = typer.Argument(..., help="The node whose token stops working."),
    tokens: str = typer.Option(DEFAULT_TOKENS, "--tokens", metavar="FILE"),
) -> None:
    """Remove NODE's token (a running hub refuses it from its next request)."""
    _revoke(tokens, node_id, "node")


def _revoke(path: str, name: str, what: str) -> None:
    """Remove ``name``'s token from the tokens file at ``path``: exit 2 when the file cannot be
    read or written, 1 when it holds no token of that name."""
    from flowchain.hub.auth import TokenFileError, revoke_token

    try:
        removed = revoke_token(path, name)
    except (TokenFileError, OSError) as exc:
        err.print(f"[red]not revoked:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    if not removed:
        err.print(f"{what} {name!r} has no token in {path}")
        raise typer.Exit(1)


@token_app.command("list")
def token_list(tokens: str = typer.Option(DEFAULT_TOKENS, "--tokens", metavar="FILE")) -> None:
    """List the nodes that have a token."""
    from flowchain.hub.auth import NodeTokens, TokenFileError

    try:
        for node_id in NodeTokens(tokens).nodes():
            typer.echo(node_id)
    except TokenFileError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from exc


@token_app.command("add-viewer")
def token_add_viewer(
    name: str = typer.Argument(..., help="The operator's name (letters, digits, . _ -)."),
    viewer_tokens: str = typer.Option(DEFAULT_VIEWER_TOKENS, "--viewer-tokens", metavar="FILE",
                                      help="The hub's viewer tokens file (created, mode 0600)."),
    out: str | None = typer.Option(None, "--out", metavar="FILE",
                                      help="Write the token to this file (mode 0600), e.g. for "
                                           "Prometheus' credentials_file, instead of printing "
                                           "it."),
    replace: bool = typer.Option(False, "--replace",
                                 help="Issue a new token for a viewer that has one."),
) -> None:
    """Create NAME's viewer token, which opens the cross-tenant views (the dashboard's figures,
    /api/v1/overview, /metrics): its hash goes to the viewer tokens file, the token itself is
    printed once (or written to --out)."""
    from flowchain.hub.auth import TokenFileError, add_viewer_token

    try:
        token = add_viewer_token(viewer_tokens, name, replace=replace)
    except (ValueError, TokenFileError, OSError) as exc:
        err.print(f"[red]no token created:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    _hand_out(token, out, f"viewer {name}: token written to {out}; hash added to {viewer_tokens}")


@token_app.command("revoke-viewer")
def token_revoke_viewer(
    name: str = typer.Argument(..., help="The viewer whose token stops working."),
    viewer_tokens: str = typer.Option(DEFAULT_VIEWER_TOKENS, "--viewer-tokens", metavar="FILE"),
) -> None:
    """Remove NAME's viewer token (a running hub refuses it from its next request)."""
    _revoke(viewer_tokens, name, "viewer")


@token_app.command("list-viewers")
def token_list_viewers(
    viewer_tokens: str = typer.Option(DEFAULT_VIEWER_TOKENS, "--viewer-tokens", metavar="FILE"),
) -> None:
    """List the viewers that have a token."""
    from flowchain.hub.auth import TokenFileError, ViewerTokens

    try:
        for name in ViewerTokens(viewer_tokens).viewers():
            typer.echo(name)
    except TokenFileError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from exc


def _workflow_store(db: str | None, pg: str | None) -> tuple:
    """Open the hub's store and its workflow tables (exit 2/3 with the reason)."""
    from flowchain.hub.app import DEFAULT_DB
    from flowchain.hub.store import open_store
    from flowchain.hub.workflow_store import WorkflowStore

    if db and pg:
        err.print("[red]invalid options:[/] give --db PATH or --pg URL, not both")
        raise typer.Exit(2)
    target = pg or db or DEFAULT_DB
    try:
        store = open_store(target)
        return store, WorkflowStore(store)
    except Exception as exc:
        err.print(f"[red]the hub's store could not be opened[/] {escape(_redacted(target))}: "
                  f"{escape(str(exc))}")
        raise typer.Exit(3) from exc


_DB = typer.Option(None, "--db", metavar="PATH", help="The hub's SQLite file (default "
                   "./flowchain-hub.db).")
_PG = typer.Option(None, "--pg", metavar="URL", help="The hub's PostgreSQL database.")


@tenant_token_app.command("add")
def tenant_token_add(
    tenant: str = typer.Argument(..., help="The tenant id (any string up to 128 characters)."),
    tier: str = typer.Option("free", "--tier", help="The tenant's tier."),
    tiers: str | None = typer.Option(None, "--tiers", metavar="FILE",
                                        help="The tiers file the hub runs with."),
    replace: bool = typer.Option(False, "--replace",
                                 help="Issue a new token for a tenant that has one (the old "
                                      "one stops working; the tier is set too)."),
    out: str | None = typer.Option(None, "--out", metavar="FILE",
                                      help="Write the token here (mode 0600) instead of "
                                           "printing it."),
    db: str | None = _DB, pg: str | None = _PG,
) -> None:
    """Create TENANT on --tier (or restore a deleted one) and print its API token once; the
    store keeps only its hash, and every hub on the store accepts it at once."""
    from flowchain.tenancy import TenancyError, load_tiers

    try:
        load_tiers(tiers).get(tier)
    except (TenancyError, OSError) as exc:
        err.print(f"[red]no token created:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    store, workflows = _workflow_store(db, pg)
    try:
        token = workflows.add_tenant(tenant, tier, replace_token=replace)
    except (ValueError, LookupError) as exc:
        err.print(f"[red]no token created:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    finally:
        store.close()
    _hand_out(token, out, f"tenant {tenant!r} (tier {tier}): token written to {out}")


@tenant_token_app.command("delete")
def tenant_token_delete(
    tenant: str = typer.Argument(..., help="The tenant whose token stops working."),
    db: str | None = _DB, pg: str | None = _PG,
) -> None:
    """Delete TENANT: its token is refused from the next request on every hub (its chains and
    executions stay in the store; tenant-token add restores it with a new token)."""
    store, workflows = _workflow_store(db, pg)
    try:
        removed = workflows.delete_tenant(tenant)
    finally:
        store.close()
    if not removed:
        err.print(f"tenant {tenant!r} is not a tenant of this hub")
        raise typer.Exit(1)


@tenant_token_app.command("list")
def tenant_token_list(db: str | None = _DB, pg: str | None = _PG) -> None:
    """List the tenants, their tiers, and the deleted ones."""
    store, workflows = _workflow_store(db, pg)
    try:
        for record in workflows.tenants():
            state = "deleted" if record.deleted_ns is not None else "active"
            typer.echo(f"{record.tenant}\t{record.tier}\t{state}")
    finally:
        store.close()
