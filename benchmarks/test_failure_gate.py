"""CI latency gate: a failing execution costs about what the bare raise and catch costs.

``flowchain bench overhead`` interleaves a 4-step chain whose last step raises, run through the
engine and caught as ``ChainStepError``, with the same nested calls caught by a bare
``try/except``; the budget is 3x. The bound here is deliberately wide (6x) so a noisy 2-core CI
machine never fails it, yet a failure path that formats tracebacks or builds records on the
tick path (a hundred times the bare cost) always does.
"""
import pytest

from flowchain.bench import overhead

pytestmark = pytest.mark.latency_gate


@pytest.fixture(scope="module")
def measured():
    return overhead.run(repetitions=5, n=20_000, n_otel=200)


def test_failure_within_6x_of_a_bare_raise(measured, benchmark):
    fail, registry, chain_id = overhead._make_failure()
    benchmark.extra_info.update({k: measured[k] for k in ("failure_ns", "bare_failure_ns",
                                                          "failure_vs_bare_failure")})
    assert benchmark(fail, 1) is None
    assert measured["failure_ns"] < 6.0 * measured["bare_failure_ns"], measured


def test_failures_are_timed_in_their_own_series(measured):
    failed = measured["failure_latency"]
    assert failed["count"] > 0 and 0 < failed["p50_ns"] <= failed["p99_ns"] <= failed["max_ns"]
    # the success series of the tracked chain holds no failure
    assert measured["chain_latency"]["count"] > 0
