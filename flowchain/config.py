"""The trading node's configuration: embedded defaults, a TOML file, then command-line flags.

Every field has a default, so ``flowchain node`` with no file runs the main job: the seeded
simulator feed, the paper broker and a local database file ``flowchain.db``. A TOML file
overrides any of them, by section::

    [node]
    feed = "sim"                 # "sim", "replay:FILE" or "tcp://host:port" (the bridge's ticks)
    broker = "paper"             # "paper" or "bridge"
    db = "flowchain.db"
    id = ""                      # this node's id; empty: the database's own (created with it)
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

    [trading]
    target_positions = true      # a decision is a target position; orders on a change of view
    min_hold_ms = 60000.0        # per symbol, in tick time: no order sooner after its last one

    [paper]
    latency_ms = 0.0             # in tick time
    slippage = 0.0               # price units

    [account]
    currency = "USD"             # PnL, exposure and max_daily_loss are in this currency

    [symbols.XAUUSD]             # a symbol's spec (defaults ship for common symbols)
    trade_contract_size = 100.0  # units per lot
    currency_base = "XAU"
    currency_profit = "USD"      # profit is made in this currency, then converted

    [bridge]
    orders = "tcp://127.0.0.1:5556"  # the bridge's ROUTER: orders and backfill
    connect_timeout = 3.0        # seconds to wait for the bridge's first heartbeat
    secret_key = ""              # this node's *.key_secret file (flowchain keys generate DIR)
    server_public_key = ""       # the bridge's .key file; both empty: no Curve (loopback only)
    allow_remote = false         # a non-loopback bridge without keys (trusted networks only)

    [dashboard]
    enabled = true               # the dashboard, /metrics and /api/status (flowchain status)
    host = "127.0.0.1"
    port = 8750                  # 0 picks a free port (logged, and written to url_file)
    url_file = ""                # write the bound URL here once serving (empty: don't)
    interval_s = 0.5             # seconds between live snapshots pushed to open pages
    allow_remote = false         # listen on a non-loopback host (no authentication!)

    [history]
    enabled = true               # interval histograms and executions in SQLite
    db = ""                      # empty: the node's database
    interval_s = 10.0
    sample_rate = 0.001          # fraction of successful executions kept in full
    profile_rate = 0.0           # share of executions profiled per step (CPU, memory, input hash)
    record_inputs = false        # also record each profiled success's chain input (replay, --verify)

    [monitor]
    interval_s = 0.25            # seconds between polls of the engine's rings
    warning_interval_s = 10.0    # at most one slow-step warning per step this often
    window_s = 60.0              # the error rate's rolling window
    error_threshold = 0.05       # escalate above this error rate (5%)
    min_attempts = 20            # attempts in the window before the rate is judged
    repeat_interval_s = 60.0     # an escalated step's alert is sent again this often

    [alerts]
    webhook = ""                 # POST every event as JSON here; the log always gets them

    [tiers.free]                 # service tiers of a multi-tenant node (docs/tenancy.md)
    executions_per_day = 100000

    [tenants.acme]               # a tenant the node hosts, on one of the tiers (free, pro,
    tier = "free"                # enterprise when no [tiers.*] is given)

    [tenancy]
    resource_sample_rate = 0.0   # share of tenants' executions measured (CPU, memory per step)

    [hub]
    url = ""                     # ship history to a flowchain hub here (empty: don't ship)
    token_file = ""              # this node's hub token (flowchain hub token add NODE)
    interval_s = 5.0             # seconds between shipments (a heartbeat when nothing is new)
    batch_rows = 500             # rows per kind in one POST
    max_backoff_s = 60.0         # longest wait between attempts while the hub is down
    allow_insecure = false       # plain http:// to a non-loopback hub (trusted networks only)

    [otel]
    endpoint = ""                # OTLP/HTTP traces URL; needs the OTLP exporter (extra otel)
    sample_rate = 0.01           # fraction of successful executions exported (failed: all)

    [components]
    import = []                  # modules registering your components (@flowchain.component)
    path = []                    # where to find them (relative to this file; empty: its dir)

    [chains]
    file = ""                    # your chains YAML (relative to this file); its chains replace
                                 # the bundled ones of the same name, the rest stay bundled

Flags given on the command line (``--feed``, ``--broker``, ``--db``, ``--duration``,
``--dashboard HOST:PORT``, ``--no-dashboard``, ``--chains`` ...) win over the file; ``--import``
adds to ``[components] import``. Every problem is a :class:`ConfigError` that names the file, the key and what to do;
a file's problems are all reported in one error, a line each (each section is checked against its
own schema).
"""
from __future__ import annotations

