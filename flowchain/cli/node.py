"""``flowchain node``: run the trading node (the main job) until stopped or for ``--duration``."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flowchain.cli.app import app

err = Console(stderr=True)
EXIT_NO_TICKS = 4
"""The node ran and stopped without ever receiving a tick (bridge without a terminal, a
login refused, symbols the feed never sends)."""


class NodeLogFormatter(logging.Formatter):
    """Render monitor events as one readable line; other records as ``LEVEL name: message``.

    The alert log sink attaches the event as ``record.event``; the JSON it logs as the message
    stays available to JSON handlers, while the operator's terminal gets a sentence.
    """

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        if isinstance(event, dict):
            return (f"[node] {event.get('severity', 'warning').upper()} {event.get('kind')} "
                    f"{event.get('chain')}/{event.get('step')}: {event.get('message')}")
        return f"[node] {record.levelname} {record.name}: " + super().format(record)


def log_to_stderr(level: int = logging.INFO) -> logging.Handler:
    """Send the ``flowchain`` loggers (alerts, monitor, history, web) to stderr, readable."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(NodeLogFormatter("%(message)s"))
    logger = logging.getLogger("flowchain")
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


def _ns(value: int) -> str:
    return f"{value / 1e3:,.1f}"


def print_summary(summary: dict[str, Any]) -> None:
    """Print the node's exit summary as rich tables on stdout."""
    out = Console()
    head = Table(title=f"flowchain node: stopped by {summary['stopped_by']}", show_header=False)
    for key, label in (("feed", "feed"), ("broker", "broker"), ("db", "database"),
                       ("start_s", "start (s)"), ("run_s", "ran (s)"), ("ticks", "ticks"),
                       ("ticks_per_s", "ticks/s"), ("decisions", "decisions"),
                       ("orders", "orders sent"), ("batches", "batches stored"),
                       ("first_decision_ns", "first decision (ns)")):
        head.add_row(label, f"{summary[key]:,}" if isinstance(summary[key], (int, float))
                     else str(summary[key]))
    currency = summary.get("account_currency", "")
    head.add_row(f"PnL ({currency})" if currency else "PnL", f"{summary['pnl']:,.2f}")
    head.add_row("results", ", ".join(f"{k} {v:,}" for k, v in summary["results"].items()))
    head.add_row("positions", ", ".join(f"{k} {v:+g}" for k, v in summary["positions"].items())
                 or "flat")
    exposure = summary.get("exposure") or {}
    if exposure:
        head.add_row(f"exposure ({currency})",
                     ", ".join(f"{k} {v:+,.2f}" for k, v in exposure.items()))
    head.add_row("rows stored", ", ".join(f"{k} {v:,}" for k, v in summary["rows"].items()))
    alerts = summary.get("alerts") or {}
    head.add_row("alerts", ", ".join(f"{k} {v:,}" for k, v in alerts.items()) or "none")
    if summary.get("dashboard"):
        head.add_row("dashboard", summary["dashboard"])
    trading = summary["trading"]
    if trading.get("journal"):
        head.add_row(f"journal ({trading.get('node_id', '')})",
                     ", ".join(f"{k} {v:,}" for k, v in trading["journal"].items()))
    if trading.get("recovered"):
        head.add_row("settled at start", ", ".join(f"{k} {v:,}" for k, v in trading["recovered"].items()))
    refusals = summary["trading"]["risk_rejections"]
    if refusals:
        head.add_row("risk refusals", ", ".join(f"{k} {v:,}" for k, v in refusals.items()))
    for key in ("decision_failures", "batch_failures"):
        if summary[key]:
            head.add_row(key.replace("_", " "),
                         ", ".join(f"{k} {v:,}" for k, v in summary[key].items()))
    feed_rejects = (summary.get("feed_stats") or {}).get("rejects") or {}
    if feed_rejects:  # rows of a replay file (or frames) that could not be ticks
        head.add_row("feed rejects", ", ".join(f"{k} {v:,}" for k, v in feed_rejects.items()))
    if summary["batch_ticks_lost"]:
        head.add_row("ticks lost before a batch", f"{summary['batch_ticks_lost']:,}")
    out.print(head)
    steps = Table(title="latency per step, us (the engine's HDR histograms)")
    for col in ("chain", "step", "p50", "p99", "errors"):
        steps.add_column(col, justify="left" if col in ("chain", "step") else "right")
    for chain, data in summary["chains"].items():
        for step, s in data["steps"].items():
            steps.add_row(chain, step, _ns(s["p50_ns"]), _ns(s["p99_ns"]), str(s["errors"]))
        lat = data["latency"]
        steps.add_row(chain, "[bold]whole chain[/]", _ns(lat["p50_ns"]), _ns(lat["p99_ns"]),
                      str(data["failures"]))
    out.print(steps)
    for line in summary.get("optimizer") or ():  # only when the node profiled
        out.print(f"optimizer: {line}", markup=False, highlight=False)


