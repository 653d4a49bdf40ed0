"""``flowchain chains validate|list|show``: check and inspect chain files."""
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flowchain.cli.app import chains_app
from flowchain.cli.loading import find_chain, load_registry

out = Console()

FileArg = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                         help="A YAML file of chains.")
ImportOpt = typer.Option([], "--import", "-i",
                         help="Import this module first (it registers components); repeatable.")


@chains_app.command("validate")
def validate(file: Path = FileArg, imports: list[str] = ImportOpt) -> None:
    """Validate every chain of FILE: structure, contracts, durations, known components."""
    _, definitions = load_registry(file, imports)
    for d in definitions:
        out.print(f"[green]ok[/] {escape(f'{d.name} ({len(d.steps)} steps) id {d.chain_id}')}")
    out.print(f"{file}: {len(definitions)} valid chain(s)", markup=False)


@chains_app.command("list")
def list_chains(file: Path = FileArg, imports: list[str] = ImportOpt) -> None:
    """List the chains of FILE with their ids and step counts."""
    registry, definitions = load_registry(file, imports)
    table = Table(title=escape(str(file)))
    for col in ("chain", "id", "steps", "version", "expected ms"):
        table.add_column(col)
    for d in definitions:
        version = registry.version_of(d.chain_id)
        label = f"{version.version}" + (f" ({version.label})" if version.label else "")
        total = sum(s.expected_duration_ms for s in d.steps)
        table.add_row(escape(d.name), escape(d.chain_id), str(len(d.steps)), escape(label),
                      f"{total:g}")
    out.print(table)


@chains_app.command("show")
def show(file: Path = FileArg, name: str = typer.Argument(..., help="The chain's name."),
         imports: list[str] = ImportOpt) -> None:
    """Show one chain: its steps, their contracts and expected durations, id and versions."""
    registry, definitions = load_registry(file, imports)
    d = find_chain(definitions, name, file)
    out.print(f"[bold]{escape(d.name)}[/]  id {escape(d.chain_id)}")
    if d.description:
        out.print(d.description, markup=False)
    for v in registry.versions(d.name):
        label = f" label {v.label!r}" if v.label else ""
        out.print(f"version {v.version}{label}: {v.chain_id}", markup=False)
    table = Table()
    for col in ("#", "step", "component", "input", "output", "expected ms", "line"):
        table.add_column(col)
    for i, s in enumerate(d.steps, 1):
        table.add_row(str(i), *(escape(v) for v in (s.name, s.component, s.input, s.output)),
                      f"{s.expected_duration_ms:g}", str(s.line or ""))
    out.print(table)