import importlib.util
import ipaddress
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import tomllib

from flowchain.errors import FlowChainError
from flowchain.trading.valuation import (
    DEFAULT_ACCOUNT_CURRENCY,
    DEFAULT_CONTRACT_SPECS,
    ContractSpec,
    Valuation,
    ValuationError,
    check_currency,
)

DEFAULT_SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD")
DEFAULT_DB = "flowchain.db"
DEFAULT_ORDERS_ENDPOINT = "tcp://127.0.0.1:5556"
DEFAULT_DASHBOARD_PORT = 8750
"""The dashboard's port unless configured (``flowchain status`` asks there by default)."""
OTLP_EXPORTER_MODULE = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
"""The OTLP/HTTP span exporter ``[otel] endpoint`` needs (package opentelemetry-exporter-otlp)."""

FEED_KINDS = ("sim", "replay", "tcp")
BROKERS = ("paper", "bridge")


class ConfigError(FlowChainError, ValueError):
    """The node's configuration is invalid; the message names the source, the key and the fix."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A config section: unknown keys are errors (a typo never passes silently)."""


HOUR_S = 3600.0
"""The longest period between two polls, snapshots, status lines or batches."""
DAY_S = 86400.0
"""The longest window, warning or repeat interval, and bridge connect timeout."""
YEAR_S = 366 * DAY_S
"""The longest ``duration`` (0 runs until stopped)."""


def _positive(value: float, key: str, *, allow_zero: bool = False,
              maximum: float | None = None) -> None:
    if isinstance(value, bool) or not math.isfinite(value) or value < 0 \
            or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{key} must be a finite number {bound}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{key} must be at most {maximum:g} (seconds), got {value!r}")


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
    id: str = ""
    """This node's id (1..32 letters, digits, ``_``): the prefix of its client order ids. Empty:
    the database's own, created with it and stored in it (see ``flowchain.store.node_identity``)."""

    def __post_init__(self) -> None:
        if self.id:
            from flowchain.store import check_node_id

            check_node_id(self.id)
        feed_kind(self.feed)
        if self.broker not in BROKERS:
            raise ValueError(f"broker must be one of {', '.join(BROKERS)}, got {self.broker!r}")
        if not self.db.strip():
            raise ValueError("db must be a database file path, got an empty string")
        _positive(self.duration, "duration", allow_zero=True, maximum=YEAR_S)
        _positive(self.status_interval, "status_interval", allow_zero=True, maximum=HOUR_S)
        _positive(self.batch_interval, "batch_interval", maximum=HOUR_S)
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


class TradingSection(_Section):
    """``[trading]``: how the trading engine turns decisions into orders."""

    target_positions: bool = True
    """A buy or sell decision is the position the symbol should hold: an order goes only when the
    view changes (flat or opposite exposure), for the difference. False: every buy or sell
    decision is an order (the risk limits then refuse most of them on a busy feed)."""
    min_hold_ms: float = 60_000.0
    """With ``target_positions``: the smallest time between two orders of one symbol, in tick
    time (milliseconds); 0 turns the cool-down off."""

    def __post_init__(self) -> None:
        _positive(self.min_hold_ms, "min_hold_ms", allow_zero=True)


class PaperSection(_Section):
    """``[paper]``: the paper broker's simulated fills."""

    latency_ms: float = 0.0
    """Simulated order latency in tick time; 0 fills at once."""
    slippage: float = 0.0
    """Price added to a buy's ask and taken from a sell's bid, in price units."""

    def __post_init__(self) -> None:
        _positive(self.latency_ms, "latency_ms", allow_zero=True)
        _positive(self.slippage, "slippage", allow_zero=True)


class AccountSection(_Section):
    """``[account]``: the currency the node counts money in."""

    currency: str = DEFAULT_ACCOUNT_CURRENCY
    """PnL, exposure and ``[risk] max_daily_loss`` are in this currency (the paper account's;
    with the bridge broker, set it to the terminal account's currency)."""

    def __post_init__(self) -> None:
        check_currency(self.currency, "currency")


