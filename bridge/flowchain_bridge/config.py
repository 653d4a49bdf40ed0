"""Bridge settings, from a YAML/JSON file and the environment (the environment wins)."""
from __future__ import annotations

import json
import math
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
             **overrides: Any) -> BridgeConfig:
        """Build a config from ``path`` (YAML or JSON), then ``FLOWCHAIN_BRIDGE_*``, then overrides.

        Every setting is checked for its type (a file's ``allow_remote: [0]`` is not a yes) and
        range (``poll_ms`` and ``heartbeat_ms`` above 0, ...), and every problem is reported at
        once, each naming the setting, its source and what it takes.

        Raises
        ------
        BridgeConfigError
            For a file that cannot be read or parsed (its line and column named), an unknown
            key, or values of the wrong type or out of range (all of them, one per line).
        """
        problems: list[str] = []
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        if path is not None:
            loaded = _read_file(Path(path))
            if not isinstance(loaded, dict):
                raise BridgeConfigError(f"bridge config {path}: expected a mapping of settings "
                                        f"(key: value lines), got {type(loaded).__name__}")
            cls._take(loaded, f"file {path}", values, origin, problems)
        env = os.environ if env is None else env
        from_env = {k[len(ENV_PREFIX):].lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)}
        cls._take(from_env, "environment", values, origin, problems, strings=True)
        cls._take({k: v for k, v in overrides.items() if v is not None}, "command line", values,
                  origin, problems)
        problems.extend(_range_problems(values, origin))
        if problems:
            raise BridgeConfigError("\n".join(problems))
        return cls(**values)

    @classmethod
    def _take(cls, raw: dict[str, Any], source: str, values: dict[str, Any],
              origin: dict[str, str], problems: list[str], strings: bool = False) -> None:
        """Check each setting's type, converting the environment's strings; note problems."""
        known = [f.name for f in fields(cls)]
        for key, value in raw.items():
            if key not in _KINDS:
                problems.append(f"unknown bridge setting {key!r} in {source}; known: "
                                f"{sorted(known)}")
                continue
            kind = _KINDS[key]
            try:
                value = _typed(value, kind, strings)
            except (TypeError, ValueError):
                problems.append(f"bridge setting {key!r} in {source} has value {value!r}, "
                                f"which is not {_KIND_TEXT[kind]}")
                continue
            values[key] = value
            origin[key] = source


class BridgeConfigError(ValueError):
    """The bridge's settings are invalid; the message names each setting, its source and the fix."""


_KINDS = {"login": "int?", "password": "str?", "server": "str?", "terminal_path": "str?",
          "symbols": "list", "pub_endpoint": "str", "router_endpoint": "str",
          "secret_key": "str?", "authorized_dir": "str?", "allow_remote": "bool",
          "poll_ms": "float", "heartbeat_ms": "int", "history_ticks": "int",
          "idempotency_size": "int", "reconcile_delay_s": "float", "ack_defer_us": "float",
          "connect_attempts": "int", "allow_unauthenticated_orders": "bool"}
"""Each setting's kind (``?``: may be empty/null)."""
_KIND_TEXT = {"int": "a whole number", "int?": "a whole number", "float": "a number",
              "bool": "true or false", "str": "a string", "str?": "a string",
              "list": "a list of symbol names (or one comma-separated string)"}
_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "poll_ms": (0.0, 60_000.0, False), "heartbeat_ms": (1, 60_000, True),
    "history_ticks": (1, 100_000_000, True), "idempotency_size": (1, 100_000_000, True),
    "reconcile_delay_s": (0.0, 3600.0, True), "ack_defer_us": (0.0, 1_000_000.0, True),
    "connect_attempts": (0, 1_000_000, True)}
"""``(low, high, low allowed)`` of the numeric settings."""


def _typed(value: Any, kind: str, strings: bool) -> Any:
    """Return ``value`` as ``kind``; raise TypeError/ValueError when it is not one."""
    if kind.endswith("?") and value is None:
        return None
    kind = kind.rstrip("?")
    if strings and isinstance(value, str) and kind != "str":
        text = value.strip()
        if kind == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    if kind == "list":
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        if isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value):
            return list(value)
        raise TypeError(value)
    if isinstance(value, bool) and kind != "bool":
        raise TypeError(value)
    if kind == "bool" and isinstance(value, bool) or kind == "str" and isinstance(value, str) \
            or kind == "int" and isinstance(value, int):
        return value
    if kind == "float" and isinstance(value, (int, float)):
        return float(value)
    raise TypeError(value)


def _range_problems(values: dict[str, Any], origin: dict[str, str]) -> list[str]:
    problems = []
    for key, (low, high, low_ok) in _BOUNDS.items():
        value = values.get(key)
        if value is None:
            continue
        inside = (low <= value if low_ok else low < value) and value <= high
        if not (isinstance(value, (int, float)) and math.isfinite(value) and inside):
            bound = f">= {low:g}" if low_ok else f"> {low:g}"
            problems.append(f"bridge setting {key!r} in {origin[key]} is {value!r}; it must be "
                            f"{bound} and at most {high:g}")
    for key in ("pub_endpoint", "router_endpoint"):
        value = values.get(key)
        if value is not None and not value.strip():
            problems.append(f"bridge setting {key!r} in {origin[key]} is empty; give an endpoint "
                            "such as tcp://127.0.0.1:5555")
    return problems  # (symbol names are checked by the bridge: check_symbols)


def _read_file(path: Path) -> Any:
    """Parse a YAML or JSON settings file.

    Raises
    ------
    BridgeConfigError
        When it cannot be read, is not UTF-8, or is not valid YAML/JSON (line and column named).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BridgeConfigError(f"bridge config {path}: not UTF-8 text (byte {exc.start}); save "
                                "it as UTF-8") from None
    except OSError as exc:
        raise BridgeConfigError(f"bridge config {path}: cannot read it: {exc.strerror}") from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise BridgeConfigError(f"bridge config {path}:{exc.lineno}:{exc.colno}: not valid "
                                    f"JSON: {exc.msg}") from None
        except RecursionError:
            raise BridgeConfigError(f"bridge config {path}: nested too deeply") from None
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BridgeConfigError(f"bridge config {path}{where}: not valid YAML: {what}; fix it "
                                "and start again") from None
    except RecursionError:
        raise BridgeConfigError(f"bridge config {path}: nested too deeply") from None
