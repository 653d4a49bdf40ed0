"""CI latency gate (pytest-benchmark): the engine's tracking cost stays near the bare calls.

The bound is deliberately generous (4x the floor where the budget is 2x, 10x below
OpenTelemetry where it is 20x) so a noisy 2-core CI machine never fails it; `flowchain bench
overhead` reports the true figures.
"""
import pytest

from flowchain.bench import overhead

pytestmark = pytest.mark.latency_gate


@pytest.fixture(scope="module")
def measured():
    return overhead.run(repetitions=5, n=20_000, n_otel=500)


def test_engine_within_4x_of_plain_calls(measured, benchmark):
    run, _, _ = overhead._make_flowchain()
    benchmark.extra_info.update({k: measured[k] for k in ("floor_ns", "flowchain_ns", "naive_ns",
                                                          "otel_ns", "prom_hdr_ns")})
    assert benchmark(run, 1) == 5
    assert measured["flowchain_ns"] < 4.0 * measured["floor_ns"], measured


def test_engine_far_below_opentelemetry_and_naive_tracking(measured):
    assert measured["otel_ns"] > 10.0 * measured["flowchain_ns"], measured
    assert measured["naive_ns"] > 1.5 * measured["flowchain_ns"], measured
