"""Load chain files and the component modules their names resolve through, for the CLI."""
from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from flowchain.chain import ChainDefinition
from flowchain.component_modules import install_finder
from flowchain.errors import ChainValidationError
from flowchain.registry import ChainRegistry

BUILTIN_COMPONENT_MODULES = ("flowchain.ingest.components", "flowchain.trading.components")
"""Modules that register the trading node's components."""

err = Console(stderr=True)


def import_components(modules: Iterable[str]) -> None:
    """Import the built-in component modules and ``modules``.

    A module ``--import`` names is looked for in the current directory first, then where
    Python finds modules; nothing else is ever imported from the current directory.

    Raises
    ------
    typer.Exit
        With code 2 when a module cannot be imported; the message names it.
    """
    modules = list(modules)
    install_finder(modules)
    for name in (*BUILTIN_COMPONENT_MODULES, *modules):
        try:
            importlib.import_module(name)
        except Exception as exc:
            err.print(f"[red]error:[/] cannot import component module {name!r}: "
                      f"{type(exc).__name__}: {exc}")
            raise typer.Exit(2) from exc


def load_registry(path: Path, modules: Iterable[str]) -> tuple[ChainRegistry, list[ChainDefinition]]:
    """Import component modules, load ``path`` and register its chains.

    Raises
    ------
    typer.Exit
        With code 1 after printing every problem when the file or a chain is invalid.
    """
    import_components(modules)
    registry = ChainRegistry()
    try:
        definitions = [registry.get_chain(i) for i in registry.register_file(path)]
    except ChainValidationError as exc:
        err.print(f"[red]invalid:[/] {escape(str(path))}")
        for problem in exc.problems:
            err.print(f"  {problem}", markup=False, highlight=False)
        if any(p.message.startswith("unknown component") for p in exc.problems):
            err.print("  to fix an unknown component, import the module that registers it: "
                      "--import MODULE (repeatable; the current directory is searched)",
                      markup=False, highlight=False)
        raise typer.Exit(1) from exc
    return registry, definitions


def find_chain(definitions: list[ChainDefinition], name: str, path: Path) -> ChainDefinition:
    """Return the chain called ``name`` from ``definitions``.

    Raises
    ------
    typer.Exit
        With code 1 when there is no such chain; the message lists the names there are.
    """
    for d in definitions:
        if d.name == name:
            return d
    names = ", ".join(d.name for d in definitions) or "none"
    err.print(f"[red]error:[/] {escape(f'{path} has no chain {name!r}; its chains: {names}')}")
    raise typer.Exit(1)
