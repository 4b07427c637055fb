"""locate_texts: the texts of a record that scrubbing replaces, shared by both engines."""

from __future__ import annotations

import pytest

from safeguard.pii.paths import locate_texts


def test_texts_and_patient_id_are_found_and_none_is_skipped():
    rec = {"pid": 42, "note": "Pt seen", "msgs": [{"t": "a"}, {"t": None}, {"t": "b"}]}
    pid, slots = locate_texts(rec, ["note", "msgs.*.t"], "pid")
    assert pid == "42"
    assert [c[k] for c, k in slots] == ["Pt seen", "a", "b"]
    slots[0][0][slots[0][1]] = "replaced"  # the slots write back into the record
    assert rec["note"] == "replaced"
    assert locate_texts(rec, ["note"])[0] is None


def test_missing_fields_and_non_strings_are_reported():
    with pytest.raises(KeyError, match="'body'"):
        locate_texts({"note": "x"}, ["body"])
    with pytest.raises(KeyError, match="'pid'"):
        locate_texts({"note": "x"}, ["note"], "pid")
    with pytest.raises(TypeError, match="field 'note' is a int, expected a string"):
        locate_texts({"note": 3}, ["note"])