class SymbolSection(_Section, omit_defaults=True):
    """``[symbols.NAME]``: one symbol's spec, as MT5's ``symbol_info`` names it.

    A symbol with a shipped default (:data:`~flowchain.trading.valuation.DEFAULT_CONTRACT_SPECS`)
    may set only the keys that differ; any other symbol sets all three.
    """

    trade_contract_size: float | None = None
    """Units per lot: 100000 for forex, 100 for XAUUSD."""
    currency_base: str | None = None
    currency_profit: str | None = None
    """The currency the price is quoted in: profit is made in it, then converted."""

    def __post_init__(self) -> None:
        if self.trade_contract_size is not None:
            _positive(self.trade_contract_size, "trade_contract_size")
        for key in ("currency_base", "currency_profit"):
            value = getattr(self, key)
            if value is not None:
                check_currency(value, key)


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
        _positive(self.connect_timeout, "connect_timeout", maximum=DAY_S)
        if bool(self.secret_key) != bool(self.server_public_key):
            raise ValueError("CurveZMQ needs both secret_key (this node's *.key_secret file) "
                             "and server_public_key (the bridge's .key file), or neither")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and any loopback address (127.0.0.0/8, ::1), brackets or not."""
    bare = host.strip("[]")
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


class DashboardSection(_Section):
    """``[dashboard]``: where the node serves its dashboard, ``/metrics`` and ``/api/status``."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = DEFAULT_DASHBOARD_PORT
    """0 picks a free port; the bound URL is logged and written to ``url_file``."""
    url_file: str = ""
    """A file the node writes its bound dashboard URL into once it serves (empty: none)."""
    interval_s: float = 0.5
    """Seconds between live snapshots pushed to open pages."""
    allow_remote: bool = False
    """Listen on a non-loopback host: anyone who reaches it reads the node's figures."""

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise ValueError("host must be a listen address such as 127.0.0.1, got ''")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in 0..65535 (0 picks a free one), got {self.port}")
        _positive(self.interval_s, "interval_s", maximum=HOUR_S)
        if self.enabled and not self.allow_remote and not is_loopback_host(self.host):
            raise ValueError(
                f"host {self.host!r} is not loopback: the dashboard has no authentication, so "
                "anyone who reaches it reads the node's figures. Listen on 127.0.0.1 (and use an "
                "SSH tunnel or a reverse proxy), or set [dashboard] allow_remote = true "
                "(--dashboard-allow-remote) on a trusted network")


class HistorySection(_Section):
    """``[history]``: interval histograms and failed/sampled executions persisted in SQLite."""

    enabled: bool = True
    db: str = ""
    """The history database; empty: the node's own database (``[node] db``)."""
    interval_s: float = 10.0
    sample_rate: float = 0.001
    """Fraction of successful executions persisted in full (failed ones always are)."""
    profile_rate: float = 0.0
    """Share of executions profiled per step into ``step_profiles`` (0: off)."""
    record_inputs: bool = False
    """Record the chain input of every profiled successful execution in ``recorded_inputs``
    (status ``'sampled'``), encoded before it ran; needs ``profile_rate`` > 0."""

    def __post_init__(self) -> None:
        _positive(self.interval_s, "interval_s", maximum=HOUR_S)
        _fraction(self.sample_rate, "sample_rate")
        _fraction(self.profile_rate, "profile_rate")
        if self.record_inputs and not self.profile_rate:
            raise ValueError("record_inputs records the inputs of profiled executions: set "
                             "profile_rate above 0 (e.g. 0.01), or record_inputs = false")


class MonitorSection(_Section):
    """``[monitor]``: slow-step warnings and error-rate escalation."""

    interval_s: float = 0.25
    warning_interval_s: float = 10.0
    """At most one slow-step warning per (chain, step) in this many seconds."""
    window_s: float = 60.0
    error_threshold: float = 0.05
    min_attempts: int = 20
    repeat_interval_s: float = 60.0
    """While a step stays escalated, its escalation alert goes out again this often."""

    def __post_init__(self) -> None:
        _positive(self.interval_s, "interval_s", maximum=HOUR_S)
        _positive(self.warning_interval_s, "warning_interval_s", allow_zero=True,
                  maximum=DAY_S)
        _positive(self.window_s, "window_s", maximum=DAY_S)
        _positive(self.repeat_interval_s, "repeat_interval_s", maximum=DAY_S)
        if isinstance(self.error_threshold, bool) or not 0 <= self.error_threshold < 1:
            raise ValueError("error_threshold must be a fraction in [0, 1) (0.05 is 5%), got "
                             f"{self.error_threshold!r}")
        if self.min_attempts < 1:
            raise ValueError(f"min_attempts must be >= 1, got {self.min_attempts}")


