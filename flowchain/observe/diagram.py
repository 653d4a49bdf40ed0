"""Chain diagrams: Mermaid, Graphviz dot, and SVG drawn here (no graphviz needed).

A node per step shows its name, component and expected duration; each edge is labelled with
the data type (contract) that flows along it, from the chain's input to its output. When live
data (a registry) or stored data (a history database) is given, each step is colored by its
status and annotated with its p50/p99 and error count.

Statuses: ``ok`` (p99 within the expected duration), ``slow`` (p99 above it), ``erroring``
(errors seen), ``failing`` (error rate above 5%), ``idle`` (no data).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from flowchain.chain import ChainDefinition

FORMATS = ("svg", "mermaid", "dot")
FAILING_RATE = 0.05
"""Error rate above which a step is drawn as failing."""

STATUS_COLORS = {
    "ok": "#2e7d32",
    "slow": "#f9a825",
    "erroring": "#ef6c00",
    "failing": "#c62828",
    "idle": "#9e9e9e",
}


@dataclass(frozen=True, slots=True)
class StepFigures:
    """What was measured of one step: successes, errors, p50 and p99 (ns)."""

    count: int
    errors: int
    p50_ns: int
    p99_ns: int


@dataclass(frozen=True, slots=True)
class StepView:
    """One step as drawn."""

    name: str
    component: str
    input: str
    output: str
    expected_ns: int
    status: str
    figures: StepFigures | None


def format_ns(ns: float) -> str:
    """Return a duration in ns as a short human figure: ``850 ns``, ``12.3 us``, ``1.20 ms``."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.3g} us"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.3g} ms"
    return f"{ns / 1e9:.3g} s"


def status_of(expected_ns: int, figures: StepFigures | None) -> str:
    """Return a step's display status from its figures (see the module docstring)."""
    if figures is None or (figures.count == 0 and figures.errors == 0):
        return "idle"
    attempts = figures.count + figures.errors
    if figures.errors and figures.errors / attempts > FAILING_RATE:
        return "failing"
    if figures.errors:
        return "erroring"
    if figures.p99_ns > expected_ns:
        return "slow"
    return "ok"


def figures_from_registry(registry: Any, definition: ChainDefinition) -> dict[str, StepFigures]:
    """Return live figures per step from a registry (empty when the chain has not run)."""
    from flowchain.observe._reader import built_runners

    runner = next((r for d, r in built_runners(registry) if d.chain_id == definition.chain_id),
                  None)
    if runner is None:
        return {}
    errors = runner.step_errors
    out = {}
    for i, step in enumerate(definition.steps):
        hist = registry.histogram(definition.chain_id, step.name)
        ps = hist.percentiles((50.0, 99.0))
        out[step.name] = StepFigures(hist.count, int(errors[i]), ps[50.0], ps[99.0])
    return out


def figures_from_history(reader: Any, chain: str, **range_args: Any) -> dict[str, StepFigures]:
    """Return stored figures per step from a :class:`~flowchain.observe.history.HistoryReader`."""
    out = {}
    for s in reader.steps(chain, **range_args):
        if s.step:
            ps = s.histogram.percentiles((50.0, 99.0))
            out[s.step] = StepFigures(s.count, s.errors, ps[50.0], ps[99.0])
    return out


def step_views(definition: ChainDefinition,
               figures: Mapping[str, StepFigures] | None = None) -> list[StepView]:
    """Return the steps as drawn: contracts, expected durations, statuses and figures."""
    figures = figures or {}
    views = []
    for s in definition.steps:
        f = figures.get(s.name)
        views.append(StepView(s.name, s.component, s.input, s.output, s.expected_duration_ns,
                              status_of(s.expected_duration_ns, f) if figures else "idle", f))
    return views


def _node_lines(v: StepView) -> list[str]:
    lines = [v.name, v.component, f"expected {format_ns(v.expected_ns)}"]
    if v.figures is not None:
        lines.append(f"p50 {format_ns(v.figures.p50_ns)} / p99 {format_ns(v.figures.p99_ns)}")
        lines.append(f"{v.figures.count} ok, {v.figures.errors} errors ({v.status})")
    return lines


def to_mermaid(definition: ChainDefinition, views: Sequence[StepView]) -> str:
    """Return a Mermaid flowchart (left to right) of the chain."""
    def text(s: str) -> str:
        return s.replace('"', "#quot;")

    out = ["flowchart LR", f'    %% chain {text(definition.name)} ({definition.chain_id})',
           f'    chain_in(("{text(views[0].input)}"))']
    for i, v in enumerate(views):
        label = "<br/>".join(text(line) for line in _node_lines(v))
        out.append(f'    s{i}["{label}"]')
    out.append(f'    chain_out(("{text(views[-1].output)}"))')
    out.append(f'    chain_in -- "{text(views[0].input)}" --> s0')
    for i in range(1, len(views)):
        out.append(f'    s{i - 1} -- "{text(views[i - 1].output)}" --> s{i}')
    out.append(f'    s{len(views) - 1} -- "{text(views[-1].output)}" --> chain_out')
    for status, color in STATUS_COLORS.items():
        out.append(f"    classDef {status} fill:{color},color:#ffffff,stroke:#333333")
    for i, v in enumerate(views):
        out.append(f"    class s{i} {v.status}")
    return "\n".join(out) + "\n"


