from __future__ import annotations

import pytest

from safeguard.errors import UsageError
from safeguard.policy import load_policy
from safeguard.provenance import ChainError, load_public_key, verify_chain


def _broken(result) -> list[str]:
    return [link.name for link in result.broken]


def test_full_chain_verifies_under_the_healthcare_policy(run) -> None:
    pub = load_public_key(run.pub_path)
    result = verify_chain(
        run.generation_manifest, public_keys=[pub], policy=load_policy("healthcare-hipaa")
    )
    assert result.ok, result.broken
    names = [link.name for link in result.links]
    for expected in (
        "generation -> training",
        "training -> scrub",
        "scrub -> raw dataset",
        "policy: epsilon",
        "policy: scrub policy",
        "policy: watermark",
    ):
        assert expected in names
    assert [m.kind for m in result.manifests] == ["generation", "training", "scrub", "dataset"]
    result.raise_for_failure()


def test_missing_scrub_manifest_names_the_link(run) -> None:
    run.scrub_manifest.unlink()
    pub = load_public_key(run.pub_path)
    result = verify_chain(run.generation_manifest, public_keys=[pub])
    assert _broken(result) == ["training -> scrub"]
    with pytest.raises(ChainError, match="broken link 'training -> scrub'"):
        result.raise_for_failure()


def test_missing_raw_dataset_manifest_names_the_link(run) -> None:
    run.raw_manifest.unlink()
    result = verify_chain(run.generation_manifest, public_keys=[load_public_key(run.pub_path)])
    assert _broken(result) == ["scrub -> raw dataset"]


def test_model_changed_after_training_breaks_the_training_manifest(run) -> None:
    (run.model / "model.safetensors").write_bytes(b"poisoned")
    result = verify_chain(run.generation_manifest, public_keys=[load_public_key(run.pub_path)])
    assert _broken(result) == ["training manifest training.json: verify"]
    assert "changed: model.safetensors" in result.broken[0].detail


def test_model_swapped_breaks_generation_link(tmp_path, make_run) -> None:
    run = make_run(tmp_path / "a")
    # the model was changed after the training manifest was written; a new generation names it
    (run.model / "extra.txt").write_text("retrained")
    from safeguard.provenance import generation_predicate, write_manifest
    from safeguard.provenance.digest import digest_directory

    write_manifest(
        "generation",
        [run.text],
        generation_predicate(
            model=("model", digest_directory(run.model).sha256),
            watermark={"scheme": "gumbel", "key_id": "k"},
        ),
        run.generation_manifest,
        run.key,
    )
    result = verify_chain(run.generation_manifest, public_keys=[run.key.public_key])
    assert "generation -> training" in _broken(result)


