"""Verification never passes on nothing: missing subjects, and the DP ledger's signed anchor.

Subject names are relative to the manifest's folder (not the working directory); a
subject that is not there is "not present, not checked" unless a policy with
``provenance.require_subjects`` (healthcare-hipaa) or ``--require-subjects`` makes it a
failed check. A training manifest's ``ledger_entries``/``ledger_head`` are checked against
``privacy_ledger.jsonl`` in the model folder.
"""

from __future__ import annotations

import json
import shutil

import pytest

from safeguard.policy import load_policy
from safeguard.provenance import check_ledger, load_manifest, verify_chain

LEDGER = "privacy_ledger.jsonl"


def _last_line(out: str) -> str:
    return out.strip().splitlines()[-1]


def _lenient_policy(tmp_path, **fields) -> str:
    body = {"signing_required": True, "require_chain": True, "require_subjects": False, **fields}
    lines = ["schema_version: 1", "name: lenient", "provenance:"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in body.items()]
    path = tmp_path / "lenient.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# ------------------------------------------------------------------ the policy field


def test_require_subjects_is_on_by_default_and_in_healthcare(tmp_path, cli) -> None:
    assert load_policy("healthcare-hipaa").provenance.require_subjects is True
    code, out, _ = cli("policy", "validate", _lenient_policy(tmp_path))
    assert code == 0, out
    assert load_policy(_lenient_policy(tmp_path)).provenance.require_subjects is False
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nname: bad\nprovenance:\n  require_subjects: sometimes\n")
    code, out, _ = cli("policy", "validate", bad)
    assert code == 1 and ":4: provenance.require_subjects" in out


# ------------------------------------------------------------------ scrub manifest, file gone


@pytest.mark.parametrize("how", ["removed", "renamed"])
def test_scrub_subject_missing_without_policy_is_not_checked(run, cli, how) -> None:
    if how == "removed":
        run.clean.unlink()
    else:
        run.clean.rename(run.dir / "clean.v2.jsonl")
    code, out, _ = cli("manifest", "verify", run.scrub_manifest, "--pubkey", run.pub_path)
    assert code == 0, out
    assert "not present, not checked: clean.jsonl" in out
    summary = _last_line(out)
    assert summary == (
        "signatures verified; 1 subject not present, not checked: clean.jsonl "
        "(scrub manifest scrub.json)"
    )
    code, out, _ = cli("manifest", "verify", run.scrub_manifest, "--pubkey", run.pub_path, "--json")
    doc = json.loads(out)
    assert doc["ok"] is True and doc["unchecked"] == ["clean.jsonl (scrub manifest scrub.json)"]
    assert doc["summary"].startswith("signatures verified; 1 subject not present")


def test_scrub_subject_missing_fails_under_healthcare(run, cli) -> None:
    run.clean.rename(run.dir / "clean.v2.jsonl")
    code, out, _ = cli(
        "manifest",
        "verify",
        run.scrub_manifest,
        "--pubkey",
        run.pub_path,
        "--policy",
        "healthcare-hipaa",
    )
    assert code == 1, out
    fail = next(line for line in out.splitlines() if line.lstrip().startswith("FAIL"))
    assert "scrub manifest scrub.json: verify" in fail
    assert "policy 'healthcare-hipaa' (provenance.require_subjects)" in fail
    assert f"subject 'clean.jsonl' is not at {str(run.clean)!r}" in fail
    assert "relative to the manifest's folder" in fail and "under the name it was signed" in fail
    assert _last_line(out).startswith("FAILED") and "verified" not in _last_line(out)


def test_require_subjects_flag_without_a_policy(run, cli) -> None:
    run.clean.unlink()
    code, out, _ = cli(
        "manifest", "verify", run.scrub_manifest, "--pubkey", run.pub_path, "--require-subjects"
    )
    assert code == 1 and "--require-subjects" in out and "clean.jsonl" in out


def test_manifest_moved_away_from_its_artifacts(run, cli, tmp_path) -> None:
    """The issue's case: delivery/manifests/scrub.json, with the file it covers elsewhere."""
    delivery = tmp_path / "delivery" / "manifests"
    delivery.mkdir(parents=True)
    for m in (run.scrub_manifest, run.raw_manifest):
        shutil.copy(m, delivery / m.name)
    scrub = delivery / "scrub.json"
    code, out, _ = cli(
        "manifest",
        "verify",
        scrub,
        "--pubkey",
        run.pub_path,
        "--chain",
        "--policy",
        "healthcare-hipaa",
    )
    assert code == 1, out
    assert f"is not at {str(delivery / 'clean.jsonl')!r}" in out
    assert "chain verified" not in out
    code, out, _ = cli("manifest", "verify", scrub, "--pubkey", run.pub_path, "--chain")
    assert code == 0, out
    assert _last_line(out) == (
        "signatures and chain links verified; 2 subjects not present, not checked: clean.jsonl "
        "(scrub manifest scrub.json), raw.jsonl (dataset manifest raw.dataset.json)"
    )


