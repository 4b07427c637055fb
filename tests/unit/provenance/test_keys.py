from __future__ import annotations

import hashlib
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from safeguard.errors import UsageError
from safeguard.provenance.keys import (
    KeyTypeError,
    PrivateKey,
    PublicKey,
    generate_keypair,
    load_private_key,
    load_public_key,
)


def test_keygen_writes_private_0600_and_shareable_public(tmp_path) -> None:
    key = generate_keypair(tmp_path / "signing.pem")
    priv = tmp_path / "signing.pem"
    pub = tmp_path / "signing.pem.pub"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in priv.read_bytes()
    assert b"PUBLIC KEY" in pub.read_bytes() and b"PRIVATE" not in pub.read_bytes()
    loaded = load_private_key(priv)
    public = load_public_key(pub)
    assert loaded.key_id == public.key_id == key.key_id
    raw = public._key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key.key_id == hashlib.sha256(raw).hexdigest()
    sig = loaded.sign(b"message")
    assert public.verify(sig, b"message")
    assert not public.verify(sig, b"messagE")


def test_keygen_refuses_to_overwrite(tmp_path) -> None:
    generate_keypair(tmp_path / "k")
    with pytest.raises(UsageError, match="already exists"):
        generate_keypair(tmp_path / "k")
    again = generate_keypair(tmp_path / "k", overwrite=True)
    assert load_public_key(tmp_path / "k.pub").key_id == again.key_id


def test_repr_shows_key_id_only(tmp_path) -> None:
    key = PrivateKey.generate()
    pem = key.to_pem().decode()
    body = "".join(pem.splitlines()[1:-1])
    for text in (repr(key), str(key), repr(key.public_key)):
        assert key.key_id in text
        assert body not in text and "PRIVATE" not in text


def test_passphrase_protected_key(tmp_path) -> None:
    generate_keypair(tmp_path / "k", password=b"correct horse")
    assert b"ENCRYPTED" in (tmp_path / "k").read_bytes()
    assert load_private_key(tmp_path / "k", password=b"correct horse").key_id
    with pytest.raises(KeyTypeError, match="encrypted"):
        load_private_key(tmp_path / "k")
    with pytest.raises(KeyTypeError, match="passphrase is wrong"):
        load_private_key(tmp_path / "k", password=b"wrong")


def test_wrong_key_types_are_clear_usage_errors(tmp_path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "ec.pub").write_bytes(
        ec_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyTypeError, match="Ed25519"):
        load_private_key(tmp_path / "ec.pem")
    with pytest.raises(KeyTypeError, match="Ed25519"):
        load_public_key(tmp_path / "ec.pub")
    generate_keypair(tmp_path / "ed")
    with pytest.raises(KeyTypeError, match=r"private key; pass the \.pub"):
        load_public_key(tmp_path / "ed")
    with pytest.raises(KeyTypeError, match="public key; signing needs the private"):
        load_private_key(tmp_path / "ed.pub")
    (tmp_path / "junk").write_text("hello")
    with pytest.raises(KeyTypeError):
        load_public_key(tmp_path / "junk")
    with pytest.raises(KeyTypeError, match="does not exist"):
        load_public_key(tmp_path / "missing.pub")
    assert issubclass(KeyTypeError, UsageError)


def test_public_key_pem_round_trip() -> None:
    key = PrivateKey.generate()
    again = PublicKey.from_pem(key.public_key.to_pem())
    assert again.key_id == key.key_id