class AlertsSection(_Section):
    """``[alerts]``: where monitor events go besides the log (always) and the dashboard."""

    webhook: str = ""
    """An http(s) URL every event is POSTed to as JSON, with retries (empty: none)."""

    def __post_init__(self) -> None:
        if self.webhook:
            _check_url(self.webhook, "webhook", "http://127.0.0.1:9000/alerts")


def _check_url(url: str, key: str, example: str) -> None:
    """Refuse a URL that is not http(s) with a host (``"http://"`` names nowhere)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{key} must be an http:// or https:// URL with a host, such as "
                         f"{example}, got {url!r}")


class OtelSection(_Section):
    """``[otel]``: failed and sampled executions exported as OpenTelemetry traces over OTLP."""

    endpoint: str = ""
    """The OTLP/HTTP traces URL (``http://collector:4318/v1/traces``); empty: no export."""
    sample_rate: float = 0.01

    def __post_init__(self) -> None:
        _fraction(self.sample_rate, "sample_rate")
        if not self.endpoint:
            return
        _check_url(self.endpoint, "endpoint", "http://127.0.0.1:4318/v1/traces")
        if not otlp_exporter_available():
            raise ValueError(
                f"endpoint {self.endpoint!r} needs the OTLP exporter ({OTLP_EXPORTER_MODULE}), "
                "which is not installed: pip install 'flowchain[otel]' "
                "opentelemetry-exporter-otlp-proto-http, or leave [otel] endpoint empty")


class HubSection(_Section):
    """``[hub]``: where the node ships its history (``flowchain hub``; empty url: nowhere)."""

    url: str = ""
    """The hub's base URL (``http://127.0.0.1:8760``); empty: the node ships nothing."""
    token_file: str = ""
    """A file holding this node's hub token (``flowchain hub token add NODE`` prints one)."""
    interval_s: float = 5.0
    """Seconds between shipments; an empty one is the node's heartbeat."""
    batch_rows: int = 500
    """Rows of each kind in one POST (more wait for the next one, sent at once)."""
    max_backoff_s: float = 60.0
    """The longest wait between attempts while the hub does not take the rows (doubling)."""
    allow_insecure: bool = False
    """Send the token over plain http:// to a hub that is not on loopback."""

    def __post_init__(self) -> None:
        _positive(self.interval_s, "interval_s")
        _positive(self.max_backoff_s, "max_backoff_s")
        if isinstance(self.batch_rows, bool) or not 1 <= self.batch_rows <= 100_000:
            raise ValueError(f"batch_rows must be in 1..100000, got {self.batch_rows!r}")
        if not self.url:
            return
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must be an http:// or https:// URL such as "
                             f"http://127.0.0.1:8760, got {self.url!r}")
        if not self.token_file:
            raise ValueError(f"url {self.url!r} needs token_file: the hub accepts a node with "
                             "its token only (flowchain hub token add NODE creates one; "
                             "--hub-token-file FILE)")
        if self.url.startswith("http://") and not self.allow_insecure:
            from urllib.parse import urlsplit

            host = urlsplit(self.url).hostname or ""
            if not is_loopback_host(host):
                raise ValueError(
                    f"url {self.url!r} is plain http to a host that is not loopback: the "
                    "node's token would cross the network in the clear. Use https:// (the "
                    "hub's --tls-cert/--tls-key), or set [hub] allow_insecure = true on a "
                    "trusted network")


def otlp_exporter_available() -> bool:
    """True when the OTLP/HTTP span exporter can be imported."""
    try:
        return importlib.util.find_spec(OTLP_EXPORTER_MODULE) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


class ComponentsSection(_Section):
    """``[components]``: the author's modules, imported before the chains are registered."""

    imports: tuple[str, ...] = msgspec.field(default=(), name="import")
    """Dotted module names; each registers components with ``@flowchain.component(...)``."""
    path: tuple[str, ...] = ()
    """Directories searched first for those modules (relative to the config file); empty: the
    config file's directory. The current directory is always searched."""

    def __post_init__(self) -> None:
        for name in self.imports:
            parts = name.split(".")
            if not all(p.isidentifier() for p in parts):
                raise ValueError(f"import holds {name!r}, which is not a dotted module name "
                                 "such as 'my_components' or 'strategy.components'")


