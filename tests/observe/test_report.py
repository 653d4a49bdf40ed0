"""The offline HTML report: HdrHistogram-style distributions, trends, slowest steps, CLI."""
import re
import xml.etree.ElementTree as ET

import pytest
from recorded_history import history
from typer.testing import CliRunner

from flowchain import ChainBuilder, ChainRegistry, ChainStepError, ComponentRegistry
from flowchain.histograms import LatencyHistogram
from flowchain.observe.history import HistoryReader, HistoryWriter
from flowchain.observe.report import build_report, percentile_curve


def test_percentile_curve_uses_log_inverse_tail_axis():
    hist = LatencyHistogram.from_values(range(1, 10_001))
    xs, ys = percentile_curve(hist)
    assert xs[0] == 0 and xs[10] == 1.0 and xs[-1] == pytest.approx(4.0)
    assert ys[10] == hist.percentile(90.0) and ys[20] == hist.percentile(99.0)
    assert ys == sorted(ys)
    assert percentile_curve(LatencyHistogram()) == ([], [])


def test_report_is_self_contained_html_with_charts_and_slowest_steps(tmp_path):
    with HistoryReader(history(tmp_path)) as reader:
        page = build_report(reader)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in page
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == 4
    for svg in svgs:
        ET.fromstring(svg)                              # each chart is valid XML
    dist = ET.fromstring(svgs[0])
    series = [p.get("data-series") for p in dist.iter("{http://www.w3.org/2000/svg}path")]
    assert series == ["fast_step", "slow_step", "whole chain", "slow_step (failed)",
                      "whole chain (failed)"]
    assert ">99%<" in svgs[0]                              # 285 samples: two nines and a half
    slowest = re.search(r'<table id="slowest">.*?</table>', page, flags=re.S).group(0)
    rows = re.findall(r"<tr><td>decision</td><td>(\w+)</td>", slowest)
    assert rows == ["slow_step", "fast_step"]
    assert "5.00%" in page                               # slow_step's error rate


def test_cli_writes_report_and_reports_bad_input(tmp_path):
    from flowchain.cli import report  # noqa: F401  (registers the command)
    from flowchain.cli.app import app

    db = history(tmp_path)
    out = tmp_path / "r.html"
    runner = CliRunner()
    result = runner.invoke(app, ["report", "--db", str(db), "--since", "1h", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "decision" in out.read_text()
    out.unlink()
    old = runner.invoke(app, ["report", "--db", str(db), "--since", "2200-01-01T00:00:00",
                              "--out", str(out)])
    assert old.exit_code == 1 and "no history in" in old.output and "Nothing written" in old.output
    assert not out.exists()
    bad = runner.invoke(app, ["report", "--db", str(db), "--since", "soon", "--out", str(out)])
    assert bad.exit_code == 2 and "neither a duration" in bad.output
    missing = runner.invoke(app, ["report", "--db", str(tmp_path / "x.db"), "--out", str(out)])
    assert missing.exit_code == 2


def test_a_chain_that_only_fails_shows_its_failure_latency_not_zero(tmp_path):
    components = ComponentRegistry()

    def refuse(x):
        sum(range(500))
        raise ValueError(f"refused {x}")

    components.register("Refuse", refuse)
    reg = ChainRegistry(components)
    cid = reg.register_chain(ChainBuilder("broken").step("refuse", "Refuse", "a", "b", 1)
                             .build())
    writer = HistoryWriter(reg, tmp_path / "h.db", sample_rate=0)
    for _batch in range(2):
        for x in range(50):
            with pytest.raises(ChainStepError):
                reg.runner(cid).run(x)
        writer.flush()
    writer.close()
    with HistoryReader(tmp_path / "h.db") as reader:
        (step, chain) = reader.steps("broken")
        assert step.count == 0 and step.errors == 100 and step.failure_histogram.count == 100
        assert reader.histogram("broken", outcome="failure").count == 100
        assert reader.histogram("broken").count == 0
        trend = reader.trend("broken", bucket_s=3600)
        assert trend[0]["failure_p50_ns"] > 0 and trend[0]["count"] == 0
        page = build_report(reader)
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    dist, over_time = ET.fromstring(svgs[0]), ET.fromstring(svgs[1])
    ns = "{http://www.w3.org/2000/svg}path"
    assert [p.get("data-series") for p in dist.iter(ns)] == ["refuse (failed)",
                                                             "whole chain (failed)"]
    # no flat 1 ns success line: the empty success series draws nothing
    assert [p.get("data-series") for p in over_time.iter(ns)] == ["failed p50", "failed p99"]
    table = re.search(r"<table><thead>.*?</table>", page, flags=re.S).group(0)
    assert "0 ns" not in table and "<td>-</td>" in table
    assert "failed p99" in table


def test_report_lists_warnings_escalations_and_recoveries_with_their_spans(tmp_path):
    from flowchain.observe.alerts import ESCALATION, RECOVERY, SLOW_STEP, AlertEvent

    db = history(tmp_path)
    writer = HistoryWriter(ChainRegistry(ComponentRegistry()), db)
    t0 = 1_700_000_000_000_000_000
    events = [
        AlertEvent(SLOW_STEP, "decision", "c1", "slow_step", "took <b>2 ms</b>", t0 + 5 * 10**9,
                   {"first_ns": t0 + 10**9, "tenant": "default"}),
        AlertEvent(ESCALATION, "decision", "c1", "slow_step", "failed 9 of 10", t0,
                   {"since_ns": t0, "repeat": 0, "tenant": "default"}),
        AlertEvent(ESCALATION, "decision", "c1", "slow_step", "failed 30 of 30; escalated for "
                   "60 s", t0 + 60 * 10**9, {"since_ns": t0, "repeat": 1, "tenant": "default"}),
        AlertEvent(RECOVERY, "decision", "c1", "slow_step", "recovered", t0 + 90 * 10**9,
                   {"since_ns": t0, "duration_s": 90.0, "tenant": "default"}),
        AlertEvent(ESCALATION, "decision", "c1", "fast_step", "failed 5 of 5", t0 + 95 * 10**9,
                   {"since_ns": t0 + 95 * 10**9, "repeat": 0, "tenant": "default"}),
    ]
    for event in events:
        writer.emit(event)
    writer.close()
    with HistoryReader(db) as reader:
        page = build_report(reader)
    table = re.search(r'<table id="alerts">.*?</table>', page, flags=re.S).group(0)
    rows = re.findall(r'<tr class="(\w+)">(.*?)</tr>', table, flags=re.S)
    cells = [(kind, re.findall(r"<td>(.*?)</td>", row)) for kind, row in rows]
    assert [k for k, _ in cells] == ["escalation", "slow_step", "recovery", "escalation"]
    escalation = cells[0][1]
    assert escalation[3] == "2023-11-14 22:13:20.000" and escalation[4] == \
        "2023-11-14 22:14:50.000"
    assert escalation[5] == "1.5 min" and escalation[6] == "2"     # first alert + one repeat
    assert "escalated for 60 s" in escalation[7]
    assert cells[1][1][5] == "4.0 s" and "&lt;b&gt;" in cells[1][1][7]   # escaped
    still = cells[3][1]     # open, and its run (this writer) stored no interval to bound it
    assert (still[4], still[5]) == ("still escalated", "-")
    empty = tmp_path / "empty.db"
    HistoryWriter(ChainRegistry(ComponentRegistry()), empty).close()
    with HistoryReader(empty) as reader:
        assert "No warning, escalation or recovery" in build_report(reader)
