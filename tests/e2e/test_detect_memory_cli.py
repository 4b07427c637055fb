"""`safeguard detect --memory DIR`: pairs scored once per key across runs; refusals."""

from __future__ import annotations

import json
import os
import stat

import pytest

from safeguard.watermark import DetectionMemory, WatermarkKey
from safeguard.watermark.tokenizer import load_tokenizer

from .test_watermark_cli import sg


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from safeguard.demo.tiny_lm import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("memory-lm"))


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_memory_across_runs(tmp_path, model_dir):
    key = tmp_path / "key.json"
    sg("keygen", "--tokenizer", str(model_dir), "--out", str(key), check_rc=0)
    key_id = WatermarkKey.load(key).key_id
    phrase = "the quick brown fox jumps over the lazy dog near the quiet river bank " * 2
    records = tmp_path / "in.jsonl"
    records.write_text(
        "\n".join(
            json.dumps({"text": t})
            for t in (phrase, phrase + "and then it rains", "an unrelated line of plain words here")
        )
        + "\n"
    )
    memory = tmp_path / "memory"
    args = ["detect", str(records), "--key", str(key), "--tokenizer", str(model_dir)]
    first_out, again_out, plain_out = (
        tmp_path / "a.jsonl",
        tmp_path / "b.jsonl",
        tmp_path / "c.jsonl",
    )
    sg(*args, "--memory", str(memory), "--out", str(first_out))
    sg(*args, "--memory", str(memory), "--out", str(again_out))
    sg(*args, "--out", str(plain_out))
    first, again, plain = _lines(first_out), _lines(again_out), _lines(plain_out)
    path = memory / f"{key_id}.memory.npz"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(memory).st_mode) == 0o700
    # The first text scores as without a memory; the second only its new tail; repeats in a
    # later run get the earlier answers.
    assert first[0]["num_scored"] == plain[0]["num_scored"]
    assert first[1]["num_scored"] < plain[1]["num_scored"]
    assert [r["num_scored"] for r in again] == [r["num_scored"] for r in first]
    assert [r["p_value"] for r in again] == [r["p_value"] for r in first]
    saved = DetectionMemory.load(path, key_id=key_id)
    assert saved.texts == 3
    tok = load_tokenizer(str(model_dir))
    assert saved.pairs <= sum(len(tok(t)["input_ids"]) for t in (phrase, phrase, "x" * 40))


def test_memory_refusals(tmp_path, model_dir):
    records = tmp_path / "in.jsonl"
    records.write_text(json.dumps({"text": "some words to test"}) + "\n")
    exp_key, gumbel_key = tmp_path / "exp.json", tmp_path / "g.json"
    sg(
        "keygen",
        "--scheme",
        "exp",
        "--tokenizer",
        str(model_dir),
        "--out",
        str(exp_key),
        check_rc=0,
    )
    sg("keygen", "--tokenizer", str(model_dir), "--out", str(gumbel_key), check_rc=0)
    base = ["detect", str(records), "--tokenizer", str(model_dir), "--memory", str(tmp_path / "m")]
    out = sg(*base, "--key", str(exp_key))
    assert out.returncode == 2 and "gumbel" in out.stderr
    out = sg(*base, "--key", str(gumbel_key), "--localize")
    assert out.returncode == 2 and "--localize" in out.stderr
    out = sg(*base, "--key", str(gumbel_key), "--engine", "ray")
    assert out.returncode == 2 and "local engine" in out.stderr
    (tmp_path / "file").write_text("x")
    out = sg(*base[:-1], str(tmp_path / "file"), "--key", str(gumbel_key))
    assert out.returncode == 2 and "folder" in out.stderr
    # A memory file of another key under this key's name is refused, not silently used.
    other = WatermarkKey.generate()
    folder = tmp_path / "swapped"
    folder.mkdir()
    DetectionMemory(other.key_id).save(
        folder / f"{WatermarkKey.load(gumbel_key).key_id}.memory.npz"
    )
    out = sg(*base[:-1], str(folder), "--key", str(gumbel_key))
    assert out.returncode == 2 and "belongs to key" in out.stderr
