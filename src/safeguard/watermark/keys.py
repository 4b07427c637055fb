"""Watermark keys: a 256-bit secret, its public id, the scheme and, once bound, the tokenizer.

The secret is only ever turned into PRF keys (:func:`safeguard.watermark.prf.derive_prf_key`);
it never appears in ``repr``/``str``, logs, errors, CLI output or manifests. Key files are
JSON written with mode 0600.

Every key records the version of the PRF construction it was made for (``prf_version``).
New keys use version 2 (AES-128). Version 1 keys (Philox + SplitMix64) still load, generate
and detect, with a :class:`LegacyPRFWarning`: their detection scores reveal the key's
uniforms (issue 14), so they should only be kept to detect text they already marked.
The public ``key_id`` of a version 2 key is derived from the secret and the version, so a
key file whose ``prf_version`` was edited no longer matches its ``key_id``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from safeguard.errors import KeyFileError, TokenizerMismatchError
from safeguard.watermark.prf import PRF_VERSION, PRF_VERSIONS, PRFKey, derive_prf_key
from safeguard.watermark.schemes.registry import get_scheme

__all__ = ["KEY_FILE_FORMAT", "LegacyPRFWarning", "WatermarkKey", "tokenizer_fingerprint"]

KEY_FILE_FORMAT = "safeguard.watermark-key/v1"
SECRET_BYTES = 32


class LegacyPRFWarning(UserWarning):
    """A key uses PRF version 1, whose detection answers reveal the key's uniforms."""


def _key_id(secret: bytes, prf_version: int) -> str:
    # Version 1 ids predate versioning and stay as they were, so existing key files load.
    label = (
        b"safeguard/key-id/v1"
        if prf_version == 1
        else f"safeguard/key-id/prf-v{prf_version}".encode()
    )
    return "wm-" + hashlib.sha256(label + secret).hexdigest()[:16]


