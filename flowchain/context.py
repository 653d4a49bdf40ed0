"""The user context every execution carries: tenant, user and tier label its records."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UserContext:
    """Who an execution runs for.

    Parameters
    ----------
    tenant_id : str
        The tenant (organisation or desk) the execution belongs to.
    user_id : str
        The user inside the tenant.
    tier : str
        The tenant's service tier (quotas and isolation will key on it).
    """

    tenant_id: str = "default"
    user_id: str = "default"
    tier: str = "standard"

    def labels(self) -> dict[str, str]:
        """Return the context as metric/record labels."""
        return {"tenant": self.tenant_id, "user": self.user_id, "tier": self.tier}


DEFAULT_CONTEXT = UserContext()
