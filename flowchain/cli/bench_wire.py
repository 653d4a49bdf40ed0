"""``flowchain bench wire``: ticks bridge -> node and orders node -> bridge against bare pyzmq."""
import json

import typer
from rich.console import Console
from rich.table import Table

from flowchain.cli.app import bench_app


@bench_app.command("wire")
def wire_bench(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    seconds: float = typer.Option(10.0, min=0.5, help="Length of the sustained loss run."),
    rate: float = typer.Option(20_000.0, min=100.0, help="Ticks per second sent."),
    repetitions: int = typer.Option(5, min=5, help="Interleaved repetitions of each way."),
    rep_seconds: float = typer.Option(1.0, min=0.1, help="Length of one latency repetition."),
    order_trips: int = typer.Option(2000, min=10, help="Order round trips per repetition."),
) -> None:
    """Measure tick decode, one-way tick latency (bare PUB/SUB vs the node's feed), ticks lost
    at RATE for SECONDS, and the order round trip (bare echo vs the bridge on the fake MT5);
    exit 1 when a budget is missed."""
    from flowchain.bench import wire as bench

    console = Console(stderr=True)
    say = (lambda line: None) if as_json else (lambda line: console.print(f"[dim]{line}[/dim]"))
    result = bench.run(seconds=seconds, rate=rate, repetitions=repetitions,
                       rep_seconds=rep_seconds, order_trips=order_trips, progress=say)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        _print(Console(), result)
    if not result["within_budget"]:
        raise typer.Exit(1)


def _print(console: Console, r: dict) -> None:
    table = Table(title=f"wire latency, ns (median of {r['repetitions']} interleaved repetitions)")
    for col in ("path", "baseline p50", "baseline p99", "flowchain p50", "flowchain p99",
                "ratio p50", "ratio p99", "budget"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for label, key, ratio, budget in (("tick one-way", "oneway", "oneway", r["budget"]["oneway"]),
                                      ("order round trip", "order_rtt", "order_rtt",
                                       r["budget"]["order_rtt"])):
        table.add_row(label, f"{r[f'bare_{key}_p50_ns']:,}", f"{r[f'bare_{key}_p99_ns']:,}",
                      f"{r[f'flowchain_{key}_p50_ns']:,}", f"{r[f'flowchain_{key}_p99_ns']:,}",
                      f"{r[f'{ratio}_p50_ratio']:.2f}x", f"{r[f'{ratio}_p99_ratio']:.2f}x",
                      f"<= {budget}x")
    console.print(table)
    console.print(f"for reference, zmq.asyncio on the same uvloop: p50 "
                  f"{r['zmq_asyncio_oneway_p50_ns']:,} ns, "
                  f"p99 {r['zmq_asyncio_oneway_p99_ns']:,} ns"
                  " (the feed reads the socket's FD with add_reader instead)")
    console.print(f"order round trip with every ACK at once (ack_defer_us=0), for reference: p50 "
                  f"{r['flowchain_ack_first_order_rtt_p50_ns']:,} ns, "
                  f"p99 {r['flowchain_ack_first_order_rtt_p99_ns']:,} ns")
    console.print(f"decode {r['decode_ns']:.0f} ns/frame; "
                  f"feed per message {r['feed_message_ns']:.0f}"
                  f" ns; sustained {r['rate_ticks_per_s']:,.0f} ticks/s: sent {r['ticks_sent']:,},"
                  f" lost {r['ticks_lost']:,}")
    verdict = "[green]within budget[/green]" if r["within_budget"] else "[red]OUTSIDE budget[/red]"
    console.print(verdict)
    console.print(f"{r['cpu']}; {r['versions']}")
