"""``flowchain status [--url URL] [--json]``: ask a running node what its chains are doing."""
import json
import urllib.error
import urllib.request
from collections import Counter

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
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


def _by_reason(counts: dict | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((counts or {}).items())) or "0"


def _rate(rate: float | None) -> str:
    if rate is None:
        return "-"
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"


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
    print_status(snap, url, Console())


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _plain(title: str) -> Table:
    """A table without vertical rules, one space between columns: fits 80 columns."""
    return Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False,
                 title_justify="left")


def print_status(snap: dict, url: str, out: Console) -> None:
    """Print a node's ``/api/status`` snapshot as tables that fit 80 columns.

    Names (tenants, chains, steps) are never cut: a long one wraps onto the next line. A chain
    of another tenant than ``default`` is shown as ``tenant/chain``.
    """
    for e in snap.get("escalations", []):
        out.print(f"[bold red]ESCALATED[/] {escape(e['chain'])}/{escape(e['step'])} "
                  f"({escape(e['component'])}): {100 * e['error_rate']:.1f}% of "
                  f"{e['attempts']} attempts failed, for {e['duration_s']:.0f} s")
    chains = _plain(f"chains at {url}")
    chains.add_column("chain / step", overflow="fold", ratio=1)
    for col in ("runs", "fail", "ok %", "/s 1s", "/s 10s", "p50", "p99"):
        chains.add_column(col, justify="right", no_wrap=True)
    for c in snap["chains"]:
        ratio = "-" if c["success_ratio"] is None else f"{100 * c['success_ratio']:.2f}"
        name = c["chain"] if c["tenant"] == "default" else f"{c['tenant']}/{c['chain']}"
        chains.add_row(f"[bold]{escape(name)}[/]", _count(c["executions"]), _count(c["failures"]),
                       ratio, _rate(c.get("throughput_per_s")),
                       _rate(c.get("throughput_10s_per_s")), _ns(c["p50_ns"]), _ns(c["p99_ns"]))
        for st in c["steps"]:
            flag = "" if st["status"] == "ok" else f" [yellow]({escape(st['status'])})[/]"
            chains.add_row(f"  {escape(st['name'])}{flag}", _count(st.get("count")),
                           _count(st.get("errors")), "", "", "", _ns(st.get("p50_ns")),
                           _ns(st.get("p99_ns")))
    out.print(chains)
    if snap["live"]:
        live = _plain("running now")
        live.add_column("execution", overflow="fold", ratio=1)
        live.add_column("current step", overflow="fold")
        for col in ("progress", "remaining"):
            live.add_column(col, justify="right", no_wrap=True)
        for e in snap["live"]:
            live.add_row(escape(e["execution_id"]), escape(str(e["current_step"])),
                         f"{e['progress']}%", _ns(e["eta_ns"]))
        out.print(live)
    else:
        out.print("no execution running")
    if snap.get("feeds"):
        feeds = _plain("feeds")
        feeds.add_column("feed", overflow="fold", ratio=1)
        for col in ("state", "received", "gaps", "backfilled"):
            feeds.add_column(col, justify="right" if col != "state" else "left", no_wrap=True)
        feeds.add_column("rejects / drops", overflow="fold")
        for name, f in snap["feeds"].items():
            state = ("stale" if f.get("stale") else "connected") if f.get("connected") \
                else "disconnected"
            feeds.add_row(escape(name), state, _count(f.get("received", 0)),
                          str(f.get("gaps", 0)), str(f.get("backfilled", 0)),
                          f"{_by_reason(f.get('rejects'))} / {_by_reason(f.get('drops'))}")
        out.print(feeds)
    kinds = Counter(e["kind"] for e in snap["events"])
    out.print("recent events: " + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
                                   or "none"))
    for e in snap["events"][:10]:
        out.print(f"[{'red' if e['severity'] == 'critical' else 'yellow'}]{e['kind']}[/] "
                  f"{escape(e['message'])}")