class ChainsSection(_Section):
    """``[chains]``: the author's chains file beside the bundled ``trading_node.yaml``."""

    file: str = ""
    """A chains YAML (relative to the config file); its chains replace the bundled ones of the
    same name and the others stay bundled (empty: the bundled file alone)."""


class TenantSection(_Section):
    """``[tenants.ID]``: a tenant the node hosts and its tier."""

    tier: str
    """One of the tiers (``[tiers.*]``, or the shipped free / pro / enterprise)."""


class TenancySection(_Section):
    """``[tenancy]``: how the node's tenant manager measures."""

    resource_sample_rate: float = 0.0
    """The share of tenants' executions run through the measuring path (CPU time and memory
    allocated per step); 0 turns it off."""

    def __post_init__(self) -> None:
        _fraction(self.resource_sample_rate, "resource_sample_rate")


def _fraction(value: float, key: str) -> None:
    if isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{key} must be a fraction in [0, 1], got {value!r}")


class NodeConfig(_Section):
    """The whole configuration of one trading node (see the module docstring for the file)."""

    node: NodeSection = msgspec.field(default_factory=NodeSection)
    simulator: SimulatorSection = msgspec.field(default_factory=SimulatorSection)
    risk: RiskSection = msgspec.field(default_factory=RiskSection)
    trading: TradingSection = msgspec.field(default_factory=TradingSection)
    paper: PaperSection = msgspec.field(default_factory=PaperSection)
    account: AccountSection = msgspec.field(default_factory=AccountSection)
    symbols: dict[str, SymbolSection] = msgspec.field(default_factory=dict)
    """Symbol specs over the shipped defaults, by symbol name (see :attr:`contract_specs`)."""
    bridge: BridgeSection = msgspec.field(default_factory=BridgeSection)
    dashboard: DashboardSection = msgspec.field(default_factory=DashboardSection)
    history: HistorySection = msgspec.field(default_factory=HistorySection)
    monitor: MonitorSection = msgspec.field(default_factory=MonitorSection)
    alerts: AlertsSection = msgspec.field(default_factory=AlertsSection)
    otel: OtelSection = msgspec.field(default_factory=OtelSection)
    hub: HubSection = msgspec.field(default_factory=HubSection)
    components: ComponentsSection = msgspec.field(default_factory=ComponentsSection)
    chains: ChainsSection = msgspec.field(default_factory=ChainsSection)
    tiers: dict[str, Any] = msgspec.field(default_factory=dict)
    """Service tiers, ``[tiers.NAME]`` tables, validated by :func:`flowchain.tenancy.load_tiers`."""
    features: dict[str, Any] = msgspec.field(default_factory=dict)
    """Gated components by feature (``[features]``), for the tiers."""
    tenants: dict[str, TenantSection] = msgspec.field(default_factory=dict)
    """The tenants the node hosts (``[tenants.ID] tier = "..."``), by tenant id."""
    tenancy: TenancySection = msgspec.field(default_factory=TenancySection)
    source: str = "<defaults>"
    """Where the configuration came from (for messages); not a file key."""

    def __post_init__(self) -> None:
        if self.hub.url and not self.history.enabled:
            raise ValueError(f"hub url {self.hub.url!r} ships what the history writer stores, "
                             "and [history] enabled = false stores nothing; enable the history "
                             "or leave [hub] url empty")
        if self.node.broker == "bridge" and feed_kind(self.node.feed) != "tcp":
            raise ValueError("broker 'bridge' sends orders to the bridge, so the feed must be "
                             f"the bridge's ticks (feed = \"tcp://host:port\"), not "
                             f"{self.node.feed!r}")

    @property
    def feed_kind(self) -> str:
        """``"sim"``, ``"replay"`` or ``"tcp"``."""
        return feed_kind(self.node.feed)

    @property
    def replay_path(self) -> Path | None:
        """The replay file of a ``replay:FILE`` feed, else None."""
        return Path(self.node.feed.split(":", 1)[1]) if self.feed_kind == "replay" else None

    @property
    def contract_specs(self) -> dict[str, ContractSpec]:
        """Every symbol's spec: the shipped defaults, then ``[symbols.NAME]`` over them.

        Raises
        ------
        ValueError
            When a symbol without a default leaves a key out (the message names the key).
        """
        specs = dict(DEFAULT_CONTRACT_SPECS)
        for name, given in self.symbols.items():
            base = specs.get(name)
            values = {}
            for key in SymbolSection.__struct_fields__:
                value = getattr(given, key)
                if value is None:
                    if base is None:
                        raise ValueError(f"symbols.{name}.{key}: {name} has no shipped spec, so "
                                         "[symbols." + name + "] must set trade_contract_size, "
                                         "currency_base and currency_profit")
                    value = getattr(base, key)
                values[key] = value
            specs[name] = ContractSpec(**values)
        return specs

    def valuation(self) -> Valuation:
        """Return the account's valuation over the node's symbols (the paper broker's).

        Raises
        ------
        ValueError
            When a spec is incomplete; :class:`~flowchain.trading.valuation.ValuationError`
            when a node symbol has no spec or its profit currency no conversion.
        """
        valuation = Valuation(self.account.currency, self.contract_specs, quoted=self.node.symbols)
        valuation.check(self.node.symbols)
        return valuation

    def tier_set(self) -> Any:
        """The tiers of ``[tiers.*]`` and ``[features]``, or the shipped ones when the file
        defines none.

        Raises
        ------
        TierConfigError
            When a tier or feature is invalid (the message names the file and the key).
        """
        from flowchain.tenancy.tiers import load_tiers, tiers_from_mapping

        if not self.tiers and not self.features:
            return load_tiers()
        return tiers_from_mapping({"tiers": self.tiers, "features": self.features}, self.source)

    @property
    def history_db(self) -> str:
        """The history database file: ``[history] db``, else the node's database."""
        return self.history.db or self.node.db

    @property
    def duration(self) -> float | None:
        """Seconds to run, or None to run until stopped."""
        return self.node.duration or None

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain data (the TOML file's shape, keys included)."""
        out = msgspec.to_builtins(self)
        out.pop("source", None)
        for optional in ("tiers", "features", "tenants"):  # a node without tenants has none
            if not out.get(optional):
                out.pop(optional, None)
        if "tenants" not in out:  # [tenancy] only matters to a node hosting tenants
            out.pop("tenancy", None)
        if not self.hub.url:  # [hub] only matters to a node that ships
            out.pop("hub", None)
        return out


_SECTIONS: dict[str, type] = {
    "node": NodeSection, "simulator": SimulatorSection, "risk": RiskSection,
    "trading": TradingSection, "paper": PaperSection, "account": AccountSection, "bridge": BridgeSection,
    "dashboard": DashboardSection, "history": HistorySection, "monitor": MonitorSection,
    "alerts": AlertsSection, "otel": OtelSection, "hub": HubSection,
    "components": ComponentsSection, "chains": ChainsSection, "tenancy": TenancySection}
"""Each ``[section]`` of the file and the schema it is checked against."""


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


_FLAG_KEYS = {"feed": ("node", "feed"), "broker": ("node", "broker"), "db": ("node", "db"),
              "node_id": ("node", "id"),
              "duration": ("node", "duration"), "symbols": ("node", "symbols"),
              "status_interval": ("node", "status_interval"),
              "dashboard_enabled": ("dashboard", "enabled"),
              "dashboard_url_file": ("dashboard", "url_file"),
              "dashboard_allow_remote": ("dashboard", "allow_remote"),
              "dashboard": ("dashboard", "host:port"),
              "imports": ("components", "import"), "chains": ("chains", "file"),
              "hub": ("hub", "url"), "hub_token_file": ("hub", "token_file")}
"""Command-line overrides and the ``(section, key)`` each one sets (``dashboard`` sets two)."""


def parse_host_port(text: str, flag: str = "--dashboard") -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:8750`` for IPv6) into host and port.

    Raises
    ------
    ConfigError
        When the text has no host, no port, or a port outside 0..65535.
    """
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{flag}: expected HOST:PORT such as 127.0.0.1:8750 (port 0 picks a "
                          f"free one), got {text!r}")
    return host, int(port)


def _convert(data: Mapping[str, Any], source: str, final: bool = True) -> NodeConfig:
    problems = _problems(data, source)
    if problems:
        raise ConfigError("\n".join(problems))
    try:
        config = msgspec.convert(dict(data, source=source), NodeConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc), source)) from None
    if config.tenants or config.tiers or config.features:
        _check_tenants(config, source)
    if final:  # (a file that flags complete is checked once they are applied)
        _check_valuation(config, source)
    return config


def _problems(data: Mapping[str, Any], source: str) -> list[str]:
    """Every problem of the file's sections at once, each as ``source: key 'k': what``.

    Each section is checked against its own schema; after a problem its key is set aside and
    the section checked again, so one run reports every bad key, not only the first. What
    depends on several sections (the bridge broker's feed, tenants' tiers, valuation) is
    checked once every section is valid.
    """
    problems: list[str] = []
    if "source" in data:
        problems.append(f"{source}: unknown key 'source'; the known keys there are "
                        f"{_known_keys('')}. Remove it")
    for name, table in data.items():
        struct = _SECTIONS.get(name)
        if name == "source" or name in ("tiers", "features"):
            continue
        if name in ("symbols", "tenants"):
            if isinstance(table, Mapping):
                for entry, value in table.items():
                    problems.extend(_entry_problems(name, entry, value, source))
            continue
        if struct is None:
            problems.append(f"{source}: unknown key {name!r}; the known keys there are "
                            f"{_known_keys('')}. Fix the spelling or remove it")
            continue
        if not isinstance(table, Mapping):
            continue  # (the whole-file conversion names the type)
        problems.extend(_table_problems(dict(table), struct, name, source))
    return problems


def _table_problems(table: dict[str, Any], struct: type, where: str, source: str) -> list[str]:
    problems: list[str] = []
    for _ in range(len(table) + 1):
        try:
            msgspec.convert(table, struct)
            return problems
        except msgspec.ValidationError as exc:
            what, _, at = str(exc).rpartition(" - at `$")
            message = f"{what} - at `$.{where}{at}" if what else f"{exc} - at `$.{where}`"
            key, text = _located(message, source)
            problems.append(text)
            field_name = key[len(where) + 1:].split(".", 1)[0].split("[", 1)[0]
            if field_name not in table:  # a rule across keys: nothing to set aside
                return problems
            del table[field_name]
    return problems


def _entry_problems(kind: str, name: str, table: Any, source: str) -> list[str]:
    """The problems of one ``[symbols.NAME]`` or ``[tenants.ID]`` table."""
    where = f"{kind}.{name}"
    if kind == "symbols":
        if not name.strip():
            return [f"{source}: key {where!r}: a symbol spec needs a symbol name"]
        if not isinstance(table, Mapping):
            try:
                msgspec.convert(table, SymbolSection)
            except msgspec.ValidationError as exc:
                return [_explain(f"{exc} - at `$.{where}`", source)]
        return _table_problems(dict(table), SymbolSection, where, source)
    try:
        _check_tenant_table(name, table, source)
    except ConfigError as exc:
        return [str(exc)]
    return []


def _check_tenant_table(tenant_id: str, table: Any, source: str) -> None:
    from flowchain.tenancy.errors import TenancyError
    from flowchain.tenancy.tenant_id import check_tenant_id

    where = f"tenants.{tenant_id}"
    try:
        check_tenant_id(tenant_id)
    except TenancyError as exc:
        raise ConfigError(f"{source}: key {where!r}: {exc}") from None
    try:
        msgspec.convert(table, TenantSection)
    except msgspec.ValidationError as exc:
        what, _, at = str(exc).rpartition(" - at `$")
        message = f"{what} - at `$.{where}{at}" if what else f"{exc} - at `$.{where}`"
        raise ConfigError(_explain(message, source)) from None


def _check_tenants(config: NodeConfig, source: str) -> None:
    """Refuse invalid tiers and tenants on a tier that is not defined."""
    from flowchain.tenancy.errors import TierConfigError

    try:
        tiers = config.tier_set()
    except TierConfigError as exc:
        raise ConfigError(str(exc)) from None
    for tenant_id, section in config.tenants.items():
        if section.tier not in tiers:
            raise ConfigError(f"{source}: key 'tenants.{tenant_id}.tier': unknown tier "
                              f"{section.tier!r}; the tiers are {', '.join(tiers.names())}"
                              + ("" if config.tiers else " (the shipped ones: no [tiers.*] "
                                 "in this file)"))


def _check_valuation(config: NodeConfig, source: str) -> None:
    """Refuse symbol specs that are incomplete and, for the paper broker, node symbols it could
    not value in the account currency (no spec, or no quoted pair converting the profit)."""
    try:
        specs = config.contract_specs
    except ValueError as exc:
        key, _, what = str(exc).partition(": ")
        raise ConfigError(f"{source}: key {key!r}: {what}") from None
    if config.node.broker != "paper":
        return
    try:
        config.valuation()
    except ValuationError as exc:
        key = "node.symbols" if exc.symbol in specs else f"symbols.{exc.symbol}"
        raise ConfigError(f"{source}: key {key!r}: {exc} (the paper broker values every symbol "
                          "in the account currency); fix it and start again") from None


def _explain(message: str, source: str) -> str:
    """Turn msgspec's ``what - at `$.risk.x``` into ``source: key 'risk.x': what``."""
    return _located(message, source)[1]


