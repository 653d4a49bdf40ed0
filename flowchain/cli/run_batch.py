"""``flowchain run FILE CHAIN --inputs FILE.jsonl --db PATH``: record a chain's history without
the node, then print what was stored."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from flowchain.cli.loading import find_chain, load_registry
from flowchain.cli.run_inputs import chain_inputs, read_input_lines

out = Console()
err = Console(stderr=True)

FAILED_IDS_SHOWN = 10
"""Failed executions listed by id in the text summary (all of them in ``--json``)."""


def _refuse(message: str) -> None:
    err.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def run_input_file(file: Path, name: str, inputs: Path, *, db: Path | None,
                   imports: list[str], tenant: str | None, as_json: bool,
                   skip_bad_lines: bool, record_rate: float, single_input: str,
                   profile_rate: float = 0.0) -> None:
    """Run every line of ``inputs`` through chain ``name`` of ``file``, recording into ``db``.

    Raises
    ------
    typer.Exit
        1 when some execution failed, 2 on a bad line (unless ``skip_bad_lines``), a missing
        ``--db`` or a database that cannot be written.
    """
    from flowchain.context import UserContext
    from flowchain.observe.history import HistoryWriter
    from flowchain.optimizer.input_recording import RecordingRun
    from flowchain.store import StoreError

    if single_input != "null":
        _refuse("give either --input JSON or --inputs FILE.jsonl, not both")
    if db is None:
        _refuse("--inputs records history: give the database with --db PATH (created if "
                "missing)")
    assert db is not None
    registry, definitions = load_registry(file, imports)
    definition = find_chain(definitions, name, file)
    contract = definition.steps[0].input
    try:
        good, bad = read_input_lines(inputs, contract)
    except OSError as exc:
        _refuse(f"cannot read {str(inputs)!r}: {exc.strerror or exc}")
    for problem in bad[:20]:
        err.print(f"{'skipped' if skip_bad_lines else 'error'}: {inputs}:{problem}",
                  markup=False, highlight=False)
    if len(bad) > 20:
        err.print(f"... and {len(bad) - 20} more bad lines", highlight=False)
    if bad and not skip_bad_lines:
        _refuse(f"{len(bad)} bad line(s) in {inputs}; nothing was run. Fix them, or pass "
                "--skip-bad-lines to run the others")
    if not good:
        _refuse(f"{inputs} has no input to run (every line is blank or bad)")
    context = UserContext(tenant_id=tenant) if tenant else None
    if profile_rate > 0:
        registry.set_profiling(profile_rate)
        if registry.runner(definition.chain_id).has_async:
            err.print("warning: coroutine chains are not profiled; latency history and inputs "
                      "are still recorded", markup=False, highlight=False)
    try:
        writer = HistoryWriter(registry, db, interval_s=3600.0, sample_rate=record_rate,
                               record_failed_inputs=False)
    except (StoreError, sqlite3.Error, OSError) as exc:
        _refuse(f"cannot record into {str(db)!r}: {exc}")
    recording = RecordingRun(registry, definition, writer, record_rate=record_rate,
                             context=context)
    try:
        for _, data in good:
            for item in chain_inputs(contract, data):
                recording.run(item)
    finally:
        try:
            totals = recording.finish()
        except (sqlite3.Error, StoreError) as exc:
            _refuse(f"storing history into {str(db)!r} failed: {exc}")
    runner = recording.runner
    whole = registry.histogram(definition.chain_id)
    summary: dict[str, Any] = {
        "chain": definition.name, "chain_id": definition.chain_id, "db": str(db),
        "run_id": writer.run_id, "lines": len(good), "skipped_lines": [b.line for b in bad],
        "executions": totals.executions, "succeeded": totals.succeeded,
        "failed": totals.failed,
        "failures": [{"step": step, "exception_type": kind, "count": n}
                     for (step, kind), n in sorted(totals.failures.items())],
        "p50_ns": whole.percentile(50.0) if whole.count else None,
        "p99_ns": whole.percentile(99.0) if whole.count else None,
        "recorded_inputs": {"failed": totals.recorded_failed,
                            "sampled": totals.recorded_sampled,
                            "unserializable": totals.unserializable},
        "unserializable_reasons": dict(totals.unserializable_reasons),
        "failed_executions": totals.failed_ids,
        "profile_rate": profile_rate, "profiles": totals.profiles,
        "history": dict(writer.counters),
    }
    assert runner.executions == totals.executions
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        _print_summary(summary)
    if totals.failed:
        raise typer.Exit(1)


def _print_summary(s: dict[str, Any]) -> None:
    lines = f"{s['lines']} lines" + (f" ({len(s['skipped_lines'])} bad lines skipped)"
                                     if s["skipped_lines"] else "")
    out.print(f"{escape(s['chain_id'])}: {lines}, {s['executions']} executions: "
              f"{s['succeeded']} succeeded, {s['failed']} failed")
    if s["p50_ns"] is not None:
        out.print(f"latency of successful executions: p50 {s['p50_ns'] / 1e3:,.1f} us, "
                  f"p99 {s['p99_ns'] / 1e3:,.1f} us")
    for f in s["failures"]:
        out.print(f"  failed at {escape(f['step'])!s}: {escape(f['exception_type'])} x{f['count']}")
    rec = s["recorded_inputs"]
    out.print(f"recorded into {escape(s['db'])} (run {s['run_id']}): inputs of {rec['failed']} "
              f"failed and {rec['sampled']} sampled executions"
              + (f", {rec['unserializable']} of them unserializable (reason stored)"
                 if rec["unserializable"] else ""))
    if s["profile_rate"]:
        out.print(f"step profiles: {s['profiles']} rows (profile rate {s['profile_rate']:g})")
    for reason, n in s["unserializable_reasons"].items():
        out.print(f"  not recordable x{n}: {reason}", markup=False, highlight=False)
    failed = s["failed_executions"]
    if failed:
        shown = failed[:FAILED_IDS_SHOWN]
        out.print("replay a failure: flowchain replay EXECUTION_ID --db "
                  f"{escape(s['db'])} [--import MODULE]; failed executions:")
        for execution in shown:
            out.print(f"  {execution}", markup=False, highlight=False)
        if len(failed) > len(shown):
            out.print(f"  ... and {len(failed) - len(shown)} more (--json lists them all)")
