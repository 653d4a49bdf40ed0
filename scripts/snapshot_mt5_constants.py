"""Snapshot the official MetaTrader5 package's constants and function names into JSON.

The package ships Windows-only wheels, but its ``MetaTrader5/__init__.py`` assigns every
constant before ``from ._core import *``, so ``ast`` reads them on any platform; the function
signatures are the docstring strings compiled into ``_core``. The snapshot is committed as
``bridge/flowchain_bridge/mt5_constants.json`` and checked against the fake by
``tests/test_mt5_constants.py``.

Usage::

    python scripts/snapshot_mt5_constants.py                 # downloads the wheel with pip
    python scripts/snapshot_mt5_constants.py --wheel X.whl   # uses a wheel already here
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowchain_bridge.mt5_reference import download_wheel, read_wheel  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "flowchain" / "bridge" / "mt5_constants.json"


def main(argv: list[str] | None = None) -> int:
    """Write the snapshot; return the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="a MetaTrader5 wheel already downloaded")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    args = parser.parse_args(argv)
    wheel = args.wheel or download_wheel()
    if wheel is None:
        print("could not download the MetaTrader5 wheel (no network or pip failed); "
              "pass --wheel PATH", file=sys.stderr)
        return 1
    snapshot = read_wheel(wheel)
    args.out.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(snapshot['constants'])} constants and {len(snapshot['functions'])} "
          f"functions of MetaTrader5 {snapshot['version']} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
