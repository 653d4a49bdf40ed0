"""Record a chain's history with profiles and inputs into a real SQLite file: the real
``flowchain run FILE CHAIN --import MODULE --inputs F --db D --profile --record-inputs 1``, in
its own process, as an author would run it."""
import json
import os
import subprocess
import sys
from pathlib import Path

LAUNCH = "from flowchain.cli import main; main()"


def record(chains_file: Path, name: str, inputs_file: Path, db: Path, module: str) -> dict:
    """Run every line of ``inputs_file`` through chain ``name``, profiling and recording every
    execution; ``module`` (beside ``chains_file``) registers the components. Return the
    command's JSON summary."""
    folder = Path(chains_file).parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(folder), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCH, "run", str(chains_file), name, "--import", module,
         "--inputs", str(inputs_file), "--db", str(db), "--profile", "--record-inputs", "1",
         "--json"], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["profiles"] > 0 and summary["recorded_inputs"]["sampled"] == \
        summary["executions"], summary
    return summary
