"""What a benchmark ran on: library versions and the CPU, printed with every result."""
from __future__ import annotations

import platform
import sys
from importlib import metadata


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def versions() -> dict[str, str]:
    """Return the versions of Python and of the libraries that shape the figures."""
    from flowchain import _engine

    return {
        "python": sys.version.split()[0],
        "flowchain": _version("flowchain"),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "pyzmq": _version("pyzmq"),
        "cython": _version("Cython"),
        "clock": _engine.clock_info()["source"],
    }


def cpu() -> str:
    """Return the CPU model and the number of logical CPUs."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import os

    return f"{model} ({os.cpu_count()} logical CPUs)"
