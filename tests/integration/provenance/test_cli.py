from __future__ import annotations

import json
import stat
import subprocess
import sys

import pytest


def test_keygen_sign_show_verify(tmp_path, cli) -> None:
    key = tmp_path / "k.pem"
    code, out, _ = cli("manifest", "keygen", key)
    assert code == 0 and "key id:" in out
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key_id = out.split("key id:")[1].split()[0]
    assert len(key_id) == 64 and "PRIVATE" not in out
    code, _, err = cli("manifest", "keygen", key)
    assert code == 2 and "already exists" in err

    data = tmp_path / "d.jsonl"
    data.write_text('{"t": 1}\n{"t": 2}\n{"t": 3}\n')
    m = tmp_path / "d.manifest.json"
    code, out, _ = cli(
        "manifest",
        "dataset",
        data,
        "-o",
        m,
        "--license",
        "CC0-1.0",
        "--source",
        "https://example.org",
    )
    assert code == 0 and "3 records" in out
    # unsigned: verify needs a signature
    code, out, _ = cli("manifest", "verify", m, "--pubkey", f"{key}.pub")
    assert code == 1 and "FAIL" in out and "no signature" in out
    code, out, _ = cli("manifest", "verify", m, "--allow-unsigned")
    assert code == 0 and "subject digests match: d.jsonl" in out
    code, out, _ = cli("manifest", "sign", m, "--key", key)
    assert code == 0 and key_id in out
    code, out, _ = cli("manifest", "verify", m, "--pubkey", f"{key}.pub")
    assert code == 0 and f"signed by {key_id}" in out
    code, out, _ = cli("manifest", "show", m)
    assert code == 0 and "dataset manifest" in out and "records: 3" in out and key_id in out
    code, out, _ = cli("manifest", "show", m, "--json", "--full")
    doc = json.loads(out)
    assert doc["kind"] == "dataset" and doc["signatures"] == [key_id]
    assert doc["statement"]["_type"] == "https://in-toto.io/Statement/v1"


def test_verify_failures_exit_1_with_reason(run, cli, tmp_path) -> None:
    other = tmp_path / "other.pem"
    cli("manifest", "keygen", other)
    code, out, _ = cli("manifest", "verify", run.training_manifest, "--pubkey", f"{other}.pub")
    assert code == 1 and "wrong public key" in out
    run.clean.write_text("changed\n")
    code, out, _ = cli("manifest", "verify", run.scrub_manifest, "--pubkey", run.pub_path)
    assert code == 1 and "clean.jsonl" in out and "the file changed" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "not valid JSON"),
        ('{"payload": "e30=", "payloadType": "text/plain", "signatures": []}', "payloadType"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_malformed_manifests_exit_2(tmp_path, run, cli, content, message) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, _, err = cli("manifest", "verify", bad, "--pubkey", run.pub_path)
    assert code == 2 and message in err


def test_unknown_predicate_type_exits_2(tmp_path, run, cli) -> None:
    from safeguard.provenance import Statement, sign

    st = Statement.from_dict(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "x", "digest": {"sha256": "0" * 64}}],
            "predicateType": "https://example.com/unknown/v1",
            "predicate": {},
        }
    )
    bad = tmp_path / "u.json"
    bad.write_text(sign(st, run.key).to_json())
    code, _, err = cli("manifest", "verify", bad, "--pubkey", run.pub_path)
    assert code == 2 and "unknown predicateType" in err


def test_bad_files_and_keys_exit_2(run, cli, tmp_path) -> None:
    code, _, err = cli("manifest", "verify", tmp_path / "missing.json", "--pubkey", run.pub_path)
    assert code == 2 and "does not exist" in err
    code, _, err = cli("manifest", "verify", run.training_manifest, "--pubkey", run.key_path)
    assert code == 2 and "private key" in err
    code, _, err = cli(
        "manifest", "verify", run.training_manifest, "--pubkey", tmp_path / "nokey.pub"
    )
    assert code == 2 and "does not exist" in err
    code, _, err = cli("manifest", "verify", run.training_manifest)
    assert code == 2 and "--pubkey" in err
    code, _, err = cli("manifest", "sign", run.training_manifest, "--key", run.pub_path)
    assert code == 2 and "public key" in err
    code, _, err = cli(
        "manifest",
        "create",
        "bogus",
        "--subject",
        run.raw,
        "--predicate",
        run.raw,
        "-o",
        tmp_path / "x.json",
    )
    assert code == 2
    pred = tmp_path / "p.json"
    pred.write_text('{"name": "x"}')
    code, _, err = cli(
        "manifest",
        "create",
        "nope",
        "--subject",
        run.raw,
        "--predicate",
        pred,
        "-o",
        tmp_path / "x.json",
    )
    assert code == 2 and "unknown manifest kind" in err
    code, _, err = cli(
        "manifest",
        "create",
        "dataset",
        "--subject",
        run.raw,
        "--predicate",
        pred,
        "-o",
        tmp_path / "x.json",
    )
    assert code == 2 and "record_count" in err


