"""Read the official MetaTrader5 package's constants and functions from its wheel, on any OS.

Used by ``scripts/snapshot_mt5_constants.py`` (which writes ``mt5_constants.json``) and by the
tests that hold the fake to the real package.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

SNAPSHOT_PATH = Path(__file__).with_name("mt5_constants.json")
"""The committed snapshot of the official package's names."""

_SIGNATURE = re.compile(rb"\x00([a-z_]+)\(([^\x00\n]*)\)\n")  # "name(args)\n\ndoc" in _core


def load_snapshot(path: Path = SNAPSHOT_PATH) -> dict[str, Any]:
    """Return the committed snapshot: ``version``, ``constants`` (name -> int), ``functions``.

    Raises
    ------
    FileNotFoundError
        When the snapshot is missing: run ``python scripts/snapshot_mt5_constants.py``.
    """
    return json.loads(path.read_text(encoding="utf-8"))


def download_wheel(dest: Path | None = None, timeout: float = 120.0) -> Path | None:
    """Download the newest MetaTrader5 win_amd64 wheel with pip; ``None`` when that fails."""
    dest = dest or Path(tempfile.mkdtemp(prefix="mt5-wheel-"))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--platform", "win_amd64", "--python-version", "3.12", "MetaTrader5", "-d", str(dest),
           "--quiet", "--disable-pip-version-check"]
    try:
        subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)
    except (OSError, subprocess.SubprocessError):
        return None
    wheels = sorted(dest.glob("[Mm]eta[Tt]rader5-*.whl"))
    return wheels[-1] if wheels else None


def read_wheel(wheel: Path) -> dict[str, Any]:
    """Read ``version``, ``constants`` and ``functions`` (name -> signature) from a wheel.

    Raises
    ------
    ValueError
        When the wheel holds no ``MetaTrader5/__init__.py``.
    """
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        init = next((n for n in names if n.lower() == "metatrader5/__init__.py"), None)
        if init is None:
            raise ValueError(f"{wheel} holds no MetaTrader5/__init__.py; is it the MetaTrader5 wheel?")
        source = zf.read(init).decode("utf-8", "replace")
        core = b"".join(zf.read(n) for n in names if "/_core" in n.lower())
    version, constants, helpers = parse_init(source)
    functions: dict[str, str] = {}
    for match in _SIGNATURE.finditer(core):
        name = match.group(1).decode()
        functions.setdefault(name, f"{name}({match.group(2).decode('ascii', 'replace')})")
    return {"version": version, "constants": constants, "functions": functions, "helpers": helpers}


def parse_init(source: str) -> tuple[str, dict[str, int], list[str]]:
    """Parse the package's ``__init__.py``: its version, integer constants and helper functions.

    Raises
    ------
    ValueError
        When a module-level UPPER_CASE assignment is not an integer expression.
    """
    tree = ast.parse(source)
    version = ""
    constants: dict[str, int] = {}
    helpers: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            helpers.append(node.name)
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        if name == "__version__":
            version = ast.literal_eval(node.value)
        elif name.isupper():
            constants[name] = _int_expr(node.value, name)
    return version, constants, helpers


def _int_expr(node: ast.AST, name: str) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_int_expr(node.operand, name)
    if isinstance(node, ast.BinOp):
        left, right = _int_expr(node.left, name), _int_expr(node.right, name)
        ops = {ast.BitOr: lambda a, b: a | b, ast.Add: lambda a, b: a + b,
               ast.LShift: lambda a, b: a << b, ast.Sub: lambda a, b: a - b}
        for op, fn in ops.items():
            if isinstance(node.op, op):
                return fn(left, right)
    raise ValueError(f"constant {name} is not an integer expression: {ast.dump(node)[:80]}")
