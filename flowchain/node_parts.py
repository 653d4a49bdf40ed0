"""Wire the trading node's chains to components configured for one node.

``trading_node.yaml`` names the components by their chain names; the component modules register
classes that take their defaults. A node needs them configured (its database, its broker, its
risk limits, its feed's stale flag), so :func:`build_parts` builds one instance of each from a
:class:`~flowchain.config.NodeConfig` and hands them to the node, which registers them in a
:class:`~flowchain.components.ComponentRegistry` of its own (the process-wide registry is left
untouched, so several nodes or tests can live in one process).
"""
from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowchain.component_modules import install_finder
from flowchain.config import NodeConfig
from flowchain.errors import ChainProblem, ChainValidationError, FlowChainError
from flowchain.feeds.base import Feed

IMPORT_HINT = ("import the module that registers it: flowchain node --import MODULE, or "
               "[components] import = [\"MODULE\"] in the node's config")
"""What an unknown component in the node's chains means to do."""


class NodeStartError(FlowChainError, RuntimeError):
    """The node could not start: bad chains file, unusable feed or database, unreachable bridge."""


@dataclass
class NodeParts:
    """Everything a node builds from its config, before it runs.

    Attributes
    ----------
    feed : Feed
        The tick source.
    components : dict
        Component name (as the chains file names it) -> configured instance.
    min_history : int
        The shortest per-symbol DecisionContext history the feature engine accepts.
    trading : Any
        The TradingEngine (broker, journal, risk guard).
    database : Any
        The DatabaseService of the MT5 -> database chain.
    """

    feed: Feed
    components: dict[str, Any]
    min_history: int
    trading: Any
    database: Any
    closers: list[Callable[[], Any]] = field(default_factory=list)
    account_currency: str = "USD"
    """The currency of :meth:`pnl` (the broker's, else ``[account] currency``)."""

    def positions(self) -> dict[str, float]:
        """Return ``{symbol: net lots}`` of open positions, as the broker reports them."""
        broker = self.trading.broker
        report = getattr(broker, "positions", None)
        if callable(report):
            return dict(report())
        return {s: broker.position(s) for s in self.feed.symbols if broker.position(s)}

    def pnl(self) -> float:
        """Return the broker's realized plus unrealized PnL, in :attr:`account_currency`."""
        return float(self.trading.broker.pnl())

    def exposure(self) -> dict[str, float]:
        """Return ``{symbol: signed notional}`` in :attr:`account_currency` when the broker
        values it (the paper broker), else ``{}``."""
        report = getattr(self.trading.broker, "exposure", None)
        return dict(report()) if callable(report) else {}

    def orders_summary(self) -> dict[str, Any]:
        """Return the trading engine's outcomes, holds (of which ``unchanged_views`` and
        ``cooling`` were buy or sell decisions that needed no order), risk refusals, start-up
        settlement, the journal's orders by state and the orders still in flight."""
        t = self.trading
        return {"node_id": t.journal.node_id, "outcomes": dict(t.outcomes), "holds": t.holds,
                "unchanged_views": t.unchanged_views, "cooling": t.cooling,
                "risk_rejections": {k: v for k, v in t.risk.rejections.items() if v},
                "send_errors": dict(t.send_errors), "recovered": dict(t.recovered),
                "journal": t.journal.state_counts(), "in_flight": t.in_flight()}

    async def close(self) -> None:
        """Close the journal, the database and the broker (each once, errors swallowed after
        the first so every resource gets its turn)."""
        first: BaseException | None = None
        while self.closers:
            close = self.closers.pop()
            try:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:  # keep closing the rest
                first = first or exc
        if first is not None:
            raise first