@app.command("node")
def node(
    config: Path | None = typer.Option(None, "--config", "-c",
                                          help="A TOML config file (see flowchain.config)."),
    feed: str | None = typer.Option(None, help="sim | replay:FILE | tcp://host:port"),
    broker: str | None = typer.Option(None, help="paper | bridge"),
    db: str | None = typer.Option(None, help="The SQLite database file."),
    node_id: str | None = typer.Option(
        None, "--node-id", help="This node's id (letters, digits, _); default: the database's own."),
    duration: float | None = typer.Option(None, help="Seconds to run; 0 runs until stopped."),
    status_interval: float | None = typer.Option(
        None, help="Seconds between status lines on stderr; 0 turns them off."),
    dashboard: str | None = typer.Option(
        None, "--dashboard", metavar="HOST:PORT",
        help="Serve the dashboard, /metrics and /api/status here (default 127.0.0.1:8750; "
             "port 0 picks a free one)."),
    no_dashboard: bool = typer.Option(False, "--no-dashboard",
                                      help="Serve no dashboard, /metrics or /api/status."),
    dashboard_url_file: str | None = typer.Option(
        None, "--dashboard-url-file", metavar="PATH",
        help="Write the dashboard's bound URL to this file once it serves."),
    dashboard_allow_remote: bool = typer.Option(
        False, "--dashboard-allow-remote",
        help="Allow a non-loopback dashboard host (it has no authentication)."),
    imports: list[str] = typer.Option(
        [], "--import", "-i", metavar="MODULE",
        help="Import this module first: it registers your components with "
             "@flowchain.component (repeatable; adds to \\[components] import)."),
    chains: str | None = typer.Option(
        None, "--chains", metavar="FILE",
        help="Your chains YAML: its chains replace the bundled ones of the same name "
             "(\\[chains] file)."),
    hub: str | None = typer.Option(
        None, "--hub", metavar="URL",
        help="Ship history to this flowchain hub (\\[hub] url; needs --hub-token-file)."),
    hub_token_file: str | None = typer.Option(
        None, "--hub-token-file", metavar="FILE",
        help="This node's hub token (\\[hub] token_file; flowchain hub token add NODE)."),
    as_json: bool = typer.Option(False, "--json", help="Print the exit summary as one JSON object."),
) -> None:
    """Run the trading node: ticks from the feed through the AI decision chain (every tick) and
    the MT5 -> database chain (batches), orders through the broker; serves the dashboard,
    /metrics and /api/status (127.0.0.1:8750). Defaults: simulated feed, paper broker,
    ./flowchain.db. SIGINT/SIGTERM drain and flush before exit. Exit codes: 2 invalid
    configuration, 3 could not start, 4 never received a tick. See docs/node.md."""
    from flowchain.config import ConfigError, load_config

    try:
        cfg = load_config(config, {
            "feed": feed, "broker": broker, "db": db, "node_id": node_id, "duration": duration,
            "status_interval": status_interval, "dashboard": dashboard,
            "dashboard_enabled": False if no_dashboard else None,
            "dashboard_url_file": dashboard_url_file,
            "dashboard_allow_remote": True if dashboard_allow_remote else None,
            "imports": list(imports), "chains": chains, "hub": hub,
            "hub_token_file": hub_token_file})
    except ConfigError as exc:
        problems = str(exc).splitlines()
        if len(problems) == 1:
            err.print(f"[red]invalid configuration:[/] {escape(str(exc))}")
        else:
            err.print(f"[red]invalid configuration ({len(problems)} problems):[/]")
            for problem in problems:
                err.print(f"  {problem}", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    from flowchain.node import NodeStartError, TradingNode

    log_to_stderr()
    trading_node = TradingNode(cfg, out=sys.stderr)
    try:
        summary = _run(trading_node)
    except NodeStartError as exc:
        err.print(f"[red]the node could not start:[/] {escape(str(exc))}")
        raise typer.Exit(3) from exc
    if as_json:
        typer.echo(json.dumps(summary, default=str))
    else:
        print_summary(summary)
    if summary["ticks"] == 0:
        state = summary.get("feed_state") or {}
        err.print(f"[red]the node never received a tick[/] from {escape(str(summary['feed']))} "
                  f"(terminal: {state.get('terminal', 'unknown')}, MT5 error "
                  f"{state.get('terminal_error', 1)}); exit code {EXIT_NO_TICKS}")
        raise typer.Exit(EXIT_NO_TICKS)


def _run(trading_node: Any) -> dict[str, Any]:
    """Run the node on uvloop (the stock asyncio loop where uvloop is unavailable)."""
    try:
        import uvloop
    except ImportError:  # Windows: the node still runs, on asyncio
        import asyncio

        return asyncio.run(trading_node.run())
    return uvloop.run(trading_node.run())
