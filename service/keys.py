"""CURVE key pairs for node <-> service ZeroMQ links, in ZeroMQ's own certificate files.

Files are the ZPL certificates ``zmq.auth.create_certificates`` writes (czmq's format,
readable by any ZeroMQ tool): ``<name>.key`` holds the public key and may be copied
anywhere; ``<name>.key_secret`` holds both keys, is created mode 0600 and must stay on
the machine that owns it.

Deployment:

* the service has one pair (``cellwatch keys --out DIR service``); every node gets a copy
  of ``service.key`` to know whom it talks to;
* every node has its own pair named after its node id (``cellwatch keys --out DIR A1-S1``);
  its ``A1-S1.key`` is copied into the service's allowed-keys directory. The file name is
  the node's identity: a message from the key ``A1-S1.key`` must say ``node_id = A1-S1``.
  Revoking a node = deleting its file and reloading the list.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from dsp.errors import InputError
from dsp.wire import CurveKeyPair, check_node_id

__all__ = ["CurveKeyPair", "create_keypair", "load_allowed_keys", "load_keypair", "load_public_key"]

log = logging.getLogger(__name__)

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"


def _check_z85_key(key: bytes | None, path: Path, what: str) -> bytes:
    if key is None:
        raise InputError(str(path), what, "missing")
    try:
        raw = z85.decode(key)
    except (ValueError, KeyError, TypeError):
        raw = b""
    if len(key) != 40 or len(raw) != 32:
        raise InputError(str(path), what, "not a Z85-encoded 32-byte CURVE key (40 characters)")
    return key


def _read_certificate(path: Path) -> tuple[bytes | None, bytes | None]:
    if not path.is_file():
        raise InputError(str(path), None, "no such key file")
    try:
        return zmq.auth.load_certificate(path)
    except OSError as exc:
        raise InputError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    except ValueError:
        raise InputError(str(path), "public-key", "missing: not a ZeroMQ certificate") from None


def create_keypair(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write ``<name>.key`` (public) and ``<name>.key_secret`` (0600) into ``directory``.

    Refuses to overwrite an existing pair: replacing a secret key cuts the node (or the
    whole site, for the service's key) off until every peer gets the new public key.
    Both files appear atomically (written in a private temporary directory, then linked).
    """
    check_node_id(name, "name")
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(str(out), None, f"cannot create directory: {exc.strerror}") from None
    public_path, secret_path = out / f"{name}{PUBLIC_SUFFIX}", out / f"{name}{SECRET_SUFFIX}"
    for path in (public_path, secret_path):
        if path.exists():
            raise InputError(str(path), None, "already exists; refusing to replace a key (delete it first)")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".keys-", dir=out))  # mode 0700
    except OSError as exc:
        raise InputError(str(out), None, f"cannot write: {exc.strerror}") from None
    try:
        tmp_public, tmp_secret = (Path(p) for p in zmq.auth.create_certificates(tmp, name, metadata={"name": name}))
        os.chmod(tmp_secret, 0o600)
        os.chmod(tmp_public, 0o644)
        os.link(tmp_secret, secret_path)  # link() fails if the target exists: no overwrite race
        try:
            os.link(tmp_public, public_path)
        except OSError:
            secret_path.unlink()
            raise
    except FileExistsError as exc:
        raise InputError(exc.filename2 or str(out), None, "already exists; refusing to replace a key") from None
    except OSError as exc:
        raise InputError(str(out), None, f"cannot write key files: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("created key pair name=%s public=%s secret=%s", name, public_path, secret_path)
    return public_path, secret_path


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    """The Z85 public key of a ``.key`` (or ``.key_secret``) certificate file."""
    p = Path(path)
    public, _ = _read_certificate(p)
    return _check_z85_key(public, p, "public-key")


def load_keypair(secret_path: str | os.PathLike[str]) -> CurveKeyPair:
    """Both keys from a ``.key_secret`` file; warns if others can read it."""
    p = Path(secret_path)
    public, secret = _read_certificate(p)
    if secret is None:
        raise InputError(str(p), "secret-key", "missing: this is a public key file, the secret one ends in .key_secret")
    pair = CurveKeyPair(_check_z85_key(public, p, "public-key"), _check_z85_key(secret, p, "secret-key"))
    if zmq.curve_public(pair.secret) != pair.public:
        raise InputError(str(p), "public-key", "does not belong to the secret key in the same file")
    try:
        mode = p.stat().st_mode
    except OSError:
        mode = 0
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret key file readable by others path=%s mode=%o (chmod 600 it)", p, mode & 0o777)
    return pair


def load_allowed_keys(directory: str | os.PathLike[str]) -> dict[str, bytes]:
    """``{node_id: public key}`` from every ``<node_id>.key`` file in ``directory``.

    A public key listed under two names is refused: the service could not tell which
    node is talking.
    """
    d = Path(directory)
    if not d.is_dir():
        raise InputError(str(d), None, "not a directory of allowed node keys")
    allowed: dict[str, bytes] = {}
    owner: dict[bytes, Path] = {}
    for path in sorted(d.glob(f"*{PUBLIC_SUFFIX}")):
        name = path.name[: -len(PUBLIC_SUFFIX)]
        try:
            check_node_id(name, "file name")
        except InputError as exc:
            raise exc.with_source(str(path)) from None
        key = load_public_key(path)
        if key in owner:
            raise InputError(str(path), "public-key", f"same key as {owner[key].name}: one key, one node")
        owner[key] = path
        allowed[name] = key
    return allowed