def _check_prf_version(version: Any, source: str, fix: str = "the key file is corrupt") -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise KeyFileError(
            f"{source} has prf_version {version!r}; valid versions are "
            f"{', '.join(map(str, PRF_VERSIONS))}; {fix}"
        )
    if version not in PRF_VERSIONS:
        raise KeyFileError(
            f"{source} uses PRF version {version}; this safeguard implements versions "
            f"{', '.join(map(str, PRF_VERSIONS))}; upgrade safeguard to read it"
        )
    return version


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Fingerprint of a tokenizer's vocabulary: sha256 over its sorted ``(token, id)`` pairs.

    Args:
        tokenizer: Anything with ``get_vocab() -> dict[str, int]`` (transformers and
            tokenizers objects), or such a mapping itself.

    Returns:
        ``"sha256:<first 16 hex digits>"``.
    """
    vocab = tokenizer if isinstance(tokenizer, Mapping) else tokenizer.get_vocab()
    canonical = json.dumps(sorted(vocab.items(), key=lambda kv: (kv[1], kv[0])), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class WatermarkKey:
    """A watermark key.

    Attributes:
        scheme: Registered scheme name (``gumbel``, ``exp``, ``exp-edit``).
        params: The scheme's parameters (validated by the scheme's config).
        key_id: Public fingerprint of the secret, safe to log and put in manifests.
        tokenizer_fingerprint: Fingerprint of the bound tokenizer's vocabulary, or ``None``.
        created: ISO-8601 creation time (UTC).
        prf_version: Version of the PRF construction the key was made for (new keys: 2).
    """

    scheme: str
    params: Mapping[str, Any] = field(default_factory=dict)
    key_id: str
    tokenizer_fingerprint: str | None = None
    created: str = ""
    prf_version: int = PRF_VERSION
    _secret: bytes = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self._secret, bytes) or len(self._secret) != SECRET_BYTES:
            raise KeyFileError(
                f"a watermark secret must be {SECRET_BYTES} bytes; regenerate the key"
            )
        _check_prf_version(self.prf_version, f"key {self.key_id}")
        if self.key_id != _key_id(self._secret, self.prf_version):
            raise KeyFileError(
                f"key_id {self.key_id!r} does not match the secret and PRF version "
                f"{self.prf_version}: the key file is corrupt or edited; "
                "restore it from a backup or generate a new key"
            )
        if self.prf_version == 1:
            warnings.warn(
                f"key {self.key_id} uses PRF version 1, whose detection scores reveal the key: two "
                "answers for one context give every uniform of that context, enough to forge "
                "watermarked text; keep this key only to detect text it already marked, and "
                "generate a new key (PRF version 2) for new text",
                LegacyPRFWarning,
                stacklevel=3,
            )
        object.__setattr__(self, "params", get_scheme(self.scheme).validate_params(self.params))

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def generate(cls, scheme: str = "gumbel", **params: Any) -> WatermarkKey:
        """Generate a fresh key with a 256-bit secret from :mod:`secrets`.

        Args:
            scheme: Registered scheme name.
            **params: Scheme parameters, e.g. ``context_width=4`` for ``gumbel``.
        """
        secret = secrets.token_bytes(SECRET_BYTES)
        return cls(
            scheme=scheme,
            params=params,
            key_id=_key_id(secret, PRF_VERSION),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            _secret=secret,
        )

    @classmethod
    def from_policy(cls, policy: Any) -> WatermarkKey:
        """Generate a key with the scheme and parameters of a policy's ``watermark:`` section.

        Args:
            policy: A :class:`safeguard.policy.Policy`, or a shipped policy name or path.

        Raises:
            PolicyError: The policy has no ``watermark:`` section.
        """
        from safeguard.errors import PolicyError
        from safeguard.policy import load_policy

        loaded = policy if hasattr(policy, "watermark") else load_policy(policy)
        if loaded.watermark is None:
            raise PolicyError(
                f"policy {loaded.name!r} has no `watermark:` section; add one or pass a scheme"
            )
        return cls.generate(loaded.watermark.scheme, **dict(loaded.watermark.params))

    @classmethod
    def from_secret(
        cls,
        secret: bytes,
        scheme: str = "gumbel",
        *,
        prf_version: int = PRF_VERSION,
        **params: Any,
    ) -> WatermarkKey:
        """Build a key from known secret bytes (tests, key escrow). Prefer :meth:`generate`.

        Args:
            secret: The 32 secret bytes.
            scheme: Registered scheme name.
            prf_version: PRF version (default: the current one, 2); pass 1 only to restore
                a version 1 key.
            **params: Scheme parameters.
        """
        _check_prf_version(prf_version, "from_secret", "pass 2 (or 1 to restore an old key)")
        return cls(
            scheme=scheme,
            params=params,
            key_id=_key_id(bytes(secret), prf_version),
            prf_version=prf_version,
            _secret=bytes(secret),
        )

    def bind(self, tokenizer: Any) -> WatermarkKey:
        """Return a copy bound to ``tokenizer``'s vocabulary fingerprint."""
        return _replace(self, tokenizer_fingerprint=tokenizer_fingerprint(tokenizer))

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Raise :class:`TokenizerMismatchError` if ``tokenizer`` is not the one the key is bound to."""
        if self.tokenizer_fingerprint is None:
            return
        found = tokenizer_fingerprint(tokenizer)
        if found != self.tokenizer_fingerprint:
            raise TokenizerMismatchError(
                f"key {self.key_id} is bound to tokenizer {self.tokenizer_fingerprint}, but the given "
                f"tokenizer is {found}; detection needs the tokenizer used at generation "
                "(pass that tokenizer, or re-bind the key with WatermarkKey.bind if the vocabulary "
                "is truly the same)"
            )

    # -- PRF ----------------------------------------------------------------------------------

    def prf_key(self, purpose: str, family: str | None = None) -> PRFKey:
        """The PRF key for ``purpose`` (``"token"``, ``"context"``) of a PRF family.

        Args:
            purpose: What the uniforms are for.
            family: The scheme's PRF family (default: the one its registration names).
        """
        family = family if family is not None else get_scheme(self.scheme).prf_family
        return derive_prf_key(self._secret, family, purpose, version=self.prf_version)

    # -- persistence --------------------------------------------------------------------------

    def public_dict(self) -> dict[str, Any]:
        """Everything about the key except the secret (safe for manifests and logs)."""
        return {
            "format": KEY_FILE_FORMAT,
            "key_id": self.key_id,
            "scheme": self.scheme,
            "params": dict(self.params),
            "tokenizer_fingerprint": self.tokenizer_fingerprint,
            "created": self.created,
            "prf_version": self.prf_version,
        }

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the key as JSON with file mode 0600 (atomically; refuses to overwrite by default)."""
        target = Path(path)
        if target.exists() and not overwrite:
            raise KeyFileError(
                f"{str(target)!r} exists; pass overwrite=True (CLI: --force) to replace it"
            )
        payload = {**self.public_dict(), "secret": base64.b64encode(self._secret).decode("ascii")}
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, indent=2)
                fh.write("\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WatermarkKey:
        """Read a key file written by :meth:`save`.

        Raises:
            KeyFileError: The file is missing, not JSON, not a safeguard key, or corrupt.
        """
        source = Path(path)
        try:
            raw = source.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeyFileError(
                f"key file {str(source)!r} does not exist; create one with `safeguard keygen`"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(
                f"cannot read key file {str(source)!r}: {type(exc).__name__}"
            ) from None
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise KeyFileError(
                f"key file {str(source)!r} is not valid JSON (line {exc.lineno}); it is corrupt"
            ) from None
        return cls.from_dict(data, source=str(source))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> WatermarkKey:
        """Build a key from the dictionary form of a key file."""
        if not isinstance(data, dict) or data.get("format") != KEY_FILE_FORMAT:
            raise KeyFileError(
                f"{source!r} is not a safeguard watermark key (expected format {KEY_FILE_FORMAT!r})"
            )
        missing = [k for k in ("key_id", "scheme", "secret") if k not in data]
        if missing:
            raise KeyFileError(f"key file {source!r} lacks {', '.join(missing)}; it is corrupt")
        try:
            secret = base64.b64decode(data["secret"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise KeyFileError(
                f"key file {source!r} has a malformed secret; it is corrupt"
            ) from None
        return cls(
            scheme=str(data["scheme"]),
            params=data.get("params") or {},
            key_id=str(data["key_id"]),
            tokenizer_fingerprint=data.get("tokenizer_fingerprint"),
            created=str(data.get("created", "")),
            # Every file written before version 2 existed has version 1.
            prf_version=_check_prf_version(data.get("prf_version", 1), f"key file {source!r}"),
            _secret=secret,
        )

    def __str__(self) -> str:
        return f"WatermarkKey({self.key_id}, scheme={self.scheme})"


def _replace(key: WatermarkKey, **changes: Any) -> WatermarkKey:
    fields = {
        "scheme": key.scheme,
        "params": dict(key.params),
        "key_id": key.key_id,
        "tokenizer_fingerprint": key.tokenizer_fingerprint,
        "created": key.created,
        "prf_version": key.prf_version,
        "_secret": key._secret,
    }
    fields.update(changes)
    return WatermarkKey(**fields)
