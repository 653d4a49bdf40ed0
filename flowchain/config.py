"""The trading node's configuration: embedded defaults, a TOML file, then command-line flags.

Every field has a default, so ``flowchain node`` with no file runs the main job: the seeded
simulator feed, the paper broker and a local database file ``flowchain.db``. A TOML file
overrides any of them, by section::

    [node]
    feed = "sim"                 # "sim", "replay:FILE" or "tcp://host:port" (the bridge's ticks)
    broker = "paper"             # "paper" or "bridge"
    db = "flowchain.db"
    duration = 0                 # seconds; 0 runs until SIGINT/SIGTERM
    symbols = ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD"]
    status_interval = 5.0        # seconds between status lines; 0 turns them off
    batch_interval = 0.25        # seconds between MT5 -> database batches

    [simulator]
    seed = 0
    rate = 2000.0                # ticks per second, all symbols; 0 is as fast as possible

    [risk]
    max_position = 1.0           # lots per symbol
    max_orders_per_second = 5
    max_daily_loss = 1000.0
    max_tick_age_ms = 500.0      # the stale-tick guard
    kill_file = ""               # orders stop while this file exists

    [paper]
    latency_ms = 0.0             # in tick time
    slippage = 0.0               # price units

    [bridge]
    orders = "tcp://127.0.0.1:5556"  # the bridge's ROUTER: orders and backfill
    connect_timeout = 3.0        # seconds to wait for the bridge's first heartbeat
    secret_key = ""              # this node's *.key_secret file (flowchain keys generate DIR)
    server_public_key = ""       # the bridge's .key file; both empty: no Curve (loopback only)
    allow_remote = false         # a non-loopback bridge without keys (trusted networks only)

Flags given on the command line (``--feed``, ``--broker``, ``--db``, ``--duration``) win over
the file. Every problem is a :class:`ConfigError` that names the file, the key and what to do.
"""
from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import msgspec

from flowchain.errors import FlowChainError

DEFAULT_SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD")
DEFAULT_DB = "flowchain.db"
DEFAULT_ORDERS_ENDPOINT = "tcp://127.0.0.1:5556"

FEED_KINDS = ("sim", "replay", "tcp")
BROKERS = ("paper", "bridge")


class ConfigError(FlowChainError, ValueError):
    """The node's configuration is invalid; the message names the source, the key and the fix."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A config section: unknown keys are errors (a typo never passes silently)."""


def _positive(value: float, key: str, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not math.isfinite(value) or value < 0 \
            or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{key} must be a finite number {bound}, got {value!r}")


class NodeSection(_Section):
    """``[node]``: what to run, where to store, for how long."""

    feed: str = "sim"
    broker: str = "paper"
    db: str = DEFAULT_DB
    duration: float = 0.0
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    status_interval: float = 5.0
    batch_interval: float = 0.25
    chains: str = ""
    """A chains YAML file to use instead of the bundled ``trading_node.yaml`` (empty: bundled)."""

    def __post_init__(self) -> None:
        feed_kind(self.feed)
        if self.broker not in BROKERS:
            raise ValueError(f"broker must be one of {', '.join(BROKERS)}, got {self.broker!r}")
        if not self.db.strip():
            raise ValueError("db must be a database file path, got an empty string")
        _positive(self.duration, "duration", allow_zero=True)
        _positive(self.status_interval, "status_interval", allow_zero=True)
        _positive(self.batch_interval, "batch_interval")
        if not self.symbols:
            raise ValueError("symbols must list at least one symbol")
        for s in self.symbols:
            if not s.strip():
                raise ValueError(f"symbols holds an empty name: {list(self.symbols)!r}")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"symbols lists a symbol twice: {list(self.symbols)!r}")


class SimulatorSection(_Section):
    """``[simulator]``: the seeded feed."""

    seed: int = 0
    rate: float = 2000.0
    """Ticks per second, all symbols together; 0 is as fast as possible."""

    def __post_init__(self) -> None:
        _positive(self.rate, "rate", allow_zero=True)
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


