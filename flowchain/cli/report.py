"""``flowchain report --db PATH [--since ...] --out report.html``: an offline latency report."""
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from flowchain.cli.app import app

err = Console(stderr=True)


@app.command("report")
def report(
    db: Path = typer.Option(..., "--db", help="The history database the node wrote."),
    since: Optional[str] = typer.Option(None, "--since", help="Only data since then: 30s, "
                                        "15m, 2h, 7d or an ISO date-time (UTC if no zone)."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write."),
) -> None:
    """Write an HTML report: latency percentile distributions (HdrHistogram style),
    throughput and error rate over time, and the slowest steps. Opens with no network."""
    from flowchain.observe.history import HistoryReader, parse_since
    from flowchain.observe.report import build_report

    try:
        since_ns = parse_since(since)
        with HistoryReader(db) as reader:
            text = build_report(reader, since_ns=since_ns)
            chains = reader.chains()
    except (FileNotFoundError, ValueError) as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    out.write_text(text, encoding="utf-8")
    err.print(f"wrote {out}: {len(chains)} chain(s)")
