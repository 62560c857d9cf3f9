"""ZeroMQ CURVE for the tcp:// endpoints: the keys of a config, key generation and the authenticator.

With ``[curve] key_dir`` set, every tcp endpoint of the rig is encrypted and authenticated. The key
directory's layout and the checks on its files are ``zmqcam.config.keyfiles`` (a config is checked
when it is loaded); ``zmqcam-daemon keygen DIR`` makes it with ``keygen`` here.

Publishers are CURVE servers and run pyzmq's ``ThreadAuthenticator`` (ZAP) in their process; it
lets in only the keys in ``authorized/``, re-read whenever that directory changes, so a key added
or removed there applies to the next connection without a restart. ipc endpoints stay on the NULL
mechanism: they sit in the 0700 run_dir (only the owner can connect), and encrypting 1 MB raw
frames on the local host would cost CPU for nothing. ``zmqcam.bus.sockets`` applies the keys to tcp
only.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from zmqcam.config import Config
from zmqcam.config.keyfiles import (
    AUTHORIZED,
    CLIENT,
    PUBLIC_SUFFIX,
    SECRET_SUFFIX,
    SERVER,
    authorized_keys,
    read_key,
)
from zmqcam.errors import ConfigError, StartError
from zmqcam.files import write_atomic
from zmqcam.names import STREAM_NAME_PATTERN

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerKeys:
    """What a publishing socket needs: its key pair and where the allowed client keys are."""

    public: bytes
    secret: bytes
    authorized: Path


@dataclass(frozen=True)
class ClientKeys:
    """What a subscribing socket needs: its own key pair and the publisher's public key."""

    public: bytes
    secret: bytes
    server: bytes


# ---------------------------------------------------------------------------------------------
# the keys of a config


def server_keys(config: Config) -> ServerKeys | None:
    """The publishers' keys of a CURVE-enabled config, else None. The files were checked when the
    config was loaded; StartError when the secret key has become unusable since."""
    if config.curve.key_dir is None:
        return None
    key_dir = Path(config.curve.key_dir)
    path = key_dir / (SERVER + SECRET_SUFFIX)
    try:
        public, secret = read_key(path, want_secret=True)
    except ValueError as exc:  # checked when the config loaded; changed since
        raise StartError(f"{path}: {exc}") from None
    assert secret is not None
    return ServerKeys(public, secret, key_dir / AUTHORIZED)


def client_keys(config: Config) -> ClientKeys | None:
    """The daemon's own consumers' keys of a CURVE-enabled config, else None."""
    if config.curve.key_dir is None:
        return None
    key_dir = Path(config.curve.key_dir)
    return load_client_keys(key_dir / (SERVER + PUBLIC_SUFFIX), key_dir / (CLIENT + SECRET_SUFFIX))


def load_client_keys(server_key: str | os.PathLike[str], client_key: str | os.PathLike[str]) -> ClientKeys:
    """Keys for a program on another host: the rig's ``server.key`` and the program's own
    ``NAME.key_secret`` (from ``zmqcam-daemon keygen DIR --client NAME``). ConfigError if unusable."""
    problems = []
    server: bytes | None = None
    public: bytes | None = None
    secret: bytes | None = None
    try:
        server, _ = read_key(Path(server_key), want_secret=False)
    except ValueError as exc:
        problems.append(f"server_key {os.fspath(server_key)!r}: {exc}")
    try:
        public, secret = read_key(Path(client_key), want_secret=True)
    except ValueError as exc:
        problems.append(f"client_key {os.fspath(client_key)!r}: {exc}")
    if problems:
        raise ConfigError(problems)
    assert server is not None and public is not None and secret is not None
    return ClientKeys(public, secret, server)


# ---------------------------------------------------------------------------------------------
# the authenticator (ZAP)


