"""``flowchain keys generate DIR``: write CurveZMQ key pairs for the bridge and the node."""
import json
from pathlib import Path

import typer
from flowchain_bridge import keys as curve_keys
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flowchain.cli.app import CommandGroup, app

keys_app = typer.Typer(help="CurveZMQ keys for the bridge <-> node link.", no_args_is_help=True,
                       cls=CommandGroup)
app.add_typer(keys_app, name="keys")
out = Console()


@keys_app.command("generate")
def generate(
    directory: Path = typer.Argument(..., file_okay=False, help="Folder to write the key files into."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object of the paths."),
) -> None:
    """Write bridge.key(_secret), node.key(_secret) and authorized/node.key into DIRECTORY."""
    try:
        paths = curve_keys.generate(directory)
    except FileExistsError as exc:
        _refuse(str(exc), as_json, 1)
    except OSError as exc:  # unwritable, a file in the way, a missing drive
        _refuse(f"cannot write the keys into {directory}: {exc.strerror or exc}"
                + (f" ({exc.filename})" if exc.filename else "")
                + "; pick a folder you can write to", as_json, 2)
    if as_json:
        print(json.dumps({k: str(v) for k, v in paths.items()}))
        return
    table = Table(title=f"CurveZMQ keys in {directory}")
    table.add_column("file")
    table.add_column("give it to")
    table.add_row(str(paths["bridge_secret"]), "the bridge (--secret-key); keep private")
    table.add_row(str(paths["authorized"]), "the bridge (--authorized-dir): node public keys it accepts")
    table.add_row(str(paths["node_secret"]), "the node; keep private")
    table.add_row(str(paths["bridge_public"]), "the node (the bridge's public key)")
    out.print(table)


def _refuse(message: str, as_json: bool, code: int) -> None:
    if as_json:
        print(json.dumps({"error": message}))
    else:
        out.print(f"[red]{escape(message)}[/]")
    raise typer.Exit(code) from None