def test_tampered_manifest_signature_is_named(run) -> None:
    import base64
    import json

    doc = json.loads(run.scrub_manifest.read_text())
    payload = json.loads(base64.b64decode(doc["payload"]))
    payload["predicate"]["entity_counts"]["PERSON"] = 0
    doc["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    run.scrub_manifest.write_text(json.dumps(doc))
    result = verify_chain(run.generation_manifest, public_keys=[load_public_key(run.pub_path)])
    assert _broken(result) == ["scrub manifest scrub.json: verify"]
    assert "signature" in result.broken[0].detail


def test_epsilon_over_the_policy_fails(tmp_path, make_run) -> None:
    run = make_run(tmp_path / "r", epsilon_spent=9.5)
    result = verify_chain(
        run.generation_manifest,
        public_keys=[run.key.public_key],
        policy=load_policy("healthcare-hipaa"),
    )
    assert _broken(result) == ["policy: epsilon"]
    assert "9.5 > policy target_epsilon 8" in result.broken[0].detail


def test_seeded_dp_noise_fails_a_policy_that_does_not_allow_it(tmp_path, make_run) -> None:
    run = make_run(tmp_path / "r", dp_seed=0)
    result = verify_chain(
        run.generation_manifest,
        public_keys=[run.key.public_key],
        policy=load_policy("healthcare-hipaa"),
    )
    assert _broken(result) == ["policy: dp noise"]
    assert "fixed seed (no DP guarantee)" in result.broken[0].detail


def test_wrong_scrub_policy_fails(tmp_path, make_run) -> None:
    run = make_run(tmp_path / "r", scrub_policy="default")
    result = verify_chain(
        run.generation_manifest,
        public_keys=[run.key.public_key],
        policy=load_policy("healthcare-hipaa"),
    )
    assert _broken(result) == ["policy: scrub policy"]


def test_missing_watermark_fails_when_required(tmp_path, make_run) -> None:
    run = make_run(tmp_path / "r", watermark={})
    result = verify_chain(
        run.generation_manifest,
        public_keys=[run.key.public_key],
        policy=load_policy("healthcare-hipaa"),
    )
    assert _broken(result) == ["policy: watermark"]


def test_unsigned_run_fails_a_signing_policy(tmp_path, make_run, other_key) -> None:
    run = make_run(tmp_path / "r", sign=False)
    result = verify_chain(
        run.generation_manifest,
        public_keys=[run.key.public_key],
        policy=load_policy("healthcare-hipaa"),
    )
    assert len(result.broken) == 4 and all(link.name.endswith(": verify") for link in result.broken)
    with pytest.raises(UsageError, match="pass --pubkey"):
        verify_chain(run.generation_manifest, policy=load_policy("healthcare-hipaa"))
    # without a signing policy and without keys, digests and links still verify
    assert verify_chain(run.generation_manifest, policy=load_policy("moderation")).ok


def test_wrong_key_fails_every_manifest(run, other_key) -> None:
    result = verify_chain(run.generation_manifest, public_keys=[other_key.public_key])
    assert len(result.broken) == 4


@pytest.fixture
def other_key():
    from safeguard.provenance import PrivateKey

    return PrivateKey.generate()


def _policy(text: str):
    from safeguard.policy.model import validate_policy_text

    policy, issues = validate_policy_text("schema_version: 1\nname: custom\n" + text)
    assert not issues, issues
    return policy


def test_policy_trusted_key_ids_and_min_signatures(run, other_key) -> None:
    pub = run.key.public_key
    trusted = _policy(f"provenance:\n  trusted_key_ids: [{run.key.key_id}]\n")
    assert verify_chain(
        run.generation_manifest, public_keys=[pub, other_key.public_key], policy=trusted
    ).ok
    untrusted = _policy(f"provenance:\n  trusted_key_ids: [{other_key.key_id}]\n")
    with pytest.raises(UsageError, match="no trusted"):
        verify_chain(run.generation_manifest, public_keys=[pub], policy=untrusted)
    result = verify_chain(
        run.generation_manifest, public_keys=[pub, other_key.public_key], policy=untrusted
    )
    assert len(result.broken) == 4
    two = _policy("provenance:\n  min_signatures: 2\n")
    result = verify_chain(
        run.generation_manifest, public_keys=[pub, other_key.public_key], policy=two
    )
    assert len(result.broken) == 4 and "1 of the required 2" in result.broken[0].detail
    # a second signer on every manifest satisfies it
    from safeguard.provenance import load_manifest, sign

    for path in (
        run.generation_manifest,
        run.training_manifest,
        run.scrub_manifest,
        run.raw_manifest,
    ):
        path.write_text(sign(load_manifest(path), other_key).to_json())
    assert verify_chain(
        run.generation_manifest, public_keys=[pub, other_key.public_key], policy=two
    ).ok


def test_skipping_signatures_cannot_satisfy_a_signing_policy(run) -> None:
    result = verify_chain(
        run.generation_manifest, policy=load_policy("healthcare-hipaa"), require_signature=False
    )
    assert _broken(result) == ["policy: signatures"]


def test_training_data_manifest_is_walked_when_present(run) -> None:
    from safeguard.provenance import dataset_predicate, dataset_root, write_manifest

    n, root = dataset_root(run.clean)
    write_manifest(
        "dataset",
        [run.clean],
        dataset_predicate(name="clean", record_count=n, merkle_root=root),
        run.dir / "clean.dataset.json",
        run.key,
    )
    result = verify_chain(run.generation_manifest, public_keys=[run.key.public_key])
    assert result.ok
    link = next(x for x in result.links if x.name == "training -> training-data manifest")
    assert root[:12] in link.detail
    assert [m.kind for m in result.manifests] == [
        "generation",
        "training",
        "dataset",
        "scrub",
        "dataset",
    ]
    # a forged Merkle root in it is caught like any other tampering
    import base64
    import json

    path = run.dir / "clean.dataset.json"
    doc = json.loads(path.read_text())
    payload = json.loads(base64.b64decode(doc["payload"]))
    payload["predicate"]["merkle"]["root"] = "f" * 64
    doc["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    path.write_text(json.dumps(doc))
    result = verify_chain(run.generation_manifest, public_keys=[run.key.public_key])
    assert _broken(result) == ["dataset manifest clean.dataset.json: verify"]
