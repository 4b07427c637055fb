"""``safeguard detect`` is a thin verb over :func:`safeguard.watermark.batch.detect_jsonl`.

The JSONL loop (parse, tokenize, batch, detect, localize, one output line per input line,
counts) lives in the library; the verb resolves its flags, opens its files and turns the
counts into the summary line and the exit code. These tests pin both sides of that seam,
with the word-level tokenizer and keys of the service's test world (no model).
"""

from __future__ import annotations

import argparse
import io
import json
import runpy
from pathlib import Path

import pytest

from safeguard.cli import watermark_cmds as cmds
from safeguard.errors import ConfigError
from safeguard.watermark import WatermarkKey
from safeguard.watermark.batch import DetectCounts, detect_jsonl, detect_lines, detect_records

FPR = 1e-3


def _world_module():
    # The serve tests' own loader, so that both folders share one module object.
    conftest = Path(__file__).parents[1] / "serve" / "conftest.py"
    return runpy.run_path(str(conftest))["_load_world_module"]()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return _world_module().World(tmp_path_factory.mktemp("cli-world"))


@pytest.fixture(scope="module")
def lines(world):
    key = world.keys["a1"]
    mixed = " ".join(
        [world.plain_text(40, 5), world.watermarked_text(key, 120, 6), world.plain_text(40, 7)]
    )
    return [
        json.dumps({"text": world.watermarked_text(key, 100, 1), "prompt": "w1 w2"}),
        json.dumps({"text": world.plain_text(60, 2)}),
        "not json",
        json.dumps({"text": ""}),
        json.dumps({"text": "w3 w4"}),
        json.dumps({"text": mixed}),
    ]


def _run(world, lines, **kwargs):
    source = io.BytesIO(("\n".join(lines) + "\n").encode())
    sink = io.StringIO()
    kwargs.setdefault("keys", [world.keys["a1"]])
    counts = detect_jsonl(
        source, sink, tokenizer=world.tokenizer, false_positive_rate=FPR, **kwargs
    )
    return [json.loads(line) for line in sink.getvalue().splitlines()], counts


@pytest.mark.parametrize("batch_size", [1, 2, 1024])
def test_one_line_out_per_line_in_whatever_the_batch_size(world, lines, batch_size):
    out, counts = _run(world, lines, batch_size=batch_size)
    assert [o["line"] for o in out] == [1, 2, 3, 4, 5, 6]
    assert "malformed JSON" in out[2]["error"] and "empty" in out[3]["error"]
    assert out[0]["is_watermarked"] and not out[1]["is_watermarked"]
    assert out[4]["verdict"] == "too short to test"
    assert counts == DetectCounts(total=6, flagged=2, errors=2, too_short=1)


def test_the_output_is_detect_records_on_the_tokenized_lines(world, lines):
    out, _ = _run(world, lines, prompt_field="prompt")
    tok = world.tokenizer
    first = json.loads(lines[0])
    ids = list(tok(first["text"], add_special_tokens=False)["input_ids"])
    prompt = list(tok(first["prompt"], add_special_tokens=False)["input_ids"])
    (expected,) = detect_records(
        [world.keys["a1"]], [(ids, prompt)], false_positive_rate=FPR, vocab_size=len(tok)
    )
    assert out[0] == {"line": 1, **expected.payload}


def test_several_keys_are_holm_corrected_per_line(world, lines):
    out, counts = _run(world, lines, keys=[world.keys["a1"], world.keys["a2"]])
    assert out[0]["best_key_id"] == world.keys["a1"].key_id
    assert len(out[0]["adjusted_p_values"]) == 2
    assert counts.errors == 2


def test_localization_adds_spans_and_counts_a_span_as_flagged(world, lines):
    out, counts = _run(world, lines, localize_min_window=16)
    spans = out[5]["localization"]["spans"]
    assert spans and all(s["text"] for s in spans)
    assert counts.flagged >= 1
    with pytest.raises(ConfigError, match="exactly one key"):
        list(
            detect_lines(
                [],
                keys=[world.keys["a1"], world.keys["a2"]],
                tokenizer=world.tokenizer,
                false_positive_rate=FPR,
                localize_min_window=16,
            )
        )


