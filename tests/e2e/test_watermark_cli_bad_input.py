"""Issue 13 §3: `detect` and `generate --prompts` on unreadable lines, through the real entry point.

Every bad line is reported with its line number and reason, every good line still gets its
result, exit code 2 means "some input could not be processed" (1 stays "watermark found"),
and no traceback ever reaches the user.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from safeguard.cli.main import main

SAFEGUARD = Path(sys.executable).with_name("safeguard")


def sg(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI's entry point in this process (imports stay warm), capturing its output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(args))
        except SystemExit as exc:
            rc = int(exc.code or 0)
    return subprocess.CompletedProcess(list(args), rc, out.getvalue(), err.getvalue())


def real(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """The installed `safeguard` executable, as a user runs it."""
    return subprocess.run(
        [str(SAFEGUARD), *args], input=stdin, capture_output=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny model, a key bound to its tokenizer, and two watermarked generations."""
    from safeguard.demo.tiny_lm import build_tiny_lm

    root = tmp_path_factory.mktemp("bad-input")
    model = build_tiny_lm(root / "lm")
    key = root / "key.json"
    assert sg("keygen", "--tokenizer", str(model), "--out", str(key)).returncode == 0
    marked = root / "marked.jsonl"
    gen = sg("generate", "--model", str(model), "--key", str(key), "--prompt", "The river",
             "--prompt", "A small library", "--max-new-tokens", "100", "--seed", "1",
             "--out", str(marked))  # fmt: skip
    assert gen.returncode == 0, gen.stderr
    texts = [json.loads(x)["text"] for x in marked.read_text().splitlines()]
    return {"model": model, "key": key, "texts": texts}


def detect_args(world, src: str) -> list[str]:
    return ["detect", src, "--key", str(world["key"]), "--tokenizer", str(world["model"]),
            "--fpr", "1e-3"]  # fmt: skip


def mixed_lines(texts: list[str]) -> list[bytes]:
    return [
        json.dumps({"text": texts[0]}).encode(),  # 1 good, watermarked
        b'{"text": "bad \xff\xfe bytes"}',  # 2 invalid UTF-8
        b"",  # 3 blank: no output
        b'{"text": "a lone \\ud800 surrogate"}',  # 4
        b"not json",  # 5
        b'["a", "list"]',  # 6
        b'{"other": 1}',  # 7
        b'{"text": 42}',  # 8
        b'{"text": "fine", "prompt": 7}',  # 9 (with --prompt-field prompt)
        json.dumps({"text": texts[1]}).encode(),  # 10 good, watermarked
    ]


def test_detect_reports_each_bad_line_and_keeps_every_good_result(world, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(mixed_lines(world["texts"])) + b"\n")
    res = sg(*detect_args(world, str(src)), "--prompt-field", "prompt")
    assert res.returncode == 2, res.stderr  # unreadable lines take precedence over findings
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 4, 5, 6, 7, 8, 9, 10]
    by_line = {r["line"]: r for r in rows}
    for good in (1, 10):  # the flagged results are in the output, not lost behind exit 2
        assert by_line[good]["is_watermarked"] and by_line[good]["p_value"] < 1e-6
    errors = {n: r["error"] for n, r in by_line.items() if "error" in r}
    assert errors[2] == "invalid UTF-8 (byte 0xff at column 15)"
    assert errors[4].startswith("contains a lone surrogate (U+D800) in field 'text' at character 7")
    assert errors[5].startswith("malformed JSON: Expecting value at column 1")
    assert errors[6] == "record is a JSON list, expected an object"
    assert errors[7] == "missing field 'text'"
    assert errors[8] == "field 'text' is empty or not a string"
    assert errors[9] == "field 'prompt' is a JSON number, expected a string or null"
    assert "9 records, 2 flagged" in res.stderr and "7 could not be processed" in res.stderr
    assert "Traceback" not in res.stderr


