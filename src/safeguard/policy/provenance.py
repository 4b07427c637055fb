"""The ``provenance:`` section of a policy (owned by :mod:`safeguard.provenance`; extended there)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from safeguard.policy._base import Section

#: A key id: hex sha256 of the raw 32-byte Ed25519 public key.
KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class ProvenancePolicy(Section):
    """What must be signed, and with which key.

    Attributes:
        signing_required: Whether manifests must carry at least one valid signature.
        key_ref: A reference to the signing key (a path or a key id); never the key itself.
        required_scrub_policy: Name of the PII policy that training data must have been scrubbed with.
        extra_fields: Free-form labels copied into reports.
        trusted_key_ids: Key ids (hex sha256 of the raw Ed25519 public key) whose signatures
            count; empty means any public key the verifier is given.
        min_signatures: How many distinct trusted keys must have signed each manifest.
        require_chain: Whether ``safeguard policy check`` on a generation manifest must walk
            the whole chain back to raw data.
        require_subjects: Whether every subject of every manifest checked (the file or
            model folder a manifest covers, at its signed name relative to the manifest's
            folder) must be present so its digest is recomputed. On (the default), a
            missing or renamed artifact is a failed check in ``safeguard manifest verify``
            (with or without ``--chain``) and ``safeguard policy check``, and
            ``--skip-subjects`` cannot satisfy the policy. Off, a missing subject is
            reported as "not present, not checked" and the run can still pass on its
            signatures and links alone (e.g. an auditor who was not given the raw data).
    """

    signing_required: bool = True
    key_ref: str | None = None
    required_scrub_policy: str | None = None
    extra_fields: dict[str, str] = Field(default_factory=dict)
    trusted_key_ids: list[KeyId] = Field(default_factory=list)
    min_signatures: int = Field(default=1, ge=1, le=16)
    require_chain: bool = True
    require_subjects: bool = True
