"""The README's embedding example runs as printed."""
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_embedding_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "the README has no python example"
    proc = subprocess.run([sys.executable, "-c", blocks[0]], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("LatencySummary(count=1, ")
    assert lines[1] == "normalize KeyError {'bid': 1.0}"


def test_readme_names_the_two_commands_and_ci_runs_one():
    text = README.read_text(encoding="utf-8")
    assert "make node" in text and "make test" in text
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci
