"""``flowchain bridge``: run the MT5 bridge (the real MetaTrader5 package, or ``--fake``)."""
import json
import signal
import threading
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from flowchain.cli.app import app

out = Console(stderr=True)


def _load_mt5(fake: bool, seed: int, rate: float):
    if fake:
        from flowchain.bridge.fake_mt5 import DEFAULT_SYMBOLS, FakeMetaTrader5, FakeSymbol

        symbols = [FakeSymbol(**{**s.__dict__, "ticks_per_second": rate}) for s in DEFAULT_SYMBOLS]
        return FakeMetaTrader5(symbols, seed=seed)
    try:
        import MetaTrader5  # noqa: N813  (Windows only: pip install flowchain[mt5])
    except ImportError:
        out.print("[red]The MetaTrader5 package is not installed.[/] It exists only for Windows: "
                  "`pip install flowchain[mt5]` there, or run `flowchain bridge --fake` to use the fake.")
        raise typer.Exit(2) from None
    return MetaTrader5


@app.command("bridge")
def bridge(
    fake: bool = typer.Option(False, "--fake", help="Run on the seeded MetaTrader5 fake (any OS)."),
    config: Optional[Path] = typer.Option(None, "--config", exists=True, dir_okay=False,
                                          help="YAML/JSON settings; FLOWCHAIN_BRIDGE_* env vars override."),
    symbols: Optional[List[str]] = typer.Option(None, "--symbol", "-s", help="Symbol to stream (repeat)."),
    pub: Optional[str] = typer.Option(None, help="PUB endpoint for ticks and heartbeats."),
    router: Optional[str] = typer.Option(None, help="ROUTER endpoint for orders and backfill."),
    secret_key: Optional[Path] = typer.Option(None, help="The bridge's .key_secret file: Curve on."),
    authorized_dir: Optional[Path] = typer.Option(None, help="Folder of node public keys to accept."),
    allow_remote: bool = typer.Option(False, "--allow-remote",
                                      help="Bind outside loopback WITHOUT keys (trusted networks only)."),
    seed: int = typer.Option(7, help="Seed of the fake market (--fake)."),
    rate: float = typer.Option(20.0, help="Ticks per second per symbol of the fake market (--fake)."),
    duration: float = typer.Option(0.0, help="Stop after this many seconds (0: run until Ctrl-C)."),
    as_json: bool = typer.Option(False, "--json", help="At exit print one JSON object of counters."),
) -> None:
    """Stream MT5 ticks and execute orders over ZeroMQ."""
    from flowchain.bridge.config import BridgeConfig
    from flowchain.bridge.server import Bridge
    from flowchain.keys import InsecureEndpointError

    try:
        settings = BridgeConfig.load(config, symbols=symbols or None, pub_endpoint=pub, router_endpoint=router,
                                     secret_key=str(secret_key) if secret_key else None,
                                     authorized_dir=str(authorized_dir) if authorized_dir else None,
                                     allow_remote=allow_remote or None)
        running = Bridge(_load_mt5(fake, seed, rate), settings)
    except (ValueError, InsecureEndpointError) as exc:
        out.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    running.start()
    out.print(f"bridge session {running.session_id:016x}: PUB {running.pub_endpoint}  "
              f"ROUTER {running.router_endpoint}  symbols {', '.join(running.symbols)}"
              f"{'  (Curve)' if running.secured else ''}{'  (fake MT5)' if fake else ''}")
    started = time.monotonic()
    try:
        while not stop.wait(1.0):
            if duration and time.monotonic() - started >= duration:
                break
    finally:
        running.stop()
    stats = running.stats()
    if as_json:
        print(json.dumps(stats))
    else:
        out.print(f"published {stats['ticks_published']} ticks, {stats['orders_sent']} orders sent, "
                  f"{stats['reconnects']} reconnects, rejects {sum(stats['rejects'].values())}")
