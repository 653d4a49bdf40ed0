"""``flowchain bench overhead``: the engine's tracking cost against four baselines."""
import json

import typer
from rich.console import Console
from rich.table import Table

from flowchain.cli.app import bench_app


@bench_app.command("overhead")
def overhead(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    repetitions: int = typer.Option(7, min=5, help="Interleaved repetitions of each way."),
    executions: int = typer.Option(50_000, min=1000, help="Chain executions per repetition."),
) -> None:
    """Run a 4-step chain untracked, naively tracked, with OpenTelemetry, with Prometheus+HDR
    and through the engine; print the median ns per chain of each and the ratios."""
    from flowchain.bench import overhead as bench

    result = bench.run(repetitions=repetitions, n=executions)
    if as_json:
        typer.echo(json.dumps(result))
        return
    console = Console()
    table = Table(title="ns per 4-step chain (median of interleaved repetitions)")
    table.add_column("way")
    table.add_column("ns", justify="right")
    table.add_column("vs flowchain", justify="right")
    for key, label in (("floor_ns", "plain nested calls (floor)"),
                       ("flowchain_ns", "flowchain engine"),
                       ("naive_ns", "naive perf_counter + list"),
                       ("prom_hdr_ns", "prometheus + hdrhistogram"),
                       ("otel_ns", "OpenTelemetry SDK spans")):
        table.add_row(label, f"{result[key]:,.0f}", f"{result[key] / result['flowchain_ns']:.2f}x")
    console.print(table)
    failing = Table(title="ns per failing 4-step chain (last step raises)")
    failing.add_column("way")
    failing.add_column("ns", justify="right")
    failing.add_row("nested calls, bare try/except", f"{result['bare_failure_ns']:,.0f}")
    failing.add_row("flowchain engine, except ChainStepError", f"{result['failure_ns']:,.0f}")
    console.print(failing)
    steps = Table(title="engine per-step latency (its own HDR histograms)")
    for col in ("step", "count", "p50 ns", "p99 ns", "p99.9 ns", "max ns"):
        steps.add_column(col, justify="right" if col != "step" else "left")
    for name, s in result["step_latency"].items():
        steps.add_row(name, f"{s['count']:,}", str(s["p50_ns"]), str(s["p99_ns"]),
                      str(s["p999_ns"]), str(s["max_ns"]))
    console.print(steps)
    verdict = "within budget" if result["within_budget"] else "OUTSIDE budget"
    console.print(f"flowchain/floor {result['flowchain_vs_floor']}x (<= 2.0), "
                  f"otel/flowchain {result['otel_vs_flowchain']}x (>= 20), "
                  f"naive/flowchain {result['naive_vs_flowchain']}x (>= 3), "
                  f"failure/bare failure {result['failure_vs_bare_failure']}x (<= 3.0): {verdict}")
    console.print(f"{result['cpu']}; {result['versions']}")


@bench_app.command("profile")
def profile(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    repetitions: int = typer.Option(7, min=5, help="Interleaved repetitions of each way."),
    executions: int = typer.Option(20_000, min=1000, help="Chain executions per repetition."),
    rate: float = typer.Option(0.01, min=0.0001, max=1.0, help="The sampling rate measured."),
) -> None:
    """Run a 4-step chain with profiling off and sampled at RATE (1% by default), interleaved;
    print each one's p50/p99/p99.9/max/mean per execution and the ratios sampled/off."""
    from flowchain.bench import profile as bench

    result = bench.run(repetitions=repetitions, n=executions, rate=rate)
    if as_json:
        typer.echo(json.dumps(result))
        return
    console = Console()
    table = Table(title=f"ns per 4-step chain execution, profiling off vs sampled at "
                        f"{result['rate']:.2%} (medians of interleaved repetitions)")
    for col in ("way", "p50", "p99", "p99.9", "max", "mean"):
        table.add_column(col, justify="right" if col != "way" else "left")
    for way in ("off", "sampled"):
        s = result[way]
        table.add_row(way, *(f"{s[k]:,.0f}" for k in ("p50_ns", "p99_ns", "p999_ns", "max_ns",
                                                       "mean_ns")))
    console.print(table)
    console.print(f"sampled/off: p50 {result['p50_ratio']}x, p99 {result['p99_ratio']}x, "
                  f"mean {result['mean_ratio']}x ({result['sampled_executions']} executions "
                  "profiled over all repetitions)")
    console.print(f"{result['cpu']}; {result['versions']}")
