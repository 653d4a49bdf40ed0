"""Node and viewer tokens of a hub: one per node or operator, stored hashed, compared in
constant time.

The tokens file holds one line per node, ``NODE_ID sha256:HEX`` (the SHA-256 of the token; the
token itself is printed once by ``flowchain hub token add NODE`` and never stored by the hub).
Lines starting with ``#`` and blank lines are ignored. The hub re-reads the file when it
changes, so adding or revoking a node needs no restart.

The viewer tokens file has the same form, ``NAME sha256:HEX``, one line per operator allowed
the cross-tenant views (the dashboard's figures, ``/api/v1/overview``, ``/metrics``); it is a
file of its own (``flowchain hub token add-viewer NAME``), so a node token can never be a
viewer's nor the other way round.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from pathlib import Path

from flowchain.store import check_node_id

HASH_PREFIX = "sha256:"


class TokenFileError(ValueError):
    """The tokens file is unreadable or malformed; the message names the file and line."""


def token_hash(token: str) -> str:
    """Return the stored form of a token: ``sha256:`` and its hex digest."""
    return HASH_PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_tokens(text: str, source: str) -> dict[str, str]:
    """Return ``{node_id: "sha256:HEX"}`` of a tokens file's text.

    Raises
    ------
    TokenFileError
        When a line is not ``NODE_ID sha256:HEX``, a node id is invalid or repeated.
    """
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"{source}:{number}"
        if len(parts) != 2 or not parts[1].startswith(HASH_PREFIX) \
                or len(parts[1]) != len(HASH_PREFIX) + 64:
            raise TokenFileError(f"{where}: expected 'NODE_ID sha256:<64 hex digits>', got "
                                 f"{line[:80]!r}; create entries with flowchain hub token add")
        try:
            check_node_id(parts[0])
        except ValueError as exc:
            raise TokenFileError(f"{where}: {exc}") from None
        if parts[0] in out:
            raise TokenFileError(f"{where}: node {parts[0]!r} is listed twice")
        out[parts[0]] = parts[1].lower()
    return out


class NodeTokens:
    """The node tokens a hub accepts, read from ``path`` (re-read whenever the file changes).

    Raises
    ------
    TokenFileError
        From the constructor, when the file is missing or malformed.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._hashes: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp == self._stamp:
                return
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TokenFileError(f"tokens file {str(self.path)!r}: {exc.strerror or exc}; "
                                 "create it with flowchain hub token add NODE --tokens FILE") \
                from None
        self._hashes = parse_tokens(text, str(self.path))
        self._stamp = stamp

    def node_of(self, token: str) -> str | None:
        """Return the node the token belongs to, or None (every entry is compared, in constant
        time, whether one matched or not)."""
        with self._lock:
            try:
                self._load()
            except TokenFileError:
                pass  # a file being rewritten: keep the tokens read last
            hashes = dict(self._hashes)
        digest = token_hash(token)
        found = None
        for node_id, stored in hashes.items():
            if hmac.compare_digest(stored, digest):
                found = node_id
        return found

    def nodes(self) -> list[str]:
        """Return the node ids that have a token."""
        with self._lock:
            return sorted(self._hashes)


class ViewerTokens(NodeTokens):
    """The viewer (operator) tokens a hub accepts for its cross-tenant views, read from
    ``path`` (re-read whenever the file changes).

    Raises
    ------
    TokenFileError
        From the constructor, when the file is missing or malformed.
    """

    def _load(self) -> None:
        try:
            super()._load()
        except TokenFileError as exc:
            if self.path.exists():
                raise
            raise TokenFileError(f"viewer tokens file {str(self.path)!r} does not exist; "
                                 "create it with flowchain hub token add-viewer NAME "
                                 "--viewer-tokens FILE") from exc

    def viewer_of(self, token: str) -> str | None:
        """Return the viewer the token belongs to, or None (compared in constant time)."""
        return self.node_of(token)

    def viewers(self) -> list[str]:
        """Return the names of the viewers that have a token."""
        return self.nodes()


def add_token(path: str | Path, node_id: str, *, replace: bool = False) -> str:
    """Create a token for ``node_id`` in the tokens file at ``path`` and return it (the only
    time it is seen: the file keeps its hash). The file is created with mode 0600.

    Raises
    ------
    ValueError
        When the node id is invalid, or already has a token and ``replace`` is false.
    TokenFileError
        When the existing file is malformed.
    """
    return _add(Path(path), node_id, replace, "node", NODES_HEADER)


def add_viewer_token(path: str | Path, name: str, *, replace: bool = False) -> str:
    """Create a viewer token for ``name`` in the viewer tokens file at ``path`` and return it
    (seen only now: the file keeps its hash, mode 0600).

    Raises
    ------
    ValueError
        When the name is invalid (the node id rules), or already has a token and ``replace``
        is false.
    TokenFileError
        When the existing file is malformed.
    """
    return _add(Path(path), name, replace, "viewer", VIEWERS_HEADER)


def _add(path: Path, name: str, replace: bool, what: str, header: str) -> str:
    """A new token for ``name`` (a node or a viewer) in the tokens file at ``path``."""
    check_node_id(name)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    hashes = parse_tokens(text, str(path))
    if name in hashes and not replace:
        raise ValueError(f"{what} {name!r} already has a token in {str(path)!r}; pass "
                         "--replace to issue a new one (the old one stops working)")
    token = secrets.token_urlsafe(32)
    hashes[name] = token_hash(token)
    _write(path, hashes, header)
    return token


def revoke_token(path: str | Path, node_id: str) -> bool:
    """Remove ``node_id``'s token from the file; return whether it had one."""
    path = Path(path)
    if not path.exists():
        return False
    hashes = parse_tokens(path.read_text(encoding="utf-8"), str(path))
    if hashes.pop(node_id, None) is None:
        return False
    first = path.read_text(encoding="utf-8").partition("\n")[0] + "\n"
    _write(path, hashes, first if first.startswith("#") else NODES_HEADER)
    return True


NODES_HEADER = "# flowchain hub node tokens: NODE_ID sha256:HEX (flowchain hub token add NODE)\n"
VIEWERS_HEADER = ("# flowchain hub viewer tokens: NAME sha256:HEX "
                  "(flowchain hub token add-viewer NAME)\n")


def _write(path: Path, hashes: dict[str, str], header: str = NODES_HEADER) -> None:
    """Write the file atomically, readable by its owner only."""
    body = header
    body += "".join(f"{node} {digest}\n" for node, digest in sorted(hashes.items()))
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body)
    os.replace(partial, path)
