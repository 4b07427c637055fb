"""Export manifests to formats other tools read: Croissant RAI metadata and model cards.

:func:`croissant_metadata` writes plain Croissant 1.1 JSON-LD with the
Responsible-AI (RAI) vocabulary; it does not need ``mlcroissant`` (the tests load
the output with ``mlcroissant`` and read the RAI fields back). Keys are the
Croissant/RAI terms (``rai:dataCollection``, ``rai:personalSensitiveInformation``,
``rai:dataPreprocessingProtocol``) and the lineage uses PROV-O
(``prov:wasDerivedFrom``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from safeguard.errors import DataError
from safeguard.provenance.digest import sha256_file
from safeguard.provenance.manifest import Manifest

__all__ = ["CROISSANT_CONTEXT", "croissant_metadata", "model_card_section"]

#: The Croissant JSON-LD context (as published with the Croissant examples and written by
#: ``mlcroissant``), plus the PROV-O and safeguard prefixes used for lineage.
CROISSANT_CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "prov": "http://www.w3.org/ns/prov#",
    "safeguard": "https://safeguard-ai.github.io/provenance/",
}


def _require(m: Manifest, kind: str, arg: str) -> None:
    if m.kind != kind:
        raise DataError(f"`{arg}` must be a {kind} manifest, got a {m.kind} manifest")


def _envelope_digest(m: Manifest) -> str:
    """sha256 of the manifest file as shipped (what `sha256sum FILE` prints)."""
    if m.path is not None and m.path.is_file():
        return "sha256:" + sha256_file(m.path)
    return "sha256:" + hashlib.sha256(m.envelope.to_json().encode("utf-8")).hexdigest()


def croissant_metadata(
    dataset: Manifest,
    *,
    scrub: Manifest | None = None,
    raw: Manifest | None = None,
    description: str | None = None,
    data_collection: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """Croissant 1.1 + RAI JSON-LD for a dataset manifest.

    Args:
        dataset: The dataset manifest (of the data being described).
        scrub: The scrub manifest that produced it, if it is scrubbed data: fills
            ``rai:personalSensitiveInformation`` and ``rai:dataPreprocessingProtocol``.
        raw: The dataset manifest of the raw data it derives from (``prov:wasDerivedFrom``).
        description: Dataset description (default: the predicate's).
        data_collection: How the data was collected (``rai:dataCollection``).
        url: Where the dataset is published.
    """
    _require(dataset, "dataset", "dataset")
    pred = dataset.statement.predicate
    sources = pred.get("sources", [])
    doc: dict[str, Any] = {
        "@context": dict(CROISSANT_CONTEXT),
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.1",
        "name": pred["name"],
        "description": description or pred.get("description", f"Dataset {pred['name']}"),
        "license": pred.get("licenses", []),
        "distribution": _file_objects(dataset),
        "rai:dataCollection": data_collection
        or (
            "Collected from: " + ", ".join(s["uri"] for s in sources) if sources else "not recorded"
        ),
        "safeguard:merkleRoot": {
            "algorithm": pred["merkle"]["algorithm"],
            "root": pred["merkle"]["root"],
            "records": pred["record_count"],
        },
    }
    if url:
        doc["url"] = url
    if scrub is not None:
        _require(scrub, "scrub", "scrub")
        doc.update(_scrub_terms(scrub))
    if raw is not None:
        _require(raw, "dataset", "raw")
        derived = doc.setdefault("prov:wasDerivedFrom", [])
        for s in raw.statement.subjects:
            if not any(d.get("sha256") == s.sha256 for d in derived):
                derived.append({"@id": s.name, "sha256": s.sha256})
    return doc


def _file_objects(dataset: Manifest) -> list[dict[str, Any]]:
    """One ``cr:FileObject`` per subject of a dataset manifest."""
    return [
        {
            "@type": "cr:FileObject",
            "@id": s.name,
            "name": s.name,
            "contentUrl": s.name,
            "encodingFormat": "application/jsonlines",
            "sha256": s.sha256,
        }
        for s in dataset.statement.subjects
    ]


def _scrub_terms(scrub: Manifest) -> dict[str, Any]:
    """The RAI terms a scrub manifest fills, and the PROV-O lineage to its inputs."""
    sp = scrub.statement.predicate
    policy = sp["policy"]
    counts = sp.get("entity_counts", {})
    found = ", ".join(f"{k} ({v})" for k, v in sorted(counts.items())) or "none found"
    recall = sp.get("measured_recall")
    return {
        "rai:personalSensitiveInformation": (
            f"Scrubbed with PII policy {policy['name']!r}; entities found and replaced: {found}."
        ),
        "rai:dataPreprocessingProtocol": [
            f"PII/PHI scrubbing with policy {policy['name']!r}"
            + (f" (policy digest {policy['digest']})" if policy.get("digest") else ""),
            f"{sp.get('quarantined', 0)} record(s) quarantined",
            _recall_line(recall, sp.get("measured_on"))
            if isinstance(recall, (int, float))
            else "recall not measured",
        ],
        "prov:wasGeneratedBy": {
            "@type": "prov:Activity",
            "name": "pii-scrub",
            "safeguard:manifestDigest": _envelope_digest(scrub),
        },
        "prov:wasDerivedFrom": [
            {"@id": i.get("name", ""), "sha256": i["digest"]["sha256"]} for i in sp["inputs"]
        ],
    }


def model_card_section(training: Manifest, *, extra: Mapping[str, str] | None = None) -> str:
    """A Markdown model-card section that cites the training manifest.

    Args:
        training: The training (SLSA Provenance v1) manifest.
        extra: Further rows for the table.
    """
    _require(training, "training", "training")
    pred = training.statement.predicate
    bd = pred["buildDefinition"]
    dp = bd.get("externalParameters", {}).get("dp", {})
    ledger: dict[str, Any] = {}
    for item in pred["runDetails"].get("byproducts", []):
        if item.get("name") == "privacy-ledger":
            ledger = item.get("annotations", {})
    rows = []
    for s in training.statement.subjects:
        rows.append(("Model", f"`{s.name}` (sha256 `{s.sha256}`)"))
    for dep in bd.get("resolvedDependencies", []):
        role = dep.get("annotations", {}).get("role", "dependency")
        rows.append(
            (
                role.replace("_", " ").capitalize(),
                f"`{dep.get('name') or dep.get('uri')}` (sha256 `{dep['digest']['sha256']}`)",
            )
        )
    if ledger:
        eps = ledger.get("epsilon_spent")
        delta = ledger.get("delta", dp.get("target_delta"))
        rows.append(
            (
                "Differential privacy",
                f"(ε = {eps}, δ = {delta})-DP, accountant {ledger.get('accountant', dp.get('accountant', '?'))}",
            )
        )
    for k in ("max_grad_norm", "noise_multiplier", "sample_rate", "epochs", "unit"):
        if k in dp:
            rows.append((f"DP {k}", str(dp[k])))
    rows.extend((k, v) for k, v in (extra or {}).items())
    name = training.path.name if training.path else "training manifest"
    signers = ", ".join(f"`{s.keyid[:16]}`" for s in training.envelope.signatures) or "unsigned"
    lines = [
        "## Training provenance and privacy",
        "",
        f"This model was trained as recorded in the signed manifest `{name}` "
        f"(envelope digest `{_envelope_digest(training)}`, signed by key id(s) {signers}; "
        f"predicate type `{training.statement.predicate_type}`). Verify it with "
        f"`safeguard manifest verify {name} --pubkey KEY.pub --chain`.",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
    ]
    return "\n".join(lines)


def _recall_line(recall: float, measured_on: Any) -> str:
    """``measured recall 0.990 on notes.labels.jsonl (synthetic-templates, 120 documents)``."""
    if not isinstance(measured_on, dict) or not measured_on.get("dataset"):
        return f"measured recall {recall:.3f} (on unstated data)"
    extra = [str(measured_on.get("kind", "unknown kind"))]
    if measured_on.get("documents"):
        extra.append(f"{measured_on['documents']} documents")
    return f"measured recall {recall:.3f} on {measured_on['dataset']} ({', '.join(extra)})"