def preflight(config: NodeConfig) -> None:
    """Check, in milliseconds, what would otherwise fail only after the slow start (the numeric
    kernels' first compilation): the dashboard's port is free and the databases open.

    Raises
    ------
    NodeStartError
        When the dashboard's address cannot be bound, or a database cannot be opened (a missing
        directory, a file that is not a database); the message says what to do.
    """
    import socket

    from flowchain.store import StoreError, open_database

    d = config.dashboard
    if d.enabled and d.port:
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                d.host, d.port, type=socket.SOCK_STREAM)[0]
            with socket.socket(family, kind, proto) as probe:
                if hasattr(socket, "SO_REUSEADDR") and sys.platform != "win32":
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
                probe.bind(address)
        except OSError as exc:
            raise NodeStartError(
                f"dashboard {d.host}:{d.port} (from {config.source}): cannot listen there: "
                f"{exc.strerror or exc}. Is another node running? Stop it, pick another port "
                "(--dashboard 127.0.0.1:PORT; port 0 picks a free one) or pass --no-dashboard") \
                from exc
    databases = [("database", config.node.db)]
    if config.history.enabled and config.history_db != config.node.db:
        databases.append(("history database", config.history_db))
    for what, path in databases:
        try:
            open_database(path).close()
        except StoreError as exc:
            raise NodeStartError(f"{what} {path!r} (from {config.source}): {exc}") from exc


def build_feed(config: NodeConfig) -> Feed:
    """Return the feed the config names (simulator, replay file or the bridge's ZeroMQ ticks).

    A replay file without a ``symbol`` column is taken to hold the first configured symbol; a
    file with one replays every symbol in it.

    Raises
    ------
    NodeStartError
        When the replay file is missing or unreadable, or the feed refuses its parameters.
    """
    node = config.node
    try:
        if config.feed_kind == "sim":
            from flowchain.feeds.simulator import SimulatorFeed, warm_up

            warm_up()
            rate = config.simulator.rate or None
            return SimulatorFeed(node.symbols, seed=config.simulator.seed, rate=rate)
        if config.feed_kind == "replay":
            from flowchain.feeds.replay import ReplayFeed

            return ReplayFeed(config.replay_path, symbol=node.symbols[0])  # type: ignore[arg-type]
        from flowchain.feeds.subscriber import ZmqFeed

        return ZmqFeed(node.feed, node.symbols, backfill_endpoint=config.bridge.orders,
                       socket_setup=curve_setup(config))
    except (OSError, ValueError, ImportError) as exc:
        raise NodeStartError(f"feed {node.feed!r} (from {config.source}): {exc}") from exc


def curve_setup(config: NodeConfig) -> Callable[[Any], None] | None:
    """Return a socket setup making each socket a Curve client of the bridge, or None.

    Raises
    ------
    NodeStartError
        When the bridge is not on loopback and neither key files nor ``allow_remote`` are set,
        or a key file cannot be read.
    """
    from flowchain_bridge import keys

    b = config.bridge
    secured = bool(b.secret_key)
    for endpoint in (config.node.feed, b.orders):
        try:
            keys.check_endpoint(endpoint, secured=secured, allow_remote=b.allow_remote)
        except keys.InsecureEndpointError as exc:
            raise NodeStartError(f"{config.source}: {exc}") from exc
    if not secured:
        return None
    try:  # read the files now: a wrong path fails at start, with the path in the message
        keys.load_pair(b.secret_key)
        keys.load_public(b.server_public_key)
    except (OSError, ValueError) as exc:
        raise NodeStartError(f"{config.source}: [bridge] key files: {exc}") from exc

    def setup(sock: Any) -> None:
        keys.secure_client(sock, b.secret_key, b.server_public_key)

    return setup


