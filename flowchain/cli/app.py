"""The Typer applications the command modules attach to."""
import inspect
import re
from typing import Any

import typer
from typer.core import TyperGroup


def unwrapped(text: str) -> str:
    """Return help text with each paragraph on one line: the terminal wraps it at its own width
    (a docstring's source line breaks would otherwise be kept, then wrapped again)."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else re.sub(r"\s*\n\s*", " ", p)
                       for p in paragraphs)


class CommandGroup(TyperGroup):
    """A command group whose commands' help is written paragraphs, not source lines."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and command.help:
            command.help = unwrapped(command.help)
        return command


app = typer.Typer(
    name="flowchain",
    help="Run and track the data-flow chains of an AI trading node.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=CommandGroup,
)
chains_app = typer.Typer(help="Validate, list and show chain definitions.", no_args_is_help=True,
                         cls=CommandGroup)
bench_app = typer.Typer(help="Measure FlowChain against baselines in one run.",
                        no_args_is_help=True, cls=CommandGroup)
app.add_typer(chains_app, name="chains")
app.add_typer(bench_app, name="bench")
