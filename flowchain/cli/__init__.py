"""The ``flowchain`` command: one module per command group, all attached to :data:`app`.

Importing a command module registers its commands on the Typer apps of
:mod:`flowchain.cli.app`; each module imports its heavy dependencies inside its commands, so
``flowchain --help`` stays fast.
"""
from flowchain.cli.app import app, bench_app, chains_app  # noqa: F401
from flowchain.cli import (  # noqa: F401,E402  (each registers its commands)
    analytics,
    bench,
    bench_node,
    bench_observe,
    bench_tenancy,
    bench_wire,
    bridge,
    chains,
    diagram,
    keys,
    node,
    report,
    run,
    status,
    tenants,
)


def main() -> None:
    """Entry point of the ``flowchain`` console script."""
    app()
