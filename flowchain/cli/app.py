"""The Typer applications the command modules attach to."""
import typer

app = typer.Typer(
    name="flowchain",
    help="Run and track the data-flow chains of an AI trading node.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
chains_app = typer.Typer(help="Validate, list and show chain definitions.", no_args_is_help=True)
bench_app = typer.Typer(help="Measure FlowChain against baselines in one run.", no_args_is_help=True)
app.add_typer(chains_app, name="chains")
app.add_typer(bench_app, name="bench")
