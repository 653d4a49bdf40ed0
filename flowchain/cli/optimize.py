"""``flowchain optimize FILE CHAIN --db PATH``: find a chain's bottlenecks in its recorded
history, suggest what to change, write the optimized version (``--apply --out``) and measure it
against the original (``--verify``)."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from flowchain.cli.app import app

out = Console()
err = Console(stderr=True)


def _refuse(message: str) -> None:
    """Print the reason and exit 2 (nothing written)."""
    err.print(f"[red]refused:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2)


def _record_hint(file: Path, name: str, imports: list[str], db: Path) -> str:
    mods = "".join(f" --import {m}" for m in imports) or " --import MODULE"
    return (f"flowchain run {file} {name}{mods} --inputs INPUTS.jsonl --db {db} --profile "
            "--record-inputs 1")


SHORT_OF_CPU = 0.8
"""A parallel step's workers that delivered less than this fraction of the cores' worth the
optimizer measured when it sized them were short of CPU in the check (the machine was busier)."""


def _assumed_capacity(result: Any, step: str) -> float | None:
    """The cores' worth of CPU the optimizer sized ``step``'s workers for, when it is parallel."""
    for o in result.optimizations:
        if o.step == step and o.kind == "parallel":
            value = o.details.get("cpu_capacity")
            return float(value) if value is not None else None
    return None


def _workers_line(step: str, check: dict[str, Any]) -> str:
    """What a parallel step's workers had during --verify (see docs/optimizer.md)."""
    line = f"step {escape(step)}: its {check['workers']} workers "
    delivered = check["effective_cores"]
    if delivered is None:
        delivered = check["cores_worth"]
        line += f"had {delivered:.2f} cores' worth of CPU"
    else:
        line += (f"ran its items at {check['speed']:.2f}x the original step's speed: "
                 f"{delivered:.2f} cores' worth at once")
    line += f" (on a CPU {check['cpu_share']:.0%} of their time)"
    assumed = check.get("assumed_cores_worth")
    if assumed and delivered < SHORT_OF_CPU * assumed:
        line += (f"; [yellow]the prediction was sized for {assumed:.2f}[/]: the machine gave "
                 "the workers less during the check (other processes on the cores, or cores "
                 "slower together than alone), so the speedup says more about the machine than "
                 "about the step; verify again when it is quieter")
    return line


def _verify_inputs(definition: Any, db: Path, inputs: Path | None,
                   limit: int) -> list[Any]:
    from flowchain.cli.run_inputs import chain_inputs, read_input_lines
    from flowchain.optimizer.recorded_inputs import InputNotDecodable, load_inputs

    contract = definition.steps[0].input
    if inputs is not None:
        try:
            good, bad = read_input_lines(inputs, contract)
        except OSError as exc:
            _refuse(f"cannot read {inputs}: {exc.strerror or exc}")
        if bad:
            _refuse(f"{inputs}:{bad[0]} (and {len(bad) - 1} more bad line(s))" if len(bad) > 1
                    else f"{inputs}:{bad[0]}")
        values = [item for _, data in good for item in chain_inputs(contract, data)]
    else:
        try:
            values = [r.value for r in load_inputs(db, definition.chain_id, status="sampled")]
        except (InputNotDecodable, sqlite3.Error, FileNotFoundError) as exc:
            _refuse(f"cannot read the recorded inputs of {definition.chain_id}: {exc}")
    if not values:
        _refuse(f"no recorded input of {definition.chain_id} in {db} to verify with: record "
                "them (the node's [history] record_inputs, or flowchain run ... --record-inputs 1) "
                "or give --inputs FILE.jsonl")
    return values[-limit:] if limit > 0 else values


