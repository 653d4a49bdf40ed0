"""The cold-path package: public names re-exported lazily, the engine read through one reader."""
import ast
import subprocess
import sys
from pathlib import Path

import flowchain.observe as observe

PACKAGE = Path(observe.__file__).parent

ALLOWED = {
    # module -> the other observe modules it may import (output types, downward only)
    "alerts": set(),
    "monitor": {"alerts"},
    "metrics": set(),
    "history": {"alerts"},
    "otel": set(),
    "diagram": set(),
    "report": {"history", "diagram"},
    "web": {"diagram", "metrics"},
}


def observe_imports(path: Path) -> set[str]:
    """The ``flowchain.observe.X`` modules (first component of X) a source file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("flowchain.observe."):
                found.add(name.split(".")[2])
    return found


def engine_imports(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("flowchain._native",
                                                                 "flowchain._engine"):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "flowchain" and any(
                a.name in ("_engine", "_native") for a in node.names):
            return True
    return False


def test_every_public_name_resolves_to_its_modules_object():
    import importlib

    assert observe.__all__ == sorted(observe._EXPORTS)
    for name, module in observe._EXPORTS.items():
        assert getattr(observe, name) is getattr(
            importlib.import_module(f"flowchain.observe.{module}"), name), name
    assert "Monitor" in dir(observe)
    try:
        observe.NoSuchName  # noqa: B018  (the lookup is the test)
    except AttributeError as exc:
        assert "NoSuchName" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_modules_read_the_engine_only_through_the_reader_and_never_sideways():
    sources = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
                     or p.parent != PACKAGE)
    assert {p.stem for p in sources if p.parent == PACKAGE} == set(ALLOWED) - {"web"} | {
        "_reader"}
    for path in sources:
        rel = path.relative_to(PACKAGE)
        module = rel.parts[0].removesuffix(".py")
        if module == "_reader":
            assert engine_imports(path)
            assert observe_imports(path) == set()
            continue
        assert not engine_imports(path), f"{rel} reads the engine past the reader"
        others = observe_imports(path) - {"_reader", module}
        assert others <= ALLOWED[module], f"{rel} imports {others - ALLOWED[module]} sideways"


def test_importing_one_module_pulls_in_no_other_modules_dependencies():
    code = ("import sys, flowchain.observe, flowchain.observe.monitor; "
            "print(sorted(m for m in ('prometheus_client', 'opentelemetry', "
            "'flowchain.observe.web', 'flowchain.observe.metrics') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out == "[]"


def test_status_codes_are_the_engines_own():
    from flowchain import _engine
    from flowchain.observe import _reader

    names = _engine.STATUS_NAMES
    assert (names[_reader.STATUS_RUNNING], names[_reader.STATUS_SUCCEEDED],
            names[_reader.STATUS_FAILED]) == ("running", "succeeded", "failed")
