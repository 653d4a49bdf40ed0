"""The optimizer's section of ``flowchain report``: per profiled chain, each bottleneck with its
evidence and its suggested remedy (see :mod:`flowchain.optimizer.findings`)."""
from __future__ import annotations

import html
from pathlib import Path

from flowchain.observe.diagram import format_ns
from flowchain.optimizer.findings import chain_findings
from flowchain.optimizer.optimizer import describe


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def optimizer_section(db_path: str | Path) -> str:
    """Return the section's HTML ("" when no chain of the database was profiled)."""
    results = chain_findings(db_path)
    if not results:
        return ""
    head = ("chain", "step", "bottleneck", "evidence", "suggestion", "estimated p50",
            "estimated p99")
    rows = []
    for r in results:
        by_step = {o.step: o for o in (*r.optimizations, *r.blocked)}
        imp = r.estimated_improvement
        if not r.bottlenecks:
            rows.append((r.chain, "-", "none", f"{r.profiled_executions} profiled executions",
                         "-", "-", "-"))
        for b in r.bottlenecks:
            ev = b.evidence
            evidence = (f"{ev['share_of_chain_p50']:.0%} of p50, p50 {format_ns(ev['p50_ns'])}"
                        f", CPU/wall {ev['cpu_per_wall']}, "
                        f"{ev['alloc_per_call_bytes'] / 2**20:.1f} MiB/call, "
                        f"{ev['input_repeat_ratio']:.0%} inputs repeated")
            opt = by_step.get(b.step)
            if opt is None:
                suggestion = "-"
            elif opt.applicable:
                suggestion = describe(opt)
                if r.assumed_traits:
                    trait = "deterministic" if opt.kind == "cache" else "element-wise"
                    suggestion += f" (if the component is declared {trait})"
            else:
                suggestion = opt.reason or "-"
            gain50 = gain99 = "-"
            if imp is not None and opt is not None and opt.applicable:
                gain50, gain99 = f"{imp.p50_speedup:.2f}x", f"{imp.p99_speedup:.2f}x"
            rows.append((r.chain, b.step, b.type, evidence, suggestion, gain50, gain99))
    out = ['<h2>Optimizer</h2><p class="note">From the step profiles of sampled executions: '
           "the bottleneck of each chain, its evidence and the remedy; "
           "<code>flowchain optimize</code> sizes parallelism and applies and verifies "
           'a remedy.</p><table id="optimizer"><thead><tr>'
           + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)
