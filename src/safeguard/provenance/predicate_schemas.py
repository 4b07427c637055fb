"""Predicate type URIs and the pydantic schemas of the four kinds of manifest.

Schemas check required fields and types and keep extra fields (predicates may
grow). The registry that maps kinds to these schemas is
:mod:`safeguard.provenance.predicate_registry`; the builders are in
:mod:`safeguard.provenance.predicates`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from safeguard.errors import DataError

__all__ = [
    "C2PA_TRAINED_ALGORITHMIC_MEDIA",
    "DATASET_PREDICATE",
    "GENERATION_PREDICATE",
    "MERKLE_ALGORITHM",
    "SCRUB_PREDICATE",
    "SLSA_PROVENANCE_V1",
    "TRAINING_BUILD_TYPE",
    "DatasetSchema",
    "GenerationSchema",
    "PredicateKind",
    "PredicateSchemaError",
    "ScrubSchema",
    "TrainingSchema",
    "UnknownPredicateError",
]

_BASE = "https://safeguard-ai.github.io/provenance"
DATASET_PREDICATE = f"{_BASE}/dataset/v1"
SCRUB_PREDICATE = f"{_BASE}/scrub/v1"
GENERATION_PREDICATE = f"{_BASE}/generation/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
#: buildType of a safeguard DP fine-tuning run inside a SLSA Provenance v1 predicate.
TRAINING_BUILD_TYPE = f"{_BASE}/dp-training/v1"
#: IPTC digital source type that C2PA uses for generative-AI output.
C2PA_TRAINED_ALGORITHMIC_MEDIA = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
)
#: Merkle construction used for dataset roots.
MERKLE_ALGORITHM = "rfc6962-sha256"

PredicateKind = Literal["dataset", "scrub", "training", "generation"]


class PredicateSchemaError(DataError):
    """A predicate does not match the schema of its predicate type."""


class UnknownPredicateError(DataError):
    """A manifest's predicateType (or a kind name) is not registered."""


# --------------------------------------------------------------------------- schemas


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Digest(_Open):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class _Resource(_Open):
    name: str | None = None
    uri: str | None = None
    digest: _Digest
    annotations: dict[str, Any] = Field(default_factory=dict)


class _Source(_Open):
    uri: str = Field(min_length=1)
    license: str | None = None
    digest: _Digest | None = None


class _Merkle(_Open):
    algorithm: Literal["rfc6962-sha256"]
    root: str = Field(pattern=r"^[0-9a-f]{64}$")
    tree_size: int = Field(ge=0)
    record_encoding: str


class DatasetSchema(_Open):
    """Schema of the dataset predicate."""

    name: str = Field(min_length=1)
    sources: list[_Source] = Field(default_factory=list)
    licenses: list[str] = Field(default_factory=list)
    record_count: int = Field(ge=0)
    merkle: _Merkle


class _PolicyRef(_Open):
    name: str = Field(min_length=1)
    digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")


class _MeasuredOn(_Open):
    """The labelled data a recall figure was measured on (so no one reads it as a guarantee)."""

    dataset: str = Field(min_length=1)
    kind: Literal["synthetic-templates", "hand-labelled", "held-out", "production-sample"]
    documents: int | None = Field(default=None, ge=1)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    metric: str | None = None


class ScrubSchema(_Open):
    """Schema of the scrub-run predicate."""

    policy: _PolicyRef
    inputs: list[_Resource] = Field(min_length=1)
    outputs: list[_Resource] = Field(min_length=1)
    entity_counts: dict[str, int]
    records_in: int | None = Field(default=None, ge=0)
    records_out: int | None = Field(default=None, ge=0)
    quarantined: int = Field(ge=0)
    measured_recall: float | None = Field(default=None, ge=0.0, le=1.0)
    measured_on: _MeasuredOn | None = None


class _BuildDefinition(_Open):
    buildType: str = Field(min_length=1)
    externalParameters: dict[str, Any]
    internalParameters: dict[str, Any] = Field(default_factory=dict)
    resolvedDependencies: list[_Resource] = Field(default_factory=list)


class _Builder(_Open):
    id: str = Field(min_length=1)


class _RunDetails(_Open):
    builder: _Builder
    metadata: dict[str, Any] = Field(default_factory=dict)
    byproducts: list[dict[str, Any]] = Field(default_factory=list)


class TrainingSchema(_Open):
    """Schema of a SLSA Provenance v1 predicate (as written for a training run)."""

    buildDefinition: _BuildDefinition
    runDetails: _RunDetails


class _Watermark(_Open):
    scheme: str = Field(min_length=1)
    key_id: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class GenerationSchema(_Open):
    """Schema of the generation predicate."""

    model: _Resource
    digitalSourceType: Literal[
        "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    ]
    watermark: _Watermark | None = None