def _print_result(result: Any) -> None:
    from flowchain.observe.diagram import format_ns
    from flowchain.optimizer.optimizer import describe

    out.print(f"{escape(result.chain_id)}: {result.executions} executions recorded, "
              f"{result.profiled_executions} profiled at every step")
    if not result.bottlenecks:
        out.print("no bottleneck: nothing to optimize")
        return
    for b in result.bottlenecks:
        ev = b.evidence
        figures = (f"{ev['share_of_chain_p50']:.0%} of the chain's p50, "
                   f"{ev['share_of_chain_p99']:.0%} of its p99")
        if ev.get("ratio_to_expected") is not None:
            figures += f", {ev['ratio_to_expected']:.2f}x its expected duration"
        if b.type == "io_bound":
            figures += f", CPU/wall {ev['cpu_per_wall']:.2f}"
        if b.type == "memory_intensive":
            figures += (f", {ev['alloc_per_call_bytes'] / 2**20:.1f} MiB allocated per call, "
                        f"{ev['input_repeat_ratio']:.0%} of inputs repeated")
        out.print(f"[bold]{escape(b.step)}[/]: {b.type} ({escape(figures)})")
    for o in result.optimizations:
        d = o.details
        if o.kind == "parallel":
            why = (f"per item {format_ns(d['per_item_ns'] or 0)}, dispatch "
                   f"{format_ns(d['dispatch_fixed_ns'])} + {d['dispatch_per_item_ns']} ns/item, "
                   f"{d['cores']} cores")
        elif o.kind == "cache":
            why = (f"hit ratio {d['hit_ratio']:.0%} of an achievable "
                   f"{d['achievable_hit_ratio']:.0%}, about {d['memory_bytes'] / 2**20:.1f} MiB")
        else:
            why = (f"Little's law: {d['arrival_items_per_s']:,.0f} items/s x "
                   f"{format_ns(d['wait_per_item_ns'])} wait = {d['littles_law_in_flight']:.1f}"
                   f" in flight, limit {d['limit']}")
        out.print(f"  suggest on {escape(o.step)}: [green]{escape(describe(o))}[/] "
                  f"({escape(why)})")
    for o in result.blocked:
        out.print(f"  no {o.kind} on {escape(o.step)}: {escape(o.reason or '')}")
    imp = result.estimated_improvement
    if imp is not None and result.optimizations:
        out.print(f"estimated: p50 {format_ns(imp.p50_before_ns)} -> "
                  f"{format_ns(imp.p50_after_ns)} ({imp.p50_speedup:.2f}x), p99 "
                  f"{format_ns(imp.p99_before_ns)} -> {format_ns(imp.p99_after_ns)} "
                  f"({imp.p99_speedup:.2f}x)")


