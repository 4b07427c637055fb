"""in-toto Statement v1: subjects with digests, a predicate type and a predicate.

A statement is the payload of a DSSE envelope (payloadType
``application/vnd.in-toto+json``). Subjects name artifacts (a file, a model
folder) and pin them by sha256; the predicate says what happened to them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from safeguard.errors import DataError

__all__ = [
    "STATEMENT_TYPE",
    "Statement",
    "StatementFormatError",
    "Subject",
]

#: ``_type`` of an in-toto Statement v1.
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


class StatementFormatError(DataError):
    """A payload is not a well-formed in-toto Statement v1."""


@dataclass(frozen=True, kw_only=True)
class Subject:
    """One artifact a statement is about (an in-toto ResourceDescriptor with a digest).

    Attributes:
        name: A path relative to the manifest's folder (or any identifier).
        digest: Algorithm to hex digest, at least ``{"sha256": ...}``.
        annotations: Optional extra facts (e.g. ``{"kind": "directory"}``).
    """

    name: str
    digest: dict[str, str]
    annotations: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise StatementFormatError("a subject needs a non-empty `name`")
        sha = self.digest.get("sha256")
        if (
            not isinstance(sha, str)
            or len(sha) != 64
            or any(c not in "0123456789abcdef" for c in sha)
        ):
            raise StatementFormatError(
                f"subject {self.name!r} needs digest.sha256 as 64 lower-case hex characters, got {sha!r}"
            )

    @property
    def sha256(self) -> str:
        """The hex sha256 digest."""
        return self.digest["sha256"]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "digest": dict(self.digest)}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True, kw_only=True)
class Statement:
    """An in-toto Statement v1.

    Attributes:
        subjects: The artifacts (at least one).
        predicate_type: URI naming the predicate's schema.
        predicate: The predicate, plain JSON data.
    """

    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: dict[str, Any]

    def __post_init__(self) -> None:
        if not self.subjects:
            raise StatementFormatError("an in-toto statement needs at least one subject")
        if not self.predicate_type:
            raise StatementFormatError("an in-toto statement needs a `predicateType` URI")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (in-toto field names)."""
        return {
            "_type": STATEMENT_TYPE,
            "subject": [s.to_dict() for s in self.subjects],
            "predicateType": self.predicate_type,
            "predicate": self.predicate,
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes (sorted keys, no whitespace), the envelope payload."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_dict(cls, data: Any) -> Statement:
        """Parse the JSON form.

        Raises:
            StatementFormatError: Not an in-toto Statement v1.
        """
        if not isinstance(data, dict):
            raise StatementFormatError(
                f"a statement must be a JSON object, got {type(data).__name__}"
            )
        if data.get("_type") != STATEMENT_TYPE:
            raise StatementFormatError(
                f"_type is {data.get('_type')!r}; only in-toto Statement v1 ({STATEMENT_TYPE!r}) is supported"
            )
        raw_subjects = data.get("subject")
        if not isinstance(raw_subjects, list) or not raw_subjects:
            raise StatementFormatError("`subject` must be a non-empty list of {name, digest}")
        subjects = []
        for i, s in enumerate(raw_subjects):
            if not isinstance(s, dict) or not isinstance(s.get("digest"), dict):
                raise StatementFormatError(
                    f"subject[{i}] must be an object with `name` and `digest`"
                )
            annotations = s.get("annotations", {})
            if not isinstance(annotations, dict):
                raise StatementFormatError(f"subject[{i}].annotations must be an object")
            subjects.append(
                Subject(
                    name=str(s.get("name", "")), digest=dict(s["digest"]), annotations=annotations
                )
            )
        predicate_type = data.get("predicateType")
        if not isinstance(predicate_type, str):
            raise StatementFormatError("`predicateType` must be a string URI")
        predicate = data.get("predicate", {})
        if not isinstance(predicate, dict):
            raise StatementFormatError("`predicate` must be a JSON object")
        return cls(subjects=tuple(subjects), predicate_type=predicate_type, predicate=predicate)

    @classmethod
    def from_bytes(cls, payload: bytes) -> Statement:
        """Parse an envelope payload.

        Raises:
            StatementFormatError: Malformed JSON or not a statement.
        """
        try:
            data = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StatementFormatError(f"the payload is not valid JSON ({exc})") from exc
        return cls.from_dict(data)
