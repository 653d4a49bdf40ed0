"""Service tiers as data: limits, gated features and the isolation level, from TOML.

A tier file (or the node's TOML) holds a ``[features]`` table naming which components each
feature covers, and one ``[tiers.NAME]`` table per tier, in upgrade order (the first is the
lowest)::

    [features]
    advanced = ["MultiAgentOrchestrator", "ConsensusEngine"]

    [tiers.free]
    isolation = "shared"            # "shared", "dedicated" or "process"
    chains = 5                      # chains registered
    steps_per_chain = 8
    executions_per_second = 5.0     # token bucket rate ...
    burst = 10                      # ... and depth
    executions_per_day = 10000      # per UTC day
    concurrent = 2                  # executions in progress at once
    history_retention_days = 7
    features = []                   # features of [features] this tier may use

A limit left out is unlimited; a limit given must be positive. :data:`DEFAULT_TIERS_TOML` is
the shipped default (free / pro / enterprise). Every problem is a :class:`TierConfigError`
naming the file and the key.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import tomllib

from flowchain.tenancy.errors import TierConfigError, UnknownTierError

ISOLATION_LEVELS = ("shared", "dedicated", "process")

LIMIT_KEYS = ("chains", "steps_per_chain", "executions_per_second", "executions_per_day",
              "concurrent", "history_retention_days")
"""The limits a tier may set; each is unlimited when left out."""

_INT_KEYS = {"chains", "steps_per_chain", "burst", "executions_per_day", "concurrent",
             "ring_capacity", "worker_memory_mb"}
_FLOAT_KEYS = {"executions_per_second", "history_retention_days", "execution_timeout_s"}
_TIER_KEYS = ("description", "isolation", *LIMIT_KEYS, "burst", "features", "ring_capacity",
              "worker_memory_mb", "execution_timeout_s")

DEFAULT_TIERS_TOML = """
[features]
advanced = ["MultiAgentOrchestrator", "ConsensusEngine"]
trading = ["TradingEngine"]

[tiers.free]
description = "shared runners, small quotas"
isolation = "shared"
chains = 5
steps_per_chain = 8
executions_per_second = 50.0
burst = 100
executions_per_day = 100000
concurrent = 4
history_retention_days = 7
features = []

[tiers.pro]
description = "dedicated runners, rings and histograms"
isolation = "dedicated"
chains = 50
steps_per_chain = 32
executions_per_second = 5000.0
burst = 10000
executions_per_day = 50000000
concurrent = 64
history_retention_days = 90
features = ["advanced"]
ring_capacity = 1024

