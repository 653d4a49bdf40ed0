"""The ``flowchain`` command: one module per command group, all attached to :data:`app`.

Importing a command module registers its commands on the Typer apps of
:mod:`flowchain.cli.app`; each module imports its heavy dependencies inside its commands, so
``flowchain --help`` stays fast.
"""
import os
import sys

from flowchain.cli import (  # noqa: F401,E402  (each registers its commands)
    analytics,
    bench,
    bench_hub,
    bench_node,
    bench_observe,
    bench_tenancy,
    bench_wire,
    bridge,
    chains,
    diagram,
    hub,
    keys,
    node,
    optimize,
    replay,
    report,
    run,
    status,
    tenants,
)
from flowchain.cli.app import app, bench_app, chains_app  # noqa: F401


def main() -> None:
    """Entry point of the ``flowchain`` console script.

    ``python -m flowchain.cli`` and ``python -c`` put the current directory first on
    ``sys.path``; it is taken off before any command runs, so a file there (``numba.py``)
    never shadows a module the commands import later. ``--import NAME`` still finds NAME there.
    """
    forget_current_directory()
    app()


def forget_current_directory() -> None:
    """Drop the entry Python's start put first on ``sys.path`` when it is the current directory."""
    if sys.flags.safe_path or not sys.path:
        return
    first = sys.path[0]
    if first == "" or os.path.realpath(first) == os.path.realpath(os.getcwd()):
        del sys.path[0]
