"""``flowchain bridge``: the bridge's own command, ``flowchain-bridge``, under the main CLI.

The options, exit codes and behaviour live in :mod:`flowchain_bridge.cli` (argparse, so the bridge
installs without this package's CLI libraries); this command hands its arguments over unparsed.
``flowchain bridge ...`` run from the shell takes a shorter road still: :mod:`flowchain.console`
calls the bridge before the other command modules load, so it never loads the compiled engine.
"""
import typer

from flowchain.cli.app import app


@app.command(
    "bridge",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def bridge(ctx: typer.Context) -> None:
    """Stream MT5 ticks and execute orders over ZeroMQ (the real MetaTrader5 package, or --fake).
    `flowchain bridge --help` lists the options; same as `flowchain-bridge`."""
    from flowchain_bridge.cli import main

    code = main(list(ctx.args), prog="flowchain bridge")
    if code:
        raise typer.Exit(code)