def test_chain_verification_and_broken_link(run, cli) -> None:
    code, out, _ = cli(
        "manifest",
        "verify",
        run.generation_manifest,
        "--pubkey",
        run.pub_path,
        "--chain",
        "--policy",
        "healthcare-hipaa",
    )
    assert code == 0, out
    assert "chain verified" in out and "generation -> training" in out and "policy: epsilon" in out
    run.scrub_manifest.unlink()
    code, out, _ = cli(
        "manifest", "verify", run.generation_manifest, "--pubkey", run.pub_path, "--chain", "--json"
    )
    assert code == 1
    doc = json.loads(out)
    assert [link["name"] for link in doc["links"] if not link["ok"]] == ["training -> scrub"]


def test_prove_and_check_record(run, cli, tmp_path) -> None:
    proof = tmp_path / "proof.json"
    code, out, _ = cli("manifest", "prove", run.raw, "--index", 1, "-o", proof)
    assert code == 0 and "1 hashes" in out
    code, out, _ = cli(
        "manifest", "check-record", run.raw_manifest, "--proof", proof, "--pubkey", run.pub_path
    )
    assert code == 0 and "record 1 is in dataset 'raw-notes'" in out
    code, out, err = cli(
        "manifest",
        "check-record",
        run.raw_manifest,
        "--proof",
        proof,
        "--pubkey",
        run.pub_path,
        "--record",
        '{"text": "not there"}',
    )
    assert code == 1 and "is not in the dataset" in err
    code, _, err = cli(
        "manifest",
        "check-record",
        run.training_manifest,
        "--proof",
        proof,
        "--pubkey",
        run.pub_path,
    )
    assert code == 2 and "dataset manifest" in err


def test_digest_and_export(run, cli, tmp_path) -> None:
    from safeguard.provenance.digest import digest_directory

    code, out, _ = cli("manifest", "digest", run.model, run.raw, "--files")
    assert code == 0 and digest_directory(run.model).sha256 in out and "config.json" in out
    code, out, _ = cli(
        "manifest",
        "export",
        run.raw_manifest,
        "--format",
        "croissant",
        "--scrub",
        run.scrub_manifest,
    )
    assert code == 0 and json.loads(out)["@type"] == "sc:Dataset"
    card = tmp_path / "card.md"
    code, _, _ = cli(
        "manifest", "export", run.training_manifest, "--format", "model-card", "-o", card
    )
    assert code == 0 and "training.json" in card.read_text()
    code, _, err = cli("manifest", "export", run.training_manifest, "--format", "croissant")
    assert code == 2 and "dataset manifest" in err


def test_policy_check(run, cli, make_run, tmp_path) -> None:
    code, out, _ = cli(
        "policy",
        "check",
        "--policy",
        "healthcare-hipaa",
        run.generation_manifest,
        "--pubkey",
        run.pub_path,
    )
    assert code == 0 and "satisfies policy 'healthcare-hipaa'" in out
    code, _, err = cli("policy", "check", "--policy", "healthcare-hipaa", run.generation_manifest)
    assert code == 2 and "--pubkey" in err
    over = make_run(tmp_path / "over", epsilon_spent=12.0)
    code, out, _ = cli(
        "policy",
        "check",
        "--policy",
        "healthcare-hipaa",
        over.training_manifest,
        "--pubkey",
        over.pub_path,
    )
    assert code == 1 and "policy: epsilon" in out and "12 > policy target_epsilon 8" in out
    code, _, err = cli("policy", "check", "--policy", "no-such-policy", run.training_manifest)
    assert code == 2 and "unknown policy" in err


def test_policy_validate_reports_every_problem_with_line(tmp_path, cli) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "schema_version: 1\n"
        "name: bad\n"
        "privacy:\n"
        "  target_epsilon: -3\n"
        "  accountant: magic\n"
        "provenance:\n"
        "  signing_required: maybe\n"
        "  min_signatures: 0\n"
        "  colour: blue\n"
    )
    code, out, _ = cli("policy", "validate", bad)
    assert code == 1
    for fragment in (
        ":4: privacy.target_epsilon",
        ":5: privacy.accountant",
        ":7: provenance.signing_required",
        ":8: provenance.min_signatures",
        ":9: provenance.colour: unknown key",
    ):
        assert fragment in out, out
    code, out, _ = cli("policy", "validate", "healthcare-hipaa", "--json")
    assert code == 0 and json.loads(out)[0]["valid"] is True
    code, _, err = cli("policy", "validate", tmp_path / "missing.yaml")
    assert code == 2 and "does not exist" in err


