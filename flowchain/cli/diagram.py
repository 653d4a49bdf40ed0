"""``flowchain chains diagram FILE NAME --format svg|mermaid|dot [--db PATH]``: draw a chain."""
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from flowchain.chain import load_chains_file
from flowchain.cli.app import chains_app
from flowchain.cli.loading import find_chain
from flowchain.errors import ChainValidationError

err = Console(stderr=True)


@chains_app.command("diagram")
def diagram(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help="A YAML file of chains."),
    name: str = typer.Argument(..., help="The chain to draw."),
    fmt: str = typer.Option("svg", "--format", "-f", help="svg, mermaid or dot."),
    db: Path | None = typer.Option(None, "--db", help="A history database: color each step "
                                      "by status and annotate it with p50/p99."),
    since: str | None = typer.Option(None, "--since", help="With --db: only data since "
                                        "then (30s, 15m, 2h, 7d or an ISO date-time)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here, not to stdout."),
) -> None:
    """Draw chain NAME of FILE: a node per step (component, expected duration), edges labelled
    with the data type, and with --db each step's status and p50/p99."""
    from flowchain.observe import diagram as drawing
    from flowchain.observe.history import HistoryReader, parse_since

    if fmt not in drawing.FORMATS:
        err.print(f"[red]unknown format {fmt!r}[/]; choose one of {', '.join(drawing.FORMATS)}")
        raise typer.Exit(2)
    try:
        definitions = load_chains_file(file)
    except ChainValidationError as exc:
        err.print(f"[red]{escape(str(file))}: invalid chains[/]\n{escape(str(exc))}")
        raise typer.Exit(1) from exc
    definition = find_chain(definitions, name, file)
    figures = None
    if db is not None:
        try:
            since_ns = parse_since(since)
            with HistoryReader(db) as reader:
                figures = drawing.figures_from_history(reader, definition.name,
                                                       since_ns=since_ns)
        except (FileNotFoundError, ValueError) as exc:
            err.print(f"[red]{exc}[/]")
            raise typer.Exit(1) from exc
        if not figures:
            err.print(f"[yellow]{db} holds no history of chain {definition.name!r}; drawing "
                      "without figures[/]")
    text = drawing.render(definition, fmt, figures)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        err.print(f"wrote {out} ({fmt}, {len(definition.steps)} steps)")