def test_detect_exit_codes_follow_the_documented_rule(world, tmp_path):
    flagged = tmp_path / "flagged.jsonl"
    flagged.write_text(json.dumps({"text": world["texts"][0]}) + "\n")
    assert sg(*detect_args(world, str(flagged))).returncode == 1
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"text": "the the the the the the the the"}) + "\n")
    assert sg(*detect_args(world, str(plain))).returncode == 0
    helptext = real("detect", "--help").stdout.decode()
    assert "2 takes precedence over 1" in helptext


def test_detect_binary_file_and_stdin_never_trace_back(world, tmp_path):
    blob = tmp_path / "blob.jsonl"
    blob.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16)
    proc = real(*detect_args(world, str(blob)))
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err, err
    rows = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert rows and all("error" in r and r["line"] >= 1 for r in rows)
    assert any(r["error"].startswith("invalid UTF-8") for r in rows)
    assert err.strip().splitlines()[-1].startswith("safeguard detect: ")

    data = json.dumps({"text": world["texts"][0]}).encode() + b"\n\xc3\x28 broken\n"
    proc = real(*detect_args(world, "-"), stdin=data)
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr
    rows = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert rows[0]["is_watermarked"] and rows[1] == {
        "line": 2,
        "error": "invalid UTF-8 (byte 0xc3 at column 1)",
    }


def test_detect_and_generate_warn_about_a_key_file_others_can_read(world, tmp_path):
    key = tmp_path / "key.json"
    key.write_bytes(world["key"].read_bytes())
    key.chmod(0o644)
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": world["texts"][0]}) + "\n")
    args = detect_args(world, str(src))
    args[args.index("--key") + 1] = str(key)
    proc = real(*args)
    assert proc.returncode == 1
    (line,) = [x for x in proc.stderr.decode().splitlines() if "other users" in x]
    assert f"watermark key file {key} is readable by other users (mode 0644)" in line
    assert json.loads(key.read_text())["secret"] not in proc.stderr.decode()
    key.chmod(0o600)
    proc = real(*args)
    assert b"other users" not in proc.stderr


def test_generate_refuses_a_prompts_file_with_bad_lines_before_generating(world, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(
        b'{"prompt": "The river"}\n'
        b'{"prompt": "caf\xe9"}\n'
        b"\n"
        b'{"prompt": "x \\udc00"}\n'
        b'{"text": "no prompt"}\n'
        b'{"prompt": ["a"]}\n'
        b'{"prompt": "A small library"}\n'
    )
    out = tmp_path / "gen.jsonl"
    proc = real("generate", "--model", str(world["model"]), "--key", str(world["key"]),
                "--prompts", str(prompts), "--max-new-tokens", "5", "--out", str(out))  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err, err
    (msg,) = err.strip().splitlines()
    assert "4 line(s) cannot be used, nothing generated" in msg
    assert "line 2: invalid UTF-8 (byte 0xe9 at column 16)" in msg
    assert "line 4: contains a lone surrogate (U+DC00)" in msg
    assert "line 5: missing field 'prompt'" in msg
    assert "line 6: field 'prompt' is a JSON list, expected a string" in msg
    assert not out.exists()

    prompts.write_text('{"prompt": "The river"}\n\n{"prompt": "A small library"}\n')
    res = sg("generate", "--model", str(world["model"]), "--key", str(world["key"]),
             "--prompts", str(prompts), "--max-new-tokens", "5", "--out", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert [json.loads(x)["prompt"] for x in out.read_text().splitlines()] == [
        "The river",
        "A small library",
    ]


def test_generate_refuses_a_prompt_argument_that_is_not_utf8(world, tmp_path):
    proc = subprocess.run(
        [os.fsencode(SAFEGUARD), b"generate", b"--model", os.fsencode(world["model"]),
         b"--key", os.fsencode(world["key"]), b"--prompt", b"caf\xe9", b"--out",
         os.fsencode(tmp_path / "g.jsonl")],
        capture_output=True, timeout=600, check=False,
    )  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert "--prompt #1 is not valid UTF-8 text (U+DCE9 at character 3)" in err


def test_keygen_key_is_private(world):
    assert stat.S_IMODE(os.stat(world["key"]).st_mode) == 0o600
