"""The ``provenance:`` section of a policy (owned by :mod:`safeguard.provenance`; extended there)."""

from __future__ import annotations

from pydantic import Field

from safeguard.policy._base import Section


class ProvenancePolicy(Section):
    """What must be signed, and with which key.

    Attributes:
        signing_required: Whether manifests must carry at least one valid signature.
        key_ref: A reference to the signing key (a path or a key id); never the key itself.
        required_scrub_policy: Name of the PII policy that training data must have been scrubbed with.
    """

    signing_required: bool = True
    key_ref: str | None = None
    required_scrub_policy: str | None = None
    extra_fields: dict[str, str] = Field(default_factory=dict)
