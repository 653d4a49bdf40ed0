"""The tenancy section of ``flowchain report``: the analytics as tables and charts.

Empty when the database holds no per-user history (a node without tenants).
"""
from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from flowchain.observe.diagram import format_ns


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(element_id: str, headers: tuple[str, ...], rows: list[tuple]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f'<table id="{element_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def tenancy_section(db: str | Path, *, since_ns: int | None = None) -> str:
    """Return the tenancy section's HTML, or "" when there is no per-user history."""
    from flowchain.observe.report import line_chart
    from flowchain.tenancy.analytics import analyze

    result = analyze(db, since_ns=since_ns)
    if not result.get("tenants"):
        return ""
    parts = ['<section class="tenancy"><h2>Tenants</h2>',
             f'<p class="note">{result["tenants"]} tenant(s); latencies are the admitted wall '
             "time of successful executions, merged exactly from per-user histograms.</p>",
             "<h3>Usage by tier</h3>",
             _table("usage-by-tier", ("tier", "tenants", "executions", "errors"),
                    [(u["tier"], u["tenants"], f"{u['executions']:,}", f"{u['errors']:,}")
                     for u in result["usage_by_tier"]]),
             "<h3>Most-used chains</h3>",
             _table("most-used", ("tenant", "user", "chain", "executions"),
                    [(u["tenant"], u["user"], u["chain"], f"{u['executions']:,}")
                     for u in result["most_used"]["by_user"]])]
    for trend in result["trends"]:
        xs = [p["start_ns"] / 1e9 for p in trend["points"]]
        ticks = [(x, time.strftime("%m-%d %H:%M", time.gmtime(x))) for x in xs[:: max(
            1, len(xs) // 6)]]
        parts.append(line_chart(
            [("p50", xs, [p["p50_ns"] for p in trend["points"]]),
             ("p99", xs, [p["p99_ns"] for p in trend["points"]])],
            title=f"{trend['chain']}: p50 and p99 per {trend['bucket']} ({trend['direction']}, "
                  f"{trend['p50_change']:+.1%})", x_ticks=ticks, y_log=True))
    if result["regressions"]:
        parts.append("<h3>Regressions by chain version</h3>")
        parts.append(_table("regressions", ("chain", "version", "p50", "previous version",
                                            "previous p50", "ratio"),
                            [(r["chain"], r["chain_id"], format_ns(r["p50_ns"]),
                              r["previous_chain_id"], format_ns(r["previous_p50_ns"]),
                              f"{r['ratio']}x") for r in result["regressions"]]))
    errors = result["errors"]
    if errors.get("by_chain_tier") or errors.get("by_step_tier"):
        parts.append("<h3>Error patterns</h3>")
        parts.append(_table("errors-by-chain-tier", ("chain", "tier", "executions", "errors",
                                                     "error rate"),
                            [(e["chain"], e["tier"], f"{e['executions']:,}", e["errors"],
                              f"{100 * e['error_rate']:.2f}%")
                             for e in errors.get("by_chain_tier", [])[:20]]))
        parts.append(_table("errors-by-step-tier", ("chain", "step", "tier", "failures"),
                            [(e["chain"], e["step"], e["tier"], e["failures"])
                             for e in errors.get("by_step_tier", [])[:20]]))
        if errors.get("failing_inputs"):
            parts.append(_table("failing-inputs", ("chain", "step", "input", "failures",
                                                   "share"),
                                [(e["chain"], e["step"], e["input"], e["failures"],
                                  f"{100 * e['share']:.0f}%")
                                 for e in errors["failing_inputs"]]))
    resources = result.get("resources", {})
    if resources.get("by_chain") or resources.get("by_step"):
        parts.append("<h3>Resource use per call (sampled executions)</h3>")
        parts.append('<p class="note">Thread CPU time and memory allocated (bytes the '
                     "step's thread requested) per call, measured on the sampled "
                     "executions only; the chain rows are whole executions.</p>")
        for element_id, rows in (("resources-by-chain", resources["by_chain"]),
                                 ("resources-by-step", resources["by_step"])):
            parts.append(_table(element_id, ("chain", "step", "tier", "samples",
                                             "CPU ms mean", "CPU ms p50", "CPU ms p99",
                                             "alloc KiB mean", "alloc KiB p99"),
                                [(r["chain"], r["step"] or "(whole chain)", r["tier"],
                                  f"{r['samples']:,}", f"{r['cpu_ms']['mean']:.4f}",
                                  f"{r['cpu_ms']['p50']:.4f}", f"{r['cpu_ms']['p99']:.4f}",
                                  f"{r['alloc_kib']['mean']:.1f}",
                                  f"{r['alloc_kib']['p99']:.1f}") for r in rows[:20]]))
    parts.append("</section>")
    return "\n".join(parts)
