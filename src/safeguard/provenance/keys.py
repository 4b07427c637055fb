"""Ed25519 signing keys for manifests, through :mod:`cryptography`.

A private key is written as unencrypted (or passphrase-encrypted) PKCS#8 PEM with
file mode 0600; the public key as SubjectPublicKeyInfo PEM, safe to share. A key
is named everywhere by its *key id*: the hex sha256 of the 32 raw public-key
bytes. Neither repr nor error messages ever show key material.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safeguard.errors import UsageError, missing_dependency

__all__ = [
    "KeyTypeError",
    "PrivateKey",
    "PublicKey",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "load_public_keys",
]

log = logging.getLogger(__name__)


class KeyTypeError(UsageError):
    """A key file is missing, unreadable, not PEM or not an Ed25519 key."""


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise missing_dependency("cryptography", "provenance") from exc
    return serialization, ed25519


def _key_id(raw_public: bytes) -> str:
    return hashlib.sha256(raw_public).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key and its key id.

    Attributes:
        key_id: Hex sha256 of the raw 32-byte public key.
    """

    key_id: str
    _key: Any = field(repr=False, compare=False)

    @classmethod
    def from_pem(cls, data: bytes, *, source: str = "<bytes>") -> PublicKey:
        """Parse a PEM public key (SubjectPublicKeyInfo).

        Raises:
            KeyTypeError: Not a PEM public key, or not Ed25519.
        """
        serialization, ed25519 = _crypto()
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            hint = " (this is a private key; pass the .pub file)" if b"PRIVATE KEY" in data else ""
            raise KeyTypeError(
                f"{source!r} is not a PEM public key{hint}; create a pair with `safeguard manifest keygen`"
            ) from exc
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise KeyTypeError(
                f"{source!r} holds a {type(key).__name__.lstrip('_')}, but manifests use Ed25519 keys; "
                "create one with `safeguard manifest keygen`"
            )
        return cls._from_crypto(key)

    @classmethod
    def _from_crypto(cls, key: Any) -> PublicKey:
        serialization, _ = _crypto()
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(_key_id(raw), key)

    def to_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM."""
        serialization, _ = _crypto()
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is a valid Ed25519 signature of ``message`` under this key."""
        from cryptography.exceptions import InvalidSignature

        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class PrivateKey:
    """An Ed25519 private key; only its key id is ever shown.

    Attributes:
        key_id: The key id of the matching public key.
    """

    key_id: str
    _key: Any = field(repr=False, compare=False)

    @property
    def public_key(self) -> PublicKey:
        """The matching public key."""
        return PublicKey._from_crypto(self._key.public_key())

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature (64 bytes) of ``message``."""
        return bytes(self._key.sign(message))

    @classmethod
    def generate(cls) -> PrivateKey:
        """A fresh random key."""
        _, ed25519 = _crypto()
        key = ed25519.Ed25519PrivateKey.generate()
        return cls(PublicKey._from_crypto(key.public_key()).key_id, key)

    @classmethod
    def from_pem(
        cls, data: bytes, *, password: bytes | None = None, source: str = "<bytes>"
    ) -> PrivateKey:
        """Parse a PKCS#8 PEM private key.

        Raises:
            KeyTypeError: Not a PEM private key, wrong or missing passphrase, or not Ed25519.
        """
        serialization, ed25519 = _crypto()
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except TypeError as exc:
            raise KeyTypeError(
                f"private key {source!r} is encrypted: pass its passphrase "
                "(SAFEGUARD_KEY_PASSPHRASE for the CLI)"
                if password is None
                else f"private key {source!r} is not encrypted: do not pass a passphrase"
            ) from exc
        except ValueError as exc:
            hint = (
                " (this is a public key; signing needs the private key)"
                if b"PUBLIC KEY" in data
                else ""
            )
            raise KeyTypeError(
                f"{source!r} is not a readable PEM private key{hint}, or the passphrase is wrong; "
                "create a pair with `safeguard manifest keygen`"
            ) from exc
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise KeyTypeError(
                f"{source!r} holds a {type(key).__name__.lstrip('_')}, but manifests are signed with "
                "Ed25519 keys; create one with `safeguard manifest keygen`"
            )
        return cls(PublicKey._from_crypto(key.public_key()).key_id, key)

    def to_pem(self, *, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM, encrypted with ``password`` when given."""
        serialization, _ = _crypto()
        encryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    p = Path(path)
    if not p.exists():
        raise KeyTypeError(f"{what} file {str(p)!r} does not exist; check the path")
    if p.is_dir():
        raise KeyTypeError(f"{what} file {str(p)!r} is a directory; pass the key file")
    return p.read_bytes()


def load_private_key(path: str | os.PathLike[str], *, password: bytes | None = None) -> PrivateKey:
    """Read a private key file, warning when other users can read it."""
    from safeguard._files import warn_if_readable_by_others

    data = _read(path, "private key")
    warn_if_readable_by_others(path, "private key", logger=log)
    return PrivateKey.from_pem(data, password=password, source=str(path))


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """Read a public key file (``.pub`` PEM)."""
    return PublicKey.from_pem(_read(path, "public key"), source=str(path))


def load_public_keys(paths: list[str] | tuple[str, ...]) -> list[PublicKey]:
    """Read several public key files."""
    return [load_public_key(p) for p in paths]


def generate_keypair(
    private_path: str | os.PathLike[str],
    *,
    public_path: str | os.PathLike[str] | None = None,
    password: bytes | None = None,
    overwrite: bool = False,
) -> PrivateKey:
    """Create an Ed25519 key pair: the private key (mode 0600) and ``<private>.pub``.

    Args:
        private_path: Where to write the private key.
        public_path: Where to write the public key (default: ``private_path`` + ``.pub``).
        password: Encrypt the private key with this passphrase.
        overwrite: Replace existing files instead of refusing.

    Returns:
        The new key (its ``key_id`` names it in manifests).

    Raises:
        UsageError: A target file exists and ``overwrite`` is false.
    """
    priv = Path(private_path)
    pub = Path(public_path) if public_path is not None else priv.with_name(priv.name + ".pub")
    for p in (priv, pub):
        if p.exists() and not overwrite:
            raise UsageError(
                f"{str(p)!r} already exists; pick another path or pass overwrite=True (--force)"
            )
    key = PrivateKey.generate()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    if priv.exists():
        priv.unlink()
    priv.parent.mkdir(parents=True, exist_ok=True)
    pub.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(priv, flags, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.to_pem(password=password))
    os.chmod(priv, 0o600)
    pub.write_bytes(key.public_key.to_pem())
    log.info("wrote key %s: private %s, public %s", key.key_id[:16], priv, pub)
    return key
