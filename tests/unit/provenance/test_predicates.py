from __future__ import annotations

import doctest

import pytest
from pydantic import BaseModel

from safeguard.errors import DataError, UsageError
from safeguard.provenance import predicates as pred_mod
from safeguard.provenance.predicates import (
    C2PA_TRAINED_ALGORITHMIC_MEDIA,
    DATASET_PREDICATE,
    GENERATION_PREDICATE,
    SCRUB_PREDICATE,
    SLSA_PROVENANCE_V1,
    PredicateSchemaError,
    UnknownPredicateError,
    dataset_predicate,
    generation_predicate,
    get_predicate,
    register_predicate,
    scrub_predicate,
    training_predicate,
    validate_predicate,
)
from safeguard.provenance.statement import STATEMENT_TYPE, Statement, StatementFormatError, Subject

SHA_A = "a" * 64
SHA_B = "b" * 64


def test_doctests() -> None:
    result = doctest.testmod(pred_mod)
    assert result.attempted > 0 and result.failed == 0


def test_dataset_predicate() -> None:
    p = dataset_predicate(
        name="notes",
        record_count=3,
        merkle_root=SHA_A,
        sources=[{"uri": "file://notes"}],
        licenses=["CC0-1.0"],
    )
    assert validate_predicate(DATASET_PREDICATE, p) == "dataset"
    assert p["merkle"] == {
        "algorithm": "rfc6962-sha256",
        "root": SHA_A,
        "tree_size": 3,
        "record_encoding": "jsonl-line-utf8",
    }


def test_scrub_predicate_from_plain_report() -> None:
    report = {"entity_counts": {"PERSON": 4, "DATE_TIME": 2}, "quarantined": 1, "recall": 0.97}
    p = scrub_predicate(
        policy_name="healthcare-hipaa",
        policy_digest="sha256:" + SHA_B,
        inputs=[("raw.jsonl", SHA_A)],
        outputs=[{"name": "clean.jsonl", "sha256": "sha256:" + SHA_B}],
        entity_counts=report["entity_counts"],
        quarantined=report["quarantined"],
        measured_recall=report["recall"],
        measured_on={"dataset": "labels.jsonl", "kind": "held-out", "documents": 600},
        records_in=10,
        records_out=9,
    )
    assert validate_predicate(SCRUB_PREDICATE, p) == "scrub"
    assert p["measured_on"] == {"dataset": "labels.jsonl", "kind": "held-out", "documents": 600}
    # a recall figure without the data it was measured on is refused, and so is an unknown kind
    with pytest.raises(DataError, match="needs `measured_on`"):
        scrub_predicate(
            policy_name="p", inputs=[("a", SHA_A)], outputs=[("b", SHA_B)], entity_counts={},
            measured_recall=0.9,
        )  # fmt: skip
    with pytest.raises(DataError, match="measured_on"):
        scrub_predicate(
            policy_name="p", inputs=[("a", SHA_A)], outputs=[("b", SHA_B)], entity_counts={},
            measured_recall=0.9, measured_on={"dataset": "x", "kind": "vibes"},
        )  # fmt: skip
    assert p["outputs"][0]["digest"] == {"sha256": SHA_B}
    assert p["policy"] == {"name": "healthcare-hipaa", "digest": "sha256:" + SHA_B}


def test_training_predicate_is_slsa_provenance_v1() -> None:
    p = training_predicate(
        dp_config={
            "target_epsilon": 8.0,
            "target_delta": 1e-5,
            "max_grad_norm": 1.0,
            "noise_multiplier": 1.1,
        },
        datasets=[("clean.jsonl", SHA_A)],
        base_model=("gpt2-tiny", SHA_B),
        ledger={"epsilon_spent": 7.2, "delta": 1e-5, "accountant": "prv", "steps": 30},
        invocation_id="run-1",
        started_on="2026-01-01T00:00:00Z",
    )
    assert validate_predicate(SLSA_PROVENANCE_V1, p) == "training"
    bd = p["buildDefinition"]
    assert set(bd) == {
        "buildType",
        "externalParameters",
        "internalParameters",
        "resolvedDependencies",
    }
    assert [d["annotations"]["role"] for d in bd["resolvedDependencies"]] == [
        "base_model",
        "dataset",
    ]
    assert bd["externalParameters"]["dp"]["target_epsilon"] == 8.0
    rd = p["runDetails"]
    assert rd["builder"]["id"]
    assert rd["metadata"]["invocationId"] == "run-1" and rd["metadata"]["startedOn"]
    assert rd["byproducts"][0]["annotations"]["epsilon_spent"] == 7.2


