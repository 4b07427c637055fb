from __future__ import annotations

from pathlib import Path

import pytest

from safeguard.errors import PolicyError
from safeguard.policy import load_policy, policy_digest
from safeguard.policy.model import list_policies, validate_policy_text

BAD = """\
schema_version: 1
name: broken
privacy:
  target_epsilon: -1
  accountant: magic
watermark:
  false_positive_rate: 2
  colour: red
provenance:
  min_signatures: 0
  trusted_key_ids: [not-a-key-id]
"""


def test_every_problem_is_reported_at_once_with_path_and_line() -> None:
    policy, issues = validate_policy_text(BAD, source="bad.yaml")
    assert policy is None
    found = {(i.path, i.line) for i in issues}
    assert found == {
        ("privacy.target_epsilon", 4),
        ("privacy.accountant", 5),
        ("watermark.false_positive_rate", 7),
        ("watermark.colour", 8),
        ("provenance.min_signatures", 10),
        ("provenance.trusted_key_ids.0", 11),
    }
    assert [i.line for i in issues] == sorted(i.line for i in issues)
    colour = next(i for i in issues if i.path == "watermark.colour")
    assert "unknown key" in colour.message
    eps = next(i for i in issues if i.path == "privacy.target_epsilon")
    assert "greater than 0" in eps.message and "-1" in eps.message
    assert str(eps).startswith("line 4: privacy.target_epsilon:")


def test_load_policy_raises_with_the_full_listing(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    msg = str(info.value)
    assert "6 problem(s)" in msg
    assert "line 8: watermark.colour" in msg and "line 11: provenance.trusted_key_ids.0" in msg


def test_duplicate_keys_are_reported_not_silently_overridden() -> None:
    text = "schema_version: 1\nname: x\nprivacy:\n  target_epsilon: 1\n  target_epsilon: 50\n"
    policy, issues = validate_policy_text(text)
    assert policy is None
    assert [(i.path, i.line) for i in issues] == [("privacy.target_epsilon", 5)]
    assert "first defined on line 4" in issues[0].message


def test_source_is_not_a_policy_key() -> None:
    _, issues = validate_policy_text("schema_version: 1\nname: x\nsource: /etc/passwd\n")
    assert [(i.path, i.line) for i in issues] == [("source", 3)]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("", "must be a YAML mapping"),
        ("name: x\n", "schema_version"),
        ("schema_version: 2\nname: x\n", "schema_version"),
    ],
)
def test_malformed_policies(text, fragment) -> None:
    policy, issues = validate_policy_text(text)
    assert policy is None and issues
    assert any(fragment in f"{i.path} {i.message}" for i in issues)


def test_shipped_policies_load_by_name_and_path() -> None:
    names = list_policies()
    assert {"default", "healthcare-hipaa", "moderation"} <= set(names)
    for name in names:
        policy = load_policy(name)
        assert policy.name == name
    hipaa = load_policy("healthcare-hipaa")
    assert hipaa.provenance is not None
    assert (
        hipaa.provenance.signing_required
        and hipaa.provenance.required_scrub_policy == "healthcare-hipaa"
    )
    assert hipaa.provenance.min_signatures == 1
    assert load_policy(hipaa.source) == hipaa
    with pytest.raises(PolicyError, match=r"known: .*healthcare-hipaa"):
        load_policy("nonexistent-policy")
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy("missing.yaml")


def test_policy_digest_is_stable_and_sensitive(tmp_path) -> None:
    a = load_policy("healthcare-hipaa")
    assert policy_digest(a) == policy_digest(load_policy("healthcare-hipaa"))
    assert policy_digest(a).startswith("sha256:") and len(policy_digest(a)) == 71
    assert a.source is not None
    text = Path(a.source).read_text()
    assert "target_epsilon: 8.0" in text
    changed = tmp_path / "h.yaml"
    changed.write_text(text.replace("target_epsilon: 8.0", "target_epsilon: 9.0"))
    assert policy_digest(load_policy(changed)) != policy_digest(a)


def test_provenance_section_defaults_and_key_ids() -> None:
    policy, issues = validate_policy_text(
        "schema_version: 1\nname: x\nprovenance:\n  trusted_key_ids: [" + "ab" * 32 + "]\n"
    )
    assert not issues and policy is not None and policy.provenance is not None
    prov = policy.provenance
    assert prov.trusted_key_ids == ["ab" * 32]
    assert prov.signing_required is True and prov.min_signatures == 1 and prov.require_chain is True
    assert prov.key_ref is None and prov.extra_fields == {}


@pytest.mark.parametrize("mode", ["auto", "hooks", "functorch", "ghost", "bk"])
def test_every_grad_sample_mode_is_accepted(mode) -> None:
    policy, problems = validate_policy_text(
        f"schema_version: 1\nname: p\nprivacy:\n  grad_sample_mode: {mode}\n"
    )
    assert problems == [] and policy.privacy.grad_sample_mode == mode, problems


def test_unknown_grad_sample_mode_is_refused() -> None:
    policy, problems = validate_policy_text(
        "schema_version: 1\nname: p\nprivacy:\n  grad_sample_mode: fast\n"
    )
    assert policy is None
    assert [(p.path, p.line) for p in problems] == [("privacy.grad_sample_mode", 4)]
