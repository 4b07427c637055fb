"""Signed, verifiable manifests chaining raw data -> scrubbed data -> DP training -> model -> text.

Digests (files, model folders, Merkle trees over records), in-toto Statement v1
payloads in DSSE envelopes signed with Ed25519, predicates for each step, and
verification of one manifest or of the whole chain against a policy.

>>> from safeguard.provenance import sign, verify  # doctest: +SKIP

This package imports no torch, transformers, opacus or presidio, and reads the
other safeguards' outputs (scrub reports, DP ledgers, watermark key ids) as
plain data. ``cryptography`` is needed only to sign and verify.
"""

from __future__ import annotations

from safeguard.provenance.chain import (
    ChainError,
    ChainLink,
    ChainResult,
    check_ledger,
    check_policy,
    verify_chain,
    verify_manifests,
)
from safeguard.provenance.dataset import dataset_root, iter_records, prove_record
from safeguard.provenance.digest import (
    DirectoryDigest,
    FileDigest,
    digest_directory,
    digest_path,
    sha256_file,
)
from safeguard.provenance.dsse import INTOTO_PAYLOAD_TYPE, Envelope, EnvelopeFormatError, pae
from safeguard.provenance.export import croissant_metadata, model_card_section
from safeguard.provenance.keys import (
    KeyTypeError,
    PrivateKey,
    PublicKey,
    generate_keypair,
    load_private_key,
    load_public_key,
)
from safeguard.provenance.manifest import (
    Manifest,
    ManifestSchemaError,
    MissingSubjectError,
    SubjectDigestError,
    VerificationResult,
    load_manifest,
    sign,
    subjects_from_paths,
    verify,
    write_manifest,
)
from safeguard.provenance.merkle import InclusionProof, MerkleTree, merkle_root, verify_inclusion
from safeguard.provenance.predicates import (
    PredicateSchemaError,
    UnknownPredicateError,
    dataset_predicate,
    generation_predicate,
    register_predicate,
    scrub_predicate,
    scrub_predicate_from_report,
    training_predicate,
)
from safeguard.provenance.statement import Statement, StatementFormatError, Subject

__all__ = [
    "INTOTO_PAYLOAD_TYPE",
    "ChainError",
    "ChainLink",
    "ChainResult",
    "DirectoryDigest",
    "Envelope",
    "EnvelopeFormatError",
    "FileDigest",
    "InclusionProof",
    "KeyTypeError",
    "Manifest",
    "ManifestSchemaError",
    "MerkleTree",
    "MissingSubjectError",
    "PredicateSchemaError",
    "PrivateKey",
    "PublicKey",
    "Statement",
    "StatementFormatError",
    "Subject",
    "SubjectDigestError",
    "UnknownPredicateError",
    "VerificationResult",
    "check_ledger",
    "check_policy",
    "croissant_metadata",
    "dataset_predicate",
    "dataset_root",
    "digest_directory",
    "digest_path",
    "generate_keypair",
    "generation_predicate",
    "iter_records",
    "load_manifest",
    "load_private_key",
    "load_public_key",
    "merkle_root",
    "model_card_section",
    "pae",
    "prove_record",
    "register_predicate",
    "scrub_predicate",
    "scrub_predicate_from_report",
    "sha256_file",
    "sign",
    "subjects_from_paths",
    "training_predicate",
    "verify",
    "verify_chain",
    "verify_inclusion",
    "verify_manifests",
    "write_manifest",
]
