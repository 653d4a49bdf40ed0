"""Bridge settings, from a YAML/JSON file and the environment (the environment wins)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "FLOWCHAIN_BRIDGE_"
DEFAULT_SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD")
"""What the bridge streams unless told otherwise: the symbols a node trades by default."""


@dataclass
class BridgeConfig:
    """Everything ``flowchain bridge`` needs.

    Attributes
    ----------
    login, password, server, terminal_path
        MT5 account and terminal (``initialize(path, login=, password=, server=)``).
    symbols
        The symbols to stream (default :data:`DEFAULT_SYMBOLS`, the node's own default); their
        index is the wire ``symbol_id``.
    pub_endpoint, router_endpoint
        Where the PUB (ticks, heartbeats) and ROUTER (orders, backfill) sockets bind.
    secret_key, authorized_dir
        The bridge's ``.key_secret`` file and the folder of node public keys: Curve on.
    allow_remote
        Bind outside loopback without keys (trusted networks only).
    poll_ms, heartbeat_ms, history_ticks, idempotency_size, reconcile_delay_s
        Tick poll period, heartbeat period, ticks kept per symbol for backfill, req_ids
        remembered, wait before reconciling an unanswered order.
    ack_defer_us
        While the terminal finishes orders within this many microseconds, an order that runs
        at once gets its ACK in the same burst as its RESULT (one wake-up for the node instead
        of two); 0 ACKs every order the moment it is read. See :mod:`flowchain_bridge.server`.
    connect_attempts
        Failed terminal connections in a row (``initialize``/login) before the bridge gives up
        and exits non-zero; 0 retries for ever. Between attempts it waits 0.5 s, doubling to 10 s.
    allow_unauthenticated_orders
        Without CurveZMQ keys, execute orders from any local process that reaches the ROUTER
        (loopback endpoints only; never on a non-loopback endpoint). Off: such orders are
        refused with a reason, while ticks and backfill still flow.
    """

    login: int | None = None
    password: str | None = None
    server: str | None = None
    terminal_path: str | None = None
    symbols: list[str] = field(default_factory=lambda: list(DEFAULT_SYMBOLS))
    pub_endpoint: str = "tcp://127.0.0.1:5555"
    router_endpoint: str = "tcp://127.0.0.1:5556"
    secret_key: str | None = None
    authorized_dir: str | None = None
    allow_remote: bool = False
    poll_ms: float = 2.0
    heartbeat_ms: int = 250
    history_ticks: int = 65_536
    idempotency_size: int = 65_536
    reconcile_delay_s: float = 0.5
    ack_defer_us: float = 1000.0
    connect_attempts: int = 10
    allow_unauthenticated_orders: bool = False

    @classmethod
    def load(cls, path: Path | str | None = None, env: dict[str, str] | None = None,
             **overrides: Any) -> "BridgeConfig":
        """Build a config from ``path`` (YAML or JSON), then ``FLOWCHAIN_BRIDGE_*``, then overrides.

        Raises
        ------
        ValueError
            For an unknown key or a value of the wrong kind, naming the key and its source.
        OSError
            When the file cannot be read.
        """
        values: dict[str, Any] = {}
        if path is not None:
            text = Path(path).read_text(encoding="utf-8")
            if str(path).endswith(".json"):
                loaded = json.loads(text)
            else:
                import yaml

                loaded = yaml.safe_load(text)
            if not isinstance(loaded, dict):
                raise ValueError(f"bridge config {path} must be a mapping of settings")
            values.update(cls._checked(loaded, f"file {path}"))
        env = os.environ if env is None else env
        from_env = {k[len(ENV_PREFIX):].lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)}
        values.update(cls._checked(from_env, "environment", strings=True))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def _checked(cls, raw: dict[str, Any], source: str, strings: bool = False) -> dict[str, Any]:
        kinds = {f.name: f.type for f in fields(cls)}
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in kinds:
                raise ValueError(f"unknown bridge setting {key!r} in {source}; known: {sorted(kinds)}")
            kind = str(kinds[key])
            try:
                if kind.startswith("list"):
                    value = [s.strip() for s in value.split(",") if s.strip()] if isinstance(value, str) else list(value)
                elif kind.startswith("int"):
                    value = int(value) if value is not None else None
                elif kind.startswith("float"):
                    value = float(value)
                elif kind.startswith("bool"):
                    value = value.lower() in ("1", "true", "yes") if isinstance(value, str) else bool(value)
            except (TypeError, ValueError):
                raise ValueError(f"bridge setting {key!r} in {source} has value {value!r}, "
                                 f"which is not a {kind}") from None
            out[key] = value
        return out
