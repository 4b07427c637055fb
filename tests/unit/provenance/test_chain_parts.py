"""The pieces chain.py and predicates.py were split into: their doctests, the policy links
one by one, and every name still importable from the old modules."""

from __future__ import annotations

import doctest
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from safeguard.provenance import chain, chain_policy, chain_result, predicate_registry, predicates
from safeguard.provenance.chain_policy import (
    check_policy,
    required_by,
    signatures_skipped_link,
    subjects_skipped_link,
    trusted_keys,
)


@pytest.mark.parametrize("module", [chain_result, predicate_registry])
def test_doctests(module) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_old_modules_still_export_every_name() -> None:
    for name in chain.__all__:
        assert hasattr(chain, name), name
    for name in predicates.__all__:
        assert hasattr(predicates, name), name
    assert chain.check_policy is chain_policy.check_policy
    assert chain.ChainResult is chain_result.ChainResult
    assert predicates._REGISTRY is predicate_registry._REGISTRY


def _manifest(kind: str, predicate: dict, name: str = "m.json") -> SimpleNamespace:
    return SimpleNamespace(
        kind=kind, path=Path(name), statement=SimpleNamespace(predicate=predicate)
    )


def _training(ledger: dict | None, dp: dict | None = None) -> SimpleNamespace:
    byproducts = [] if ledger is None else [{"name": "privacy-ledger", "annotations": ledger}]
    return _manifest(
        "training",
        {
            "buildDefinition": {"externalParameters": {"dp": dp or {}}},
            "runDetails": {"byproducts": byproducts},
        },
        "training.json",
    )


def _policy(**sections) -> SimpleNamespace:
    return SimpleNamespace(
        name="hipaa",
        privacy=sections.get("privacy"),
        provenance=sections.get("provenance"),
        watermark=sections.get("watermark"),
    )


PRIVACY = SimpleNamespace(target_epsilon=8.0, target_delta=1e-5, allow_seeded_noise=False)


def _links(manifests, policy) -> list[tuple[str, bool, str]]:
    return [(link.name, link.ok, link.detail) for link in check_policy(manifests, policy)]


def test_privacy_links() -> None:
    policy = _policy(privacy=PRIVACY)
    assert _links([_training({"epsilon_spent": 7.5, "delta": 1e-5})], policy) == [
        ("policy: epsilon", True, "epsilon spent 7.5 <= policy target_epsilon 8 (hipaa)"),
        ("policy: delta", True, "delta 1e-05 <= policy target_delta 1e-05"),
    ]
    over = _links([_training({"epsilon_spent": 9.0, "delta": 1e-3})], policy)
    assert [(n, ok) for n, ok, _ in over] == [("policy: epsilon", False), ("policy: delta", False)]
    assert over[0][2] == "epsilon spent 9 > policy target_epsilon 8 (hipaa)"
    missing = _links([_training(None)], policy)
    assert missing == [
        (
            "policy: epsilon",
            False,
            "training manifest training.json records no privacy-ledger byproduct with "
            "epsilon_spent",
        )
    ]


@pytest.mark.parametrize(
    ("ledger", "dp"),
    [({"epsilon_spent": 1.0, "seeded_noise": True}, None), ({"epsilon_spent": 1.0}, {"seed": 3})],
)
def test_seeded_noise_fails_unless_the_policy_allows_it(ledger, dp) -> None:
    links = _links([_training(ledger, dp)], _policy(privacy=PRIVACY))
    assert links[1] == (
        "policy: dp noise",
        False,
        "training manifest training.json drew its DP noise from a fixed seed (no DP guarantee); "
        "policy 'hipaa' does not allow seeded noise",
    )
    allowed = SimpleNamespace(**{**vars(PRIVACY), "allow_seeded_noise": True})
    assert [n for n, _, _ in _links([_training(ledger, dp)], _policy(privacy=allowed))] == [
        "policy: epsilon"
    ]


def test_scrub_policy_and_watermark_links() -> None:
    prov = SimpleNamespace(required_scrub_policy="healthcare-hipaa")
    scrub = _manifest("scrub", {"policy": {"name": "default"}}, "scrub.json")
    wm = SimpleNamespace(required=True, scheme="gumbel")
    gen_none = _manifest("generation", {}, "gen.json")
    gen_kgw = _manifest("generation", {"watermark": {"scheme": "kgw", "key_id": "ab" * 16}})
    assert _links([scrub, gen_none, gen_kgw], _policy(provenance=prov, watermark=wm)) == [
        (
            "policy: scrub policy",
            False,
            "scrub manifest scrub.json applied PII policy 'default'; required 'healthcare-hipaa'",
        ),
        ("policy: watermark", False, "generation manifest gen.json records no watermark"),
        (
            "policy: watermark",
            False,
            f"scheme 'kgw' (key_id {'ab' * 8}); policy requires 'gumbel'",
        ),
    ]


def test_a_run_without_a_scrub_manifest_fails_a_scrub_requirement() -> None:
    prov = SimpleNamespace(required_scrub_policy="healthcare-hipaa")
    links = _links([_training({"epsilon_spent": 1.0})], _policy(provenance=prov))
    assert links == [
        (
            "policy: scrub policy",
            False,
            "the policy requires data scrubbed with 'healthcare-hipaa', but no scrub manifest "
            "is part of the run",
        )
    ]


def test_requirement_helpers() -> None:
    strict = _policy(provenance=SimpleNamespace(require_subjects=True, signing_required=True))
    lax = _policy(provenance=SimpleNamespace(require_subjects=False, signing_required=False))
    assert required_by(strict, False) == "policy 'hipaa' (provenance.require_subjects)"
    assert required_by(lax, True) == "require_subjects (--require-subjects)"
    assert required_by(None, False) is None
    assert subjects_skipped_link(strict, check_subjects=True) is None
    assert subjects_skipped_link(lax, check_subjects=False) is None
    skipped = subjects_skipped_link(strict, check_subjects=False)
    assert skipped is not None and skipped.name == "policy: subjects" and not skipped.ok
    assert signatures_skipped_link(strict, True, "!") is None
    assert signatures_skipped_link(lax, False, "!") is None
    unsigned = signatures_skipped_link(strict, False, " (--allow-unsigned)")
    assert unsigned is not None and unsigned.detail == (
        "policy 'hipaa' requires signed manifests, but signature checks were skipped "
        "(--allow-unsigned)"
    )


def test_trusted_keys_keeps_the_policys_keys_and_warns_about_the_rest(caplog) -> None:
    a, b = SimpleNamespace(key_id="a" * 64), SimpleNamespace(key_id="b" * 64)
    assert trusted_keys([a, b], None) == [a, b]
    policy = _policy(provenance=SimpleNamespace(trusted_key_ids=["a" * 64]))
    with caplog.at_level(logging.WARNING, logger="safeguard.provenance.chain"):
        assert trusted_keys([a, b], policy) == [a]
    assert "b" * 16 in caplog.text and "trusted_key_ids" in caplog.text
