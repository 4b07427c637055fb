"""Predicates for the four kinds of manifest, an explicit registry, and their schemas.

========== ======================================================== =====================
kind       predicateType                                            subject
========== ======================================================== =====================
dataset    ``https://safeguard-ai.github.io/provenance/dataset/v1``    the data file(s)
scrub      ``https://safeguard-ai.github.io/provenance/scrub/v1``      the scrubbed output(s)
training   ``https://slsa.dev/provenance/v1`` (SLSA Provenance v1)  the model folder
generation ``https://safeguard-ai.github.io/provenance/generation/v1`` the generated text
========== ======================================================== =====================

Builders take plain data (numbers, dicts read from the other modules' JSON
reports) and never import :mod:`safeguard.pii`, :mod:`safeguard.privacy` or
:mod:`safeguard.watermark`. Schemas are pydantic models: required fields and
types are checked, extra fields are kept (predicates may grow), and no field
may carry key material (:func:`find_secrets`).

The builders live here; the type URIs and schemas in
:mod:`safeguard.provenance.predicate_schemas`, and the registry and validation in
:mod:`safeguard.provenance.predicate_registry`. Every name stays importable from here.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from safeguard.errors import DataError
from safeguard.provenance.predicate_registry import (
    _REGISTRY,  # noqa: F401  (the registry itself, for tests that add and remove kinds)
    PredicateSpec,
    find_secrets,
    get_predicate,
    kind_of,
    known_predicates,
    register_predicate,
    validate_predicate,
)
from safeguard.provenance.predicate_schemas import (
    C2PA_TRAINED_ALGORITHMIC_MEDIA,
    DATASET_PREDICATE,
    GENERATION_PREDICATE,
    MERKLE_ALGORITHM,
    SCRUB_PREDICATE,
    SLSA_PROVENANCE_V1,
    TRAINING_BUILD_TYPE,
    DatasetSchema,
    GenerationSchema,
    PredicateKind,
    PredicateSchemaError,
    ScrubSchema,
    TrainingSchema,
    UnknownPredicateError,
    _MeasuredOn,
)

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
    "PredicateSpec",
    "ScrubSchema",
    "TrainingSchema",
    "UnknownPredicateError",
    "dataset_predicate",
    "find_secrets",
    "generation_predicate",
    "get_predicate",
    "kind_of",
    "known_predicates",
    "register_predicate",
    "scrub_predicate",
    "scrub_predicate_from_report",
    "training_predicate",
    "validate_predicate",
]


def _now() -> str:
    return (
        _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    )


def _resource(item: Mapping[str, Any] | tuple[str, str]) -> dict[str, Any]:
    if isinstance(item, tuple):
        name, sha = item
        return {"name": name, "digest": {"sha256": sha.removeprefix("sha256:")}}
    out = dict(item)
    if "sha256" in out and "digest" not in out:
        out["digest"] = {"sha256": str(out.pop("sha256")).removeprefix("sha256:")}
    return out


def dataset_predicate(
    *,
    name: str,
    record_count: int,
    merkle_root: str,
    sources: Sequence[Mapping[str, Any]] = (),
    licenses: Sequence[str] = (),
    record_encoding: str = "jsonl-line-utf8",
    description: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Predicate of a dataset: where it came from, its licences and its Merkle root.

    Args:
        name: Dataset name.
        record_count: Number of records (the Merkle tree size).
        merkle_root: Hex RFC 6962 root over the records.
        sources: ``{"uri", "license"?, "digest"?}`` per source.
        licenses: SPDX identifiers (or names) of the licences.
        record_encoding: How a record's bytes were obtained (default: a JSONL line, UTF-8,
            without its newline).
        description: Free text.
        extra: Further fields, kept as they are.
    """
    pred: dict[str, Any] = {
        "name": name,
        "sources": [dict(s) for s in sources],
        "licenses": list(licenses),
        "record_count": int(record_count),
        "merkle": {
            "algorithm": MERKLE_ALGORITHM,
            "root": merkle_root,
            "tree_size": int(record_count),
            "record_encoding": record_encoding,
        },
        "created": _now(),
    }
    if description:
        pred["description"] = description
    pred.update(extra or {})
    return pred


