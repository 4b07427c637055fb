"""DSSE envelopes (Dead Simple Signing Envelope v1) with several Ed25519 signatures.

Signatures are over the pre-authentication encoding::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

where LEN is the ASCII decimal byte length. The JSON form is
``{"payload": b64, "payloadType": str, "signatures": [{"keyid": str, "sig": b64}]}``.

>>> pae("application/vnd.in-toto+json", b"{}")
b'DSSEv1 28 application/vnd.in-toto+json 2 {}'
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from safeguard.errors import DataError, SignatureError

__all__ = [
    "INTOTO_PAYLOAD_TYPE",
    "Envelope",
    "EnvelopeFormatError",
    "EnvelopeSignature",
    "pae",
]

#: payloadType of an in-toto Statement.
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


_URLSAFE = re.compile(r"[A-Za-z0-9_-]*={0,2}")


class EnvelopeFormatError(DataError):
    """A manifest is not a well-formed DSSE envelope (malformed JSON, bad base64, ...)."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of ``payload`` of type ``payload_type``."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


def _b64decode(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise EnvelopeFormatError(f"{what} must be a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        pass
    # DSSE allows URL-safe base64 too; its decoder skips stray characters, so check first
    if _URLSAFE.fullmatch(value):
        try:
            padded = value + "=" * (-len(value) % 4)
            return base64.urlsafe_b64decode(padded.encode("ascii"))
        except (binascii.Error, ValueError):
            pass
    raise EnvelopeFormatError(f"{what} is not valid base64 (standard or URL-safe)")


@dataclass(frozen=True, kw_only=True)
class EnvelopeSignature:
    """One signature in an envelope.

    Attributes:
        keyid: The signer's key id (hex sha256 of the raw public key); a hint, not trusted.
        sig: The raw signature bytes.
    """

    keyid: str
    sig: bytes = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class Envelope:
    """A DSSE envelope.

    Attributes:
        payload: The serialized body (an in-toto Statement for manifests).
        payload_type: How to interpret ``payload``.
        signatures: Zero or more signatures over :func:`pae`.
    """

    payload: bytes
    payload_type: str = INTOTO_PAYLOAD_TYPE
    signatures: tuple[EnvelopeSignature, ...] = ()

    def pae(self) -> bytes:
        """The bytes that signatures cover."""
        return pae(self.payload_type, self.payload)

    def signed(self, key: Any) -> Envelope:
        """A copy with one more signature by ``key`` (a :class:`~safeguard.provenance.keys.PrivateKey`).

        A key that already signed is replaced rather than added twice.
        """
        sig = EnvelopeSignature(keyid=key.key_id, sig=key.sign(self.pae()))
        kept = tuple(s for s in self.signatures if s.keyid != key.key_id)
        return replace(self, signatures=(*kept, sig))

    def verify(self, public_keys: Sequence[Any], *, threshold: int = 1) -> list[str]:
        """Check the signatures against trusted public keys.

        Every signature is tried against every trusted key (a ``keyid`` is only a hint), so a
        relabelled signature still verifies under its real key and a forged label gains nothing.

        Args:
            public_keys: Trusted :class:`~safeguard.provenance.keys.PublicKey` objects.
            threshold: How many distinct trusted keys must have signed.

        Returns:
            Key ids of the trusted keys with a valid signature.

        Raises:
            SignatureError: Fewer than ``threshold`` trusted keys signed.
        """
        if threshold < 1:
            raise DataError(f"`threshold` (={threshold}) must be >= 1")
        message = self.pae()
        good: list[str] = []
        for key in public_keys:
            if key.key_id in good:
                continue
            if any(key.verify(s.sig, message) for s in self.signatures):
                good.append(key.key_id)
        if len(good) < threshold:
            if not self.signatures:
                reason = "the envelope carries no signature; sign it with `safeguard manifest sign`"
            elif not public_keys:
                reason = "no trusted public key was given (--pubkey)"
            else:
                listed = ", ".join(s.keyid[:16] for s in self.signatures)
                trusted = ", ".join(k.key_id[:16] for k in public_keys)
                reason = (
                    f"{len(good)} of the required {threshold} trusted key(s) verified; the envelope is "
                    f"signed by key id(s) {listed} and the trusted key id(s) are {trusted}: "
                    "the payload or a signature was altered, or the wrong public key was given"
                )
            raise SignatureError(f"signature check failed: {reason}")
        return good

    def to_dict(self) -> dict[str, Any]:
        """The DSSE JSON form."""
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }

    def to_json(self) -> str:
        """Indented DSSE JSON, with a trailing newline."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<envelope>") -> Envelope:
        """Parse the DSSE JSON form.

        Raises:
            EnvelopeFormatError: A field is missing or of the wrong type.
        """
        if not isinstance(data, dict):
            raise EnvelopeFormatError(
                f"{source}: a DSSE envelope must be a JSON object with payload, payloadType and "
                f"signatures, got {type(data).__name__}"
            )
        missing = [k for k in ("payload", "payloadType") if k not in data]
        if missing:
            raise EnvelopeFormatError(
                f"{source}: not a DSSE envelope, missing {', '.join(missing)}; "
                "expected {payload, payloadType, signatures}"
            )
        if not isinstance(data["payloadType"], str):
            raise EnvelopeFormatError(f"{source}: payloadType must be a string")
        payload = _b64decode(data["payload"], f"{source}: payload")
        raw_sigs = data.get("signatures", [])
        if not isinstance(raw_sigs, list):
            raise EnvelopeFormatError(f"{source}: signatures must be a list")
        sigs = []
        for i, s in enumerate(raw_sigs):
            if not isinstance(s, dict) or "sig" not in s:
                raise EnvelopeFormatError(f"{source}: signatures[{i}] must be an object with 'sig'")
            keyid = s.get("keyid", "")
            if not isinstance(keyid, str):
                raise EnvelopeFormatError(f"{source}: signatures[{i}].keyid must be a string")
            sigs.append(
                EnvelopeSignature(
                    keyid=keyid, sig=_b64decode(s["sig"], f"{source}: signatures[{i}].sig")
                )
            )
        return cls(payload=payload, payload_type=data["payloadType"], signatures=tuple(sigs))

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "<envelope>") -> Envelope:
        """Parse DSSE JSON text.

        Raises:
            EnvelopeFormatError: Malformed JSON or not an envelope.
        """
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EnvelopeFormatError(f"{source}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, source=source)
