"""The CURVE key directory's layout and the checks on its files, made when a config is loaded.

The key directory, made by ``zmqcam-daemon keygen DIR`` (``zmqcam.bus.curve``)::

    server.key, server.key_secret    the publishers' (grabbers', stitcher's) key pair
    client.key, client.key_secret    the daemon's own consumers (stitcher, bridge, status, record)
    <name>.key, <name>.key_secret    one pair per remote program (``keygen DIR --client NAME``)
    authorized/*.key                 the public keys allowed to subscribe

This lives with the config, below the bus: loading a config checks every key file (a missing,
foreign or world-readable key is a config error naming the file), and the bus reads the same files
with the same rules when a process starts.
"""

from __future__ import annotations

import stat
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

SERVER = "server"
CLIENT = "client"
AUTHORIZED = "authorized"
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
#: a CURVE key in Z85 text form, as the key files hold it
_Z85_KEY_LENGTH = 40
#: key files are a few hundred bytes; anything bigger is not one
_MAX_KEY_FILE = 64 * 1024


def read_key(path: Path, want_secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) from a key file; ValueError with a short reason when it is not usable."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_KEY_FILE:
        raise ValueError("not a key file")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror or exc}") from None
    except ValueError:
        raise ValueError("no public-key in it (not a key file made by zmqcam-daemon keygen)") from None
    for what, key in (("public-key", public), ("secret-key", secret)):
        if key is None:
            continue
        if not _valid_z85_key(key):
            raise ValueError(f"its {what} is not a 40-character Z85 CURVE key")
    if want_secret and secret is None:
        raise ValueError("no secret-key in it (use the .key_secret file)")
    if want_secret and stat.S_IMODE(info.st_mode) & 0o077:
        # like ssh: a secret others can read is no secret; refuse rather than leak silently
        raise ValueError(f"secret key readable by other users (mode {stat.S_IMODE(info.st_mode):o}; chmod 600 it)")
    return public, secret


def _valid_z85_key(key: bytes) -> bool:
    if len(key) != _Z85_KEY_LENGTH:
        return False
    try:
        z85.decode(key)
    except (ValueError, KeyError, IndexError):
        return False
    return True


def authorized_keys(directory: Path) -> dict[bytes, Path]:
    """The public keys in ``directory``/*.key; ValueError naming the first bad file."""
    keys = {}
    for path in sorted(directory.glob("*" + PUBLIC_SUFFIX)):
        try:
            public, _ = read_key(path, want_secret=False)
        except ValueError as exc:
            raise ValueError(f"{path.name}: {exc}") from None
        keys[public] = path
    return keys


def key_dir_problems(key_dir: Path) -> list[tuple[Path, str]]:
    """Every problem with a key directory, as (file, reason); empty when the daemon can use it."""
    if not zmq.has("curve"):
        return [(key_dir, "this libzmq was built without CURVE support")]
    try:
        if not key_dir.exists():
            return [(key_dir, "no such directory (make one with: zmqcam-daemon keygen DIR)")]
        if not key_dir.is_dir():
            return [(key_dir, "not a directory")]
    except (OSError, ValueError) as exc:
        return [(key_dir, f"cannot read: {exc}")]
    problems: list[tuple[Path, str]] = []
    for name, secret in (
        (SERVER + PUBLIC_SUFFIX, False),
        (SERVER + SECRET_SUFFIX, True),
        (CLIENT + SECRET_SUFFIX, True),
    ):
        try:
            read_key(key_dir / name, want_secret=secret)
        except ValueError as exc:
            problems.append((key_dir / name, str(exc)))
    authorized = key_dir / AUTHORIZED
    if not authorized.is_dir():
        problems.append((authorized, "not a directory (it holds the public keys allowed to subscribe)"))
        return problems
    try:
        if not authorized_keys(authorized):
            problems.append((authorized, "no *.key file in it: nobody could subscribe"))
    except (OSError, ValueError) as exc:
        problems.append((authorized, str(exc)))
    return problems
