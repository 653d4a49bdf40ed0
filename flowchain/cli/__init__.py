"""The ``flowchain`` command: one module per command group, all attached to :data:`app`."""
from flowchain.cli.app import app, bench_app, chains_app  # noqa: F401
from flowchain.cli import bench, chains, run  # noqa: F401,E402  (each registers its commands)
from flowchain.cli import bridge as _bridge_cmd, keys as _keys_cmd  # noqa: F401,E402
from flowchain.cli import node as _node_cmd, bench_node as _bench_node_cmd  # noqa: F401,E402
from flowchain.cli import diagram as _diagram_cmd, status as _status_cmd  # noqa: F401,E402
from flowchain.cli import report as _report_cmd, bench_observe as _bench_observe_cmd  # noqa: F401,E402
from flowchain.cli import bench_wire as _bench_wire_cmd  # noqa: F401,E402


def main() -> None:
    """Entry point of the ``flowchain`` console script."""
    app()
