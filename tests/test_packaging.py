"""Clean first-hour output: an SPDX license (no setuptools deprecation banner), pytest-asyncio's
loop scope set, the latency-gate plugin registered, and ``make bench`` running every benchmark."""
import shutil
import subprocess
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_license_is_an_spdx_expression_setuptools_accepts():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    setuptools = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert setuptools == ["setuptools>=77"]  # the first setuptools reading SPDX strings


def test_pytest_asyncio_loop_scope_is_set():
    options = PYPROJECT["tool"]["pytest"]["ini_options"]
    assert options["asyncio_default_fixture_loop_scope"] == "function"


def test_the_latency_gate_plugin_is_an_installed_pytest11_entry_point():
    assert PYPROJECT["project"]["entry-points"]["pytest11"] == {
        "flowchain": "flowchain.pytest_plugin"}
    found = [e for e in entry_points(group="pytest11") if e.name == "flowchain"]
    assert found and found[0].load().chain_latency is not None


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_bench_runs_all_four_benchmarks():
    proc = subprocess.run(["make", "-n", "bench"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "for b in overhead wire node observe" in proc.stdout
    assert "flowchain bench $b || status=1" in proc.stdout and "exit $status" in proc.stdout
