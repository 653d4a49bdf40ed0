"""The compiled engine is what runs: no pure-Python fallback, a real clock, loud failures."""
import subprocess
import sys
import time
from pathlib import Path

import flowchain
from flowchain._native import engine


def test_the_engine_is_the_compiled_extension():
    # fails (never skips) when flowchain._engine is not a compiled extension module
    suffix = Path(engine.__file__).suffix
    assert suffix in (".so", ".pyd"), f"flowchain._engine is not compiled: {engine.__file__}"
    assert type(engine.ChainRunner.run).__name__ in ("method_descriptor", "cython_function_or_method")
    assert flowchain.ChainRunner is engine.ChainRunner


def test_importing_without_the_engine_says_how_to_build(tmp_path):
    # a copy of the package without the compiled module must refuse to import
    import shutil
    src = Path(flowchain.__file__).parent
    dst = tmp_path / "flowchain"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    # -S: no site-packages, so the editable install's finder cannot supply the real engine
    proc = subprocess.run([sys.executable, "-S", "-c", "import flowchain"], cwd=tmp_path,
                          capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path),
                                                               "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0
    assert "native engine (flowchain._engine) is not built" in proc.stderr
    assert "pip install -e ." in proc.stderr


def test_clock_is_monotonic_and_calibrated():
    info = flowchain.clock_info()
    assert info["source"] in ("counter", "os")
    a = engine.now_ns()
    t0 = time.monotonic_ns()
    time.sleep(0.05)
    b = engine.now_ns()
    elapsed = time.monotonic_ns() - t0
    assert b > a
    assert abs((b - a) - elapsed) < 0.02 * elapsed + 2_000_000
    # the engine clock tracks the OS monotonic clock it was calibrated against
    assert abs(engine.now_ns() - engine.os_now_ns()) < 50_000_000


def test_os_clock_can_be_forced():
    out = subprocess.run([sys.executable, "-c",
                          "import flowchain; print(flowchain.clock_info()['source'])"],
                         capture_output=True, text=True, env={**__import__("os").environ,
                                                              "FLOWCHAIN_CLOCK": "os"})
    assert out.stdout.strip() == "os"


def test_setup_py_fails_loudly_without_cython(tmp_path):
    root = Path(flowchain.__file__).parent.parent
    blocker = tmp_path / "Cython"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('no Cython here')\n")
    (blocker / "Build.py").write_text("raise ImportError('no Cython here')\n")
    proc = subprocess.run([sys.executable, str(root / "setup.py"), "--version"], cwd=root,
                          capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode != 0
    assert "flowchain needs Cython>=3.0" in proc.stderr + proc.stdout
