"""A component module and chain files for the recording and replay tests, written to a
temporary directory that the CLI imports from (``--import replay_test_components``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from flowchain.cli import app

COMPONENTS = '''
import flowchain

FAIL_ON_NEGATIVE = True
"""Flipped by a test to make a recorded failure stop happening (state outside the input)."""


@flowchain.component("replay_test.Total")
def total(values):
    if not isinstance(values, list):
        raise TypeError(f"expected a list of numbers, got {type(values).__name__}")
    return sum(values)


@flowchain.component("replay_test.Strict")
def strict(n):
    if n < 0 and FAIL_ON_NEGATIVE:
        raise ValueError(f"negative total {n}")
    return n * 2


@flowchain.component("replay_test.Lenient")
def lenient(n):
    return abs(n) * 2


@flowchain.component("replay_test.Label")
def label(n):
    return {"total": n}


@flowchain.component("replay_test.AsyncHalf")
async def async_half(n):
    if n == 0:
        raise ZeroDivisionError("nothing to halve")
    return n / 2
'''

V1 = '''
Totals:
  steps:
    - {name: total, component: replay_test.Total, input: values, output: n, expected_duration: 1}
    - {name: check, component: replay_test.Strict, input: n, output: n2, expected_duration: 1}
    - {name: label, component: replay_test.Label, input: n2, output: out, expected_duration: 1}
'''

ASYNC = '''
Halves:
  steps:
    - {name: total, component: replay_test.Total, input: values, output: n, expected_duration: 1}
    - {name: half, component: replay_test.AsyncHalf, input: n, output: h, expected_duration: 1}
'''

V2 = V1.replace("replay_test.Strict", "replay_test.Lenient")
"""The same chain with the failing step fixed: a new content hash, a new version."""

LINES = [[1, 2, 3], [1, -5], [4], "oops", [-1, -1], [2, 2]]
"""Inputs of the Totals chain: lines 2 and 5 fail at ``check``, line 4 at ``total``."""

cli = CliRunner()


def write_workdir(tmp_path: Path, monkeypatch: Any) -> Path:
    """Write the components, both chain versions and the inputs; make it the cwd."""
    (tmp_path / "replay_test_components.py").write_text(COMPONENTS)
    (tmp_path / "v1.yaml").write_text(V1)
    (tmp_path / "v2.yaml").write_text(V2)
    (tmp_path / "async.yaml").write_text(ASYNC)
    (tmp_path / "inputs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in LINES))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def invoke(*args: str) -> Any:
    return cli.invoke(app, list(args), catch_exceptions=False)


def record(db: Path, *extra: str, chains: str = "v1.yaml") -> dict:
    """``flowchain run CHAINS Totals --inputs inputs.jsonl --db DB --json``; the summary."""
    result = invoke("run", chains, "Totals", "--import", "replay_test_components",
                    "--inputs", "inputs.jsonl", "--db", str(db), "--json", *extra)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)
