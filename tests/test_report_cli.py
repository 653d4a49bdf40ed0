"""``flowchain report`` as a user meets it: no data in the range, no --out, a bad --out."""
import re

from recorded_history import history
from typer.testing import CliRunner

from flowchain.cli import report  # noqa: F401  (registers the command)
from flowchain.cli.app import app

STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC"


def test_no_history_in_range_says_so_with_ordered_spans_and_writes_nothing(tmp_path,
                                                                            monkeypatch):
    db = history(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["report", "--db", str(db), "--since",
                                      "2200-01-01T00:00:00", "--out", "r.html"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    match = re.search(rf"no history in .*h\.db since {STAMP} \(now {STAMP}\); it holds "
                      rf"{STAMP} to {STAMP}\. Nothing written\.", text)
    assert match, text
    since, now, first, last = match.groups()
    assert since == "2200-01-01 00:00:00" and first <= last <= now
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.db"]


def test_without_out_the_html_goes_to_stdout_not_a_file(tmp_path, monkeypatch):
    db = history(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["report", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!DOCTYPE html>") and "decision" in result.stdout
    assert "written to stdout" in result.stderr
    assert not (tmp_path / "report.html").exists()


def test_out_into_a_missing_directory_is_a_clear_error(tmp_path):
    db = history(tmp_path)
    result = CliRunner().invoke(app, ["report", "--db", str(db), "--out",
                                      str(tmp_path / "nope" / "r.html")])
    assert result.exit_code == 2
    assert "cannot write" in result.output and "directory exists" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