class AuthorizedKeys:
    """pyzmq's CURVE credentials provider: is a client key in ``authorized/``?

    The directory is re-read when its listing changes (names, sizes, mtimes), so keys added or
    removed there apply to the next handshake. A refused key is logged once, so an operator sees
    which program lacks authorization without a log line per reconnect attempt.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.allowed = 0
        self.denied = 0
        self._lock = threading.Lock()
        self._signature: tuple[Any, ...] | None = None
        self._keys: dict[bytes, Path] = {}
        self._reported: set[bytes] = set()
        self._refresh()

    def _listing(self) -> tuple[Any, ...]:
        try:
            stats = [(p.name, p.stat()) for p in sorted(self.directory.glob("*" + PUBLIC_SUFFIX))]
            return tuple((name, st.st_size, st.st_mtime_ns) for name, st in stats)
        except OSError:
            return ()

    def _refresh(self) -> None:
        signature = self._listing()
        if signature == self._signature:
            return
        try:
            keys = authorized_keys(self.directory)
        except (OSError, ValueError) as exc:
            # keep the keys we had: a half-copied file must not lock everybody out
            log.error("%s: %s; keeping the %d keys loaded before", self.directory, exc, len(self._keys))
        else:
            if self._signature is not None:
                log.info("%s changed: %d authorized keys", self.directory, len(keys))
            self._keys = keys
        self._signature = signature

    def callback(self, domain: str, key: bytes) -> bool:
        """Called by the authenticator thread for each CURVE handshake; ``key`` is Z85."""
        with self._lock:
            self._refresh()
            if key in self._keys:
                self.allowed += 1
                return True
            self.denied += 1
            if key not in self._reported and len(self._reported) < 100:
                self._reported.add(key)
                log.warning(
                    "refused a tcp subscriber with CURVE key %s: not in %s",
                    key.decode("ascii", "replace"),
                    self.directory,
                )
            return False


def start_authenticator(ctx: zmq.Context[Any], keys: ServerKeys | None) -> ThreadAuthenticator | None:
    """Start the ZAP handler of ``ctx`` (one per context), before any CURVE socket binds: a CURVE
    server with no ZAP handler would accept every client that knows the server key."""
    if keys is None:
        return None
    auth = ThreadAuthenticator(ctx, log=logging.getLogger(f"{__name__}.zap"))
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=AuthorizedKeys(keys.authorized))
    return auth


def stop_authenticator(auth: ThreadAuthenticator | None) -> None:
    """Stop the ZAP thread (it holds a socket: the context cannot terminate before)."""
    if auth is not None:
        auth.stop()


# ---------------------------------------------------------------------------------------------
# key generation


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid != os.getuid():
        raise PermissionError(f"{path}: owned by another user; refusing to put keys there")
    os.chmod(path, 0o700)


def _create_pair(key_dir: Path, name: str) -> tuple[Path, Path]:
    """A new key pair ``name``.key / ``name``.key_secret; the secret never exists with a wider mode."""
    public, secret = key_dir / (name + PUBLIC_SUFFIX), key_dir / (name + SECRET_SUFFIX)
    old_umask = os.umask(0o077)  # create_certificates writes with the umask's mode
    try:
        zmq.auth.create_certificates(key_dir, name)
    finally:
        os.umask(old_umask)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)  # a public key is meant to be copied
    return public, secret


def _refuse_existing(paths: list[Path]) -> None:
    existing = [p for p in paths if p.exists()]
    if existing:
        raise FileExistsError(f"{existing[0]} exists; refusing to overwrite keys (remove them to make new ones)")


def keygen(key_dir: Path) -> list[Path]:
    """Make a rig's keys in ``key_dir``: the server pair, the daemon's client pair, and
    authorized/client.key. Return the files made. FileExistsError if any exists already."""
    names = [SERVER + PUBLIC_SUFFIX, SERVER + SECRET_SUFFIX, CLIENT + PUBLIC_SUFFIX, CLIENT + SECRET_SUFFIX]
    _refuse_existing([key_dir / n for n in names] + [key_dir / AUTHORIZED / (CLIENT + PUBLIC_SUFFIX)])
    _private_dir(key_dir)
    _private_dir(key_dir / AUTHORIZED)
    made = [*_create_pair(key_dir, SERVER), *_create_pair(key_dir, CLIENT)]
    made.append(_authorize(key_dir, key_dir / (CLIENT + PUBLIC_SUFFIX)))
    return made


def add_client(key_dir: Path, name: str) -> list[Path]:
    """One more client pair ``name`` for a program on another host, authorized at once."""
    if not re.match(STREAM_NAME_PATTERN, name):
        raise ValueError(f"client name {name!r}: use 1 to 32 of a-z, 0-9, '_' and '-'")
    if name in (SERVER, CLIENT):
        raise ValueError(f"client name {name!r} is reserved for the daemon's own keys")
    if not (key_dir / (SERVER + PUBLIC_SUFFIX)).is_file():
        raise FileNotFoundError(
            f"{key_dir / (SERVER + PUBLIC_SUFFIX)}: no rig keys here (run: zmqcam-daemon keygen {key_dir})"
        )
    names = [name + PUBLIC_SUFFIX, name + SECRET_SUFFIX]
    _refuse_existing([key_dir / n for n in names] + [key_dir / AUTHORIZED / (name + PUBLIC_SUFFIX)])
    _private_dir(key_dir / AUTHORIZED)
    made = list(_create_pair(key_dir, name))
    made.append(_authorize(key_dir, key_dir / (name + PUBLIC_SUFFIX)))
    return made


def _authorize(key_dir: Path, public: Path) -> Path:
    target = key_dir / AUTHORIZED / public.name
    # written whole, so the authenticator never reads half a key
    return write_atomic(target, public.read_bytes(), mode=0o644)
