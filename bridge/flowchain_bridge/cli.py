"""``flowchain-bridge`` (and ``flowchain bridge``): run the MT5 bridge on the real MetaTrader5
package, or on the seeded fake with ``--fake``.

Exit codes: 0 stopped (``--duration``, SIGINT or SIGTERM: threads stopped, ``mt5.shutdown()``
called, counters printed); 2 invalid settings (a bad option, a symbol that cannot be streamed, an
unknown key, a non-loopback endpoint without keys, an endpoint that cannot be bound); 3 the
terminal refused: ``connect_attempts`` failed connections (``initialize``/login) in a row, or a
symbol it does not know; 1 a bridge thread failed (or, with ``--generate-keys``, the keys could
not be written).

The standard library's argparse only: the bridge installs on a trader's Windows machine with
numpy, pyzmq and PyYAML, nothing else.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_THREAD = 1
EXIT_KEYS = 1
EXIT_SETTINGS = 2
EXIT_TERMINAL = 3


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of ticks per second, not {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, not {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a file" if path.exists() else f"{text} does not exist")
    return path


def build_parser(prog: str = "flowchain-bridge") -> argparse.ArgumentParser:
    """The bridge's options; ``flowchain bridge`` takes the same ones."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Stream MT5 ticks and execute orders over ZeroMQ. SIGINT/SIGTERM stop it cleanly. "
                    "Exit codes: 2 invalid settings, 3 the terminal refused (login, unknown symbol), "
                    "1 a bridge thread failed.")
    add = parser.add_argument
    add("--fake", action="store_true", help="Run on the seeded MetaTrader5 fake (any OS).")
    add("--config", type=_existing_file, metavar="FILE",
        help="YAML/JSON settings; FLOWCHAIN_BRIDGE_* environment variables override them.")
    add("--symbol", "-s", action="append", dest="symbols", metavar="SYMBOL",
        help="Symbol to stream (repeat; default: the config's, else EURUSD GBPUSD USDJPY XAUUSD).")
    add("--pub", metavar="ENDPOINT", help="PUB endpoint for ticks and heartbeats (default tcp://127.0.0.1:5555).")
    add("--router", metavar="ENDPOINT",
        help="ROUTER endpoint for orders and backfill (default tcp://127.0.0.1:5556).")
    add("--secret-key", type=Path, metavar="FILE", help="The bridge's .key_secret file: CurveZMQ on.")
    add("--authorized-dir", type=Path, metavar="DIR", help="Folder of node public keys to accept.")
    add("--allow-remote", action="store_true",
        help="Bind outside loopback WITHOUT keys (trusted networks only).")
    add("--allow-unauthenticated-orders", action="store_true",
        help="Without keys, execute orders from any local process (loopback only; --fake implies it).")
    add("--connect-attempts", type=_non_negative_int, metavar="N",
        help="Failed terminal connections in a row before exiting with code 3 (0: never; default 10).")
    add("--seed", type=int, default=7, help="Seed of the fake market (--fake; default 7).")
    add("--rate", type=_positive_float, default=20.0,
        help="Ticks per second per symbol of the fake market (--fake; default 20).")
    add("--fake-start-ms", type=int, metavar="MS",
        help="When the fake market began (epoch ms; default now): the same seed, rate and start give "
             "the same tick history, so a restarted --fake bridge continues it.")
    add("--duration", type=_non_negative_float, default=0.0,
        help="Stop after this many seconds (default 0: run until Ctrl-C).")
    add("--json", action="store_true", dest="as_json", help="At exit print one JSON object of counters.")
    add("--generate-keys", type=Path, metavar="DIR",
        help="Write the bridge's CurveZMQ key pair (bridge.key, bridge.key_secret) and an empty "
             "authorized/ folder into DIR, say what goes where, and exit.")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "flowchain-bridge") -> int:
    """Run the bridge with command-line ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    try:
        options = build_parser(prog).parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad option (2, after argparse's message)
        return int(exc.code or 0)
    if options.generate_keys is not None:
        return generate_keys(options.generate_keys, options.as_json)
    return run(options)


def generate_keys(directory: Path, as_json: bool) -> int:
    """``--generate-keys DIR``: the bridge's own key pair; only public keys leave this machine."""
    from flowchain_bridge.keys import generate_bridge_pair

    try:
        paths = generate_bridge_pair(directory)
    except FileExistsError as exc:
        _say(str(exc))
        return EXIT_KEYS
    except OSError as exc:
        _say(f"cannot write keys into {directory}: {exc.strerror or exc}")
        return EXIT_KEYS
    if as_json:
        print(json.dumps({k: str(v) for k, v in paths.items()}), flush=True)
        return EXIT_OK
    print(f"wrote {paths['bridge_secret']}: the bridge's secret key (--secret-key); keep it on this machine\n"
          f"wrote {paths['bridge_public']}: copy it to the node ([bridge] server_public_key)\n"
          f"made {paths['authorized']}: put the node's public key (node.key) here (--authorized-dir)",
          flush=True)
    return EXIT_OK


