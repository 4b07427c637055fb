"""Keys for keyed pseudonyms, surrogates and date shifts (HMAC-SHA256).

A :class:`PseudonymKey` is a 32-byte secret plus a public ``key_id`` derived from it.
Reports, logs, reprs and error messages only ever show the ``key_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from safeguard.errors import ConfigError

__all__ = ["PseudonymKey"]

_KEY_BYTES = 32


def _key_id(secret: bytes) -> str:
    return "pii-" + hashlib.sha256(b"safeguard/pii/key-id\x00" + secret).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class PseudonymKey:
    """A secret for HMAC-based operators.

    Attributes:
        secret: The key material (at least 16 bytes; never printed).
        key_id: Public id, ``pii-`` + 16 hex characters of a hash of the secret.
    """

    secret: bytes = field(repr=False)
    key_id: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) < 16:
            raise ConfigError(
                "`secret` must be at least 16 bytes; use PseudonymKey.generate() for a fresh key"
            )
        expected = _key_id(self.secret)
        if self.key_id and self.key_id != expected:
            raise ConfigError(
                f"`key_id` (={self.key_id!r}) does not match the secret (its id is {expected!r}); "
                "the key file is corrupt or was edited"
            )
        object.__setattr__(self, "key_id", expected)

    @classmethod
    def generate(cls) -> PseudonymKey:
        """A fresh random key."""
        return cls(secret=secrets.token_bytes(_KEY_BYTES))

    def digest(self, *parts: str | bytes) -> bytes:
        """HMAC-SHA256 of the parts, each length-prefixed (so parts never run together)."""
        mac = hmac.new(self.secret, digestmod=hashlib.sha256)
        for part in parts:
            raw = part.encode("utf-8") if isinstance(part, str) else part
            mac.update(len(raw).to_bytes(8, "big"))
            mac.update(raw)
        return mac.digest()

    def save(self, path: str | Path) -> Path:
        """Write the key as JSON readable by its owner only (mode 0600)."""
        path = Path(path)
        data = json.dumps({"key_id": self.key_id, "secret_hex": self.secret.hex()})
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> PseudonymKey:
        """Read a key written by :meth:`save`.

        Raises:
            ConfigError: The file is missing, unreadable or not a key file.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(secret=bytes.fromhex(data["secret_hex"]), key_id=data.get("key_id", ""))
        except FileNotFoundError as exc:
            raise ConfigError(
                f"key file {str(path)!r} does not exist; create one with "
                "`PseudonymKey.generate().save(path)`"
            ) from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"key file {str(path)!r} is not a pseudonym key file "
                f"(expected JSON with `secret_hex`): {type(exc).__name__}"
            ) from None

    def __repr__(self) -> str:
        return f"PseudonymKey(key_id={self.key_id!r})"
