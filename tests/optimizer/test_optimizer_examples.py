"""The optimizer examples end to end: record each chain (profiles, inputs) into a real SQLite
file, ask ``flowchain optimize``, apply and verify side by side.

Each planted bottleneck is named with its step and type, and nothing is found in the clean
chain. Applying the suggestion makes the chain's p50 at least 2x faster as measured by
``--verify`` (the CPU-bound chain: 1.6x on a 2-core machine, whose ceiling is 2x; scaled with
the cores' worth of CPU the machine gave), the prediction within 30% of the measurement, the
outputs identical. Timing on a shared machine is noisy: a chain whose figures miss is recorded
and verified again, up to three times in all (five for the CPU-bound one).

The CPU-bound chain needs two cores free. The optimizer measures the CPU it can have when it
sizes the step, and the check reports what the workers really delivered (the original step's
time over each call's slowest chunk, timed in the workers) with the model's prediction remade
for it. With two cores' worth both ways the claim above holds. With fewer (a busy machine, or
cores slower together than alone: on this project's 2-vCPU VMs the workers typically deliver
1.3-1.7 for this step when idle) the chain must still gain 1.1x and the remade prediction must
be within 30%; an attempt short of either is the machine's miss, and when every attempt is, the
test is skipped with the figures, never passed. An attempt whose workers had two cores and
still missed fails the test.

Under the ASan/UBSan engine (``make test-asan``) every allocation goes through ASan's malloc,
which slows the allocating steps far more than the rest and moves the chain's balance: there a
step beside the planted one may count as a bottleneck too (its remedy applied or, lacking the
trait, said and left out), and the planted remedy must gain 1.1x with the prediction within
30%; the figures above are the optimized build's.
"""
import json
import sys
from pathlib import Path

import pytest
from foreign_env import SANITIZED
from typer.testing import CliRunner

from flowchain.cli import app
from flowchain.optimizer.suggestions import available_cores
from tests.optimizer.recording import record

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "optimizer"
ATTEMPTS = 3
PARALLEL_ATTEMPTS = 5
"""The CPU chain gets more tries: on a VM whose host lends its second vCPU unevenly, the same
parallel step measured 1.04x and 1.57x in two runs a minute apart (optimizer's capacity 1.83
and 1.90 both times)."""
PREDICTION_TOLERANCE = 0.30
FREE_CORES = 1.7
"""Below this many cores' worth of CPU (as the optimizer measured it, or as the workers had it
during the check), the CPU chain cannot show the 2-core claim: other processes held the cores,
or the cores were slower together than alone."""
PARTIAL_GAIN = 1.1
"""With fewer cores' worth than FREE_CORES, what the CPU chain must still gain (at the
optimizer's smallest worthwhile step gain), its prediction remade for the CPU the workers had."""
runner = CliRunner()


@pytest.fixture(scope="module")
def components():
    # on sys.path (not only --import's finder): the worker processes of a parallel step
    # are fresh interpreters that import the component by its module path
    sys.path.insert(0, str(EXAMPLES))
    import optimizer_components  # noqa: F401  (registers the example components)
    yield
    sys.path.remove(str(EXAMPLES))


def optimize(db, chain, *args):
    result = runner.invoke(app, ["optimize", str(EXAMPLES / "chains.yaml"), chain,
                                 "--import", "optimizer_components", "--db", str(db), "--json",
                                 *map(str, args)], catch_exceptions=False)
    return result.exit_code, result.stdout, " ".join(result.stderr.split())


def required_cpu_speedup(capacity):
    """The CPU-bound chain's claim, scaled with the cores it gets: 1.6x on 2 free cores
    (ceiling 2x), 2x with 2.5 or more; 80% of the cores' worth the optimizer measured when a
    shared machine gives fewer (its prediction is made for those, and must hold too)."""
    return 2.0 if capacity >= 2.5 else 0.8 * capacity


CASES = [
    ("cpu_scoring", "cpu_inputs.jsonl", "score", "slow_step", "parallel", "parallelism"),
    ("memory_surface", "memory_inputs.jsonl", "surface", "memory_intensive", "cache",
     "cache_size"),
    ("io_quotes", "io_inputs.jsonl", "fetch", "io_bound", "async", "concurrency_limit"),
]


@pytest.mark.parametrize("chain,inputs,step,kind,remedy,field", CASES,
                         ids=[c[0] for c in CASES])
