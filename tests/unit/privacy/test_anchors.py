"""Ledger anchors: a truncated, deleted or swapped ledger cannot restart a budget."""

from __future__ import annotations

import json
import warnings

import pytest

from safeguard.errors import ConfigError, PolicyError, VerificationError
from safeguard.privacy import BudgetLedger, DPConfig
from safeguard.privacy.anchors import ANCHOR_NAME, open_run_ledger, read_anchor, registry_path
from safeguard.privacy.ledger import GENESIS, LedgerAnchor

DIGEST = "ab" * 32


def _grow(led: BudgetLedger, steps: int = 3, *, seeded: bool = False) -> BudgetLedger:
    if not len(led):
        led.start_run(
            config={},
            dataset_size=100,
            delta=1e-4,
            delta_source="configured",
            sample_rate=0.1,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            accountant="rdp",
            unit_of_privacy="one example",
            max_epsilon=None,
            planned_steps=steps,
            seeded_noise=seeded,
        )
    for _ in range(steps):
        led.record_step(sample_rate=0.1, noise_multiplier=1.0, max_grad_norm=1.0)
    return led


def test_extends_accepts_continuations_and_refuses_truncation_and_other_histories():
    led = _grow(BudgetLedger(), 4)
    early = LedgerAnchor(entries=3, head=list(led.entries())[2]["hash"])
    assert led.extends(early) and led.extends(led.anchor())
    assert led.extends(LedgerAnchor(entries=0, head=GENESIS))
    longer = _grow(BudgetLedger.from_lines(led.to_lines()), 2)
    with pytest.raises(VerificationError, match=r"recorded 7 .*truncated or replaced"):
        led.check_anchor(longer.anchor(), source="the checkpoint")
    other = _grow(BudgetLedger(), 6)  # same length, different history (another run's ledger)
    with pytest.raises(VerificationError, match="differs from the history the manifest recorded"):
        led.check_anchor(
            LedgerAnchor(entries=5, head=list(other.entries())[4]["hash"]), source="the manifest"
        )


def test_anchor_files_follow_every_entry_and_an_empty_ledger_writes_none(tmp_path):
    anchor = tmp_path / "a.json"
    led = BudgetLedger(tmp_path / "l.jsonl", anchor_files=[anchor])
    led.write_anchors()
    assert not anchor.exists()
    _grow(led, 2)
    stored, ledger_path = read_anchor(anchor)
    assert stored == led.anchor() and stored.entries == 3
    assert ledger_path == str((tmp_path / "l.jsonl").resolve())
    led.record_step(sample_rate=0.1, noise_multiplier=1.0, max_grad_norm=1.0)
    assert read_anchor(anchor)[0].entries == 4


def test_malformed_anchor_is_refused(tmp_path):
    bad = tmp_path / "a.json"
    bad.write_text('{"entries": "4", "head": "x"}')
    with pytest.raises(VerificationError, match="malformed"):
        read_anchor(bad)
    bad.write_text("not json")
    with pytest.raises(VerificationError, match="cannot be read"):
        read_anchor(bad)
    assert read_anchor(tmp_path / "missing.json") is None


def test_registry_lives_under_safeguard_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFEGUARD_HOME", str(tmp_path))
    assert registry_path(DIGEST) == tmp_path / "ledgers" / f"{DIGEST}.json"
    with pytest.raises(ValueError, match="64 lower-case hex"):
        registry_path("../../etc/passwd")


