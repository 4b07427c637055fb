"""Config from policies, the policy section model, evaluation metrics, the generator, paths."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from pydantic import ValidationError

from safeguard.errors import ConfigError, PolicyError
from safeguard.pii import PseudonymKey, Scrubber, ScrubConfig, known_entities
from safeguard.pii.evaluate import SAFE_HARBOR, evaluate_predictions, f_beta, safe_harbor_matrix
from safeguard.pii.paths import locate
from safeguard.pii.synthetic import (
    DEV_TEMPLATES,
    generate_examples,
    read_labelled_jsonl,
    write_labelled_jsonl,
)
from safeguard.policy import load_policy
from safeguard.policy.pii import PIIPolicy


def test_from_policy_healthcare_hipaa() -> None:
    cfg = ScrubConfig.from_policy("healthcare-hipaa")
    assert cfg.policy_name == "healthcare-hipaa"
    assert {"PERSON", "MEDICAL_RECORD_NUMBER", "NPI", "AGE_OVER_89", "ZIP_CODE"} <= set(
        cfg.entities
    )
    assert set(cfg.entities) <= set(known_entities())
    assert "036" in cfg.restricted_zip3
    s = Scrubber.from_policy("healthcare-hipaa")  # lazy: no spaCy loaded yet
    assert s._analyzer is None and "healthcare-hipaa" in repr(s)


def test_shipped_policies_are_usable() -> None:
    for name in ("healthcare-hipaa", "default"):
        assert load_policy(name).pii is not None
        ScrubConfig.from_policy(name)


def test_policy_section_validation() -> None:
    with pytest.raises(ValidationError, match="operators"):
        PIIPolicy(entities=["PERSON"], operators={"PERSON": "shred"})  # type: ignore[dict-item]
    with pytest.raises(ValidationError, match="not in `entities`"):
        PIIPolicy(entities=["PERSON"], operators={"US_SSN": "redact"})
    with pytest.raises(ValidationError, match="must be in"):
        PIIPolicy(entities=["PERSON"], entity_thresholds={"PERSON": 1.5})
    with pytest.raises(ValidationError, match="3 digits"):
        PIIPolicy(entities=["ZIP_CODE"], restricted_zip3=["36"])
    with pytest.raises(ValidationError):
        PIIPolicy(entities=["PERSON"], unknown_key=1)  # type: ignore[call-arg]


def test_malformed_policy_file(tmp_path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("schema_version: 1\nname: x\npii:\n  entities: [PERSON]\n  score_threshold: 2\n")
    with pytest.raises(PolicyError, match="score_threshold"):
        Scrubber.from_policy(bad)
    nopii = tmp_path / "q.yaml"
    nopii.write_text("schema_version: 1\nname: q\n")
    with pytest.raises(PolicyError, match="no `pii:` section"):
        Scrubber.from_policy(nopii)


def test_config_errors_name_the_argument() -> None:
    with pytest.raises(ConfigError, match="unknown types"):
        ScrubConfig(entities=("PERSON", "SHOE_SIZE"))
    with pytest.raises(ConfigError, match="`entities` is empty"):
        ScrubConfig(entities=())
    with pytest.raises(ConfigError, match="max_chunk_chars"):
        ScrubConfig(entities=("PERSON",), max_chunk_chars=10)
    # a deny-list type is a valid custom entity
    assert ScrubConfig(entities=("BADGE",), deny_list={"BADGE": ("B-77",)}).all_entities == (
        "BADGE",
    )


def test_keyed_operators_require_a_matching_key() -> None:
    cfg = ScrubConfig(entities=("PERSON",), operators={"DEFAULT": "pseudonym"})
    with pytest.raises(ConfigError, match="need a pseudonym key"):
        Scrubber(cfg)
    key = PseudonymKey(secret=b"s" * 32)
    Scrubber(cfg, key=key)
    pinned = ScrubConfig(
        entities=("PERSON",), operators={"DEFAULT": "pseudonym"}, key_id="pii-0000"
    )
    with pytest.raises(ConfigError, match="requires key id"):
        Scrubber(pinned, key=key)
    assert key.secret.hex() not in repr(Scrubber(cfg, key=key))


def test_config_round_trip() -> None:
    cfg = ScrubConfig.from_policy("healthcare-hipaa")
    assert ScrubConfig.from_dict(cfg.to_dict()) == cfg


def test_f_beta_and_metrics_on_hand_made_spans() -> None:
    assert f_beta(0.0, 0.0) == 0.0
    assert math.isclose(f_beta(1.0, 1.0), 1.0)
    text = "John Smith called 617-555-0123 from Boston"
    gold = [[(0, 10, "PERSON"), (18, 30, "PHONE_NUMBER"), (36, 42, "LOCATION")]]
    pred = [[(0, 4, "PERSON"), (5, 10, "PERSON"), (18, 30, "URL"), (11, 17, "PERSON")]]
    r = evaluate_predictions([text], gold, pred)
    # John + Smith cover the name; the phone is covered (wrong type); Boston is missed.
    assert (r.overall.gold, r.overall.found) == (3, 2)
    assert r.typed.found == 1
    # "called" is a false positive; the other three are correct.
    assert (r.overall.predicted, r.overall.correct) == (4, 3)
    assert r.per_entity["LOCATION"].recall == 0.0
    partial = evaluate_predictions([text], gold, [[(0, 4, "PERSON")]])
    assert partial.overall.found == 0 and partial.lenient.found == 1  # strict vs lenient
    with pytest.raises(ValueError, match="same length"):
        evaluate_predictions([text], gold, [])


def test_safe_harbor_matrix_has_18_rows() -> None:
    text = "Jane"
    r = evaluate_predictions([text], [[(0, 4, "PERSON")]], [[(0, 4, "PERSON")]])
    rows = safe_harbor_matrix(r, ScrubConfig.from_policy("healthcare-hipaa").entities)
    assert len(rows) == len(SAFE_HARBOR) == 18
    assert rows[0]["recall"] == 1.0 and rows[0]["in_policy"]
    assert all(row["in_policy"] for row in rows if row["entities"])


def test_generator_is_seeded_and_labels_are_exact(tmp_path) -> None:
    a = generate_examples(60, seed=3)
    assert a == generate_examples(60, seed=3)
    assert a != generate_examples(60, seed=4)
    for ex in a:
        for s, e, t in ex.spans:
            assert ex.text[s:e].strip() == ex.text[s:e] and ex.text[s:e], (t, ex.text)
        assert all(x[1] <= y[0] for x, y in zip(ex.spans, ex.spans[1:], strict=False))
    dev = generate_examples(40, seed=3, split="dev")
    hold = generate_examples(40, seed=3, split="holdout")
    assert all(e.template < len(DEV_TEMPLATES) for e in dev)
    assert all(e.template >= len(DEV_TEMPLATES) for e in hold)
    path = write_labelled_jsonl(a, tmp_path / "x.jsonl")
    assert read_labelled_jsonl(path) == a


def test_paths() -> None:
    rec = {"a": {"b": [{"c": "x"}, {"c": "y"}]}, "t": "z"}
    assert [c[k] for c, k in locate(rec, "a.b.*.c")] == ["x", "y"]
    assert [c[k] for c, k in locate(rec, "a.b.1.c")] == ["y"]
    with pytest.raises(KeyError, match="no key 'q'"):
        locate(rec, "a.q")


def test_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, safeguard.pii, safeguard.pii.stream, safeguard.pii.evaluate;"
        "heavy=[m for m in ('presidio_analyzer','spacy','torch','transformers') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