def test_lines_take_read_jsonl_tuples_and_reasons(world):
    rows = [(1, {"text": "w1 w2 w3"}, None, b""), (3, None, "not an object", b"[1]")]
    out = list(
        detect_lines(
            rows, keys=[world.keys["a1"]], tokenizer=world.tokenizer, false_positive_rate=FPR
        )
    )
    assert [(o.line, o.error) for o in out] == [(1, False), (3, True)]
    assert json.loads(out[1].json) == {"line": 3, "error": "not an object"}


# ---------------------------------------------------------------------- the verb


def _args(**kw) -> argparse.Namespace:
    base = {"fpr": None, "policy": None, "engine": "local", "min_window": 16}
    return argparse.Namespace(**{**base, **kw})


def test_fpr_comes_from_the_flag_the_policy_or_the_default():
    assert cmds._detect_fpr(_args()) == 1e-3
    assert cmds._detect_fpr(_args(fpr=0.01)) == 0.01
    assert 0 < cmds._detect_fpr(_args(policy="moderation")) < 1
    with pytest.raises(ConfigError, match=r"--fpr \(=2.0\) must be in \(0, 1\)"):
        cmds._detect_fpr(_args(fpr=2.0))


def test_localize_flags_are_checked_with_their_names():
    gumbel = WatermarkKey.from_secret(b"\x01" * 32, "gumbel")
    exp = WatermarkKey.from_secret(b"\x02" * 32, "exp")
    cmds._check_localize(_args(), [gumbel])
    with pytest.raises(ConfigError, match="--localize needs exactly one key of the gumbel"):
        cmds._check_localize(_args(), [exp])
    with pytest.raises(ConfigError, match="drop --engine ray"):
        cmds._check_localize(_args(engine="ray"), [gumbel])
    with pytest.raises(ConfigError, match="--min-window"):
        cmds._check_localize(_args(min_window=0), [gumbel])


@pytest.mark.parametrize(
    ("counts", "code", "said"),
    [
        (DetectCounts(total=1), 0, "1 record, 0 flagged at fpr=0.001, 0 could not be processed"),
        (DetectCounts(total=3, flagged=1, too_short=2), 1, "2 too short to test (verdict in"),
        (DetectCounts(total=2, flagged=1, errors=1), 2, "2 records, 1 flagged"),
    ],
)
def test_summary_line_and_exit_code(capsys, counts, code, said):
    assert cmds._summarize(counts, 1e-3, "flagged") == code
    err = capsys.readouterr().err
    assert err.startswith("safeguard detect: ") and said in err and err.endswith("\n")


def test_register_still_builds_the_three_verbs():
    parser = argparse.ArgumentParser()
    cmds.register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["detect", "in.jsonl", "--key", "k", "--tokenizer", "t"])
    assert args.func is cmds.cmd_detect
    assert (args.field, args.engine, args.min_window, args.fpr) == ("text", "local", 16, None)
    args = parser.parse_args(["keygen", "--out", "k.json"])
    assert args.func is cmds.cmd_keygen and args.param == []
    args = parser.parse_args(["generate", "--model", "m", "--key", "k", "--prompt", "Hi"])
    assert args.func is cmds.cmd_generate and args.max_new_tokens == 200


def test_cmd_detect_runs_locally_end_to_end(world, lines, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    args = argparse.Namespace(
        input=str(src),
        key=[str(world.key_store / "a1.json")],
        tokenizer=str(world.tok_dir),
        field="text",
        prompt_field=None,
        fpr=None,
        policy=None,
        resolution=None,
        out=str(out),
        localize=False,
        min_window=16,
        no_normalize=False,
        engine="local",
    )
    assert cmds.cmd_detect(args) == 2  # two lines could not be processed
    expected, _ = _run(world, lines)
    assert [json.loads(x) for x in out.read_text().splitlines()] == expected
    assert "6 records, 2 flagged at fpr=0.001" in capsys.readouterr().err
