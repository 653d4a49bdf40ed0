"""The code follows the rule sets pyproject.toml's [tool.ruff] selects (E, W, F, B, I, UP at the
project's line length and Python version), as `make lint` checks them."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
CHECKED = ("flowchain", "tests", "benchmarks", "examples", "scripts")


def test_ruff_passes_with_the_configured_rules():
    # no --select: the rules, line length and target version come from pyproject.toml
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache",
                           "--output-format", "concise", *CHECKED],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
