"""The user context every execution carries: tenant, user and tier label its records."""
from __future__ import annotations

from dataclasses import dataclass, field


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
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        # the engine interns contexts in a dict on every labelled execution: hash once
        object.__setattr__(self, "_hash", hash((self.tenant_id, self.user_id, self.tier)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple:
        # string hashes differ between processes: rebuild (and rehash) on unpickling
        return (UserContext, (self.tenant_id, self.user_id, self.tier))

    def labels(self) -> dict[str, str]:
        """Return the context as metric/record labels."""
        return {"tenant": self.tenant_id, "user": self.user_id, "tier": self.tier}


DEFAULT_CONTEXT = UserContext()
