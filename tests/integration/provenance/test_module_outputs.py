"""The other safeguards' outputs, as they write them, feed the predicates as plain data."""

from __future__ import annotations

import json

import pytest

from safeguard.policy import load_policy, policy_digest
from safeguard.provenance import (
    dataset_predicate,
    dataset_root,
    generation_predicate,
    load_manifest,
    scrub_predicate_from_report,
    training_predicate,
    verify_chain,
    write_manifest,
)
from safeguard.provenance.digest import digest_directory, sha256_file


def test_scrub_report_and_ledger_summary_build_a_verifiable_chain(tmp_path, key_pair) -> None:
    stream = pytest.importorskip("safeguard.pii.stream")
    ledger_mod = pytest.importorskip("safeguard.privacy.ledger")
    key = key_pair
    raw = tmp_path / "raw.jsonl"
    raw.write_text('{"text": "Pt Jane Roe (fictional)"}\n')
    clean = tmp_path / "clean.jsonl"
    clean.write_text('{"text": "Pt <PERSON>"}\n')
    policy = load_policy("healthcare-hipaa")
    report = stream.ScrubReport(
        policy={"name": "healthcare-hipaa", "digest": policy_digest(policy)},
        input={
            "path": str(raw),
            "format": "jsonl",
            "bytes": raw.stat().st_size,
            "sha256": sha256_file(raw),
        },
        output={
            "path": str(clean),
            "format": "jsonl",
            "bytes": clean.stat().st_size,
            "sha256": sha256_file(clean),
        },
        quarantine={"path": None, "records": 0, "sha256": None},
        records={"read": 1, "written": 1, "changed": 1, "quarantined": 0, "empty_lines": 0},
        entities={"PERSON": 1},
    )
    report_json = json.loads(json.dumps(report.to_dict()))  # as read back from the report file
    scrub_pred = scrub_predicate_from_report(
        report_json,
        measured_recall=0.98,
        measured_on={"dataset": "labels.jsonl", "kind": "synthetic-templates"},
    )
    assert scrub_pred["inputs"][0] == {"name": "raw.jsonl", "digest": {"sha256": sha256_file(raw)}}
    assert scrub_pred["policy"]["digest"] == policy_digest(policy)
    assert scrub_pred["records_in"] == 1 and scrub_pred["quarantined"] == 0

    summary = ledger_mod.LedgerSummary(
        accountant="prv",
        epsilon=5.25,
        epsilon_rdp=5.9,
        gdp_mu=0.8,
        delta=1e-5,
        steps=40,
        runs=1,
        history=((1.1, 0.01, 40),),
        unit_of_privacy="example",
        max_epsilon=8.0,
    )
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    out = tmp_path / "gen.jsonl"
    out.write_text('{"text": "generated"}\n')
    n, root = dataset_root(raw)
    write_manifest(
        "dataset",
        [raw],
        dataset_predicate(name="raw", record_count=n, merkle_root=root),
        tmp_path / "raw.m.json",
        key,
    )
    write_manifest("scrub", [clean], scrub_pred, tmp_path / "scrub.m.json", key)
    write_manifest(
        "training",
        [model],
        training_predicate(
            dp_config={"target_epsilon": 8.0, "max_grad_norm": 1.0},
            datasets=[("clean.jsonl", sha256_file(clean))],
            ledger=summary.to_dict(),
        ),
        tmp_path / "train.m.json",
        key,
    )
    write_manifest(
        "generation",
        [out],
        generation_predicate(
            model=("model", digest_directory(model).sha256),
            watermark={"scheme": "gumbel", "key_id": "wm-1"},
        ),
        tmp_path / "gen.m.json",
        key,
    )
    result = verify_chain(tmp_path / "gen.m.json", public_keys=[key.public_key], policy=policy)
    assert result.ok, result.broken
    eps = next(link for link in result.links if link.name == "policy: epsilon")
    assert "5.25 <= policy target_epsilon 8" in eps.detail
    ledger = load_manifest(tmp_path / "train.m.json").statement.predicate["runDetails"][
        "byproducts"
    ][0]
    assert ledger["annotations"]["epsilon_rdp"] == 5.9


def test_report_without_digests_is_refused() -> None:
    from safeguard.errors import DataError

    with pytest.raises(DataError, match=r"policy\.name"):
        scrub_predicate_from_report({"input": {}, "output": {}})
    with pytest.raises(DataError, match="no sha256"):
        scrub_predicate_from_report(
            {
                "policy": {"name": "p"},
                "input": {"path": "a"},
                "output": {"path": "b", "sha256": "0" * 64},
            }
        )


@pytest.fixture
def key_pair():
    from safeguard.provenance import PrivateKey

    return PrivateKey.generate()
