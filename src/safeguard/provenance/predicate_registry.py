"""The predicate registry: kind name <-> predicateType URI <-> schema, and validation.

:func:`register_predicate` is the extension point for new manifest kinds; the four
built-in kinds are registered on import. :func:`validate_predicate` checks a
predicate against its schema and that no field carries key material
(:func:`find_secrets`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from safeguard.errors import DataError
from safeguard.provenance.predicate_schemas import (
    DATASET_PREDICATE,
    GENERATION_PREDICATE,
    SCRUB_PREDICATE,
    SLSA_PROVENANCE_V1,
    TRAINING_BUILD_TYPE,
    DatasetSchema,
    GenerationSchema,
    PredicateSchemaError,
    ScrubSchema,
    TrainingSchema,
    UnknownPredicateError,
)

__all__ = [
    "PredicateSpec",
    "find_secrets",
    "get_predicate",
    "kind_of",
    "known_predicates",
    "register_predicate",
    "validate_predicate",
]


@dataclass(frozen=True, kw_only=True)
class PredicateSpec:
    """A registered predicate: its kind name, type URI and schema.

    Attributes:
        kind: Short name used by the CLI and :func:`~safeguard.provenance.write_manifest`.
        predicate_type: The in-toto ``predicateType`` URI.
        schema: A pydantic model the predicate must validate against.
    """

    kind: str
    predicate_type: str
    schema: type[BaseModel]


_REGISTRY: dict[str, PredicateSpec] = {}


def register_predicate(
    kind: str, predicate_type: str, schema: type[BaseModel], *, force: bool = False
) -> None:
    """Register a predicate kind (the extension point for new manifest kinds).

    Raises:
        DataError: ``kind`` or ``predicate_type`` is already registered and ``force`` is false.
    """
    if not force:
        for spec in _REGISTRY.values():
            if spec.kind == kind or spec.predicate_type == predicate_type:
                raise DataError(
                    f"predicate kind {kind!r} / type {predicate_type!r} is already registered; "
                    "pass force=True to replace it"
                )
    _REGISTRY[kind] = PredicateSpec(kind=kind, predicate_type=predicate_type, schema=schema)


register_predicate("dataset", DATASET_PREDICATE, DatasetSchema)
register_predicate("scrub", SCRUB_PREDICATE, ScrubSchema)
register_predicate("training", SLSA_PROVENANCE_V1, TrainingSchema)
register_predicate("generation", GENERATION_PREDICATE, GenerationSchema)


def known_predicates() -> list[PredicateSpec]:
    """The registered predicates."""
    return list(_REGISTRY.values())


def get_predicate(kind: str) -> PredicateSpec:
    """The spec registered under ``kind``.

    Raises:
        UnknownPredicateError: ``kind`` is not registered; the message lists the known kinds.
    """
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise UnknownPredicateError(
            f"unknown manifest kind {kind!r}; known kinds: {', '.join(sorted(_REGISTRY))}"
        ) from None


def kind_of(predicate_type: str) -> str:
    """The kind registered for a predicateType URI.

    Raises:
        UnknownPredicateError: The URI is not registered.
    """
    for spec in _REGISTRY.values():
        if spec.predicate_type == predicate_type:
            return spec.kind
    known = ", ".join(s.predicate_type for s in _REGISTRY.values())
    raise UnknownPredicateError(f"unknown predicateType {predicate_type!r}; known types: {known}")


_SECRET_NAMES = frozenset(
    {"key", "secret", "secret_key", "private_key", "privatekey", "password", "passphrase", "xi"}
)


def find_secrets(data: Any, path: str = "predicate") -> list[str]:
    """Paths inside ``data`` that look like key material (a field named ``key``/``secret``/...,
    or a PEM private key). Manifests must carry key ids only.

    >>> find_secrets({"watermark": {"scheme": "gumbel", "key_id": "ab12"}})
    []
    >>> find_secrets({"watermark": {"key": "00ff"}})
    ['predicate.watermark.key']
    """
    found: list[str] = []
    if isinstance(data, Mapping):
        for k, v in data.items():
            sub = f"{path}.{k}"
            if str(k).lower() in _SECRET_NAMES:
                found.append(sub)
            else:
                found.extend(find_secrets(v, sub))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found.extend(find_secrets(v, f"{path}[{i}]"))
    elif isinstance(data, str) and "PRIVATE KEY" in data:
        found.append(path)
    return found


def validate_predicate(predicate_type: str, predicate: Any) -> str:
    """Check a predicate against its registered schema and for key material.

    Returns:
        The predicate's kind.

    Raises:
        UnknownPredicateError: ``predicate_type`` is not registered.
        PredicateSchemaError: The predicate does not match; every problem is listed with its path.
    """
    kind = kind_of(predicate_type)
    spec = _REGISTRY[kind]
    problems: list[str] = []
    try:
        spec.schema.model_validate(predicate)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(predicate)"
            problems.append(f"{loc}: {err['msg']}")
    problems.extend(
        f"{p}: looks like key material; manifests carry key ids only"
        for p in find_secrets(predicate)
    )
    if kind == "training" and isinstance(predicate, dict):
        build_type = (
            predicate.get("buildDefinition", {}).get("buildType")
            if isinstance(predicate.get("buildDefinition"), dict)
            else None
        )
        if build_type == TRAINING_BUILD_TYPE:
            ext = predicate["buildDefinition"].get("externalParameters", {})
            if not isinstance(ext, dict) or not isinstance(ext.get("dp"), dict):
                problems.append(
                    "buildDefinition.externalParameters.dp: a DP training run must record its DP config"
                )
    if problems:
        raise PredicateSchemaError(
            f"{kind} predicate does not match its schema ({len(problems)} problem(s)): "
            + "; ".join(problems)
        )
    return kind
