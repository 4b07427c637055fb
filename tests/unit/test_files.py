"""safeguard._files: the tolerant JSONL reader and the owner-only file helpers."""

from __future__ import annotations

import doctest
import io
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from safeguard import _files
from safeguard._files import (
    find_lone_surrogate,
    json_line,
    open_private,
    parse_jsonl_line,
    printable,
    read_jsonl,
    warn_if_readable_by_others,
    write_private,
)
from safeguard.errors import DataError


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_doctests() -> None:
    result = doctest.testmod(_files)
    assert result.failed == 0 and result.attempted >= 5


def test_every_bad_line_gets_a_reason_and_the_good_ones_are_read(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    lines = [
        b'{"id": 1}',
        b"",
        b'{"id": 2, "text": "bad \xff byte"}',
        b'{"id": 3, "text": "a \\ud800 b"}',
        b'{"id": 4, "nested": [{"x": "\\udfff"}]}',
        b'{"k\\udc00": 1}',
        b"{not json",
        b"[1, 2]",
        b'"a string"',
        b"   \r",
        b'{"id": 5, "emoji": "\\ud83d\\ude00"}',  # a valid pair is fine
        b'{"id": 6}\r',
    ]
    src.write_bytes(b"\n".join(lines) + b"\n")
    got = list(read_jsonl(src))
    assert [r.line for r in got] == [1, 3, 4, 5, 6, 7, 8, 9, 11, 12]
    good = [r.record["id"] for r in got if r.reason is None]
    assert good == [1, 5, 6]
    assert all((r.record is None) == (r.reason is not None) for r in got)
    reasons = {r.line: r.reason for r in got}
    assert reasons[3] == "invalid UTF-8 (byte 0xff at column 24)"
    assert reasons[4].startswith(
        "contains a lone surrogate (U+D800) in field 'text' at character 2;"
    )
    assert "(U+DFFF) in field 'nested.0.x' at character 0" in reasons[5]
    assert "(U+DC00) in a key of the record" in reasons[6]
    assert reasons[7].startswith("malformed JSON: Expecting property name")
    assert reasons[8] == "record is a JSON list, expected an object"
    assert reasons[9] == "record is a JSON string, expected an object"
    for reason in reasons.values():
        assert reason is None or ("\n" not in reason and "Traceback" not in reason)
    # Every line keeps its raw bytes (no line break), and a quarantine entry made from them
    # always encodes and parses back.
    expected = [lines[i].rstrip(b"\r") for i in (0, 2, 3, 4, 5, 6, 7, 8, 10, 11)]
    assert [r.raw for r in got] == expected  # CRLF: the \r belongs to the line break
    for r in got:
        entry = json.loads(json_line({"line": r.line, "reason": r.reason, "raw": printable(r.raw)}))
        assert entry["line"] == r.line
    assert printable(got[1].raw) == '{"id": 2, "text": "bad \\xff byte"}'


def test_a_binary_file_gives_reasons_not_an_exception(tmp_path: Path) -> None:
    src = tmp_path / "blob.jsonl"
    src.write_bytes(bytes(range(256)) * 40 + b"\x89PNG\r\n\x1a\n\x00\x00")
    got = list(read_jsonl(src))
    assert got and all(r.record is None and r.reason for r in got)
    assert any(r.reason.startswith("invalid UTF-8 (byte 0x") for r in got)


def test_expect_object_false_keeps_any_json_value() -> None:
    got = list(read_jsonl(io.BytesIO(b'[1]\n"s"\n3\n'), expect_object=False))
    assert [r.record for r in got] == [[1], "s", 3]


def test_bom_only_at_the_start_and_deep_nesting() -> None:
    assert parse_jsonl_line(b'\xef\xbb\xbf{"a": 1}', first=True) == ({"a": 1}, None)
    assert "BOM" in (parse_jsonl_line(b'\xef\xbb\xbf{"a": 1}')[1] or "")
    assert parse_jsonl_line(b"[" * 100_000 + b"]" * 100_000)[1] == (
        "malformed JSON: nested too deeply to parse"
    )


def test_read_jsonl_refuses_missing_files_and_text_streams(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cannot read .*nope\.jsonl"):
        list(read_jsonl(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="cannot read"):
        list(read_jsonl(tmp_path))  # a folder
    with pytest.raises(TypeError, match="binary stream"):
        list(read_jsonl(io.StringIO("{}\n")))  # type: ignore[arg-type]


def test_find_lone_surrogate_walks_deep_values_without_recursion() -> None:
    deep: object = "x\ud800"
    for _ in range(5000):
        deep = [deep]
    assert find_lone_surrogate(deep) is not None
    assert find_lone_surrogate({"a": ["ok", {"b": "\U0001f600"}]}) is None


def test_json_line_and_printable_never_fail_and_round_trip() -> None:
    value = {"k\ud800": ["\udcff", "é", 1, None]}
    line = json_line(value)
    line.decode("utf-8")  # valid UTF-8
    assert line.endswith(b"\n") and json.loads(line) == value
    assert printable(b"caf\xe9") == "caf\\xe9"
    assert printable("a\ud800").encode("utf-8") == b"a\\ud800"


def test_open_private_creates_0600_and_tightens_existing_files(tmp_path: Path) -> None:
    old = os.umask(0o000)  # the widest umask: the mode must not depend on it
    try:
        new = tmp_path / "q.jsonl"
        with open_private(new, "wb") as fh:
            fh.write(b"x")
        assert mode(new) == 0o600
        loose = tmp_path / "loose.jsonl"
        loose.write_text("old")
        loose.chmod(0o644)
        with open_private(loose, "r+b") as fh:
            fh.seek(0, 2)
            fh.write(b"!")
        assert mode(loose) == 0o600 and loose.read_text() == "old!"
        with open_private(tmp_path / "t.txt", "w") as fh:
            fh.write("é")
        assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "é"
        assert mode(tmp_path / "t.txt") == 0o600
    finally:
        os.umask(old)
    with pytest.raises(ValueError, match="mode"):
        open_private(tmp_path / "z", "rw")


def test_write_private_is_atomic_and_0600(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.json"
    target.write_text("old")
    target.chmod(0o644)
    write_private(target, '{"a": 1}')
    assert target.read_text() == '{"a": 1}' and mode(target) == 0o600
    write_private(target, b"bytes")
    assert target.read_bytes() == b"bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.json"]  # no temporary file left


def test_warn_if_readable_by_others(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = tmp_path / "key.json"
    key.write_text("{}")
    key.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        assert not warn_if_readable_by_others(key, "watermark key file")
    assert not caplog.records
    for bits, word in ((0o640, "readable"), (0o604, "readable"), (0o620, "writable")):
        key.chmod(bits)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert warn_if_readable_by_others(key, "watermark key file")
        (record,) = caplog.records
        assert f"is {word} by other users (mode {bits:04o})" in record.getMessage()
        assert "chmod 600" in record.getMessage() and "{}" not in record.getMessage()
    assert not warn_if_readable_by_others(tmp_path / "missing.json")


def test_a_bottom_layer_module_imports_only_errors_from_safeguard() -> None:
    import subprocess
    import sys

    code = (
        "import sys, safeguard._files\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('safeguard'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "safeguard,safeguard._files,safeguard.errors"