def test_python_m_safeguard_subprocess(run) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "safeguard",
            "manifest",
            "verify",
            str(run.generation_manifest),
            "--pubkey",
            str(run.pub_path),
            "--chain",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "chain verified" in proc.stdout
    (run.model / "config.json").write_text("{}")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "safeguard",
            "manifest",
            "verify",
            str(run.training_manifest),
            "--pubkey",
            str(run.pub_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "model" in proc.stdout


def test_allow_unsigned_fails_a_signing_policy(run, cli) -> None:
    for extra in ((), ("--chain",)):
        code, out, _ = cli(
            "manifest",
            "verify",
            run.training_manifest,
            "--allow-unsigned",
            "--policy",
            "healthcare-hipaa",
            *extra,
        )
        assert code == 1 and "policy: signatures" in out


def test_create_scrub_manifest_from_report_and_no_key_material_anywhere(run, cli, tmp_path) -> None:
    from safeguard.provenance.digest import sha256_file

    report = tmp_path / "scrub.report.json"
    report.write_text(
        json.dumps(
            {
                "policy": {"name": "healthcare-hipaa", "digest": None},
                "input": {"path": str(run.raw), "sha256": sha256_file(run.raw)},
                "output": {"path": str(run.clean), "sha256": sha256_file(run.clean)},
                "quarantine": {"path": None, "records": 0, "sha256": None},
                "records": {"read": 2, "written": 2, "quarantined": 0},
                "entities": {"PERSON": 2},
            }
        )
    )
    out = run.dir / "scrub2.json"
    code, text, err = cli(
        "manifest",
        "create",
        "scrub",
        "--subject",
        run.clean,
        "--scrub-report",
        report,
        "-o",
        out,
        "--key",
        run.key_path,
    )
    assert code == 0, err
    code, text, _ = cli("manifest", "verify", out, "--pubkey", run.pub_path)
    assert code == 0 and "subject digests match: clean.jsonl" in text
    code, _, err = cli(
        "manifest",
        "create",
        "dataset",
        "--subject",
        run.raw,
        "--scrub-report",
        report,
        "-o",
        tmp_path / "x.json",
    )
    assert code == 2 and "scrub manifest" in err
    code, _, err = cli(
        "manifest", "create", "scrub", "--subject", run.raw, "-o", tmp_path / "x.json"
    )
    assert code == 2 and "exactly one" in err
    # the private key appears nowhere but in its own file
    secret = "".join(run.key_path.read_text().splitlines()[1:-1])
    for path in run.dir.rglob("*"):
        if path.is_file() and path != run.key_path:
            assert secret not in path.read_text(errors="replace"), path


def test_predicate_schema_failure_is_a_failed_verification(run, cli, tmp_path) -> None:
    from safeguard.provenance import ManifestSchemaError, Statement, load_manifest, sign
    from safeguard.provenance.predicates import DATASET_PREDICATE

    st = Statement.from_dict(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "raw.jsonl", "digest": {"sha256": "0" * 64}}],
            "predicateType": DATASET_PREDICATE,
            "predicate": {"name": "raw", "record_count": -5},
        }
    )
    bad = run.dir / "bad-schema.json"
    bad.write_text(sign(st, run.key).to_json())
    with pytest.raises(ManifestSchemaError, match="record_count"):
        load_manifest(bad)
    code, _, err = cli("manifest", "verify", bad, "--pubkey", run.pub_path)
    assert code == 1 and "verification failed" in err and "merkle" in err
    # a chain walk from a good manifest skips it when scanning the folder
    code, _, _ = cli(
        "manifest", "verify", run.generation_manifest, "--pubkey", run.pub_path, "--chain"
    )
    assert code == 0


def test_policy_check_without_chain_or_signatures(run, cli) -> None:
    # moderation: no signing, no chain; only the given manifests are checked
    code, out, _ = cli("policy", "check", "--policy", "moderation", run.generation_manifest)
    assert code == 0 and "generation manifest" in out and "training" not in out
    # default: a DP budget of 8 applies to the training manifest given
    code, out, _ = cli("policy", "check", "--policy", "default", run.training_manifest, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True
    assert {link["name"] for link in doc["links"]} >= {
        "policy: epsilon",
        "training -> scrub",
        "scrub -> raw dataset",
    }
