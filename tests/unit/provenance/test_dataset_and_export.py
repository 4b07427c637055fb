from __future__ import annotations

import json

import pytest

from safeguard.errors import DataError
from safeguard.provenance import (
    croissant_metadata,
    dataset_predicate,
    dataset_root,
    iter_records,
    load_manifest,
    model_card_section,
    prove_record,
    scrub_predicate,
    training_predicate,
    write_manifest,
)
from safeguard.provenance.digest import sha256_file
from safeguard.provenance.merkle import MerkleTree


def test_records_are_nonempty_lines_without_endings(tmp_path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"a":1}\n\n{"a":2}\r\n{"a":3}')
    assert list(iter_records(p)) == [b'{"a":1}', b'{"a":2}', b'{"a":3}']
    n, root = dataset_root(p)
    assert n == 3
    assert root == MerkleTree.from_records([b'{"a":1}', b'{"a":2}', b'{"a":3}']).root.hex()
    record, proof = prove_record(p, 1)
    assert record == b'{"a":2}' and proof.verify(record, root)
    with pytest.raises(DataError, match="index"):
        prove_record(p, 3)
    with pytest.raises(FileNotFoundError):
        dataset_root(tmp_path / "missing.jsonl")


def test_croissant_rai_and_model_card(tmp_path, key) -> None:
    raw = tmp_path / "raw.jsonl"
    raw.write_text('{"t": "John Smith"}\n')
    clean = tmp_path / "clean.jsonl"
    clean.write_text('{"t": "<PERSON>"}\n')
    n, root = dataset_root(clean)
    ds = write_manifest(
        "dataset",
        [clean],
        dataset_predicate(
            name="clean-notes",
            record_count=n,
            merkle_root=root,
            licenses=["CC-BY-4.0"],
            sources=[{"uri": "https://example.org/notes"}],
        ),
        tmp_path / "clean.dataset.json",
        key,
    )
    sc = write_manifest(
        "scrub",
        [clean],
        scrub_predicate(
            policy_name="healthcare-hipaa",
            inputs=[("raw.jsonl", sha256_file(raw))],
            outputs=[("clean.jsonl", sha256_file(clean))],
            entity_counts={"PERSON": 1},
            measured_recall=0.95,
            measured_on={"dataset": "notes.labels.jsonl", "kind": "hand-labelled", "documents": 40},
        ),
        tmp_path / "scrub.json",
        key,
    )
    doc = croissant_metadata(load_manifest(ds), scrub=load_manifest(sc))
    assert doc["@type"] == "sc:Dataset"
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    assert doc["@context"]["rai"] == "http://mlcommons.org/croissant/RAI/"
    assert "PERSON (1)" in doc["rai:personalSensitiveInformation"]
    assert any("healthcare-hipaa" in s for s in doc["rai:dataPreprocessingProtocol"])
    assert (
        "measured recall 0.950 on notes.labels.jsonl (hand-labelled, 40 documents)"
        in doc["rai:dataPreprocessingProtocol"]
    )
    assert doc["distribution"][0]["sha256"] == sha256_file(clean)
    assert doc["prov:wasDerivedFrom"][0]["sha256"] == sha256_file(raw)
    assert doc["safeguard:merkleRoot"]["root"] == root
    json.dumps(doc)
    with pytest.raises(DataError, match="must be a dataset manifest"):
        croissant_metadata(load_manifest(sc))

    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"w")
    tr = write_manifest(
        "training",
        [model],
        training_predicate(
            dp_config={"target_epsilon": 8.0, "max_grad_norm": 1.0, "noise_multiplier": 1.1},
            datasets=[("clean.jsonl", sha256_file(clean))],
            ledger={"epsilon_spent": 3.5, "delta": 1e-5, "accountant": "prv"},
        ),
        tmp_path / "train.json",
        key,
    )
    card = model_card_section(load_manifest(tr))
    assert card.startswith("## Training provenance and privacy")
    assert "train.json" in card and key.key_id[:16] in card
    assert "ε = 3.5" in card and sha256_file(clean) in card
    import hashlib

    assert hashlib.sha256(tr.read_bytes()).hexdigest() in card


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_croissant_output_loads_in_mlcroissant(tmp_path, key) -> None:
    mlc = pytest.importorskip("mlcroissant")
    clean = tmp_path / "clean.jsonl"
    clean.write_text('{"t": "<PERSON> seen"}\n')
    n, root = dataset_root(clean)
    ds = write_manifest(
        "dataset",
        [clean],
        dataset_predicate(
            name="clean-notes", record_count=n, merkle_root=root, licenses=["CC0-1.0"]
        ),
        tmp_path / "clean.dataset.json",
        key,
    )
    sc = write_manifest(
        "scrub",
        [clean],
        scrub_predicate(
            policy_name="healthcare-hipaa",
            inputs=[("raw.jsonl", "0" * 64)],
            outputs=[("clean.jsonl", sha256_file(clean))],
            entity_counts={"PERSON": 1},
            quarantined=2,
        ),
        tmp_path / "scrub.json",
        key,
    )
    doc = croissant_metadata(
        load_manifest(ds), scrub=load_manifest(sc), url="https://example.org/notes"
    )
    metadata = mlc.Dataset(jsonld=doc).metadata
    assert metadata.name == "clean-notes"
    assert "PERSON (1)" in " ".join(metadata.personal_sensitive_information)
    assert "2 record(s) quarantined" in metadata.data_preprocessing_protocol
    assert metadata.distribution[0].sha256 == sha256_file(clean)
