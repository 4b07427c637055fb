"""The privacy ledger's anchor: recorded by the training predicate, checked as plain data."""

from __future__ import annotations

import doctest
import hashlib
import json
from pathlib import Path

import pytest

from safeguard.errors import DataError
from safeguard.provenance import chain as chain_mod
from safeguard.provenance import ledger_anchor as anchor_mod
from safeguard.provenance import manifest as manifest_mod
from safeguard.provenance.ledger_anchor import compare_ledger, recorded_anchor
from safeguard.provenance.predicates import (
    SLSA_PROVENANCE_V1,
    training_predicate,
    validate_predicate,
)

SHA_A = "a" * 64


def _entries(n: int) -> list[dict]:
    out, prev = [], "0" * 64
    for i in range(n):
        body = {"index": i, "kind": "run_start" if i == 0 else "step", "prev": prev}
        body["hash"] = prev = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        out.append(body)
    return out


def _write(path: Path, entries: list[dict], *, trailer: str = "") -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries) + trailer)
    return path


@pytest.mark.parametrize("module", [anchor_mod, chain_mod, manifest_mod])
def test_doctests(module) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_training_predicate_records_the_ledger_anchor() -> None:
    head = "b" * 64
    p = training_predicate(
        dp_config={"target_epsilon": 8.0, "max_grad_norm": 1.0},
        datasets=[("clean.jsonl", SHA_A)],
        ledger={"epsilon": 3.5, "delta": 1e-5, "entries": 412, "head": head},
    )
    assert validate_predicate(SLSA_PROVENANCE_V1, p) == "training"
    ann = p["runDetails"]["byproducts"][0]["annotations"]
    assert ann["ledger_entries"] == 412 and ann["ledger_head"] == head
    assert ann["epsilon_spent"] == 3.5  # the existing epsilon copy is kept
    # a summary without the anchor records none
    p = training_predicate(
        dp_config={"target_epsilon": 8.0}, datasets=[("c", SHA_A)], ledger={"epsilon": 1.0}
    )
    ann = p["runDetails"]["byproducts"][0]["annotations"]
    assert "ledger_entries" not in ann and "ledger_head" not in ann


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        ({"entries": -1}, "`entries` (=-1)"),
        ({"entries": "412"}, "`entries` (='412')"),
        ({"entries": True}, "`entries` (=True)"),
        ({"head": "ABC"}, "`head` (='ABC')"),
        ({"head": "A" * 64}, "64 lower-case hex"),
    ],
)
def test_training_predicate_refuses_a_malformed_anchor(summary, message) -> None:
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        training_predicate(
            dp_config={"target_epsilon": 8.0}, datasets=[("c", SHA_A)], ledger=summary
        )


def test_recorded_anchor_types() -> None:
    assert recorded_anchor({"ledger_entries": 2, "ledger_head": "x"}) == (2, "x")
    with pytest.raises(ValueError, match="ledger_entries"):
        recorded_anchor({"ledger_entries": 2.0})
    with pytest.raises(ValueError, match="ledger_head"):
        recorded_anchor({"ledger_head": 7})


def test_matching_ledger(tmp_path) -> None:
    entries = _entries(5)
    path = _write(tmp_path / "l.jsonl", entries, trailer="\n  \n")  # blank lines do not count
    assert compare_ledger(path, entries=5, head=entries[-1]["hash"]) == []
    assert compare_ledger(path, entries=5, head=None) == []
    assert compare_ledger(path, entries=None, head=entries[-1]["hash"]) == []


def test_truncated_ledger(tmp_path) -> None:
    entries = _entries(412)
    path = _write(tmp_path / "l.jsonl", entries[:211])
    assert compare_ledger(path, entries=412, head=entries[-1]["hash"]) == [
        "ledger truncated: manifest records 412 entries, file has 211"
    ]


def test_ledger_grown_after_signing(tmp_path) -> None:
    entries = _entries(6)
    path = _write(tmp_path / "l.jsonl", entries)
    (problem,) = compare_ledger(path, entries=5, head=entries[4]["hash"])
    assert "manifest records 5 entries, file has 6" in problem


def test_replaced_last_entry(tmp_path) -> None:
    entries = _entries(4)
    signed_head = entries[-1]["hash"]
    edited = [*entries[:-1], {**entries[-1], "epsilon": 0.1, "hash": "c" * 64}]
    path = _write(tmp_path / "l.jsonl", edited)
    (problem,) = compare_ledger(path, entries=4, head=signed_head)
    assert "last entry differs" in problem and signed_head[:12] in problem
    assert "cccccccccccc" in problem


def test_last_entry_index_must_match(tmp_path) -> None:
    entries = _entries(3)
    entries[-1]["index"] = 7
    path = _write(tmp_path / "l.jsonl", entries)
    (problem,) = compare_ledger(path, entries=3, head=entries[-1]["hash"])
    assert "index 7" in problem and "must be 2" in problem


def test_last_line_not_json(tmp_path) -> None:
    entries = _entries(3)
    path = tmp_path / "l.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries[:2]) + '{"index": 2, "ha\n')
    (problem,) = compare_ledger(path, entries=3, head=entries[-1]["hash"])
    assert "not JSON" in problem


def test_missing_ledger(tmp_path) -> None:
    (problem,) = compare_ledger(tmp_path / "none.jsonl", entries=3, head="d" * 64)
    assert problem.startswith("ledger missing") and "3 entries" in problem
    # an empty ledger has nothing to lose: absent or empty both match 0 entries
    assert compare_ledger(tmp_path / "none.jsonl", entries=0, head="0" * 64) == []
    (tmp_path / "empty.jsonl").write_text("")
    assert compare_ledger(tmp_path / "empty.jsonl", entries=0, head="0" * 64) == []
