"""Many tenants, one engine: tiers that gate and limit, admission, usage, isolation levels.

:class:`TenantManager` is the entry point: one chain registry per tenant, executions
admitted by the tenant's tier (:func:`load_tiers`), usage persisted in SQLite and upgrade
triggers delivered through the alert sinks.
"""
from flowchain.tenancy.errors import (
    FeatureGatedError,
    QuotaExceeded,
    TenancyError,
    TierConfigError,
    UnknownTenantError,
    UnknownTierError,
    WorkerCrashed,
)
from flowchain.tenancy.manager import TenantManager, TenantUsage, UserPerformance
from flowchain.tenancy.tiers import (
    DEFAULT_TIERS_TOML,
    Tier,
    TierSet,
    load_tiers,
    tiers_from_toml,
)
from flowchain.tenancy.triggers import UPGRADE_TRIGGER

__all__ = [
    "DEFAULT_TIERS_TOML",
    "FeatureGatedError",
    "QuotaExceeded",
    "TenancyError",
    "TenantManager",
    "TenantUsage",
    "Tier",
    "TierConfigError",
    "TierSet",
    "UPGRADE_TRIGGER",
    "UnknownTenantError",
    "UnknownTierError",
    "UserPerformance",
    "WorkerCrashed",
    "load_tiers",
    "tiers_from_toml",
]