def _located(message: str, source: str) -> tuple[str, str]:
    """Return the key msgspec's message is about (``risk.x``) and the explained message."""
    what, sep, where = message.rpartition(" - at `")
    if not sep:
        what, where = message, ""
    key = where.rstrip("`").removeprefix("$").lstrip(".")
    if what.startswith("Object contains unknown field"):
        field_name = what.split("`")[1]
        key = f"{key}.{field_name}" if key else field_name
        known = _known_keys(key.rpartition(".")[0])
        return key, (f"{source}: unknown key {key!r}; the known keys there are {known}. Fix "
                     "the spelling or remove it")
    first = what.split(" ", 1)[0]
    if first in _known_keys(key).split(", "):
        key = f"{key}.{first}" if key else first
    where_text = f"key {key!r}" if key else "top level"
    if what.split(" ", 1)[0][1:].islower():  # "Expected ..." reads "expected ..."; "CurveZMQ" stays
        what = what[0].lower() + what[1:]
    return key, f"{source}: {where_text}: {what}; fix it and start again"


def _known_keys(section: str) -> str:
    struct = NodeConfig if section == "" else _SECTIONS.get(section)
    if section.startswith("symbols.") and section.count(".") == 1:
        struct = SymbolSection
    if section.startswith("tenants.") and section.count(".") >= 1:
        struct = TenantSection
    if struct is None:
        return "unknown"
    return ", ".join(struct.__struct_encode_fields__[i]
                     for i, f in enumerate(struct.__struct_fields__) if f != "source")