[tiers.enterprise]
description = "a worker process of its own"
isolation = "process"
chains = 1000
steps_per_chain = 128
concurrent = 256
history_retention_days = 400
features = ["advanced", "trading"]
ring_capacity = 1024
worker_memory_mb = 1024
execution_timeout_s = 30.0
"""
"""The tiers shipped with FlowChain: free (shared), pro (dedicated), enterprise (process)."""


@dataclass(frozen=True, slots=True)
class Tier:
    """One service tier.

    Attributes
    ----------
    name : str
    rank : int
        Its place in the upgrade order (0 is the lowest).
    isolation : str
        ``shared``, ``dedicated`` or ``process``.
    chains, steps_per_chain, executions_per_day, concurrent : int or None
        Limits; None is unlimited.
    executions_per_second : float or None
        The token bucket's rate; ``burst`` its depth (the rate rounded up when not set).
    history_retention_days : float or None
    features : frozenset of str
        The features (``[features]`` names) the tier may use.
    ring_capacity : int
        Executions kept per chain by the tier's own runners (dedicated, process).
    worker_memory_mb : int or None
        A process worker whose own (private) memory grows by more than this is recycled
        (process isolation).
    execution_timeout_s : float
        A process worker's execution running longer is killed and the worker restarted.
    """

    name: str
    rank: int
    isolation: str = "shared"
    description: str = ""
    chains: int | None = None
    steps_per_chain: int | None = None
    executions_per_second: float | None = None
    burst: int | None = None
    executions_per_day: int | None = None
    concurrent: int | None = None
    history_retention_days: float | None = None
    features: frozenset = field(default_factory=frozenset)
    ring_capacity: int = 1024
    worker_memory_mb: int | None = None
    execution_timeout_s: float = 30.0

    def limit(self, name: str) -> float | None:
        """Return the value of limit ``name`` (one of :data:`LIMIT_KEYS`), None if unlimited."""
        return getattr(self, name)

    @property
    def effective_burst(self) -> int:
        """The token bucket's depth: ``burst``, else the rate rounded up (at least 1)."""
        if self.burst is not None:
            return self.burst
        return max(1, math.ceil(self.executions_per_second or 1))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready description."""
        out = {k: getattr(self, k) for k in ("name", "rank", "isolation", "description",
                                              *LIMIT_KEYS, "burst", "ring_capacity",
                                              "worker_memory_mb", "execution_timeout_s")}
        out["features"] = sorted(self.features)
        return out


class TierSet:
    """The tiers in upgrade order and the components each feature covers.

    Raises
    ------
    UnknownTierError
        From :meth:`get` for a name that is not defined.
    """

    def __init__(self, tiers: Mapping[str, Tier], features: Mapping[str, frozenset],
                 source: str = "<defaults>") -> None:
        self._tiers = dict(tiers)
        self.features = dict(features)
        self.source = source
        self._component_feature = {c: f for f, comps in self.features.items() for c in comps}

    def __iter__(self) -> Iterator[Tier]:
        return iter(sorted(self._tiers.values(), key=lambda t: t.rank))

    def __len__(self) -> int:
        return len(self._tiers)

    def __contains__(self, name: object) -> bool:
        return name in self._tiers

    def names(self) -> list[str]:
        """The tier names, lowest first."""
        return [t.name for t in self]

    def get(self, name: str) -> Tier:
        """Return tier ``name``."""
        tier = self._tiers.get(name) if isinstance(name, str) else None
        if tier is None:
            raise UnknownTierError(f"unknown tier {name!r}; the tiers in {self.source} are "
                                   f"{', '.join(self.names())}")
        return tier

    def next_above(self, tier: Tier) -> Tier | None:
        """The tier one rank above ``tier``, None for the highest."""
        above = [t for t in self if t.rank > tier.rank]
        return above[0] if above else None

    def feature_of(self, component: str) -> str | None:
        """The feature that gates ``component``, None when it is not gated."""
        return self._component_feature.get(component)

    def first_with_feature(self, feature: str) -> Tier | None:
        """The lowest tier that may use ``feature``."""
        for tier in self:
            if feature in tier.features:
                return tier
        return None

    def first_allowing(self, limit: str, value: float) -> Tier | None:
        """The lowest tier whose ``limit`` allows ``value``."""
        for tier in self:
            bound = tier.limit(limit)
            if bound is None or value <= bound:
                return tier
        return None


def _fail(source: str, key: str, message: str) -> TierConfigError:
    return TierConfigError(f"{source}: key {key!r}: {message}")


def _number(source: str, key: str, value: Any, integer: bool) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a positive integer" if integer else "a positive number"
        return _raise(_fail(source, key, f"expected {kind}, got {value!r}; fix it or leave the "
                                          "key out for no limit"))
    if integer and not isinstance(value, int):
        _raise(_fail(source, key, f"expected a positive integer, got {value!r}"))
    if not math.isfinite(value) or value <= 0:
        _raise(_fail(source, key, f"must be > 0, got {value!r}; leave the key out for no "
                                  "limit"))
    return value


def _raise(exc: Exception) -> Any:
    raise exc


def _tier(source: str, name: str, rank: int, table: Any, features: Mapping[str, frozenset]
          ) -> Tier:
    prefix = f"tiers.{name}"
    if not isinstance(table, dict):
        raise _fail(source, prefix, f"expected a table [{prefix}], got {table!r}")
    unknown = sorted(set(table) - set(_TIER_KEYS))
    if unknown:
        raise _fail(source, f"{prefix}.{unknown[0]}", "unknown key; the known keys are "
                    f"{', '.join(_TIER_KEYS)}. Fix the spelling or remove it")
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{prefix}.{key}"
        if key in _INT_KEYS:
            values[key] = _number(source, where, value, True)
        elif key in _FLOAT_KEYS:
            values[key] = float(_number(source, where, value, False))
        elif key == "isolation":
            if value not in ISOLATION_LEVELS:
                raise _fail(source, where, f"expected one of {', '.join(ISOLATION_LEVELS)}, "
                            f"got {value!r}")
            values[key] = value
        elif key == "description":
            if not isinstance(value, str):
                raise _fail(source, where, f"expected a string, got {value!r}")
            values[key] = value
        elif key == "features":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _fail(source, where, f"expected a list of feature names, got {value!r}")
            missing = [v for v in value if v not in features]
            if missing:
                raise _fail(source, where, f"unknown feature {missing[0]!r}; the features "
                            f"defined under [features] are {', '.join(features) or 'none'}")
            values[key] = frozenset(value)
    if "burst" in values and "executions_per_second" not in values:
        raise _fail(source, f"{prefix}.burst", "a burst needs executions_per_second; set the "
                    "rate too or remove the burst")
    return Tier(name=name, rank=rank, **values)


def tiers_from_mapping(data: Mapping[str, Any], source: str = "<mapping>") -> TierSet:
    """Build a :class:`TierSet` from parsed TOML (the ``tiers`` and ``features`` tables).

    The node's own sections (``[node]``, ``[risk]``...) may sit beside them; any other
    top-level key is an error (a misspelt ``[tier.free]`` never passes silently).

    Raises
    ------
    TierConfigError
        When a table or key is unknown, a limit is not a positive number, a feature is not
        defined, or there are no tiers.
    """
    from flowchain.config import NodeConfig

    allowed = {"tiers", "features", *NodeConfig.__struct_fields__}
    unknown = sorted(k for k in data if k not in allowed)
    if unknown:
        raise _fail(source, unknown[0], "unknown top-level key; tiers go under [tiers.NAME] "
                    "and gated components under [features]")
    raw_features = data.get("features", {})
    if not isinstance(raw_features, dict):
        raise _fail(source, "features", f"expected a table [features], got {raw_features!r}")
    features: dict[str, frozenset] = {}
    for name, comps in raw_features.items():
        if not isinstance(comps, list) or not all(isinstance(c, str) and c for c in comps):
            raise _fail(source, f"features.{name}", "expected a list of component names, got "
                        f"{comps!r}")
        features[name] = frozenset(comps)
    raw_tiers = data.get("tiers")
    if not isinstance(raw_tiers, dict) or not raw_tiers:
        raise _fail(source, "tiers", "no tiers defined; add at least one [tiers.NAME] table")
    tiers = {}
    for rank, (name, table) in enumerate(raw_tiers.items()):
        if not name.strip():
            raise _fail(source, "tiers", "a tier name must not be empty")
        tiers[name] = _tier(source, name, rank, table, features)
    return TierSet(tiers, features, source)


def tiers_from_toml(text: str, source: str = "<string>") -> TierSet:
    """Build a :class:`TierSet` from TOML text.

    Raises
    ------
    TierConfigError
        As :func:`tiers_from_mapping`, or when the text is not TOML.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TierConfigError(f"{source}: not valid TOML: {exc}") from None
    return tiers_from_mapping(data, source)


def load_tiers(path: str | os.PathLike | None = None) -> TierSet:
    """Load tiers from a TOML file, or the shipped defaults when ``path`` is None.

    Raises
    ------
    TierConfigError
        When the file is missing, unreadable or not TOML, or any tier is invalid; the message
        names the file and the key.
    """
    if path is None:
        return tiers_from_toml(DEFAULT_TIERS_TOML, "<default tiers>")
    source = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise TierConfigError(f"{source}: no such tier file; pass an existing TOML file or "
                              "leave it out for the default tiers") from None
    except OSError as exc:
        raise TierConfigError(f"{source}: cannot read the tier file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TierConfigError(f"{source}: not valid TOML: {exc}") from None
    return tiers_from_mapping(data, source)
