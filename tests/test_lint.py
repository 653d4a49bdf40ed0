"""The code has no undefined names, unused imports or syntax errors (pyflakes rules via ruff)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_pyflakes_rules_pass():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "F,E9",
                           "--output-format", "concise", "flowchain", "tests", "benchmarks"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