def test_open_run_ledger_first_run_then_truncation_deletion_and_new_folder(tmp_path):
    out = tmp_path / "out"
    led = _grow(open_run_ledger(out, dataset_sha256=DIGEST), 5)
    assert read_anchor(out / ANCHOR_NAME)[0] == led.anchor()
    assert read_anchor(registry_path(DIGEST))[0] == led.anchor()
    # Reopened intact: accepted, and it keeps growing.
    assert len(open_run_ledger(out, dataset_sha256=DIGEST)) == len(led)
    # Truncated by one entry: refused by the anchor beside it.
    path = out / "privacy_ledger.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    with pytest.raises(VerificationError, match="truncated"):
        open_run_ledger(out, dataset_sha256=DIGEST)
    # Deleted: refused, and the message names the way out.
    path.unlink()
    with pytest.raises(VerificationError, match="--ledger"):
        open_run_ledger(out, dataset_sha256=DIGEST)
    # Anchor deleted too: the registry still knows the data set.
    (out / ANCHOR_NAME).unlink()
    with pytest.raises(VerificationError, match="already trained on with DP"):
        open_run_ledger(out, dataset_sha256=DIGEST)
    # Another data set in another folder starts fresh.
    assert len(open_run_ledger(tmp_path / "other", dataset_sha256="cd" * 32)) == 0


def test_continue_from_copies_the_earlier_ledger_and_checks_it(tmp_path):
    first = _grow(open_run_ledger(tmp_path / "a", dataset_sha256=DIGEST), 3)
    cont = open_run_ledger(
        tmp_path / "b", dataset_sha256=DIGEST, continue_from=tmp_path / "a" / "privacy_ledger.jsonl"
    )
    assert cont.anchor() == first.anchor()
    _grow(cont, 2)
    # The registry now points at b; a's ledger is behind it and cannot be continued again.
    assert read_anchor(registry_path(DIGEST))[1].endswith("b/privacy_ledger.jsonl")
    with pytest.raises(VerificationError, match="truncated"):
        open_run_ledger(
            tmp_path / "c",
            dataset_sha256=DIGEST,
            continue_from=tmp_path / "a" / "privacy_ledger.jsonl",
        )


def test_resume_rebuilds_a_missing_ledger_from_the_checkpoint_copy(tmp_path):
    out = tmp_path / "out"
    ckpt = out / "dp_checkpoint.pt"
    led = _grow(open_run_ledger(out, checkpoint=ckpt), 3)
    led.save(ckpt.with_suffix(".ledger.jsonl"))
    (out / "privacy_ledger.jsonl").unlink()
    with pytest.raises(VerificationError, match=r"dp_checkpoint\.ledger\.jsonl"):
        open_run_ledger(out, checkpoint=ckpt)
    assert open_run_ledger(out, checkpoint=ckpt, resume=True).anchor() == led.anchor()
    # A checkpoint copy older than the anchor (steps taken after the checkpoint) is refused.
    (out / "privacy_ledger.jsonl").unlink()
    _grow(BudgetLedger(anchor_files=[out / ANCHOR_NAME]), 5)  # a longer history's anchor
    with pytest.raises(VerificationError):
        open_run_ledger(out, checkpoint=ckpt, resume=True)


def test_seeded_runs_are_marked_void_in_the_ledger_and_summary():
    led = _grow(BudgetLedger(), 2, seeded=True)
    first = next(led.entries())
    assert first["dp_guarantee_void"] is True and first["noise_source"] == "fixed seed"
    summary = led.summary().to_dict()
    assert summary["seeded_noise"] is True and summary["dp_guarantee"].startswith("void")
    assert summary["entries"] == 3 and summary["head"] == led.head()
    assert _grow(BudgetLedger(), 1).summary().to_dict()["dp_guarantee"] == "holds"


def test_dp_config_seed_warns_and_policies_refuse_it():
    with pytest.warns(UserWarning, match="no DP guarantee"):
        DPConfig(noise_multiplier=1.0, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DPConfig(noise_multiplier=1.0)  # unseeded: no warning
    with pytest.raises(PolicyError, match="allow_seeded_noise"):
        DPConfig.from_policy("healthcare-hipaa", epochs=1, seed=0)
    with pytest.raises(ConfigError, match="`seed`"):
        DPConfig(noise_multiplier=1.0, seed="0")
    with pytest.raises(ConfigError, match="must be a number, not str"):
        DPConfig(target_epsilon="8", epochs=1)


def test_anchor_round_trip():
    a = LedgerAnchor(entries=3, head="f" * 64)
    assert LedgerAnchor.from_dict(json.loads(json.dumps(a.to_dict()))) == a
