"""Import the modules that register an author's components, and nothing else from their folders.

Putting a folder (the current directory above all) on ``sys.path`` would let any file there
shadow an installed module: a ``numba.py`` beside a chains file would replace numba. The finder
here answers only for the top-level names the operator gave (``--import``, ``[components]
import``), looked for in the given folders first; every other import still comes from the
installation. A component module that needs helpers of its own makes them a package.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path


class NamedModuleFinder(importlib.abc.MetaPathFinder):
    """Find exactly the top-level modules in ``names``, in ``directories``, nothing else."""

    def __init__(self, directories: Sequence[str | Path], names: Iterable[str]) -> None:
        self.directories = [str(d) for d in directories]
        self.names = frozenset(names)

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        if fullname not in self.names:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, self.directories)


def install_finder(modules: Iterable[str], directories: Sequence[str | Path] = ()) -> None:
    """Make the top-level packages of ``modules`` importable from ``directories`` and the
    current directory (searched in that order, before the installation), once."""
    tops = {name.split(".")[0] for name in modules}
    search = [str(d) for d in directories] + [str(Path.cwd())]
    if not tops or any(isinstance(f, NamedModuleFinder) and f.names >= tops
                       and f.directories == search for f in sys.meta_path):
        return
    sys.meta_path.insert(0, NamedModuleFinder(search, tops))


def import_modules(modules: Iterable[str], directories: Sequence[str | Path] = ()) -> None:
    """Import ``modules`` (looked for in ``directories`` and the current directory first).

    Raises
    ------
    Exception
        Whatever importing a module raised; the caller names the module in its message.
    """
    modules = list(modules)
    install_finder(modules, directories)
    for name in modules:
        importlib.import_module(name)
