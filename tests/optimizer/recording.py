"""Record a chain's history with profiles and inputs into a real SQLite file, in process."""
import json
import sqlite3
from pathlib import Path

from flowchain.cli.run_inputs import chain_inputs
from flowchain.observe.history import HistoryWriter
from flowchain.optimizer.input_recording import RecordingRun
from flowchain.optimizer.profile_store import write_profiles
from flowchain.registry import ChainRegistry


def record(chains_file: Path, name: str, inputs_file: Path, db: Path, components=None) -> str:
    """Run every line of ``inputs_file`` through chain ``name`` with profiling at rate 1 and
    every input recorded; return the chain id."""
    registry = ChainRegistry(components, profile_rate=1.0) if components is not None \
        else ChainRegistry(profile_rate=1.0)
    [definition] = [registry.get_chain(i) for i in registry.register_file(chains_file)
                    if registry.get_chain(i).name == name]
    writer = HistoryWriter(registry, db, interval_s=3600.0, sample_rate=1.0,
                           record_failed_inputs=False)
    run = RecordingRun(registry, definition, writer, record_rate=1.0)
    contract = definition.steps[0].input
    for line in Path(inputs_file).read_text().splitlines():
        if line.strip():
            for item in chain_inputs(contract, json.loads(line)):
                run.run(item)
    run_id = writer.run_id
    run.finish()
    conn = sqlite3.connect(db)
    try:
        have = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'step_profiles'"
                            ).fetchone()[0] and conn.execute(
            "SELECT count(*) FROM step_profiles WHERE chain_id = ?",
            (definition.chain_id,)).fetchone()[0]
        if not have:  # the history writer did not store them: store them as it would
            write_profiles(conn, run_id, registry.take_profiles(definition.chain_id))
    finally:
        conn.close()
    registry.close()
    return definition.chain_id