def test_generation_predicate_has_c2pa_source_type_and_no_key() -> None:
    p = generation_predicate(
        model=("model", SHA_A), watermark={"scheme": "gumbel", "key_id": "k1", "params": {"h": 4}}
    )
    assert validate_predicate(GENERATION_PREDICATE, p) == "generation"
    assert p["digitalSourceType"] == C2PA_TRAINED_ALGORITHMIC_MEDIA
    assert p["c2pa"]["action"] == "c2pa.created"
    with pytest.raises(PredicateSchemaError, match="never the key"):
        generation_predicate(
            model=("model", SHA_A), watermark={"scheme": "gumbel", "key_id": "k1", "key": "00ff"}
        )


def test_schema_errors_list_every_problem() -> None:
    bad = {"name": "", "record_count": -1, "merkle": {"algorithm": "md5", "root": "zz"}}
    with pytest.raises(PredicateSchemaError) as info:
        validate_predicate(DATASET_PREDICATE, bad)
    msg = str(info.value)
    for fragment in ("name", "record_count", "merkle.algorithm", "merkle.root", "merkle.tree_size"):
        assert fragment in msg
    assert isinstance(info.value, UsageError)


def test_key_material_anywhere_is_refused() -> None:
    p = dataset_predicate(
        name="x", record_count=0, merkle_root=SHA_A, extra={"notes": {"private_key": "..."}}
    )
    with pytest.raises(PredicateSchemaError, match=r"predicate\.notes\.private_key"):
        validate_predicate(DATASET_PREDICATE, p)
    p = dataset_predicate(
        name="x", record_count=0, merkle_root=SHA_A, extra={"blob": "-----BEGIN PRIVATE KEY-----"}
    )
    with pytest.raises(PredicateSchemaError, match="key material"):
        validate_predicate(DATASET_PREDICATE, p)


def test_dp_training_needs_dp_config() -> None:
    p = training_predicate(dp_config={}, datasets=[("d", SHA_A)])
    p["buildDefinition"]["externalParameters"].pop("dp")
    with pytest.raises(PredicateSchemaError, match="DP config"):
        validate_predicate(SLSA_PROVENANCE_V1, p)


def test_unknown_predicate_types_and_kinds() -> None:
    with pytest.raises(UnknownPredicateError, match="known types"):
        validate_predicate("https://example.com/other/v1", {})
    with pytest.raises(
        UnknownPredicateError, match="known kinds: dataset, generation, scrub, training"
    ):
        get_predicate("nope")


def test_registry_refuses_duplicates_and_accepts_new_kinds() -> None:
    class Eval(BaseModel):
        score: float

    with pytest.raises(DataError, match="already registered"):
        register_predicate("dataset", "https://example.com/x", Eval)
    register_predicate("eval-test", "https://example.com/eval/v1", Eval)
    assert validate_predicate("https://example.com/eval/v1", {"score": 0.5}) == "eval-test"
    pred_mod._REGISTRY.pop("eval-test")


def test_statement_round_trip_and_errors() -> None:
    st = Statement(
        subjects=(Subject(name="a.txt", digest={"sha256": SHA_A}),),
        predicate_type="https://x/v1",
        predicate={"k": 1},
    )
    d = st.to_dict()
    assert d["_type"] == STATEMENT_TYPE and d["subject"] == [
        {"name": "a.txt", "digest": {"sha256": SHA_A}}
    ]
    assert Statement.from_bytes(st.to_bytes()) == st
    with pytest.raises(StatementFormatError, match="only in-toto Statement v1"):
        Statement.from_dict({**d, "_type": "https://in-toto.io/Statement/v0.1"})
    with pytest.raises(StatementFormatError, match="non-empty list"):
        Statement.from_dict({**d, "subject": []})
    with pytest.raises(StatementFormatError, match="64 lower-case hex"):
        Statement.from_dict({**d, "subject": [{"name": "a", "digest": {"sha256": "xyz"}}]})
    with pytest.raises(StatementFormatError, match="not valid JSON"):
        Statement.from_bytes(b"{")
