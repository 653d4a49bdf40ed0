"""``flowchain run FILE NAME --input JSON``: execute one chain and show what happened.

``--inputs FILE.jsonl --db PATH`` executes every line instead and records history into PATH
(latency intervals, failed and sampled executions, recorded inputs), then prints a summary
whose figures are what was stored (see :mod:`flowchain.optimizer.input_recording`).
"""
import asyncio
import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flowchain.cli.app import app
from flowchain.cli.loading import find_chain, load_registry
from flowchain.cli.run_inputs import InputError, chain_inputs, output_json
from flowchain.context import UserContext
from flowchain.errors import ChainStepError
from flowchain.execution import ChainExecution

out = Console()
err = Console(stderr=True)


def _print_execution(record: ChainExecution) -> None:
    table = Table(title=escape(f"{record.chain_name} {record.execution_id}"))
    for col in ("step", "component", "status", "duration", "expected", ""):
        table.add_column(col)
    for s in record.steps:
        color = {"succeeded": "green", "failed": "red"}.get(s.status.value, "yellow")
        table.add_row(escape(s.name), escape(s.component), f"[{color}]{s.status.value}[/]",
                      f"{s.duration_ns / 1e3:,.1f} us", f"{s.expected_ns / 1e3:,.1f} us",
                      "[yellow]slow[/]" if s.slow else "")
    out.print(table)
    if record.total_duration is not None:
        out.print(f"total {record.total_duration / 1e3:,.1f} us, status {record.status.value}")


@app.command("run")
def run(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A YAML file of chains."),
    name: str = typer.Argument(..., help="The chain to run."),
    input_json: str = typer.Option(
        "null", "--input",
        help="The first step's input, as JSON. The trading node's chains (RawTickBatch, "
             "DecisionContext) take {\"symbol\": ..., \"ticks\": [{\"time_msc\": ..., "
             "\"bid\": ..., \"ask\": ...}, ...]}."),
    imports: list[str] = typer.Option([], "--import", "-i",
                                      help="Import this module first (registers components)."),
    tenant: str | None = typer.Option(None, help="Tenant id of the user context."),
    as_json: bool = typer.Option(False, "--json",
                                 help="Print the record and the output as one JSON object."),
    inputs: Path | None = typer.Option(
        None, "--inputs", exists=True, dir_okay=False,
        help="A JSONL file: run the chain on every line (each line as --input) and record "
             "history into --db."),
    db: Path | None = typer.Option(None, "--db", dir_okay=False,
                                      help="The history database --inputs records into."),
    skip_bad_lines: bool = typer.Option(
        False, "--skip-bad-lines",
        help="Run the good lines of --inputs and report the bad ones (default: refuse the "
             "file, running nothing, when any line is bad)."),
    record_inputs: float = typer.Option(
        0.0, "--record-inputs", min=0.0, max=1.0,
        help="Fraction of successful executions whose input (and record) is stored for replay "
             "and optimize --verify; failed executions' inputs are always stored."),
    profile: bool = typer.Option(False, "--profile",
                                 help="Profile every execution of --inputs (step wall and CPU "
                                      "time, allocation, input hash) into --db."),
    profile_rate: float | None = typer.Option(
        None, "--profile-rate", min=0.0, max=1.0,
        help="Profile this fraction of the executions of --inputs instead."),
) -> None:
    """Execute chain NAME of FILE on --input; print each step's timing and the chain's output,
    or the failing step with its exception, input and traceback (exit code 1). Exit code 2:
    --input is not valid JSON or does not fit the chain's first contract.

    With --inputs FILE.jsonl --db PATH: run every line, record history into PATH and print a
    summary; exit code 0 when every execution succeeded, 1 when some failed (all recorded), 2
    when a line is bad (nothing run unless --skip-bad-lines) or the options do not fit."""
    if inputs is not None:
        from flowchain.cli.run_batch import run_input_file

        if profile and profile_rate is not None:
            err.print("[red]error:[/] give --profile (every execution) or --profile-rate R, "
                      "not both")
            raise typer.Exit(2)
        run_input_file(file, name, inputs, db=db, imports=imports, tenant=tenant,
                       as_json=as_json, skip_bad_lines=skip_bad_lines,
                       record_rate=record_inputs, single_input=input_json,
                       profile_rate=1.0 if profile else (profile_rate or 0.0))
        return
    for flag, given in (("--db", db is not None), ("--skip-bad-lines", skip_bad_lines),
                        ("--record-inputs", record_inputs > 0), ("--profile", profile),
                        ("--profile-rate", profile_rate is not None)):
        if given:
            err.print(f"[red]error:[/] {flag} goes with --inputs FILE.jsonl")
            raise typer.Exit(2)
    try:
        data = json.loads(input_json)
    except json.JSONDecodeError as exc:
        err.print(f"[red]error:[/] --input is not valid JSON: {exc.msg} at line {exc.lineno} "
                  f"column {exc.colno}")
        raise typer.Exit(2) from exc
    except RecursionError:
        err.print("[red]error:[/] --input is nested too deeply to read; flatten the JSON")
        raise typer.Exit(2) from None
    registry, definitions = load_registry(file, imports)
    definition = find_chain(definitions, name, file)
    context = UserContext(tenant_id=tenant) if tenant else None
    runner = registry.runner(definition.chain_id)
    runs = 0
    output: Any = None
    record: ChainExecution | None = None
    loop = asyncio.new_event_loop() if runner.has_async else None
    try:
        for item in chain_inputs(definition.steps[0].input, data):
            seq = runner.executions
            runs += 1
            try:
                if loop is None:
                    output = runner.run(item, context)
                else:
                    output = loop.run_until_complete(runner.run_async(item, context))
            except ChainStepError as exc:
                record, output = exc.execution, None
                break
            record = registry.execution(definition.chain_id, seq)
    except InputError as exc:
        err.print(f"[red]error:[/] --input for {definition.name!r} (its first step takes "
                  f"{definition.steps[0].input!r}): {escape(str(exc))}")
        raise typer.Exit(2) from exc
    finally:
        if loop is not None:
            loop.close()
    assert record is not None
    shown = output_json(output) if record.is_successful() else None
    if as_json:
        payload = record.to_dict()
        payload["output"] = shown
        payload["runs"] = runs
        typer.echo(json.dumps(payload, default=repr))
    else:
        _print_execution(record)
        if runs > 1:
            out.print(f"ran {runs} times (once per tick); the last run is shown")
        if record.failure is not None:
            f = record.failure
            out.print(f"[red]failed at step {escape(repr(f.step))} ({escape(f.component)}):[/] "
                      f"{escape(f'{f.exception_type}: {f.message}')}")
            out.print(f"input: {f.input_repr}", markup=False, highlight=False)
            out.print(f.traceback, markup=False, highlight=False)
        else:
            out.print("output:")
            out.print(json.dumps(shown, indent=2, default=repr), markup=False, highlight=False)
    if not record.is_successful():
        raise typer.Exit(1)