class RiskSection(_Section):
    """``[risk]``: the limits the trading engine checks before every order."""

    max_position: float = 1.0
    """Largest absolute net position per symbol, in lots."""
    max_orders_per_second: int = 5
    max_daily_loss: float = 1000.0
    """New orders stop once the day's PnL is at or below minus this (account currency)."""
    max_tick_age_ms: float = 500.0
    """Orders on a tick that arrived longer ago than this are refused (the stale-tick guard)."""
    kill_file: str = ""
    """A file whose existence stops new orders (empty: no file switch; SIGUSR1 still works)."""

    def __post_init__(self) -> None:
        for key in ("max_position", "max_orders_per_second", "max_daily_loss",
                    "max_tick_age_ms"):
            _positive(getattr(self, key), key)


class PaperSection(_Section):
    """``[paper]``: the paper broker's simulated fills."""

    latency_ms: float = 0.0
    """Simulated order latency in tick time; 0 fills at once."""
    slippage: float = 0.0
    """Price added to a buy's ask and taken from a sell's bid, in price units."""

    def __post_init__(self) -> None:
        _positive(self.latency_ms, "latency_ms", allow_zero=True)
        _positive(self.slippage, "slippage", allow_zero=True)


class BridgeSection(_Section):
    """``[bridge]``: the Windows bridge's order/backfill endpoint and CurveZMQ key files."""

    orders: str = DEFAULT_ORDERS_ENDPOINT
    """The bridge's ROUTER: orders and backfill."""
    connect_timeout: float = 3.0
    """Seconds to wait at start for the bridge's first heartbeat before giving up."""
    secret_key: str = ""
    """This node's ``*.key_secret`` file (``flowchain keys generate DIR``); empty: no Curve."""
    server_public_key: str = ""
    """The bridge's public ``.key`` file."""
    allow_remote: bool = False
    """Connect to a non-loopback bridge without Curve keys (a trusted network only)."""

    def __post_init__(self) -> None:
        _check_tcp(self.orders, "orders")
        _positive(self.connect_timeout, "connect_timeout")
        if bool(self.secret_key) != bool(self.server_public_key):
            raise ValueError("CurveZMQ needs both secret_key (this node's *.key_secret file) "
                             "and server_public_key (the bridge's .key file), or neither")


class NodeConfig(_Section):
    """The whole configuration of one trading node (see the module docstring for the file)."""

    node: NodeSection = msgspec.field(default_factory=NodeSection)
    simulator: SimulatorSection = msgspec.field(default_factory=SimulatorSection)
    risk: RiskSection = msgspec.field(default_factory=RiskSection)
    paper: PaperSection = msgspec.field(default_factory=PaperSection)
    bridge: BridgeSection = msgspec.field(default_factory=BridgeSection)
    source: str = "<defaults>"
    """Where the configuration came from (for messages); not a file key."""

    def __post_init__(self) -> None:
        if self.node.broker == "bridge" and feed_kind(self.node.feed) != "tcp":
            raise ValueError("broker 'bridge' sends orders to the bridge, so the feed must be "
                             f"the bridge's ticks (feed = \"tcp://host:port\"), not "
                             f"{self.node.feed!r}")

    @property
    def feed_kind(self) -> str:
        """``"sim"``, ``"replay"`` or ``"tcp"``."""
        return feed_kind(self.node.feed)

    @property
    def replay_path(self) -> Optional[Path]:
        """The replay file of a ``replay:FILE`` feed, else None."""
        return Path(self.node.feed.split(":", 1)[1]) if self.feed_kind == "replay" else None

    @property
    def duration(self) -> Optional[float]:
        """Seconds to run, or None to run until stopped."""
        return self.node.duration or None

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain data (the TOML file's shape, keys included)."""
        out = msgspec.to_builtins(self)
        out.pop("source", None)
        return out


def feed_kind(feed: str) -> str:
    """Return the kind of a feed spec: ``"sim"``, ``"replay"`` or ``"tcp"``.

    Raises
    ------
    ValueError
        When ``feed`` is none of ``sim``, ``replay:FILE``, ``tcp://host:port``.
    """
    if feed == "sim":
        return "sim"
    if feed.startswith("replay:"):
        if not feed[len("replay:"):].strip():
            raise ValueError("feed 'replay:' names no file; write replay:path/to/ticks.csv")
        return "replay"
    if feed.startswith("tcp://"):
        _check_tcp(feed, "feed")
        return "tcp"
    raise ValueError(f"feed must be 'sim', 'replay:FILE' or 'tcp://host:port', got {feed!r}")


def _check_tcp(endpoint: str, key: str) -> None:
    if not endpoint.startswith("tcp://"):
        raise ValueError(f"{key} must be a tcp://host:port endpoint, got {endpoint!r}")
    host, sep, port = endpoint[len("tcp://"):].rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{key} must be tcp://host:port with a port in 1..65535, got "
                         f"{endpoint!r}")


