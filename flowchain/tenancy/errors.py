"""What tenancy refuses: unknown tenants and tiers, invalid tier files, gated chains, quotas.

Every error names the tenant, the limit or the file and key, and says what to do.
"""
from __future__ import annotations

from flowchain.errors import FlowChainError


class TenancyError(FlowChainError):
    """Base class of the errors of :mod:`flowchain.tenancy`."""


class TierConfigError(TenancyError, ValueError):
    """A tier file is invalid; the message names the file, the key and the fix."""


class UnknownTierError(TenancyError, LookupError):
    """A tier name is not defined."""


class UnknownTenantError(TenancyError, LookupError):
    """A tenant id is not registered, or an id was not a usable tenant id."""


class FeatureGatedError(TenancyError, PermissionError):
    """A chain uses a component or feature above the tenant's tier (refused at registration).

    Attributes
    ----------
    tenant_id, tier : str
        Who asked and their tier.
    feature : str
        The gated feature (or limit) the chain needs.
    allowed_in : str or None
        The first tier that allows it, None when no tier does.
    """

    def __init__(self, message: str, *, tenant_id: str, tier: str, feature: str,
                 allowed_in: str | None) -> None:
        super().__init__(message)
        self.tenant_id = tenant_id
        self.tier = tier
        self.feature = feature
        self.allowed_in = allowed_in


class QuotaExceeded(TenancyError):
    """An execution or a registration was refused by a tenant's limit; nothing ran.

    Attributes
    ----------
    tenant_id : str
    limit : str
        ``executions_per_second``, ``concurrent``, ``executions_per_day`` or ``chains``.
    limit_value : float
        The tier's limit.
    usage : float
        The usage when refused (executions running, executions today, chains registered, or
        the burst in use).
    resets_in_s : float or None
        Seconds until the refused request would be admitted (the rate's next token, the end of
        the day); None for limits that free up only when something ends (concurrency, chains).
    resets_at : float or None
        The same as a Unix time.
    """

    def __init__(self, *, tenant_id: str, tier: str, limit: str, limit_value: float,
                 usage: float, resets_in_s: float | None, resets_at: float | None,
                 next_tier: str | None = None) -> None:
        self.tenant_id = tenant_id
        self.tier = tier
        self.limit = limit
        self.limit_value = limit_value
        self.usage = usage
        self.resets_in_s = resets_in_s
        self.resets_at = resets_at
        self.next_tier = next_tier
        when = "" if resets_in_s is None else f"; it resets in {resets_in_s:.3f} s"
        upgrade = f", or upgrade to tier {next_tier!r}" if next_tier else ""
        super().__init__(
            f"tenant {tenant_id!r} (tier {tier!r}) exceeded {limit} = {limit_value:g} "
            f"(usage {usage:g}){when}; retry later{upgrade}")


class WorkerCrashed(TenancyError, RuntimeError):
    """A tenant's worker process died, hung past its timeout or outgrew its memory limit.

    The worker was restarted; the execution that was running is lost and is not retried.
    ``reason`` is ``crashed``, ``timeout`` or ``memory``.
    """

    def __init__(self, message: str, *, tenant_id: str, reason: str,
                 exitcode: int | None = None) -> None:
        super().__init__(message)
        self.tenant_id = tenant_id
        self.reason = reason
        self.exitcode = exitcode