def to_dot(definition: ChainDefinition, views: Sequence[StepView]) -> str:
    """Return a Graphviz dot digraph (left to right) of the chain."""
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    out = [f"digraph {q(definition.name)} {{", "    rankdir=LR;",
           '    node [shape=box, style="rounded,filled", fontcolor=white, fontname=Helvetica];',
           f'    chain_in [shape=ellipse, style=solid, fontcolor=black, label={q(views[0].input)}];',
           f'    chain_out [shape=ellipse, style=solid, fontcolor=black, '
           f'label={q(views[-1].output)}];']
    for i, v in enumerate(views):
        label = "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"')
                           for line in _node_lines(v))
        out.append(f'    s{i} [label="{label}", fillcolor="{STATUS_COLORS[v.status]}"];')
    out.append(f"    chain_in -> s0 [label={q(views[0].input)}];")
    for i in range(1, len(views)):
        out.append(f"    s{i - 1} -> s{i} [label={q(views[i - 1].output)}];")
    out.append(f"    s{len(views) - 1} -> chain_out [label={q(views[-1].output)}];")
    out.append("}")
    return "\n".join(out) + "\n"


BOX_W, BOX_H, MIN_GAP, PAD, END_R = 210, 96, 90, 20, 34
LABEL_CHAR_W = 6.2
"""Approximate width of one 10 px character: edges grow to fit their longest label."""


def to_svg(definition: ChainDefinition, views: Sequence[StepView]) -> str:
    """Return a standalone SVG document of the chain, steps left to right.

    Each step is a ``<g class="step" data-step=... data-status=...>`` so a page can restyle it
    live; text lines carry ``data-field`` (``p50``, ``p99``, ``counts``) for updates.
    """
    n = len(views)
    labels = [views[0].input] + [v.output for v in views]
    gap = max(MIN_GAP, int(LABEL_CHAR_W * max(len(label) for label in labels)) + 20)
    # room for the end labels written under the circles
    left_room = max(END_R, int(LABEL_CHAR_W * len(labels[0]) / 2) + 2)
    right_room = max(END_R, int(LABEL_CHAR_W * len(labels[-1]) / 2) + 2)
    width = 2 * PAD + left_room + right_room + 2 * (END_R + gap) + n * BOX_W + (n - 1) * gap
    height = 2 * PAD + BOX_H + 30 + 24
    cy = PAD + 30 + BOX_H / 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chain-diagram" '
        f'data-chain={quoteattr(definition.name)} width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#555"/></marker></defs>',
        f'<text x="{PAD}" y="{PAD + 8}" font-size="14" font-weight="bold">'
        f'{escape(definition.name)}</text>',
    ]
    x = PAD + left_room
    parts.append(_end(x, cy, views[0].input))
    prev_right = x + END_R
    for i, v in enumerate(views):
        left = prev_right + gap
        label = views[0].input if i == 0 else views[i - 1].output
        parts.append(_edge(prev_right, left, cy, label))
        color = STATUS_COLORS[v.status]
        parts.append(f'<g class="step" data-step={quoteattr(v.name)} '
                     f'data-status="{v.status}" id={quoteattr("step-" + v.name)}>')
        parts.append(f'<rect x="{left}" y="{cy - BOX_H / 2}" width="{BOX_W}" height="{BOX_H}" '
                     f'rx="8" fill="{color}" stroke="#333"/>')
        fields = ["name", "component", "expected", "latency", "counts"]
        for j, line in enumerate(_node_lines(v) + [""] * (5 - len(_node_lines(v)))):
            size = 13 if j == 0 else 11
            weight = ' font-weight="bold"' if j == 0 else ""
            parts.append(f'<text x="{left + BOX_W / 2}" y="{cy - BOX_H / 2 + 18 + j * 17}" '
                         f'font-size="{size}"{weight} fill="#ffffff" text-anchor="middle" '
                         f'data-field="{fields[j]}">{escape(line)}</text>')
        parts.append("</g>")
        prev_right = left + BOX_W
    out_x = prev_right + gap + END_R
    parts.append(_edge(prev_right, out_x - END_R, cy, views[-1].output))
    parts.append(_end(out_x, cy, views[-1].output))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _end(x: float, y: float, label: str) -> str:
    """The chain's input or output: a circle, its data type written under it."""
    return (f'<circle cx="{x}" cy="{y}" r="{END_R}" fill="#eeeeee" stroke="#555"/>'
            f'<text x="{x}" y="{y + END_R + 14}" font-size="10" text-anchor="middle">'
            f'{escape(label)}</text>')


def _edge(x1: float, x2: float, y: float, label: str) -> str:
    return (f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="#555" stroke-width="1.5" '
            f'marker-end="url(#arrow)"/><text x="{(x1 + x2) / 2}" y="{y - 8}" font-size="10" '
            f'text-anchor="middle" fill="#333" class="edge-label">{escape(label)}</text>')


def render(definition: ChainDefinition, fmt: str = "svg",
           figures: Mapping[str, StepFigures] | None = None) -> str:
    """Return the chain drawn in ``fmt`` (``svg``, ``mermaid`` or ``dot``).

    Raises
    ------
    ValueError
        When ``fmt`` is not one of :data:`FORMATS`.
    """
    views = step_views(definition, figures)
    if fmt == "svg":
        return to_svg(definition, views)
    if fmt == "mermaid":
        return to_mermaid(definition, views)
    if fmt == "dot":
        return to_dot(definition, views)
    raise ValueError(f"unknown diagram format {fmt!r}; choose one of {', '.join(FORMATS)}")
