"""``flowchain status [--url URL] [--json]``: ask a running node what its chains are doing."""
import json
import urllib.error
import urllib.request
from collections import Counter
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from flowchain.cli.app import app
from flowchain.observe.web.server import DEFAULT_PORT

err = Console(stderr=True)


def fetch_status(url: str, timeout: float = 5.0) -> dict:
    """Return the node's ``/api/status`` snapshot.

    Raises
    ------
    ConnectionError
        When nothing answers at ``url`` or the answer is not the dashboard's JSON.
    """
    endpoint = url.rstrip("/") + "/api/status"
    try:
        with urllib.request.urlopen(endpoint, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ConnectionError(f"{endpoint} answered HTTP {exc.code}; is this a FlowChain "
                              "node's dashboard?") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(f"no node dashboard at {url} ({getattr(exc, 'reason', exc)}); "
                              "is `flowchain node` running? pass its address with --url") from exc
    except ValueError as exc:
        raise ConnectionError(f"{endpoint} did not return JSON; is this a FlowChain node's "
                              "dashboard?") from exc


def _by_reason(counts: Optional[dict]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((counts or {}).items())) or "0"


def _rate(rate: Optional[float]) -> str:
    return "-" if rate is None else f"{rate:.1f}"


def _ns(ns) -> str:
    from flowchain.observe.diagram import format_ns

    return "-" if ns is None else format_ns(ns)


@app.command("status")
def status(
    url: str = typer.Option(f"http://127.0.0.1:{DEFAULT_PORT}", "--url",
                            help="The node's dashboard address."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show a running node's chains, running executions and latest warnings."""
    try:
        snap = fetch_status(url)
    except ConnectionError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(snap))
        return
    out = Console()
    chains = Table(title=f"chains at {url}")
    for col in ("tenant", "chain", "executions", "failures", "success", "/s (1 s)",
                "/s (10 s)", "p50", "p99", "steps"):
        chains.add_column(col)
    for c in snap["chains"]:
        ratio = "-" if c["success_ratio"] is None else f"{100 * c['success_ratio']:.2f}%"
        steps = " > ".join(f"{s['name']}:{s['status']}" for s in c["steps"])
        chains.add_row(c["tenant"], c["chain"], str(c["executions"]), str(c["failures"]), ratio,
                       _rate(c.get("throughput_per_s")), _rate(c.get("throughput_10s_per_s")),
                       _ns(c["p50_ns"]), _ns(c["p99_ns"]), steps)
    for e in snap.get("escalations", []):
        out.print(f"[bold red]ESCALATED[/] {e['chain']}/{e['step']} ({e['component']}): "
                  f"{100 * e['error_rate']:.1f}% of {e['attempts']} attempts failed, for "
                  f"{e['duration_s']:.0f} s")
    out.print(chains)
    live = Table(title="running now")
    for col in ("execution", "current step", "completed", "progress", "remaining"):
        live.add_column(col)
    for e in snap["live"]:
        live.add_row(e["execution_id"], str(e["current_step"]),
                     " > ".join(e.get("completed_steps") or []), f"{e['progress']}%",
                     _ns(e["eta_ns"]))
    out.print(live if snap["live"] else "no execution running")
    feeds = Table(title="feeds")
    for col in ("feed", "state", "received", "gaps", "backfilled", "rejects", "drops"):
        feeds.add_column(col)
    for name, f in snap.get("feeds", {}).items():
        state = ("stale" if f.get("stale") else "connected") if f.get("connected") \
            else "disconnected"
        feeds.add_row(name, state, f"{f.get('received', 0):,}", str(f.get("gaps", 0)),
                      str(f.get("backfilled", 0)), _by_reason(f.get("rejects")),
                      _by_reason(f.get("drops")))
    if snap.get("feeds"):
        out.print(feeds)
    kinds = Counter(e["kind"] for e in snap["events"])
    out.print("recent events: " + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
                                   or "none"))
    for e in snap["events"][:10]:
        out.print(f"[{'red' if e['severity'] == 'critical' else 'yellow'}]{e['kind']}[/] "
                  f"{e['message']}")