def test_subjects_are_found_relative_to_the_manifest_not_the_cwd(
    run, cli, tmp_path, monkeypatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
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
    assert _last_line(out) == "chain verified"


# ------------------------------------------------------------------ training manifest, folder renamed


def test_renamed_model_folder(run, cli) -> None:
    run.model.rename(run.dir / "model-v2")
    code, out, _ = cli("manifest", "verify", run.training_manifest, "--pubkey", run.pub_path)
    assert code == 0, out
    assert _last_line(out) == (
        "signatures verified; 1 subject not present, not checked: model "
        "(training manifest training.json)"
    )
    code, out, _ = cli(
        "manifest",
        "verify",
        run.training_manifest,
        "--pubkey",
        run.pub_path,
        "--policy",
        "healthcare-hipaa",
    )
    assert code == 1, out
    assert f"subject 'model' is not at {str(run.model)!r}" in out
    assert "a renamed file or model folder does not match" in out
    # the whole chain: every digest link still holds, but the model was not checked
    code, out, _ = cli(
        "manifest", "verify", run.generation_manifest, "--pubkey", run.pub_path, "--chain"
    )
    assert code == 0, out
    assert _last_line(out).startswith("signatures and chain links verified; 1 subject not present")
    assert "chain verified" not in out
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
    assert code == 1, out
    assert "broken link(s): training manifest training.json: verify" in _last_line(out)


def test_policy_check_requires_subjects(run, cli, tmp_path) -> None:
    run.model.rename(run.dir / "model-v2")
    code, out, _ = cli(
        "policy",
        "check",
        "--policy",
        "healthcare-hipaa",
        run.generation_manifest,
        "--pubkey",
        run.pub_path,
    )
    assert code == 1, out
    assert "subject 'model' is not at" in out and "does not satisfy policy" in out
    lenient = _lenient_policy(tmp_path)
    code, out, _ = cli(
        "policy", "check", "--policy", lenient, run.generation_manifest, "--pubkey", run.pub_path
    )
    assert code == 0, out
    assert _last_line(out) == (
        "the run satisfies policy 'lenient' as far as it was checked; 1 subject not present, "
        "not checked: model (training manifest training.json)"
    )
    # without the chain walk: the named manifest's own subjects
    strict_nochain = _lenient_policy(tmp_path, require_chain=False, require_subjects=True)
    code, out, _ = cli(
        "policy",
        "check",
        "--policy",
        strict_nochain,
        run.training_manifest,
        "--pubkey",
        run.pub_path,
    )
    assert code == 1 and "subject 'model' is not at" in out
    lenient_nochain = _lenient_policy(tmp_path, require_chain=False)
    code, out, _ = cli(
        "policy",
        "check",
        "--policy",
        lenient_nochain,
        run.training_manifest,
        "--pubkey",
        run.pub_path,
        "--json",
    )
    doc = json.loads(out)
    assert (
        code == 0 and doc["ok"] and doc["unchecked"] == ["model (training manifest training.json)"]
    )


def test_skip_subjects_cannot_satisfy_a_policy_that_requires_them(run, cli) -> None:
    for extra in ((), ("--chain",)):
        code, out, _ = cli(
            "manifest",
            "verify",
            run.training_manifest,
            "--pubkey",
            run.pub_path,
            "--skip-subjects",
            "--policy",
            "healthcare-hipaa",
            *extra,
        )
        assert code == 1, out
        assert "policy: subjects" in out and "--skip-subjects" in out
    code, out, _ = cli(
        "manifest", "verify", run.training_manifest, "--pubkey", run.pub_path, "--skip-subjects"
    )
    assert code == 0 and _last_line(out) == (
        "signatures verified; subject digests not checked (--skip-subjects)"
    )


def test_library_chain_result_lists_unchecked(run) -> None:
    run.clean.unlink()
    res = verify_chain(run.generation_manifest, public_keys=[run.key.public_key])
    assert res.ok and res.unchecked == ("clean.jsonl (scrub manifest scrub.json)",)
    assert "not checked" in res.verdict and res.verdict != "chain verified"
    res = verify_chain(
        run.generation_manifest,
        public_keys=[run.key.public_key],
        policy=load_policy("healthcare-hipaa"),
    )
    assert not res.ok and [lk.name for lk in res.broken] == ["scrub manifest scrub.json: verify"]


# ------------------------------------------------------------------ the privacy ledger's anchor


@pytest.fixture
def ledger_run(make_run, tmp_path):
    return make_run(tmp_path / "lrun", ledger_entries=4)


def _ledger_link(out: str) -> str:
    return next(line for line in out.splitlines() if ": privacy ledger:" in line)


def test_training_manifest_records_the_anchor(ledger_run) -> None:
    m = load_manifest(ledger_run.training_manifest)
    ann = m.statement.predicate["runDetails"]["byproducts"][0]["annotations"]
    last = json.loads((ledger_run.model / LEDGER).read_text().splitlines()[-1])
    assert ann["ledger_entries"] == 4 and ann["ledger_head"] == last["hash"]


def test_matching_ledger_passes(ledger_run, cli) -> None:
    for extra in ((), ("--chain", "--policy", "healthcare-hipaa")):
        manifest = ledger_run.generation_manifest if extra else ledger_run.training_manifest
        code, out, _ = cli("manifest", "verify", manifest, "--pubkey", ledger_run.pub_path, *extra)
        assert code == 0, out
        link = _ledger_link(out)
        assert link.lstrip().startswith("ok") and "matches the manifest's anchor (4 entries" in link


def test_truncated_ledger_fails(ledger_run, cli) -> None:
    path = ledger_run.model / LEDGER
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))
    code, out, _ = cli(
        "manifest", "verify", ledger_run.training_manifest, "--pubkey", ledger_run.pub_path
    )
    assert code == 1
    link = _ledger_link(out)
    assert link.lstrip().startswith("FAIL")
    assert "ledger truncated: manifest records 4 entries, file has 2" in link
    code, out, _ = cli(
        "manifest",
        "verify",
        ledger_run.generation_manifest,
        "--pubkey",
        ledger_run.pub_path,
        "--chain",
        "--json",
    )
    doc = json.loads(out)
    assert code == 1 and "training manifest training.json: privacy ledger" in [
        lk["name"] for lk in doc["links"] if not lk["ok"]
    ]