def test_planted_bottleneck_found_applied_and_verified(components, tmp_path, chain, inputs,
                                                       step, kind, remedy, field):
    cores = available_cores()
    if remedy == "parallel" and cores < 2:
        pytest.fail("the CPU-bound example needs at least 2 cores to show parallelism")
    misses: list[str] = []
    busy: list[str] = []  # attempts of the CPU chain while other processes held the cores
    for attempt in range(PARALLEL_ATTEMPTS if remedy == "parallel" else ATTEMPTS):
        db = tmp_path / f"{chain}-{attempt}.db"
        out_file = tmp_path / f"{chain}-{attempt}.yaml"
        record(EXAMPLES / "chains.yaml", chain, EXAMPLES / inputs, db, "optimizer_components")
        code, out, err = optimize(db, chain, "--apply", "--out", out_file, "--verify")
        if code == 2 and "cores' worth" in err:  # a machine with no core free just now
            busy.append(f"attempt {attempt + 1}: {err}")
            continue
        assert code == 0, err
        data = json.loads(out)
        # the right step and type, and nothing else (ASan's malloc may slow another step
        # into a bottleneck of its own)
        found = [(b["step"], b["type"]) for b in data["bottlenecks"]]
        assert (step, kind) in found if SANITIZED else found == [(step, kind)], found
        [opt] = [o for o in data["optimizations"] if o["step"] == step] if SANITIZED else \
            data["optimizations"]
        assert (opt["step"], opt["kind"]) == (step, remedy) and opt[field] >= 2
        assert out_file.exists() and data["applied"]["chain_id"] != data["chain_id"]
        verify = data["verify"]
        assert verify["outputs_identical"] is True, verify
        measured = verify["measured"]["p50"]["speedup"]
        predicted = data["estimated_improvement"]["p50"]["speedup"]
        required = PARTIAL_GAIN if SANITIZED else 2.0
        short = None  # the cores' worth the machine gave the CPU chain, when short of two
        if remedy == "parallel":
            # the CPU the machine gave: when the optimizer measured it, and to the workers
            # during the check (the original step's time over each call's slowest chunk)
            check = verify["workers"][step]
            assert check["workers"] == opt[field] and check["calls"] == verify["executions"]
            assert 0.0 < check["cores_worth"] <= check["workers"]
            assert check["assumed_cores_worth"] == opt["cpu_capacity"]
            assert check["serial_item_ns"] > 0 and check["worker_item_ns"] > 0
            delivered = check["effective_cores"]
            assert verify["predicted_at_delivered"]["cores_worth"] == {step: delivered}
            capacity = min(opt["cpu_capacity"], delivered)
            required = required_cpu_speedup(capacity)
            if capacity < FREE_CORES:
                # fewer than two cores: the model's prediction for the CPU the workers had
                # must hold, and the chain must still gain
                short = capacity
                predicted = verify["predicted_at_delivered"]["p50"]["speedup"]
                required = PARTIAL_GAIN
        else:
            assert verify["workers"] == {} and "predicted_at_delivered" not in verify
        error = abs(predicted / measured - 1.0)
        if measured >= required and error <= PREDICTION_TOLERANCE:
            return
        miss = (f"attempt {attempt + 1}: measured p50 {measured:.2f}x (need {required:.2f}x), "
                f"predicted {predicted:.2f}x ({error:.0%} off)")
        if short is not None:
            busy.append(f"{miss}; the machine gave {short:.2f} cores' worth of CPU")
        else:
            misses.append(miss)
    if not misses and busy:
        pytest.skip("this machine never gave the workers enough CPU to show parallelism: "
                    + "; ".join(busy))
    pytest.fail("; ".join(misses + busy))


def test_clean_chain_has_nothing_to_optimize(components, tmp_path):
    db = tmp_path / "clean.db"
    record(EXAMPLES / "chains.yaml", "clean_pipeline", EXAMPLES / "clean_inputs.jsonl", db,
           "optimizer_components")
    code, out, _ = optimize(db, "clean_pipeline")
    assert code == 0
    data = json.loads(out)
    assert data["bottlenecks"] == [] and data["optimizations"] == [] and data["blocked"] == []
    out_file = tmp_path / "clean.yaml"
    code, _, err = optimize(db, "clean_pipeline", "--apply", "--out", out_file)
    assert code == 2 and "no bottleneck" in err and not out_file.exists()
