"""The public API type-checks (mypy, configured in pyproject.toml) and the engine's stubs
(flowchain/_engine.pyi) match the compiled module (mypy's stubtest)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

pytest.importorskip("mypy", reason="mypy comes with the test extra: pip install -e '.[test]'")


def run(args, cache):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MYPY_CACHE_DIR": str(cache)})
    return proc.returncode, proc.stdout + proc.stderr


def test_the_public_api_type_checks(tmp_path):
    # no file arguments: pyproject's [tool.mypy] files are the public modules
    code, out = run(["mypy"], tmp_path / "mypy-cache")
    assert code == 0, out
    assert "no issues found" in out


def test_the_engine_stubs_match_the_compiled_module(tmp_path):
    # run from tmp_path: stubtest leaves a .mypy_cache in its working directory
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "flowchain._engine",
         "--mypy-config-file", str(ROOT / "pyproject.toml"),
         "--allowlist", str(ROOT / "native" / "stubtest-allowlist.txt")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MYPYPATH": str(ROOT), "MYPY_CACHE_DIR": str(tmp_path / "mypy-cache")})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_stubtest_reports_a_stub_that_disagrees(tmp_path):
    """The check can fail: a copy of the stubs with a wrong signature and a missing function,
    found first on MYPYPATH, is reported against the same compiled module."""
    stubs = tmp_path / "stubs" / "flowchain"
    stubs.mkdir(parents=True)
    stub = (ROOT / "flowchain" / "_engine.pyi").read_text()
    snapshot = "    def snapshot(self) -> RunnerSnapshot: ...\n"
    assert snapshot in stub and "def now_ns() -> int: ...\n" in stub
    broken = stub.replace(snapshot, "    def snapshot(self, everything: bool) -> RunnerSnapshot: ...\n")
    (stubs / "_engine.pyi").write_text(broken.replace("def now_ns() -> int: ...\n", ""))
    (stubs / "__init__.pyi").write_text("")
    proc = subprocess.run([sys.executable, "-m", "mypy.stubtest", "flowchain._engine"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MYPYPATH": str(tmp_path / "stubs"),
                               "MYPY_CACHE_DIR": str(tmp_path / "mypy-cache")})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "flowchain._engine.now_ns is not present in stub" in out
    assert 'ChainRunner.snapshot is inconsistent' in out