def load_config(path: str | os.PathLike | None = None,
                overrides: Mapping[str, Any] | None = None) -> NodeConfig:
    """Build the node's configuration: defaults, then the TOML file, then command-line flags.

    Parameters
    ----------
    path : str or PathLike, optional
        A TOML file; the embedded defaults alone when omitted.
    overrides : mapping, optional
        Flag values by name (``feed``, ``broker``, ``db``, ``node_id``, ``duration``, ``symbols``,
        ``status_interval``, ``dashboard`` as ``"HOST:PORT"``, ``dashboard_enabled``,
        ``dashboard_url_file``, ``dashboard_allow_remote``); ``None`` values are ignored.

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
    flags = {k: v for k, v in (overrides or {}).items()
             if v is not None and not (k == "imports" and not v)}
    base = _convert(data, source, final=not flags)
    if path is not None:
        base = _relative_to_file(base, Path(path))
    unknown = set(flags) - set(_FLAG_KEYS)
    if unknown:
        raise ConfigError(f"unknown override(s) {sorted(unknown)}; known: {sorted(_FLAG_KEYS)}")
    if not flags:
        return base
    merged = dict(data)
    for name, value in flags.items():
        section, key = _FLAG_KEYS[name]
        held = merged.get(section)
        table = dict(held) if isinstance(held, dict) else {}
        if name == "dashboard":
            table["host"], table["port"] = parse_host_port(str(value))
        elif name == "imports":
            held_imports = table.get(key)
            table[key] = [*(held_imports if isinstance(held_imports, list) else []), *value]
        else:
            table[key] = list(value) if name == "symbols" else value
        merged[section] = table
    label = f"{source} + --flags" if path is not None else "--flags"
    if path is not None:  # keep the paths resolved against the file; a --chains flag is as given
        if "chains" not in flags:
            merged["chains"] = msgspec.to_builtins(base.chains)
        merged["components"] = dict(merged.get("components") or {},
                                    path=list(base.components.path))
    return _convert(merged, label)


def _relative_to_file(config: NodeConfig, path: Path) -> NodeConfig:
    """Resolve ``[chains] file`` and ``[components] path`` against the config file's directory
    (``[components] path`` defaults to that directory)."""
    here = path.parent
    chains_file = config.chains.file
    if chains_file and not Path(chains_file).is_absolute():
        chains_file = str(here / chains_file)
    search = tuple(str(here / p) for p in config.components.path) or (str(here),)
    return msgspec.structs.replace(
        config, chains=ChainsSection(file=chains_file),
        components=ComponentsSection(imports=config.components.imports, path=search))