_FLAG_KEYS = {"feed": "feed", "broker": "broker", "db": "db", "duration": "duration",
              "symbols": "symbols", "status_interval": "status_interval"}
"""Command-line overrides and the ``[node]`` key each one sets."""


def _convert(data: Mapping[str, Any], source: str) -> NodeConfig:
    if "source" in data:
        raise ConfigError(f"{source}: unknown key 'source'; the known keys there are "
                          f"{_known_keys('')}. Remove it")
    try:
        return msgspec.convert(dict(data, source=source), NodeConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc), source)) from None


def _explain(message: str, source: str) -> str:
    """Turn msgspec's ``what - at `$.risk.x``` into ``source: key 'risk.x': what``."""
    what, sep, where = message.rpartition(" - at `")
    if not sep:
        what, where = message, ""
    key = where.rstrip("`").removeprefix("$").lstrip(".")
    if what.startswith("Object contains unknown field"):
        field_name = what.split("`")[1]
        key = f"{key}.{field_name}" if key else field_name
        known = _known_keys(key.rpartition(".")[0])
        return (f"{source}: unknown key {key!r}; the known keys there are {known}. Fix the "
                "spelling or remove it")
    first = what.split(" ", 1)[0]
    if first in _known_keys(key).split(", "):
        key = f"{key}.{first}" if key else first
    where_text = f"key {key!r}" if key else "top level"
    return f"{source}: {where_text}: {what[0].lower() + what[1:]}; fix it and start again"


def _known_keys(section: str) -> str:
    sections = {"": NodeConfig, "node": NodeSection, "simulator": SimulatorSection,
                "risk": RiskSection, "paper": PaperSection, "bridge": BridgeSection}
    struct = sections.get(section)
    if struct is None:
        return "unknown"
    return ", ".join(f for f in struct.__struct_fields__ if f != "source")


def load_config(path: Union[str, os.PathLike, None] = None,
                overrides: Optional[Mapping[str, Any]] = None) -> NodeConfig:
    """Build the node's configuration: defaults, then the TOML file, then command-line flags.

    Parameters
    ----------
    path : str or PathLike, optional
        A TOML file; the embedded defaults alone when omitted.
    overrides : mapping, optional
        Flag values by name (``feed``, ``broker``, ``db``, ``duration``, ``symbols``,
        ``status_interval``); ``None`` values are ignored.

    Returns
    -------
    NodeConfig

    Raises
    ------
    ConfigError
        When the file is missing, unreadable or not valid TOML, or any key is unknown, of the
        wrong type or out of range; the message names the file (or ``--flags``) and the key.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = os.fspath(path)
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{source}: no such config file; pass an existing TOML file to "
                              "--config or leave it out to use the defaults") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the config file: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    base = _convert(data, source)
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(flags) - set(_FLAG_KEYS)
    if unknown:
        raise ConfigError(f"unknown override(s) {sorted(unknown)}; known: {sorted(_FLAG_KEYS)}")
    if not flags:
        return base
    node = dict(data.get("node", {})) if isinstance(data.get("node"), dict) else {}
    for name, value in flags.items():
        node[_FLAG_KEYS[name]] = list(value) if name == "symbols" else value
    label = f"{source} + --flags" if path is not None else "--flags"
    return _convert(dict(data, node=node), label)
