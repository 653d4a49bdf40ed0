"""An offline HTML report of a history database: distributions, trends, slowest steps.

Per chain: the latency percentile distribution of the whole chain and of each step (failed
executions as their own lines) plotted
the HdrHistogram way (latency against a log ``1/(1-percentile)`` axis, so the tail gets as
much room as the median), throughput and error rate over time, and a table of every step's
percentiles; then the slowest steps of all chains by p99, and every slow-step warning,
escalation and recovery the monitor raised, each with its time span (an escalation from its
start to its recovery). Charts are inline SVG drawn here; the file opens in a browser with no
network.
"""
from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence
from typing import Any

from flowchain.observe.diagram import format_ns
from flowchain.observe.history import HistoryReader, StepHistory

PALETTE = ("#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#8d6e63",
           "#ad1457", "#558b2f", "#37474f")
MAX_NINES = 5
"""The percentile axis runs to 99.999% (or as far as the sample count supports)."""


def percentile_curve(hist: Any, steps_per_nine: int = 10) -> tuple[list[float], list[int]]:
    """Return ``x = log10(1/(1-p))`` and the latency (ns) at each p, up to the data's tail.

    The axis stops at ``log10(count)`` nines (beyond it a percentile is just the maximum).
    """
    if hist.count == 0:
        return [], []
    nines = min(MAX_NINES, max(1.0, math.log10(hist.count)))
    xs = [i / steps_per_nine for i in range(int(nines * steps_per_nine) + 1)]
    ps = [100.0 * (1 - 10 ** -x) for x in xs]
    values = hist.percentiles(ps)
    return xs, [max(1, values[p]) for p in ps]


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def line_chart(series: Sequence[tuple[str, Sequence[float], Sequence[float]]], *,
               title: str, x_ticks: Sequence[tuple[float, str]],
               y_log: bool = False, y_format=format_ns, width: int = 720,
               height: int = 300) -> str:
    """Return an inline SVG line chart of ``(name, xs, ys)`` series with a legend."""
    left, right, top, bottom = 70, 170, 28, 36
    pts = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys, strict=False)]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" font-size="11" '
             f'font-family="Helvetica, Arial, sans-serif">',
             f'<text x="{left}" y="16" font-size="13" font-weight="bold">{_esc(title)}</text>']
    if not pts:
        parts.append(f'<text x="{left}" y="{height / 2}">no data in this range</text></svg>')
        return "\n".join(parts)
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    if x1 == x0:
        x1 = x0 + 1
    ys = [p[1] for p in pts]
    if y_log:
        y0 = math.floor(math.log10(max(min(ys), 1)))
        y1 = math.ceil(math.log10(max(max(ys), 1)))
        y1 = y1 if y1 > y0 else y0 + 1
        fy = lambda v: (math.log10(max(v, 1)) - y0) / (y1 - y0)  # noqa: E731
        y_ticks = [(10 ** k, y_format(10 ** k)) for k in range(y0, y1 + 1)]
    else:
        y0, y1 = 0.0, max(ys) * 1.1 or 1.0
        fy = lambda v: (v - y0) / (y1 - y0)  # noqa: E731
        y_ticks = [(y1 * k / 4, y_format(y1 * k / 4)) for k in range(5)]
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - fy(y) * ph

    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" '
                 'stroke="#999"/>')
    for value, label in y_ticks:
        y = sy(value)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#eee"/><text x="{left - 4}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{_esc(label)}</text>')
    for value, label in x_ticks:
        if x0 <= value <= x1:
            x = sx(value)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" '
                         f'stroke="#eee"/><text x="{x:.1f}" y="{top + ph + 14}" '
                         f'text-anchor="middle">{_esc(label)}</text>')
    for i, (name, xs, vals) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        if xs:
            path = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}"
                            for j, (x, y) in enumerate(zip(xs, vals, strict=False)))
            parts.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="1.6" '
                         f'class="series" data-series="{_esc(name)}"/>')
        ly = top + 12 + 15 * i
        parts.append(f'<line x1="{left + pw + 10}" x2="{left + pw + 26}" y1="{ly - 4}" '
                     f'y2="{ly - 4}" stroke="{color}" stroke-width="3"/>'
                     f'<text x="{left + pw + 30}" y="{ly}">{_esc(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _nines_ticks() -> list[tuple[float, str]]:
    labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
    return [(float(k), labels[k]) for k in range(MAX_NINES + 1)]


def _time_ticks(start_ns: int, end_ns: int) -> list[tuple[float, str]]:
    span = max(end_ns - start_ns, 1)
    fmt = "%H:%M:%S" if span < 86_400e9 else "%m-%d %H:%M"
    return [((start_ns + span * k / 4) / 1e9,
             time.strftime(fmt, time.gmtime((start_ns + span * k / 4) / 1e9)))
            for k in range(5)]


def _bucket_seconds(start_ns: int | None, end_ns: int | None) -> float:
    if start_ns is None or end_ns is None:
        return 60.0
    span = (end_ns - start_ns) / 1e9
    for candidate in (10, 30, 60, 300, 600, 1800, 3600, 6 * 3600, 86400):
        if span / candidate <= 60:
            return float(candidate)
    return 86400.0


def _latency(hist: Any, value: int) -> str:
    """A latency figure, or "-" when the histogram is empty (never a made-up 0 ns)."""
    return format_ns(value) if hist.count else "-"


def _points(xs: Sequence[float], ys: Sequence[int],
            counts: Sequence[int]) -> tuple[list[float], list[int]]:
    """The (x, y) points of a trend whose bucket has data: an empty bucket is a gap."""
    kept = [(x, y) for x, y, c in zip(xs, ys, counts, strict=False) if c]
    return [x for x, _ in kept], [y for _, y in kept]


def _step_table(rows: Sequence[StepHistory]) -> str:
    head = ("step", "count", "errors", "error rate", "expected", "p50", "p90", "p99", "p99.9",
            "max", "failed p50", "failed p99")
    out = ["<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for s in rows:
        h, fh = s.histogram, s.failure_histogram
        ps = h.percentiles((50.0, 90.0, 99.0, 99.9))
        fps = fh.percentiles((50.0, 99.0))
        out.append("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in (
            s.step or "(whole chain)", s.count, s.errors, f"{100 * s.error_rate:.2f}%",
            format_ns(s.expected_ns) if s.expected_ns else "-", _latency(h, ps[50.0]),
            _latency(h, ps[90.0]), _latency(h, ps[99.0]), _latency(h, ps[99.9]),
            _latency(h, h.max), _latency(fh, fps[50.0]), _latency(fh, fps[99.0]))) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _clock(ns: int) -> str:
    seconds = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns / 1e9))
    return f"{seconds}.{ns // 1_000_000 % 1000:03d}"


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _alert_table(alerts: Sequence[dict[str, Any]]) -> str:
    """The monitor's warnings, escalations and recoveries with their spans, oldest first."""
    if not alerts:
        return '<p id="alerts">No warning, escalation or recovery in this range.</p>'
    head = ("kind", "chain", "step", "from (UTC)", "to (UTC)", "lasted", "alerts", "message")
    out = ['<table id="alerts"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
           + "</tr></thead><tbody>"]
    for a in alerts:
        start, end = a["start_ns"], a["end_ns"]
        if end is not None:
            until, lasted = _clock(end), _span((end - start) / 1e9)
        elif a.get("run_last_ns"):
            until = f"still escalated when its run ended ({_clock(a['run_last_ns'])})"
            lasted = "at least " + _span(max(0, a["run_last_ns"] - start) / 1e9)
        else:
            until, lasted = "still escalated", "-"
        out.append(f'<tr class="{_esc(a["kind"])}">' + "".join(f"<td>{_esc(v)}</td>" for v in (
            a["kind"], a["chain"], a["step"], _clock(start), until, lasted, a["alerts"],
            a["message"])) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; } h3 { font-size: 1em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
.note { color: #666; font-size: 0.85em; }
#alerts td:last-child { text-align: left; }
#alerts tr.escalation td { color: #c62828; } #alerts tr.recovery td { color: #2e7d32; }
"""


def build_report(reader: HistoryReader, *, since_ns: int | None = None,
                 until_ns: int | None = None, title: str = "FlowChain latency report",
                 slowest: int = 10) -> str:
    """Return the report as one self-contained HTML document."""
    first, last = reader.time_range()
    start = since_ns if since_ns is not None else first
    end = until_ns if until_ns is not None else last
    bucket_s = _bucket_seconds(start, end)
    sections = []
    all_steps: list[tuple[str, StepHistory]] = []
    for chain in reader.chains():
        rows = reader.steps(chain, since_ns=since_ns, until_ns=until_ns)
        if not rows:
            continue
        all_steps.extend((chain, s) for s in rows if s.step)
        curves = []
        for s in rows:
            xs, ys = percentile_curve(s.histogram)
            curves.append((s.step or "whole chain", xs, ys))
        for s in rows:  # failed executions: their own lines, never mixed with the successes
            if s.failure_histogram.count:
                xs, ys = percentile_curve(s.failure_histogram)
                curves.append((f"{s.step or 'whole chain'} (failed)", xs, ys))
        dist = line_chart(curves, title=f"{chain}: latency by percentile",
                          x_ticks=_nines_ticks(), y_log=True)
        trend = reader.trend(chain, bucket_s=bucket_s, since_ns=since_ns, until_ns=until_ns)
        times = [t["start_ns"] / 1e9 for t in trend]
        ticks = _time_ticks(int(times[0] * 1e9), int(times[-1] * 1e9)) if trend else []
        throughput = line_chart([("executions / s", times,
                                  [t["throughput_per_s"] for t in trend])],
                                title=f"{chain}: throughput ({bucket_s:g} s buckets)",
                                x_ticks=ticks, y_format=lambda v: f"{v:.3g}")
        errors = line_chart([("error rate %", times, [100 * t["error_rate"] for t in trend])],
                            title=f"{chain}: error rate", x_ticks=ticks,
                            y_format=lambda v: f"{v:.2g}%")
        ok_counts = [t["count"] for t in trend]
        failed_counts = [t["errors"] if t["failure_p99_ns"] else 0 for t in trend]
        over_time = [("p50", *_points(times, [t["p50_ns"] for t in trend], ok_counts)),
                     ("p99", *_points(times, [t["p99_ns"] for t in trend], ok_counts))]
        if any(failed_counts):
            over_time += [
                ("failed p50", *_points(times, [t["failure_p50_ns"] for t in trend],
                                        failed_counts)),
                ("failed p99", *_points(times, [t["failure_p99_ns"] for t in trend],
                                        failed_counts))]
        p99 = line_chart(over_time, title=f"{chain}: p50 and p99 over time", x_ticks=ticks,
                         y_log=True)
        sections.append(f'<section class="chain" data-chain="{_esc(chain)}"><h2>{_esc(chain)}'
                        f'</h2><div class="charts">{dist}{p99}{throughput}{errors}</div>'
                        f"{_step_table(rows)}</section>")
    ranked = sorted(all_steps, key=lambda cs: cs[1].histogram.percentile(99), reverse=True)
    slow_rows = ["<table id=\"slowest\"><thead><tr><th>chain</th><th>step</th><th>p99</th>"
                 "<th>expected</th><th>p99 / expected</th><th>count</th><th>errors</th></tr>"
                 "</thead><tbody>"]
    for chain, s in ranked[:slowest]:
        p99v = s.histogram.percentile(99)
        ratio = f"{p99v / s.expected_ns:.2f}x" if s.expected_ns else "-"
        slow_rows.append(f"<tr><td>{_esc(chain)}</td><td>{_esc(s.step)}</td>"
                         f"<td>{format_ns(p99v)}</td><td>{format_ns(s.expected_ns or 0)}</td>"
                         f"<td>{ratio}</td><td>{s.count}</td><td>{s.errors}</td></tr>")
    slow_rows.append("</tbody></table>")
    span = "" if start is None else (
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(start / 1e9))} to "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(end / 1e9))} UTC")
    body = "\n".join(sections) if sections else "<p>No history in this range.</p>"
    alerts = _alert_table(reader.alerts(since_ns=since_ns, until_ns=until_ns))
    from flowchain.tenancy.report_section import tenancy_section  # empty without tenants

    body += tenancy_section(reader.path, since_ns=since_ns)
    from flowchain.optimizer.report_section import optimizer_section  # empty without profiles

    body += optimizer_section(reader.path)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{_esc(title)}</h1><p class=\"note\">{_esc(str(reader.path))}: {span}. "
            "Percentile axes are log 1/(1-percentile): each step right is one more nine. "
            "Latencies of successful executions and of failed ones (lines marked failed: until "
            "the step raised) are drawn apart, never mixed; errors are counted apart.</p>"
            f"<h2>Slowest steps (by p99)</h2>{''.join(slow_rows)}"
            f"<h2>Warnings, escalations and recoveries</h2>{alerts}{body}</body></html>\n")
