"""The ``flowchain`` console script.

``flowchain bridge ...`` goes straight to the bridge's own command (:mod:`flowchain_bridge.cli`)
before any command module of :mod:`flowchain.cli` loads, so running the bridge never loads the
compiled engine, numba or hdrhistogram (nor calibrates the engine's clock). Every other command
goes to :func:`flowchain.cli.main`.
"""
import sys


def main() -> None:
    """Entry point of the ``flowchain`` console script."""
    if sys.argv[1:2] == ["bridge"]:
        from flowchain_bridge.cli import main as bridge_main

        sys.exit(bridge_main(sys.argv[2:], prog="flowchain bridge"))
    from flowchain.cli import main as cli_main

    cli_main()
