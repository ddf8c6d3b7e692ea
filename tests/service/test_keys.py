"""CURVE key files: created safely, read back exactly, and the allowed list maps keys to node ids."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
import zmq
import zmq.auth

from dsp.errors import InputError
from service.keys import create_keypair, load_allowed_keys, load_keypair, load_public_key


def test_created_pair_is_a_valid_curve_pair_with_a_private_secret_file(tmp_path: Path) -> None:
    public_path, secret_path = create_keypair(tmp_path / "keys", "A1-S1")
    assert (public_path.name, secret_path.name) == ("A1-S1.key", "A1-S1.key_secret")
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    pair = load_keypair(secret_path)
    assert zmq.curve_public(pair.secret) == pair.public == load_public_key(public_path)
    assert b"secret-key" not in public_path.read_bytes()
    assert pair.secret.decode() not in repr(pair)
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["A1-S1.key", "A1-S1.key_secret"]


def test_files_are_zeromq_certificates_other_tools_read(tmp_path: Path) -> None:
    public_path, secret_path = create_keypair(tmp_path, "service")
    assert zmq.auth.load_certificate(secret_path) == (load_keypair(secret_path).public, load_keypair(secret_path).secret)
    assert list(zmq.auth.load_certificates(tmp_path)) == [load_public_key(public_path)]


def test_an_existing_key_is_never_replaced(tmp_path: Path) -> None:
    _, secret_path = create_keypair(tmp_path, "A1-S1")
    before = secret_path.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        create_keypair(tmp_path, "A1-S1")
    assert secret_path.read_bytes() == before
    (tmp_path / "A1-S2.key").write_text("someone else's public key")
    with pytest.raises(InputError, match=r"A1-S2\.key: already exists"):
        create_keypair(tmp_path, "A1-S2")
    assert not (tmp_path / "A1-S2.key_secret").exists()


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "with space"])
def test_key_names_are_node_ids(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match="name"):
        create_keypair(tmp_path, name)


def test_loading_mistakes_name_the_file(tmp_path: Path) -> None:
    public_path, _ = create_keypair(tmp_path, "A1-S1")
    with pytest.raises(InputError, match=r"A1-S1\.key: secret-key: missing"):
        load_keypair(public_path)
    with pytest.raises(InputError, match="no such key file"):
        load_public_key(tmp_path / "nope.key")
    bad = tmp_path / "bad.key"
    bad.write_text('curve\n    public-key = "tooshort"\n')
    with pytest.raises(InputError, match=r"bad\.key: public-key: not a Z85"):
        load_public_key(bad)


def test_a_readable_secret_file_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, secret_path = create_keypair(tmp_path, "A1-S1")
    secret_path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        load_keypair(secret_path)
    assert "readable by others" in caplog.text


def test_allowed_keys_map_node_ids_to_public_keys(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    for name in ("A1-S1", "B2-S3"):
        public_path, _ = create_keypair(tmp_path / "nodes", name)
        allowed.mkdir(exist_ok=True)
        (allowed / public_path.name).write_bytes(public_path.read_bytes())
    (allowed / "README.txt").write_text("not a key")
    keys = load_allowed_keys(allowed)
    assert sorted(keys) == ["A1-S1", "B2-S3"]
    assert keys["A1-S1"] == load_public_key(tmp_path / "nodes" / "A1-S1.key")


def test_one_key_listed_under_two_names_is_refused(tmp_path: Path) -> None:
    public_path, _ = create_keypair(tmp_path / "nodes", "A1-S1")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "A1-S1.key").write_bytes(public_path.read_bytes())
    (allowed / "A1-S9.key").write_bytes(public_path.read_bytes())
    with pytest.raises(InputError, match="one key, one node"):
        load_allowed_keys(allowed)
    with pytest.raises(InputError, match="not a directory"):
        load_allowed_keys(tmp_path / "missing")
