"""``flowchain report --db PATH [--since ...] [--out report.html]``: an offline latency report."""
import sqlite3
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from flowchain.cli.app import app
from flowchain.errors import FlowChainError

err = Console(stderr=True)


def _utc(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns / 1e9)) + " UTC"


@app.command("report")
def report(
    db: Path = typer.Option(..., "--db", help="The history database the node wrote."),
    since: str | None = typer.Option(None, "--since", help="Only data since then: 30s, "
                                        "15m, 2h, 7d or an ISO date-time (UTC if no zone)."),
    out: Path | None = typer.Option(
        None, "--out", "-o",
        help="The HTML file to write; without it the HTML goes to stdout (redirect it: "
             "> report.html), never to a file you did not name."),
) -> None:
    """Write an HTML report: latency percentile distributions (HdrHistogram style),
    throughput and error rate over time, and the slowest steps. Opens with no network.
    With no history in the range it says so, writes nothing and exits 1. Exit code 2: --db is
    not a history database, --out cannot be written, or --since cannot be read."""
    from flowchain.observe.history import HistoryReader, parse_since
    from flowchain.observe.report import build_report
    from flowchain.tenancy.report_section import tenancy_section

    if out is None and sys.stdout.isatty():
        err.print("[red]error:[/] name the file with --out report.html, or redirect stdout "
                  "(flowchain report --db ... > report.html)")
        raise typer.Exit(2)
    if out is not None and not out.parent.is_dir():
        err.print(f"[red]error:[/] cannot write {escape(str(out))}: the directory "
                  f"{escape(str(out.parent))} does not exist; check the directory exists and is "
                  "writable, or name another file with --out")
        raise typer.Exit(2)
    try:
        since_ns = parse_since(since)
    except ValueError as exc:
        err.print(f"[red]error:[/] --since: {escape(str(exc))}")
        raise typer.Exit(2) from exc
    try:
        with HistoryReader(db) as reader:
            first, last = reader.time_range()
            chains = [c for c in reader.chains() if reader.steps(c, since_ns=since_ns)]
            if not chains and not reader.alerts(since_ns=since_ns) \
                    and not tenancy_section(reader.path, since_ns=since_ns):
                now = time.time_ns()
                asked = (f"since {_utc(since_ns)} (now {_utc(now)})" if since_ns is not None
                         else "at all")
                held = (f"; it holds {_utc(first)} to {_utc(last)}" if first is not None
                        and last is not None else "; it holds none")
                err.print(f"no history in {db} {asked}{held}. Nothing written.",
                          markup=False, highlight=False)
                raise typer.Exit(1)
            text = build_report(reader, since_ns=since_ns)
    except (OSError, ValueError, FlowChainError, sqlite3.DatabaseError) as exc:
        hint = "" if isinstance(exc, FileNotFoundError) else (
            "; pass the history database a node wrote (its [history] db, else its [node] db)")
        err.print(f"error: --db {db}: {exc}{hint}", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        err.print(f"report of {len(chains)} chain(s) written to stdout")
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        err.print(f"[red]error:[/] cannot write {escape(str(out))}: {exc.strerror}; check the "
                  "directory exists and is writable")
        raise typer.Exit(2) from exc
    err.print(f"wrote {out}: {len(chains)} chain(s)")