def scrub_predicate(
    *,
    policy_name: str,
    inputs: Sequence[Mapping[str, Any] | tuple[str, str]],
    outputs: Sequence[Mapping[str, Any] | tuple[str, str]],
    entity_counts: Mapping[str, int],
    quarantined: int = 0,
    policy_digest: str | None = None,
    records_in: int | None = None,
    records_out: int | None = None,
    measured_recall: float | None = None,
    report: Mapping[str, Any] | None = None,
    measured_on: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Predicate of a scrub run, from the scrubber's report read as plain data.

    Args:
        policy_name: The PII policy applied (e.g. ``healthcare-hipaa``).
        inputs: Raw data, as ``(name, sha256)`` pairs or resource dicts.
        outputs: Scrubbed data, likewise.
        entity_counts: Findings per entity type.
        quarantined: Records set aside (written to the quarantine file).
        policy_digest: ``sha256:<hex>`` of the policy (``safeguard.policy.policy_digest``).
        records_in: Records read.
        records_out: Records written.
        measured_recall: Recall measured on labelled data, if an evaluation ran.
        report: The rest of the scrub report, kept under ``report``.
        measured_on: The labelled data ``measured_recall`` comes from (required with it):
            ``dataset``, ``kind`` (``synthetic-templates``, ``hand-labelled``, ``held-out``,
            ``production-sample``) and optionally ``documents``, ``sha256``, ``metric``.

    Raises:
        DataError: ``measured_recall`` without ``measured_on``.
    """
    if measured_recall is not None and not measured_on:
        raise DataError(
            "`measured_recall` needs `measured_on` (the labelled data it was measured on, and of "
            "what kind), so that a template-set figure is not read as a guarantee"
        )
    pred: dict[str, Any] = {
        "policy": {"name": policy_name, **({"digest": policy_digest} if policy_digest else {})},
        "inputs": [_resource(i) for i in inputs],
        "outputs": [_resource(o) for o in outputs],
        "entity_counts": {str(k): int(v) for k, v in entity_counts.items()},
        "quarantined": int(quarantined),
        "finished": _now(),
    }
    if records_in is not None:
        pred["records_in"] = int(records_in)
    if records_out is not None:
        pred["records_out"] = int(records_out)
    if measured_recall is not None:
        pred["measured_recall"] = float(measured_recall)
        try:
            on = _MeasuredOn.model_validate(dict(measured_on or {}))
        except ValidationError as exc:
            raise DataError(f"`measured_on` is not valid: {exc.errors()[0]['msg']}") from None
        pred["measured_on"] = on.model_dump(exclude_none=True)
    if report:
        pred["report"] = dict(report)
    return pred


def _report_resource(part: Any, what: str) -> dict[str, Any]:
    if not isinstance(part, Mapping):
        raise DataError(f"scrub report `{what}` must be an object with `path` and `sha256`")
    sha = part.get("sha256")
    if not isinstance(sha, str):
        raise DataError(
            f"scrub report `{what}` has no sha256; pass the report written after the run finished"
        )
    name = str(part.get("path") or part.get("name") or what)
    return {
        "name": name.replace("\\", "/").rsplit("/", 1)[-1],
        "digest": {"sha256": sha.removeprefix("sha256:")},
    }


def scrub_predicate_from_report(
    report: Mapping[str, Any],
    *,
    measured_recall: float | None = None,
    measured_on: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Scrub predicate from a scrub report read as plain data (``ScrubReport.to_dict()`` / its JSON).

    Reads ``policy.name``/``policy.digest``, ``input``/``output`` (``path``, ``sha256``),
    ``entities``, ``records`` and ``quarantine``; the rest (config, fields, key id) is kept
    under ``report``. Resource names are file names, as in the manifests' subjects.

    Raises:
        DataError: The report lacks the policy or the input/output digests.
    """
    policy = report.get("policy")
    if not isinstance(policy, Mapping) or not policy.get("name"):
        raise DataError(
            "scrub report has no `policy.name`; pass the report of a finished scrub run"
        )
    records = report.get("records") or {}
    quarantine = report.get("quarantine") or {}
    quarantined = records.get("quarantined", quarantine.get("count", quarantine.get("records", 0)))
    kept = {
        k: report[k]
        for k in (
            "schema",
            "tool",
            "config",
            "key_id",
            "fields",
            "records",
            "resumed",
            "started_at",
            "finished_at",
        )
        if k in report
    }
    if quarantine.get("sha256"):
        kept["quarantine_sha256"] = quarantine["sha256"]
    return scrub_predicate(
        policy_name=str(policy["name"]),
        policy_digest=policy.get("digest"),
        inputs=[_report_resource(report.get("input"), "input")],
        outputs=[_report_resource(report.get("output"), "output")],
        entity_counts=dict(report.get("entities") or {}),
        quarantined=int(quarantined or 0),
        records_in=records.get("read"),
        records_out=records.get("written"),
        measured_recall=measured_recall,
        measured_on=measured_on,
        report=kept,
    )


def _ledger_anchor(summary: Mapping[str, Any]) -> dict[str, Any]:
    """``ledger_entries`` / ``ledger_head`` from a ledger summary's ``entries`` / ``head``.

    >>> _ledger_anchor({"entries": 3, "head": "ab" * 32})["ledger_entries"]
    3
    >>> _ledger_anchor({"epsilon": 1.0})
    {}
    """
    out: dict[str, Any] = {}
    entries = summary.get("entries")
    if entries is not None:
        if isinstance(entries, bool) or not isinstance(entries, int) or entries < 0:
            raise DataError(
                f"ledger summary `entries` (={entries!r}) must be the number of ledger entries, "
                "an integer >= 0; pass the ledger's summary unchanged"
            )
        out["ledger_entries"] = entries
    head = summary.get("head")
    if head is not None:
        if not (isinstance(head, str) and _is_sha256(head)):
            raise DataError(
                f"ledger summary `head` (={head!r}) must be the hex sha256 of the newest ledger "
                "entry (64 lower-case hex digits); pass the ledger's summary unchanged"
            )
        out["ledger_head"] = head
    return out


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def training_predicate(
    *,
    dp_config: Mapping[str, Any],
    datasets: Sequence[Mapping[str, Any] | tuple[str, str]],
    base_model: Mapping[str, Any] | tuple[str, str] | None = None,
    ledger: Mapping[str, Any] | None = None,
    builder_id: str = "https://safeguard-ai.github.io/safeguard/train@v1",
    invocation_id: str | None = None,
    started_on: str | None = None,
    finished_on: str | None = None,
    internal_parameters: Mapping[str, Any] | None = None,
    extra_external: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """SLSA Provenance v1 predicate of a DP fine-tuning run.

    ``resolvedDependencies`` holds the base model and dataset digests (annotated with their
    ``role``), ``externalParameters.dp`` the DP config, and the byproduct ``privacy-ledger``
    the ledger summary with the epsilon spent (``annotations.epsilon_spent``) and, when the
    summary carries them, the ledger's anchor: ``annotations.ledger_entries`` (entries in
    ``privacy_ledger.jsonl``) and ``annotations.ledger_head`` (hex sha256 of the newest
    entry), which verification checks against the ledger file in the model folder.

    Args:
        dp_config: The DP config as a dict (``DPConfig.to_dict()``), e.g. ``target_epsilon``,
            ``target_delta``, ``max_grad_norm``, ``noise_multiplier``, ``accountant``.
        datasets: Training data, as ``(name, sha256)`` pairs or resource dicts.
        base_model: The model fine-tuned, if any.
        ledger: Ledger summary, e.g. ``{"epsilon_spent": 7.9, "delta": 1e-5, "steps": 300,
            "accountant": "prv"}``, or ``LedgerSummary.to_dict()`` (its ``epsilon`` is copied
            to ``epsilon_spent``, its ``entries`` to ``ledger_entries`` and its ``head`` to
            ``ledger_head``).
        builder_id: Who ran the build.
        invocation_id: An id of this run.
        started_on: RFC 3339 start time.
        finished_on: RFC 3339 end time (default: now).
        internal_parameters: Parameters that do not change the guarantee (threads, device).
        extra_external: Further external parameters (e.g. the policy name).

    Raises:
        DataError: The ledger's ``entries`` is not a count or its ``head`` is not a hex sha256.
    """
    deps = []
    if base_model is not None:
        deps.append({**_resource(base_model), "annotations": {"role": "base_model"}})
    for d in datasets:
        res = _resource(d)
        res["annotations"] = {**res.get("annotations", {}), "role": "dataset"}
        deps.append(res)
    byproducts = []
    if ledger is not None:
        summary = dict(ledger)
        # a LedgerSummary.to_dict() names the spent budget `epsilon`
        if "epsilon_spent" not in summary and isinstance(summary.get("epsilon"), (int, float)):
            summary["epsilon_spent"] = summary["epsilon"]
        summary.update(_ledger_anchor(summary))
        byproducts.append(
            {"name": "privacy-ledger", "mediaType": "application/json", "annotations": summary}
        )
    metadata: dict[str, Any] = {"finishedOn": finished_on or _now()}
    if invocation_id:
        metadata["invocationId"] = invocation_id
    if started_on:
        metadata["startedOn"] = started_on
    return {
        "buildDefinition": {
            "buildType": TRAINING_BUILD_TYPE,
            "externalParameters": {"dp": dict(dp_config), **dict(extra_external or {})},
            "internalParameters": dict(internal_parameters or {}),
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": builder_id},
            "metadata": metadata,
            "byproducts": byproducts,
        },
    }


def generation_predicate(
    *,
    model: Mapping[str, Any] | tuple[str, str],
    watermark: Mapping[str, Any] | None = None,
    parameters: Mapping[str, Any] | None = None,
    prompt_sha256: str | None = None,
) -> dict[str, Any]:
    """Predicate of generated text: which model, which watermark (scheme and ``key_id`` only).

    Args:
        model: The model folder, as ``(name, sha256)`` or a resource dict.
        watermark: ``{"scheme", "key_id", "params"?}``; a ``key`` field is refused.
        parameters: Generation parameters (max_new_tokens, temperature, ...).
        prompt_sha256: Digest of the prompt(s), not the prompt itself.

    Raises:
        PredicateSchemaError: ``watermark`` carries key material.
    """
    pred: dict[str, Any] = {
        "model": _resource(model),
        "digitalSourceType": C2PA_TRAINED_ALGORITHMIC_MEDIA,
        "c2pa": {"action": "c2pa.created", "digitalSourceType": C2PA_TRAINED_ALGORITHMIC_MEDIA},
        "generated": _now(),
    }
    if watermark is not None:
        secrets = find_secrets(dict(watermark), "watermark")
        if secrets:
            raise PredicateSchemaError(
                f"{', '.join(secrets)}: the watermark section may carry the scheme, params and "
                "key_id only, never the key; pass WatermarkKey.key_id"
            )
        pred["watermark"] = dict(watermark)
    if parameters:
        pred["parameters"] = dict(parameters)
    if prompt_sha256:
        pred["prompt_sha256"] = prompt_sha256
    return pred
