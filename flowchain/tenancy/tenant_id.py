"""Tenant ids: what is accepted, and how an id becomes a file name.

Ids are opaque strings chosen by the operator or the hub: quotes, slashes, spaces, SQL and
label syntax are all accepted and carried as data (bound SQL parameters, escaped Prometheus
label values). Refused: non-strings, the empty string, control characters (they would break
log lines and terminal tables) and ids longer than :data:`MAX_TENANT_ID`.
"""
from __future__ import annotations

import hashlib
import re

from flowchain.tenancy.errors import UnknownTenantError

MAX_TENANT_ID = 128
"""The longest tenant id accepted, in characters."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_UNSAFE_PATH = re.compile(r"[^A-Za-z0-9_.-]+")


def check_tenant_id(tenant_id: object) -> str:
    """Return ``tenant_id`` when it is a usable id.

    Raises
    ------
    UnknownTenantError
        When it is not a string, is empty or blank, holds a control character, or is longer
        than :data:`MAX_TENANT_ID`.
    """
    if not isinstance(tenant_id, str):
        raise UnknownTenantError(f"a tenant id is a string, got {type(tenant_id).__name__} "
                                 f"{tenant_id!r}")
    if not tenant_id.strip():
        raise UnknownTenantError("a tenant id must not be empty or blank")
    if len(tenant_id) > MAX_TENANT_ID:
        raise UnknownTenantError(f"tenant id {tenant_id[:40]!r}... is {len(tenant_id)} "
                                 f"characters long; at most {MAX_TENANT_ID} are accepted")
    bad = _CONTROL.search(tenant_id)
    if bad:
        raise UnknownTenantError(f"tenant id {tenant_id!r} holds the control character "
                                 f"{bad.group()!r} at {bad.start()}; use printable characters")
    return tenant_id


def tenant_file_name(tenant_id: str) -> str:
    """Return a file-system-safe, collision-free name for ``tenant_id``.

    The readable part keeps letters, digits, ``_``, ``.`` and ``-``; a hash of the whole id
    follows, so ``a/b`` and ``a_b`` never share a file and ``..`` never leaves a directory.
    """
    readable = _UNSAFE_PATH.sub("_", tenant_id).strip("._")[:40] or "tenant"
    digest = hashlib.sha256(tenant_id.encode()).hexdigest()[:12]
    return f"{readable}-{digest}"
