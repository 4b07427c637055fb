"""The real `safeguard` entry point: keygen -> generate -> detect, exit codes, and no secret in output."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import stat
import subprocess
import sys

import pytest

from safeguard.cli.main import main


def sg(*args: str, check_rc: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI's real entry point in this process (imports stay warm), capturing its output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(args))
        except SystemExit as exc:  # argparse usage errors
            rc = int(exc.code or 0)
    proc = subprocess.CompletedProcess(list(args), rc, out.getvalue(), err.getvalue())
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr
    return proc


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from safeguard.demo.tiny_lm import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("cli-lm"))


def test_keygen_generate_detect_round_trip(tmp_path, model_dir):
    key = tmp_path / "key.json"
    out = sg(
        "keygen", "--scheme", "gumbel", "--tokenizer", str(model_dir), "--out", str(key), check_rc=0
    )
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    secret = json.loads(key.read_text())["secret"]
    secret_forms = [secret, base64.b64decode(secret).hex()]
    public = json.loads(out.stdout)
    assert public["key_id"].startswith("wm-") and "secret" not in public

    marked, plain = tmp_path / "marked.jsonl", tmp_path / "plain.jsonl"
    common = [
        "--model",
        str(model_dir),
        "--key",
        str(key),
        "--prompt",
        "The river",
        "--prompt",
        "A small library",
        "--max-new-tokens",
        "100",
        "--seed",
        "1",
    ]
    gen = sg("generate", *common, "--out", str(marked), check_rc=0)
    sg("generate", *common, "--no-watermark", "--out", str(plain), check_rc=0)

    # watermarked texts are flagged -> exit 1 (a finding)
    res = sg(
        "detect", str(marked), "--key", str(key), "--tokenizer", str(model_dir), "--fpr", "1e-3"
    )
    assert res.returncode == 1, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(lines) == 2 and all(x["is_watermarked"] and x["p_value"] < 1e-6 for x in lines)

    # plain texts are not -> exit 0
    res0 = sg(
        "detect",
        str(plain),
        "--key",
        str(key),
        "--tokenizer",
        str(model_dir),
        "--out",
        str(tmp_path / "r.jsonl"),
        "--fpr",
        "1e-6",  # two unwatermarked texts: a false flag has probability 2e-6
    )
    assert res0.returncode == 0, res0.stderr
    assert "2 records, 0 flagged at fpr=1e-06" in res0.stderr

    for proc in (out, gen, res, res0):
        for form in secret_forms:
            assert form not in proc.stdout and form not in proc.stderr


def test_detect_bad_records_are_reported_not_dropped(tmp_path, model_dir):
    key = tmp_path / "key.json"
    sg("keygen", "--out", str(key), check_rc=0)
    data = tmp_path / "in.jsonl"
    data.write_text('{"text": "hello there"}\nnot json\n{"other": 1}\n\n')
    res = sg("detect", str(data), "--key", str(key), "--tokenizer", str(model_dir))
    assert res.returncode == 2
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [x["line"] for x in lines] == [1, 2, 3]
    assert "error" in lines[1] and "missing field" in lines[2]["error"]
    assert "3 records" in res.stderr and "2 could not be processed" in res.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["detect", "missing.jsonl", "--key", "nokey.json", "--tokenizer", "."],
            "safeguard keygen",
        ),
        (["keygen", "--scheme", "nope", "--out", "x.json"], "known schemes"),
        (["keygen", "--param", "context_width", "--out", "x.json"], "NAME=VALUE"),
        (["detect"], "required"),
    ],
)
def test_usage_errors_exit_2_without_traceback(tmp_path, args, needle):
    proc = subprocess.run(
        [sys.executable, "-m", "safeguard", *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_corrupt_key_file_exit_2(tmp_path, model_dir):
    bad = tmp_path / "bad.json"
    bad.write_text("{broken")
    data = tmp_path / "in.jsonl"
    data.write_text('{"text": "hello"}\n')
    proc = sg("detect", str(data), "--key", str(bad), "--tokenizer", str(model_dir))
    assert proc.returncode == 2 and "corrupt" in proc.stderr and "Traceback" not in proc.stderr


def test_tokenizer_mismatch_exit_2(tmp_path, model_dir):
    from safeguard.demo.tiny_lm import build_tiny_lm

    other = build_tiny_lm(tmp_path / "other", vocab_size=600)
    key = tmp_path / "key.json"
    sg("keygen", "--tokenizer", str(model_dir), "--out", str(key), check_rc=0)
    data = tmp_path / "in.jsonl"
    data.write_text('{"text": "hello"}\n')
    proc = sg("detect", str(data), "--key", str(key), "--tokenizer", str(other))
    assert proc.returncode == 2 and "bound to tokenizer" in proc.stderr


def test_generate_writes_a_signed_manifest_that_verifies(tmp_path, model_dir):
    key = tmp_path / "key.json"
    sg("keygen", "--tokenizer", str(model_dir), "--out", str(key), check_rc=0)
    signer = tmp_path / "signer.key"
    sg("manifest", "keygen", str(signer), check_rc=0)
    out, manifest = tmp_path / "gen.jsonl", tmp_path / "gen.manifest.json"
    sg(
        "generate",
        "--model",
        str(model_dir),
        "--key",
        str(key),
        "--prompt",
        "The river",
        "--max-new-tokens",
        "16",
        "--out",
        str(out),
        "--manifest",
        str(manifest),
        "--signing-key",
        str(signer),
        check_rc=0,
    )
    statement = json.loads(base64.b64decode(json.loads(manifest.read_text())["payload"]))
    assert statement["predicate"]["watermark"]["key_id"] == json.loads(key.read_text())["key_id"]
    assert json.loads(key.read_text())["secret"] not in manifest.read_text()
    sg("manifest", "verify", str(manifest), "--pubkey", f"{signer}.pub", check_rc=0)
    with open(out, "a", encoding="utf-8") as fh:
        fh.write('{"tampered": true}\n')
    assert sg("manifest", "verify", str(manifest), "--pubkey", f"{signer}.pub").returncode == 1
    # --manifest needs a file to digest
    proc = sg(
        "generate",
        "--model",
        str(model_dir),
        "--key",
        str(key),
        "--prompt",
        "x",
        "--manifest",
        str(manifest),
    )
    assert proc.returncode == 2 and "--out FILE" in proc.stderr


def test_detect_localize_finds_the_pasted_watermarked_span(tmp_path, model_dir):
    import numpy as np

    from safeguard.watermark import WatermarkKey
    from safeguard.watermark.evaluation.attacks import homoglyphs
    from safeguard.watermark.tokenizer import load_tokenizer

    key = tmp_path / "key.json"
    tok = load_tokenizer(model_dir)
    WatermarkKey.from_secret(b"\x51" * 32, "gumbel").bind(tok).save(key)
    marked, plain = tmp_path / "marked.jsonl", tmp_path / "plain.jsonl"
    common = ["--model", str(model_dir), "--key", str(key), "--seed", "3"]
    sizes = ["--max-new-tokens", "150", "--min-new-tokens", "150"]
    sg("generate", *common, *sizes, "--prompt", "The river", "--out", str(marked), check_rc=0)
    sizes = ["--max-new-tokens", "200", "--min-new-tokens", "200"]
    prompts = ["--prompt", "A small library", "--prompt", "The market"]
    sg("generate", *common, *sizes, *prompts, "--no-watermark", "--out", str(plain), check_rc=0)
    wm_text = json.loads(marked.read_text())["text"]
    before, after = (json.loads(x)["text"] for x in plain.read_text().splitlines())
    mixed = before + wm_text + after
    data = tmp_path / "mixed.jsonl"
    records = [mixed, homoglyphs(mixed, 0.3, rng=np.random.default_rng(0)), before + after]
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in records))

    res = sg("detect", str(data), "--key", str(key), "--tokenizer", str(model_dir), "--localize")
    assert res.returncode == 1, res.stderr
    out = [json.loads(x) for x in res.stdout.splitlines()]
    assert [x["line"] for x in out] == [1, 2, 3]
    # The untrained model's tokens are often not the tokenizer's own encoding of their text, so
    # re-encoding loses part of the watermark and the span can come out in fragments: each
    # fragment must lie in the pasted text (give or take 12 tokens) and together they must
    # cover at least a quarter of it.
    lo = len(tok(before)["input_ids"])
    hi = lo + len(tok(wm_text)["input_ids"])
    for rec in out[:2]:  # the clean mix, and the same with look-alike letters (normalised)
        loc = rec["localization"]
        assert loc["is_watermarked"] and loc["method"] == "bonferroni", loc
        assert "p_value" in rec and "is_watermarked" in rec  # the whole-text result stays
        for span in loc["spans"]:
            assert span["p_value"] <= 1e-3 and span["text"] and span["text"] in mixed
            assert lo - 12 <= span["start"] < span["end"] <= hi + 12, (lo, hi, span)
        covered = sum(s["end"] - s["start"] for s in loc["spans"])
        assert covered >= (hi - lo) / 4, (covered, lo, hi)
    # human text alone: no span (a false one has probability <= 1e-3)
    assert out[2]["localization"]["spans"] == []
    assert "3 records, 2 with watermarked spans at fpr=0.001" in res.stderr

    two_keys = sg(
        "detect", str(data), "--key", str(key), "--key", str(key), "--tokenizer", str(model_dir),
        "--localize",
    )  # fmt: skip
    assert two_keys.returncode == 2 and "exactly one key of the gumbel scheme" in two_keys.stderr