def build_broker(config: NodeConfig, identity: Any = None) -> Any:
    """Return the broker the config names (``identity``: the node's, from its journal).

    Raises
    ------
    NodeStartError
        When the bridge's order socket does not answer within ``bridge.connect_timeout``
        (the message names the endpoint) or its settings are refused.
    """
    if config.node.broker == "paper":
        from flowchain.trading.brokers.paper import PaperBroker

        try:
            valuation = config.valuation()
        except ValueError as exc:  # ValuationError: load_config refuses this before
            raise NodeStartError(f"paper broker (from {config.source}): {exc}") from exc
        return PaperBroker(latency_ms=config.paper.latency_ms, slippage=config.paper.slippage,
                           valuation=valuation)
    from flowchain.trading.brokers.bridge import BridgeBroker, BridgeUnreachableError

    b = config.bridge
    try:
        return BridgeBroker.connect(b.orders, timeout_s=b.connect_timeout,
                                    secret_key=b.secret_key or None,
                                    server_public_key=b.server_public_key or None,
                                    allow_remote=b.allow_remote, identity=identity)
    except BridgeUnreachableError as exc:
        raise NodeStartError(f"{exc} (broker 'bridge' from {config.source})") from exc
    except (TypeError, ValueError, OSError) as exc:
        raise NodeStartError(f"broker 'bridge' at {b.orders} (from {config.source}): {exc}") \
            from exc


def build_parts(config: NodeConfig) -> NodeParts:
    """Build the feed and one configured instance of every component of the two chains.

    Raises
    ------
    NodeStartError
        When the feed, the database, the journal or the broker cannot be set up.
    """
    from flowchain.ingest.ingestion import DataBridge
    from flowchain.ingest.processing import DataProcessor
    from flowchain.ingest.storage import DatabaseService
    from flowchain.ingest.validation import DataValidator
    from flowchain.store import StoreError
    from flowchain.trading.consensus import ConsensusEngine
    from flowchain.trading.engine import SettlementError, TradingEngine
    from flowchain.trading.features import FeatureEngine
    from flowchain.trading.journal import OrderJournal
    from flowchain.trading.orchestrator import MultiAgentOrchestrator
    from flowchain.trading.risk import RiskGuard

    feed = build_feed(config)
    closers: list[Callable[[], Any]] = []
    try:
        database = DatabaseService(config.node.db)
        try:
            database.connection  # noqa: B018  (open now: a bad path fails at start, not on the first batch)
        except StoreError as exc:
            raise NodeStartError(f"database {config.node.db!r}: {exc}") from exc
        closers.append(database.close)
        r = config.risk
        state = feed.state
        risk = RiskGuard(max_position=r.max_position, max_orders_per_second=r.max_orders_per_second,
                         max_daily_loss=r.max_daily_loss, max_tick_age_ms=r.max_tick_age_ms,
                         kill_file=r.kill_file or None,
                         feed_stale=lambda: not state.orders_allowed)
        try:
            journal = OrderJournal(config.node.db, config.node.id or None)
        except Exception as exc:  # sqlite3.Error and the journal's own checks
            raise NodeStartError(f"order journal in {config.node.db!r}: {exc}") from exc
        closers.append(journal.close)
        broker = build_broker(config, journal.identity)
        close_broker = getattr(broker, "close", None)
        if callable(close_broker):
            closers.append(close_broker)
        try:  # settles what an earlier run left in flight, restores positions: before any decision
            trading = TradingEngine(broker=broker, journal=journal, risk=risk,
                                    target_positions=config.trading.target_positions,
                                    min_hold_ms=config.trading.min_hold_ms)
        except SettlementError as exc:
            raise NodeStartError(f"broker {config.node.broker!r} (from {config.source}): {exc}") \
                from exc
        except Exception as exc:  # sqlite3.Error while settling
            raise NodeStartError(f"order journal in {config.node.db!r}: {exc}") from exc
        closers.append(trading.finish)  # runs first: the orders in flight reach the journal
        features = FeatureEngine()
        components = {
            "DataBridge": DataBridge(),
            "DataValidator": DataValidator(),
            "DataProcessor": DataProcessor(),
            "DatabaseService": database,
            "FeatureEngine": features,
            "MultiAgentOrchestrator": MultiAgentOrchestrator(),
            "ConsensusEngine": ConsensusEngine(),
            "TradingEngine": trading,
        }
    except BaseException:
        for close in reversed(closers):
            try:
                close()
            except Exception:
                pass
        raise
    return NodeParts(feed=feed, components=components, min_history=features.min_history,
                     trading=trading, database=database, closers=closers,
                     account_currency=getattr(broker, "account_currency", None)
                     or config.account.currency)