@app.command("optimize")
def optimize(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A YAML file of chains."),
    name: str = typer.Argument(..., help="The chain to optimize (its version in FILE)."),
    db: Path = typer.Option(..., "--db", help="The history database it was recorded into."),
    imports: list[str] = typer.Option([], "--import", "-i",
                                      help="Import this module first (registers components)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    apply: bool = typer.Option(False, "--apply",
                               help="Write the optimized chain (a new version) to --out."),
    out_file: Path | None = typer.Option(None, "--out", help="Where --apply writes."),
    verify: bool = typer.Option(False, "--verify",
                                help="Run recorded inputs through the original and the "
                                     "optimized version side by side; compare."),
    inputs: Path | None = typer.Option(None, "--inputs", exists=True, dir_okay=False,
                                          help="Verify with these inputs (JSONL) instead of "
                                               "the recorded ones."),
    verify_limit: int = typer.Option(200, "--verify-limit",
                                     help="Verify with at most this many (the newest) inputs."),
    max_concurrency: int = typer.Option(64, "--max-concurrency", min=1,
                                        help="The most items in flight an async suggestion "
                                             "may ask for."),
) -> None:
    """Find chain NAME's bottlenecks in the history at --db and suggest, for each, parallel
    workers, an LRU cache size or an async concurrency, with the estimated p50/p99 gain.
    Exit 2 (nothing written): unknown chain, no recorded history, --apply refused (a
    component lacks the trait the suggestion needs). Exit 1: --verify found different
    outputs."""
    from flowchain.chain import dump_chains
    from flowchain.cli.loading import load_registry
    from flowchain.errors import ChainValidationError
    from flowchain.optimizer.apply import ApplyRefused, apply_optimizations, not_applied
    from flowchain.optimizer.optimizer import ChainOptimizer, NoHistory
    from flowchain.optimizer.suggestions import estimate_at_capacity
    from flowchain.optimizer.verify import verify_side_by_side
    from flowchain.store import StoreError

    if apply and out_file is None:
        _refuse("--apply writes the optimized chain to a new file: give --out NEW.yaml")
    if out_file is not None and not apply:
        _refuse("--out is where --apply writes; add --apply")
    registry, definitions = load_registry(file, imports)
    definition = next((d for d in definitions if d.name == name), None)
    if definition is None:
        names = ", ".join(d.name for d in definitions) or "none"
        _refuse(f"{file} has no chain {name!r}; its chains: {names}")
    assert definition is not None
    hint = _record_hint(file, name, imports, db)
    if not db.is_file():
        _refuse(f"no data: {db} does not exist; run it first with `{hint}`")
    optimizer = ChainOptimizer(db, registry, concurrency_limit=max_concurrency)
    try:
        result = optimizer.analyze(definition)
    except NoHistory as exc:
        _refuse(f"no data: {exc}; run it first with `{hint}`")
    except (sqlite3.Error, StoreError) as exc:
        _refuse(f"cannot read {db}: {exc}")
    payload: dict[str, Any] = result.to_dict()
    new_definition = None
    if apply or verify:
        try:
            new_definition = apply_optimizations(definition, result)
            registry.register_chain(new_definition)
        except ApplyRefused as exc:
            _refuse(f"cannot apply to {definition.chain_id}: {exc}")
        except ChainValidationError as exc:
            _refuse(f"the optimized chain is not valid: {exc}")
    assert new_definition is not None or not (apply or verify)
    if apply:
        assert out_file is not None and new_definition is not None
        chains = [new_definition if d.name == name else d for d in definitions]
        try:
            out_file.write_text(dump_chains(chains), encoding="utf-8")
        except OSError as exc:
            _refuse(f"cannot write {out_file}: {exc.strerror or exc}")
        payload["applied"] = {"out": str(out_file), "chain_id": new_definition.chain_id,
                              "not_applied": not_applied(result)}
    verified = None
    if verify:
        assert new_definition is not None
        values = _verify_inputs(definition, db, inputs, verify_limit)
        try:
            verified = verify_side_by_side(registry, definition, new_definition, values)
        finally:
            close = getattr(registry, "close", None)
            if close is not None:
                close()
        payload["verify"] = verified.to_dict(result.estimated_improvement)
        delivered: dict[str, float] = {}
        for step, check in payload["verify"]["workers"].items():
            check["assumed_cores_worth"] = _assumed_capacity(result, step)
            if check["effective_cores"] is not None:
                delivered[step] = check["effective_cores"]
        at_delivered = estimate_at_capacity(result.measurements, result.optimizations,
                                            delivered) if delivered and \
            result.measurements is not None else None
        if at_delivered is not None:
            payload["verify"]["predicted_at_delivered"] = {
                "p50": {"speedup": round(at_delivered.p50_speedup, 3)},
                "p99": {"speedup": round(at_delivered.p99_speedup, 3)},
                "cores_worth": delivered}
    if as_json:
        typer.echo(json.dumps(payload))
    else:
        _print_result(result)
        if "applied" in payload:
            out.print(f"wrote {escape(str(out_file))}: {escape(name)} as "
                      f"{escape(payload['applied']['chain_id'])}")
            for line in payload["applied"]["not_applied"]:
                err.print(f"[yellow]not applied:[/] {escape(line)}", highlight=False)
        if verified is not None:
            v = payload["verify"]
            m = v["measured"]
            line = (f"verified on {v['executions']} inputs, side by side: p50 "
                    f"{m['p50']['speedup']:.2f}x faster, p99 {m['p99']['speedup']:.2f}x")
            if "predicted" in v:
                line += (f" (predicted p50 {v['predicted']['p50']['speedup']:.2f}x, p99 "
                         f"{v['predicted']['p99']['speedup']:.2f}x)")
            out.print(line)
            for step, check in v["workers"].items():
                out.print(_workers_line(step, check))
            if "predicted_at_delivered" in v:
                out.print(f"at the CPU the workers had, the model predicts p50 "
                          f"{v['predicted_at_delivered']['p50']['speedup']:.2f}x, p99 "
                          f"{v['predicted_at_delivered']['p99']['speedup']:.2f}x")
            out.print("outputs identical" if verified.identical else
                      f"[red]outputs differ[/] on input(s) {v['mismatched_inputs'][:10]}; "
                      f"{'; '.join(v['failures'][:3])}")
    if verified is not None and not verified.identical:
        raise typer.Exit(1)
