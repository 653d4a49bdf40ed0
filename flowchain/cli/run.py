"""``flowchain run FILE NAME --input JSON``: execute one chain and show what happened."""
import asyncio
import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from flowchain.cli.app import app
from flowchain.cli.loading import find_chain, load_registry
from flowchain.context import UserContext
from flowchain.execution import ChainExecution

out = Console()


def _print_execution(record: ChainExecution) -> None:
    table = Table(title=f"{record.chain_name} {record.execution_id}")
    for col in ("step", "component", "status", "duration", "expected", ""):
        table.add_column(col)
    for s in record.steps:
        color = {"succeeded": "green", "failed": "red"}.get(s.status.value, "yellow")
        table.add_row(s.name, s.component, f"[{color}]{s.status.value}[/]",
                      f"{s.duration_ns / 1e3:,.1f} us", f"{s.expected_ns / 1e3:,.1f} us",
                      "[yellow]slow[/]" if s.slow else "")
    out.print(table)
    if record.total_duration is not None:
        out.print(f"total {record.total_duration / 1e3:,.1f} us, status {record.status.value}")


@app.command("run")
def run(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A YAML file of chains."),
    name: str = typer.Argument(..., help="The chain to run."),
    input_json: str = typer.Option("null", "--input", help="The first step's input, as JSON."),
    imports: List[str] = typer.Option([], "--import", "-i",
                                      help="Import this module first (registers components)."),
    tenant: Optional[str] = typer.Option(None, help="Tenant id of the user context."),
    as_json: bool = typer.Option(False, "--json", help="Print the record as one JSON object."),
) -> None:
    """Execute chain NAME of FILE once on --input; print each step's timing, or the failing
    step with its exception, input and traceback (exit code 1)."""
    try:
        data = json.loads(input_json)
    except json.JSONDecodeError as exc:
        out.print(f"[red]error:[/] --input is not valid JSON: {exc.msg} at column {exc.colno}")
        raise typer.Exit(2) from exc
    registry, definitions = load_registry(file, imports)
    definition = find_chain(definitions, name, file)
    context = UserContext(tenant_id=tenant) if tenant else None
    runner = registry.runner(definition.chain_id)
    if runner.has_async:
        record = asyncio.run(registry.execute_chain_async(definition.chain_id, data, context))
    else:
        record = registry.execute_chain(definition.chain_id, data, context)
    if as_json:
        typer.echo(json.dumps(record.to_dict(), default=repr))
    else:
        _print_execution(record)
        if record.failure is not None:
            f = record.failure
            out.print(f"[red]failed at step {f.step!r} ({f.component}):[/] "
                      f"{f.exception_type}: {f.message}")
            out.print(f"input: {f.input_repr}")
            out.print(f.traceback, markup=False, highlight=False)
    if not record.is_successful():
        raise typer.Exit(1)