def run(options: argparse.Namespace) -> int:
    """Build the bridge from parsed options, run it until told to stop, print its counters."""
    import yaml
    import zmq

    from flowchain_bridge.config import BridgeConfig
    from flowchain_bridge.keys import InsecureEndpointError
    from flowchain_bridge.server import Bridge

    log_to_stderr()
    try:
        settings = BridgeConfig.load(
            options.config, symbols=options.symbols or None, pub_endpoint=options.pub,
            router_endpoint=options.router,
            secret_key=str(options.secret_key) if options.secret_key else None,
            authorized_dir=str(options.authorized_dir) if options.authorized_dir else None,
            allow_remote=options.allow_remote or None, connect_attempts=options.connect_attempts,
            allow_unauthenticated_orders=(options.allow_unauthenticated_orders or options.fake) or None)
        mt5 = _load_mt5(options.fake, options.seed, options.rate, options.fake_start_ms)
        if mt5 is None:
            return EXIT_SETTINGS
        running = Bridge(mt5, settings)
    except json.JSONDecodeError as exc:
        _say(f"cannot read the bridge config {options.config}: not JSON: {exc}")
        return EXIT_SETTINGS
    except (ValueError, InsecureEndpointError) as exc:
        _say(str(exc))
        return EXIT_SETTINGS
    except (OSError, yaml.YAMLError) as exc:  # the config file: unreadable, or not YAML
        _say(f"cannot read the bridge config {options.config}: "
             f"{exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}")
        return EXIT_SETTINGS
    try:
        running.start()
    except zmq.ZMQError as exc:
        _say(f"cannot bind the bridge's sockets (PUB {settings.pub_endpoint}, ROUTER "
             f"{settings.router_endpoint}): {exc}; pick free endpoints with --pub/--router")
        return EXIT_SETTINGS
    except (OSError, ValueError) as exc:  # a key file or the authorized folder (Curve)
        _say(f"cannot secure the bridge's sockets: {exc}")
        return EXIT_SETTINGS
    stop = threading.Event()
    # Ctrl-C (SIGINT), SIGTERM, and on Windows Ctrl-Break (SIGBREAK): stop cleanly
    stop_signals = [signal.SIGINT, signal.SIGTERM, *([signal.SIGBREAK] if hasattr(signal, "SIGBREAK") else [])]
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in stop_signals}
    started = time.monotonic()
    try:
        while not stop.wait(0.1):
            if running.failed.is_set() or (options.duration and time.monotonic() - started >= options.duration):
                break
    finally:
        running.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stats = running.stats()
    if options.as_json:
        print(json.dumps(stats), flush=True)
    else:
        _say(f"published {stats['ticks_published']} ticks, {stats['orders_sent']} orders sent, "
             f"{stats['orders_refused']} refused, {stats['reconnects']} reconnects, "
             f"rejects {sum(stats['rejects'].values())}, terminal {stats['terminal']}")
    if running.failure is not None:
        _say(f"the bridge stopped: {running.failure}")
        return EXIT_TERMINAL if running.link.fatal is not None else EXIT_THREAD
    return EXIT_OK


def _load_mt5(fake: bool, seed: int, rate: float, start_ms: int | None) -> Any:
    """The fake market, or the real MetaTrader5 module; None (after saying why) when it is missing."""
    if fake:
        from flowchain_bridge.fake_mt5 import DEFAULT_SYMBOLS, FakeMetaTrader5, FakeSymbol

        symbols = [FakeSymbol(**{**s.__dict__, "ticks_per_second": rate}) for s in DEFAULT_SYMBOLS]
        return FakeMetaTrader5(symbols, seed=seed, start_ms=start_ms)
    try:
        import MetaTrader5  # noqa: N813  (Windows only; flowchain-bridge depends on it there)
    except ImportError:
        _say("The MetaTrader5 package is not installed. It exists only for Windows, where "
             "`pip install flowchain-bridge` installs it; elsewhere run with --fake to use the fake.")
        return None
    return MetaTrader5


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def log_to_stderr() -> None:
    """The bridge's log (connection attempts with the MT5 error, refusals) on stderr."""
    logger = logging.getLogger("flowchain_bridge")
    if not any(getattr(h, "_flowchain_bridge", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[bridge] %(levelname)s %(message)s"))
        handler._flowchain_bridge = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