def import_component_modules(config: NodeConfig) -> None:
    """Import ``[components] import`` (and ``--import``) modules, looked for in ``[components]
    path`` and the current directory first; nothing else is imported from those folders.

    Raises
    ------
    NodeStartError
        When a module cannot be imported; the message names it and the error.
    """
    install_finder(config.components.imports, config.components.path)
    for name in config.components.imports:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an author's module may raise anything while importing
            searched = ", ".join((*config.components.path, "the current directory"))
            raise NodeStartError(
                f"component module {name!r} (from {config.source}): {type(exc).__name__}: "
                f"{exc} (searched {searched} and the installed packages)") from exc


def build_registry(config: NodeConfig, configured: dict[str, Any]) -> Any:
    """Return the node's ChainRegistry: the author's components beside the configured built-in
    ones, the bundled chains, and the author's chains file over them.

    The process-wide components (those the ``[components] import`` modules registered with
    ``@flowchain.component``) are copied into a registry of the node's own; the configured
    built-in instances take their names. ``[chains] file`` chains replace bundled chains of the
    same name; ``[node] chains`` replaces the bundled file entirely.

    Raises
    ------
    NodeStartError
        When a module does not import, a chains file is invalid, a chain names a component
        nobody registered (the message says how to import it), or a node chain is missing.
    """
    from flowchain.chain import load_chains_file
    from flowchain.chains import AI_DECISION_CHAIN, MT5_TO_DATABASE_CHAIN, TRADING_NODE_YAML
    from flowchain.components import ComponentRegistry, default_components
    from flowchain.registry import ChainRegistry

    import_component_modules(config)
    components = ComponentRegistry()
    for name in default_components.names():
        if name not in configured:
            components.register(name, default_components.implementation(name))
    for name, impl in configured.items():
        components.register(name, impl)
    registry = ChainRegistry(components)
    base = Path(config.node.chains) if config.node.chains else TRADING_NODE_YAML
    files = [base] + ([Path(config.chains.file)] if config.chains.file else [])
    chains: dict[str, Any] = {}
    try:
        problems = []
        for path in files:
            for definition in load_chains_file(path):
                held = chains.get(definition.name)
                if held is not None and Path(held.source) != TRADING_NODE_YAML:
                    problems.append(ChainProblem(
                        f"the chain is also defined at {held.source}:{held.line}; a chains file "
                        "replaces only bundled chains, so rename one or remove it",
                        chain=definition.name, source=definition.source, line=definition.line))
                chains[definition.name] = definition
        for definition in chains.values():
            try:
                registry.register_chain(definition)
            except ChainValidationError as exc:
                problems.extend(exc.problems)
        if problems:
            raise ChainValidationError(problems)
    except ChainValidationError as exc:
        unknown = any(p.message.startswith("unknown component") for p in exc.problems)
        hint = f"\n  to fix an unknown component, {IMPORT_HINT}" if unknown else ""
        raise NodeStartError(f"the node's chains ({' + '.join(map(str, files))}): "
                             f"{exc}{hint}") from exc
    missing = [n for n in (AI_DECISION_CHAIN, MT5_TO_DATABASE_CHAIN) if n not in chains]
    if missing:
        raise NodeStartError(
            f"the node's chains ({' + '.join(map(str, files))}): the node runs "
            f"{', '.join(map(repr, missing))} and no chains file defines it; the chains there: "
            f"{', '.join(chains) or 'none'}")
    return registry
