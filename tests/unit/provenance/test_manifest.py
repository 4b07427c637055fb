from __future__ import annotations

import json

import pytest

from safeguard.errors import SignatureError, UsageError
from safeguard.provenance import (
    Envelope,
    PredicateSchemaError,
    Statement,
    SubjectDigestError,
    UnknownPredicateError,
    dataset_predicate,
    dataset_root,
    generation_predicate,
    load_manifest,
    sign,
    verify,
    write_manifest,
)
from safeguard.provenance.digest import sha256_file
from safeguard.provenance.dsse import EnvelopeFormatError


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n\n{"text": "c"}\r\n')
    return path


def _dataset(path, out, key=None):
    n, root = dataset_root(path)
    return write_manifest(
        "dataset",
        [path],
        dataset_predicate(name="notes", record_count=n, merkle_root=root),
        out,
        key,
    )


def test_write_and_verify_signed_manifest(tmp_path, data, key) -> None:
    out = _dataset(data, tmp_path / "notes.manifest.json", key)
    doc = json.loads(out.read_text())
    assert set(doc) == {"payload", "payloadType", "signatures"}
    assert doc["signatures"][0]["keyid"] == key.key_id
    res = verify(out, [key.public_key])
    assert res.key_ids == (key.key_id,)
    assert [(s.name, s.status) for s in res.subjects] == [("notes.jsonl", "ok")]
    m = res.manifest
    assert m.kind == "dataset" and m.statement.predicate["record_count"] == 3
    assert m.statement.subjects[0].sha256 == sha256_file(data)


def test_no_key_material_in_the_manifest(tmp_path, data, key) -> None:
    out = _dataset(data, tmp_path / "m.json", key)
    pem_body = "".join(key.to_pem().decode().splitlines()[1:-1])
    assert pem_body not in out.read_text()


def test_unsigned_manifest_then_sign_with_two_keys(tmp_path, data, key, other_key) -> None:
    out = _dataset(data, tmp_path / "m.json")
    with pytest.raises(SignatureError, match="no signature"):
        verify(out, [key.public_key])
    assert verify(out, require_signature=False).key_ids == ()
    env = sign(sign(load_manifest(out), key), other_key)
    out.write_text(env.to_json())
    assert len(verify(out, [key.public_key, other_key.public_key], threshold=2).key_ids) == 2


def test_wrong_key_fails(tmp_path, data, key, other_key) -> None:
    out = _dataset(data, tmp_path / "m.json", key)
    with pytest.raises(SignatureError):
        verify(out, [other_key.public_key])


def test_modified_subject_file_fails(tmp_path, data, key) -> None:
    out = _dataset(data, tmp_path / "m.json", key)
    data.write_text(data.read_text().replace("a", "A"))
    with pytest.raises(SubjectDigestError, match=r"notes\.jsonl"):
        verify(out, [key.public_key])
    assert verify(out, [key.public_key], check_subjects=False).key_ids == (key.key_id,)


def test_statement_repointed_at_another_subject_fails(tmp_path, data, key, other_key) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text('{"text": "z"}\n')
    out = _dataset(data, tmp_path / "m.json", key)
    m = load_manifest(out)
    # 1. rename the subject inside the signed payload: the signature no longer covers it
    doc = m.statement.to_dict()
    doc["subject"][0]["name"] = "other.jsonl"
    doc["subject"][0]["digest"]["sha256"] = sha256_file(other)
    forged = Envelope(payload=Statement.from_dict(doc).to_bytes(), signatures=m.envelope.signatures)
    with pytest.raises(SignatureError):
        verify(forged, [key.public_key], base_dir=tmp_path)
    # 2. re-signed by someone else: the trusted key does not accept it
    with pytest.raises(SignatureError):
        verify(
            Envelope(payload=forged.payload).signed(other_key), [key.public_key], base_dir=tmp_path
        )
    # 3. swap the files on disk so the name points at other content: digest mismatch
    data.rename(tmp_path / "orig.jsonl")
    other.rename(data)
    with pytest.raises(SubjectDigestError):
        verify(out, [key.public_key])


def test_missing_subject_is_noted_or_required(tmp_path, data, key) -> None:
    out = _dataset(data, tmp_path / "m.json", key)
    data.unlink()
    res = verify(out, [key.public_key])
    assert res.missing_subjects == ["notes.jsonl"]
    with pytest.raises(SubjectDigestError, match="cannot be checked"):
        verify(out, [key.public_key], require_subjects=True)


def test_directory_subject(tmp_path, key) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"\x00" * 10)
    text = tmp_path / "out.txt"
    text.write_text("hello")
    from safeguard.provenance.digest import digest_directory

    out = write_manifest(
        "generation",
        [text],
        generation_predicate(
            model=("model", digest_directory(model).sha256),
            watermark={"scheme": "gumbel", "key_id": "k"},
        ),
        tmp_path / "gen.json",
        key,
    )
    assert verify(out, key.public_key).subjects[0].status == "ok"


def test_bad_inputs_are_usage_errors(tmp_path, data, key) -> None:
    with pytest.raises(UnknownPredicateError):
        write_manifest("nope", [data], {}, tmp_path / "x.json")
    with pytest.raises(PredicateSchemaError):
        write_manifest("dataset", [data], {"name": "x"}, tmp_path / "x.json")
    with pytest.raises(FileNotFoundError):
        write_manifest(
            "dataset",
            [tmp_path / "missing"],
            dataset_predicate(name="x", record_count=0, merkle_root="0" * 64),
            tmp_path / "x.json",
        )
    with pytest.raises(FileNotFoundError):
        load_manifest(tmp_path / "missing.json")
    wrong_type = Envelope(payload=b"{}", payload_type="text/plain").signed(key)
    (tmp_path / "w.json").write_text(wrong_type.to_json())
    with pytest.raises(EnvelopeFormatError, match="payloadType"):
        load_manifest(tmp_path / "w.json")
    unknown = Statement.from_dict(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "a", "digest": {"sha256": "0" * 64}}],
            "predicateType": "https://x/v9",
            "predicate": {},
        }
    )
    (tmp_path / "u.json").write_text(sign(unknown, key).to_json())
    with pytest.raises(UnknownPredicateError):
        load_manifest(tmp_path / "u.json")
    for exc in (EnvelopeFormatError, UnknownPredicateError, PredicateSchemaError):
        assert issubclass(exc, UsageError)


def test_renamed_file_in_a_model_folder_is_caught(tmp_path, key) -> None:
    from safeguard.provenance import training_predicate

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    out = write_manifest(
        "training",
        [model],
        training_predicate(dp_config={"target_epsilon": 1.0}, datasets=[("d", "0" * 64)]),
        tmp_path / "t.json",
        key,
    )
    assert verify(out, key.public_key).subjects[0].status == "ok"
    # same contents, same sort order, another name: the combined digest alone cannot see it
    (model / "model.safetensors").rename(model / "model2.safetensors")
    with pytest.raises(
        SubjectDigestError, match=r"added: model2\.safetensors; removed: model\.safetensors"
    ):
        verify(out, key.public_key)
