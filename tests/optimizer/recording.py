"""Record a chain's history with profiles and inputs into a real SQLite file, in process:
what ``flowchain run FILE CHAIN --inputs F --db D --profile --record-inputs 1`` does."""
import json
from pathlib import Path

from flowchain.cli.run_inputs import chain_inputs
from flowchain.observe.history import HistoryWriter
from flowchain.optimizer.input_recording import RecordingRun
from flowchain.registry import ChainRegistry


def record(chains_file: Path, name: str, inputs_file: Path, db: Path) -> str:
    """Run every line of ``inputs_file`` through chain ``name`` with profiling at rate 1 and
    every input recorded; return the chain id."""
    registry = ChainRegistry(profile_rate=1.0)
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
    totals = run.finish()
    registry.close()
    assert totals.profiles > 0 and totals.recorded_sampled == totals.executions
    return definition.chain_id
