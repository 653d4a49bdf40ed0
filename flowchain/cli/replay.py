"""``flowchain replay EXECUTION_ID --db PATH``: run a recorded execution's input again and show
whether the same failure happens (or, with ``--current``, whether the current version fixes it)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from flowchain.cli.app import app

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _refuse(message: str) -> None:
    err.print("error: " + message, markup=False)
    raise typer.Exit(2)


@app.command("replay")
def replay(
    execution: str = typer.Argument(
        ..., help="<chain_id>#<seq>@<run_id> as flowchain run prints it (or <chain_id>#<seq> "
                  "when only one run recorded it)."),
    db: Path = typer.Option(..., "--db", help="The history database the input was recorded in."),
    imports: list[str] = typer.Option([], "--import", "-i",
                                      help="Import this module first (registers components)."),
    chains: Path | None = typer.Option(
        None, "--chains", exists=True, dir_okay=False,
        help="A chains YAML file: its version of the chain is used when it is the recorded one "
             "(else the copy history keeps), and it is the current version for --current."),
    current: bool = typer.Option(False, "--current",
                                 help="Run the chains file's (current) version instead."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Re-run a recorded execution with its recorded input on the chain version it ran on
    (content hash), and compare with what was recorded.

    Exit codes: 0 as asked (the recorded outcome reproduced; with --current: the current
    version succeeds), 1 not as asked (another outcome; with --current: it still fails),
    2 bad input (unknown or ambiguous id, no database or no recorded inputs in it, an input
    recorded as unserializable, the version it ran on not available, a component not found).
    """
    from flowchain.chain import load_chains_file
    from flowchain.cli.loading import import_components
    from flowchain.errors import ChainValidationError
    from flowchain.optimizer.replay import (
        DIFFERS,
        REPRODUCED,
        ReplayError,
        find_recorded,
        recorded_definition,
        run_once,
        steps_from,
        version_to_run,
    )
    from flowchain.registry import ChainRegistry

    import_components(imports)  # before decoding: the input's classes live in these modules
    try:
        recorded, was = find_recorded(db, execution)
        file_chains = None
        if chains is not None:
            try:
                file_chains = load_chains_file(chains)
            except ChainValidationError as exc:
                _refuse(f"{chains} is not a valid chains file:\n{exc}")
        label = str(chains) if chains is not None else "no chains file"
        definition, source = version_to_run(recorded, db, file_chains, label, current=current)
        recorded_version = definition if definition.chain_id == recorded.chain_id else \
            next((d for d in file_chains or () if d.chain_id == recorded.chain_id), None) or \
            recorded_definition(db, recorded.chain_id)
        part = steps_from(definition, recorded, recorded_version)
    except ReplayError as exc:
        _refuse(str(exc))
    registry = ChainRegistry()
    try:
        now = run_once(registry, part, recorded.value, recorded.tenant)
    except ChainValidationError as exc:
        hint = "" if not any(p.message.startswith("unknown component") for p in exc.problems) \
            else "\nimport the module that registers it: --import MODULE"
        _refuse(f"version {definition.chain_id} (from {source}) cannot be built here:\n{exc}"
                f"{hint}")
    if current:
        as_asked = now.succeeded
        verdict = "fixed: the current version succeeds" if as_asked else \
            ("still fails the same way" if was is not None and now.same_as(was)
             else "still fails, differently")
    else:
        as_asked = was is not None and now.same_as(was)
        if was is None:
            verdict = "no recorded outcome to compare with (the execution record is missing)"
        elif as_asked:
            verdict = "reproduced" + ("" if now.succeeded else ": the same failure")
        else:
            verdict = "not reproduced: the outcome differs (state, time or randomness?)"
    code = REPRODUCED if as_asked else DIFFERS
    entry = "the chain's input" if recorded.step_index == 0 else \
        f"the input of step {part.steps[0].name!r}"
    if as_json:
        payload: dict[str, Any] = {
            "execution": recorded.replay_id, "status": recorded.status,
            "chain_id": recorded.chain_id, "ran_on": definition.chain_id, "source": source,
            "current": current, "step_index": recorded.step_index,
            "recorded": was.to_dict() if was is not None else None,
            "replayed": now.to_dict(), "verdict": verdict, "exit_code": code}
        typer.echo(json.dumps(payload))
    else:
        from flowchain.execution import describe_input

        out.print(f"execution {recorded.replay_id} ({recorded.status})", markup=False)
        out.print(f"recorded on {recorded.chain_id}; replayed on {definition.chain_id} "
                  f"(from {source}), from {entry}", markup=False)
        out.print(f"input: {describe_input(recorded.value)}", markup=False)
        out.print(f"recorded: {was.describe() if was is not None else 'unknown'}", markup=False)
        out.print(f"replayed: {now.describe()}", markup=False)
        if not now.succeeded and now.traceback:
            out.print(now.traceback.rstrip(), markup=False)
        out.print(("[green]" if as_asked else "[yellow]") + verdict + "[/]")
    raise typer.Exit(code)
