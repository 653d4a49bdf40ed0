"""CurveZMQ keys: generate key pairs into files, load them, and secure sockets with them.

``flowchain keys generate DIR`` writes ``bridge.key``/``bridge.key_secret`` and
``node.key``/``node.key_secret`` (ZeroMQ certificate files) and an ``authorized/`` folder holding
the node's public key. The bridge is the Curve server and accepts only public keys found in its
authorized folder (checked by a ZAP authenticator thread); the node is a Curve client that knows
the bridge's public key. Without keys, endpoints are confined to loopback unless remote use is
allowed explicitly.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import zmq
import zmq.auth

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class InsecureEndpointError(ValueError):
    """An endpoint outside loopback was asked for without Curve keys or an explicit allowance."""


def generate(directory: Path | str) -> dict[str, Path]:
    """Write bridge and node key pairs into ``directory`` (created when missing).

    Returns
    -------
    dict
        Paths: ``bridge_public``, ``bridge_secret``, ``node_public``, ``node_secret``,
        ``authorized`` (the folder of client public keys the bridge accepts).

    Raises
    ------
    FileExistsError
        When key files are already there (never overwrite keys silently).
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    existing = [p for p in ("bridge.key", "bridge.key_secret", "node.key", "node.key_secret") if (root / p).exists()]
    if existing:
        raise FileExistsError(f"{root} already holds {', '.join(existing)}; remove them or pick another folder")
    bridge_public, bridge_secret = zmq.auth.create_certificates(str(root), "bridge")
    node_public, node_secret = zmq.auth.create_certificates(str(root), "node")
    authorized = root / "authorized"
    authorized.mkdir(exist_ok=True)
    shutil.copy(node_public, authorized / "node.key")
    for secret in (bridge_secret, node_secret):
        Path(secret).chmod(0o600)
    return {"bridge_public": Path(bridge_public), "bridge_secret": Path(bridge_secret),
            "node_public": Path(node_public), "node_secret": Path(node_secret), "authorized": authorized}


def load_pair(secret_file: Path | str) -> tuple[bytes, bytes]:
    """Load ``(public, secret)`` from a ``*.key_secret`` file.

    Raises
    ------
    ValueError
        When the file holds no secret key (a public ``.key`` file was given).
    OSError
        When the file cannot be read.
    """
    public, secret = zmq.auth.load_certificate(str(secret_file))
    if secret is None:
        raise ValueError(f"{secret_file} holds no secret key: pass the *.key_secret file")
    return public, secret


def load_public(key_file: Path | str) -> bytes:
    """Load the public key from a ``.key`` or ``.key_secret`` file.

    Raises
    ------
    OSError
        When the file cannot be read.
    """
    public, _ = zmq.auth.load_certificate(str(key_file))
    return public


def start_authenticator(context: zmq.Context, authorized_dir: Path | str) -> ThreadAuthenticator:
    """Start a ZAP authenticator on ``context`` accepting the public keys in ``authorized_dir``.

    Raises
    ------
    FileNotFoundError
        When ``authorized_dir`` does not exist.
    """
    folder = Path(authorized_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"authorized-keys folder {folder} does not exist; "
                                "`flowchain keys generate DIR` (or `flowchain-bridge --generate-keys DIR`) "
                                "creates DIR/authorized")
    from zmq.auth.thread import ThreadAuthenticator  # imported only when Curve is on

    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(folder))
    return auth


def secure_server(socket: zmq.Socket, secret_file: Path | str) -> None:
    """Make ``socket`` a Curve server with the key pair in ``secret_file`` (before bind)."""
    public, secret = load_pair(secret_file)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True


def secure_client(socket: zmq.Socket, secret_file: Path | str, server_public_file: Path | str) -> None:
    """Make ``socket`` a Curve client of the server whose public key is in ``server_public_file``."""
    public, secret = load_pair(secret_file)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = load_public(server_public_file)


def is_loopback(endpoint: str) -> bool:
    """True for ``ipc://``, ``inproc://`` and tcp endpoints on 127.0.0.1, ::1 or localhost."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    parts = urlsplit(endpoint)
    if parts.scheme != "tcp":
        return False
    host = parts.netloc.rsplit(":", 1)[0]
    return host in LOOPBACK_HOSTS


def check_endpoint(endpoint: str, *, secured: bool, allow_remote: bool) -> None:
    """Refuse a non-loopback endpoint unless Curve secures it or remote use is allowed.

    Raises
    ------
    InsecureEndpointError
        For a non-loopback endpoint without keys and without ``allow_remote``.
    """
    if secured or allow_remote or is_loopback(endpoint):
        return
    raise InsecureEndpointError(
        f"endpoint {endpoint!r} is not loopback and no Curve keys were given: traffic would be "
        "unauthenticated and unencrypted. Give key files (`flowchain keys generate DIR`) or pass "
        "--allow-remote for a trusted network")


def generate_bridge_pair(directory: Path | str) -> dict[str, Path]:
    """Write the bridge's key pair and an empty ``authorized/`` folder into ``directory``.

    For a bridge that makes its own secret key on its own machine: only public keys then cross
    between hosts (``bridge.key`` to the node, the node's ``node.key`` into ``authorized/``).

    Returns
    -------
    dict
        Paths: ``bridge_public``, ``bridge_secret``, ``authorized``.

    Raises
    ------
    FileExistsError
        When ``bridge.key`` or ``bridge.key_secret`` is already there (never overwrite keys).
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    existing = [p for p in ("bridge.key", "bridge.key_secret") if (root / p).exists()]
    if existing:
        raise FileExistsError(f"{root} already holds {', '.join(existing)}; remove them or pick another folder")
    public, secret = zmq.auth.create_certificates(str(root), "bridge")
    Path(secret).chmod(0o600)
    authorized = root / "authorized"
    authorized.mkdir(exist_ok=True)
    return {"bridge_public": Path(public), "bridge_secret": Path(secret), "authorized": authorized}