def test_extra_entry_fails(ledger_run, cli) -> None:
    path = ledger_run.model / LEDGER
    last = json.loads(path.read_text().splitlines()[-1])
    extra = {"index": 4, "kind": "step", "prev": last["hash"], "hash": "e" * 64}
    path.write_text(path.read_text() + json.dumps(extra) + "\n")
    code, out, _ = cli(
        "manifest", "verify", ledger_run.training_manifest, "--pubkey", ledger_run.pub_path
    )
    assert code == 1 and "manifest records 4 entries, file has 5" in _ledger_link(out)


def test_edited_last_entry_fails(ledger_run, cli) -> None:
    path = ledger_run.model / LEDGER
    lines = path.read_text().splitlines()
    last = json.loads(lines[-1])
    lines[-1] = json.dumps({**last, "epsilon": 0.01, "hash": "f" * 64})
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = cli(
        "manifest", "verify", ledger_run.training_manifest, "--pubkey", ledger_run.pub_path
    )
    assert code == 1
    link = _ledger_link(out)
    assert "last entry differs" in link and last["hash"][:12] in link


def test_missing_ledger_fails(ledger_run, cli) -> None:
    (ledger_run.model / LEDGER).unlink()
    code, out, _ = cli(
        "policy",
        "check",
        "--policy",
        "healthcare-hipaa",
        ledger_run.generation_manifest,
        "--pubkey",
        ledger_run.pub_path,
    )
    assert code == 1
    link = _ledger_link(out)
    assert "ledger missing" in link and "4 entries" in link and f"restore {LEDGER}" in link


def test_ledger_not_checked_when_the_folder_is_absent(ledger_run) -> None:
    # the renamed folder is reported by the subject check; the ledger is not blamed
    ledger_run.model.rename(ledger_run.dir / "model-v2")
    assert check_ledger(load_manifest(ledger_run.training_manifest)) is None


def test_ledger_link_on_its_own_after_the_folder_digest(ledger_run) -> None:
    """check_ledger reads the ledger as plain data, whatever the folder digest says."""
    link = check_ledger(load_manifest(ledger_run.training_manifest))
    assert link is not None and link.ok
    path = ledger_run.model / LEDGER
    path.write_text(path.read_text().splitlines(keepends=True)[0])
    link = check_ledger(load_manifest(ledger_run.training_manifest))
    assert link is not None and not link.ok and "file has 1" in link.detail
