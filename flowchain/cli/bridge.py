"""``flowchain bridge``: run the MT5 bridge (the real MetaTrader5 package, or ``--fake``).

Exit codes: 0 stopped (``--duration``, SIGINT or SIGTERM: threads stopped, ``mt5.shutdown()``
called, counters printed); 2 invalid settings (a symbol that cannot be streamed, an unknown
key, a non-loopback endpoint without keys); 3 the terminal refused: ``connect_attempts``
failed connections (``initialize``/login) in a row, or a symbol it does not know; 1 a bridge
thread failed.
"""
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from flowchain.cli.app import app

out = Console(stderr=True)
EXIT_SETTINGS = 2
EXIT_TERMINAL = 3
EXIT_THREAD = 1
MAX_FAKE_RATE = 1_000_000


def _load_mt5(fake: bool, seed: int, rate: float, start_ms: Optional[int]):
    if fake:
        from flowchain.bridge.fake_mt5 import DEFAULT_SYMBOLS, FakeMetaTrader5, FakeSymbol

        symbols = [FakeSymbol(**{**s.__dict__, "ticks_per_second": rate}) for s in DEFAULT_SYMBOLS]
        return FakeMetaTrader5(symbols, seed=seed, start_ms=start_ms)
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
    allow_unauthenticated_orders: bool = typer.Option(
        False, "--allow-unauthenticated-orders",
        help="Without keys, execute orders from any local process (loopback only; --fake implies it)."),
    connect_attempts: Optional[int] = typer.Option(
        None, min=0, help="Failed terminal connections in a row before exiting with code 3 (0: never; default 10)."),
    seed: int = typer.Option(7, help="Seed of the fake market (--fake)."),
    rate: float = typer.Option(20.0, help="Ticks per second per symbol of the fake market (--fake)."),
    fake_start_ms: Optional[int] = typer.Option(
        None, help="When the fake market began (epoch ms; default now): the same seed, rate and "
                   "start give the same tick history, so a restarted --fake bridge continues it."),
    duration: float = typer.Option(0.0, help="Stop after this many seconds (0: run until Ctrl-C)."),
    as_json: bool = typer.Option(False, "--json", help="At exit print one JSON object of counters."),
) -> None:
    """Stream MT5 ticks and execute orders over ZeroMQ. SIGINT/SIGTERM stop it cleanly.
    Exit codes: 2 invalid settings, 3 the terminal refused (login, unknown symbol)."""
    import zmq

    from flowchain.bridge.config import BridgeConfig
    from flowchain.bridge.server import Bridge
    from flowchain.keys import InsecureEndpointError

    _log_to_stderr()
    if not 0 < rate <= MAX_FAKE_RATE:  # (nan fails too)
        out.print(f"[red]--rate {rate:g}: the fake market's ticks per second per symbol must be "
                  f"above 0 and at most {MAX_FAKE_RATE:,}[/]")
        raise typer.Exit(EXIT_SETTINGS)
    try:
        settings = BridgeConfig.load(config, symbols=symbols or None, pub_endpoint=pub, router_endpoint=router,
                                     secret_key=str(secret_key) if secret_key else None,
                                     authorized_dir=str(authorized_dir) if authorized_dir else None,
                                     allow_remote=allow_remote or None, connect_attempts=connect_attempts,
                                     allow_unauthenticated_orders=(allow_unauthenticated_orders or fake) or None)
        running = Bridge(_load_mt5(fake, seed, rate, fake_start_ms), settings)
    except (ValueError, InsecureEndpointError) as exc:
        out.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(EXIT_SETTINGS) from None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        running.start()
    except zmq.ZMQError as exc:
        out.print(f"[red]{escape(str(exc))}[/]: is another bridge running there? Stop it, or "
                  "pick free endpoints with --pub/--router")
        running.stop()
        raise typer.Exit(EXIT_SETTINGS) from None
    started = time.monotonic()
    try:
        while not stop.wait(0.1):
            if running.failed.is_set() or (duration and time.monotonic() - started >= duration):
                break
    finally:
        running.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stats = running.stats()
    if as_json:
        print(json.dumps(stats))
    else:
        out.print(f"published {stats['ticks_published']} ticks, {stats['orders_sent']} orders sent, "
                  f"{stats['orders_refused']} refused, {stats['reconnects']} reconnects, "
                  f"rejects {sum(stats['rejects'].values())}, terminal {stats['terminal']}")
    if running.failure is not None:
        out.print(f"[red]the bridge stopped:[/] {escape(running.failure)}")
        raise typer.Exit(EXIT_TERMINAL if running.link.fatal is not None else EXIT_THREAD)


def _log_to_stderr() -> None:
    """The bridge's log (connection attempts with the MT5 error, refusals) on stderr."""
    logger = logging.getLogger("flowchain.bridge")
    if not any(getattr(h, "_flowchain_bridge", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[bridge] %(levelname)s %(message)s"))
        handler._flowchain_bridge = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
