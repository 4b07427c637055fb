"""The first hour of a new user: every verb explains itself, and bad input gets exit 2, not a traceback."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings

import pytest

from safeguard.cli.main import build_parser, main

warnings.filterwarnings("ignore", message=".*Secure RNG.*")


def _verbs(parser: argparse.ArgumentParser, prefix: str = "safeguard"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield f"{prefix} {name}", child
                yield from _verbs(child, f"{prefix} {name}")


def test_every_verb_has_a_description_and_shows_its_defaults():
    verbs = list(_verbs(build_parser()))
    assert len(verbs) >= 20
    for name, parser in verbs:
        assert parser.description, f"{name} --help has no description"
        text = parser.format_help()
        for action in parser._actions:
            shown = action.option_strings and action.default not in (
                None,
                False,
                True,
                [],
                (),
                argparse.SUPPRESS,
            )
            if shown:
                assert "default" in (action.help or "").lower() or "(default: " in text, (
                    f"{name} {action.option_strings[0]} hides its default {action.default!r}"
                )


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [(["detcet"], "'detect'"), (["keygen", "--out", "k.json", "--shceme", "gumbel"], "'--scheme'")],
)
def test_typos_get_a_suggestion(argv, suggestion, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert f"did you mean {suggestion}?" in capsys.readouterr().err


def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    proc = subprocess.run(
        f"{sys.executable} -m safeguard keygen --out {tmp_path / 'k.json'} | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def half_model(tmp_path_factory):
    """A tiny GPT-2 saved in float16, like the evaluation LM safeguard ships."""
    import torch
    from transformers import AutoModelForCausalLM

    from safeguard.demo.tiny_lm import build_tiny_lm

    path = build_tiny_lm(
        tmp_path_factory.mktemp("lm") / "half", vocab_size=300, n_layer=1, n_embd=32
    )
    AutoModelForCausalLM.from_pretrained(path).to(torch.float16).save_pretrained(path)
    return path


def _notes(path, n=40):
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"text": f"note {i}: stable.", "patient_id": f"p{i % 20}"}) + "\n")
    return path


def test_train_on_float16_weights_trains_in_float32_quietly(half_model, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["train", "--policy", "healthcare-hipaa", "--model", str(half_model), "--data"]
    argv += [str(_notes(tmp_path / "d.jsonl")), "--out", str(out), "--no-progress"]
    with pytest.warns(UserWarning, match="δ = .* with N = 20 units"):  # a tiny data set is named
        assert main([*argv, "--max-length", "8", "--batch-size", "4"]) == 0
    err = capsys.readouterr().err
    assert "float16 weights; training in float32" in err
    for noise in (
        "Traceback",
        "divide by zero",
        "train_cmds.py",
        "Loading weights",
        "Writing model",
    ):
        assert noise not in err, err
    import torch
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(out)
    assert next(saved.parameters()).dtype == torch.float32


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--lr", "-1", "--lr: must be a finite number > 0"),
        ("--max-length", "0", "--max-length: must be ≥ 1"),
        ("--batch-size", "0", "--batch-size: must be ≥ 1"),
        ("--epochs", "nan", "--epochs: must be a finite number > 0"),
    ],
)
def test_train_refuses_out_of_range_numbers(flag, value, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "m", "--data", "d", "--out", str(tmp_path), flag, value])
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_train_offers_every_option_its_messages_suggest():
    train = dict(_verbs(build_parser()))["safeguard train"]
    options = {o for a in train._actions for o in a.option_strings}
    assert {"--grad-sample-mode", "--ledger", "--dp-seed", "--resume"} <= options


# ---------------------------------------------------------------- generate and detect
@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    from safeguard.demo.tiny_lm import build_tiny_lm

    return build_tiny_lm(
        tmp_path_factory.mktemp("lm") / "tiny", vocab_size=300, n_layer=1, n_embd=32
    )


@pytest.fixture(scope="module")
def bound_key(lm, tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "k.json"
    assert main(["keygen", "--tokenizer", str(lm), "--out", str(path)]) == 0
    return path


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--prompt", "  "], "prompt #1 is empty"),
        (["--prompt", "The", "--temperature", "0"], "--temperature (=0) must be > 0"),
        (["--prompt", "The", "--top-p", "0"], "--top-p (=0) must be in (0, 1]"),
        (["--prompt", "The", "--max-new-tokens", "0"], "--max-new-tokens: must be ≥ 1"),
    ],
)
def test_generate_refuses_what_would_crash_or_void_the_watermark(
    lm, bound_key, extra, needle, capsys
):
    try:
        code = main(["generate", "--model", str(lm), "--key", str(bound_key), *extra])
    except SystemExit as exc:  # argparse-level range errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


_SG = (sys.executable, "-m", "safeguard")


def test_generate_with_a_missing_or_incomplete_model_folder_fails_at_once(bound_key, tmp_path):
    import time

    (tmp_path / "empty").mkdir()
    for model, needle in (
        ("nodir", "is not a folder"),
        (str(tmp_path / "empty"), "no config.json"),
    ):
        start = time.perf_counter()
        proc = subprocess.run(
            [*_SG, "generate", "--model", model, "--key", str(bound_key), "--prompt", "The"],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr
        assert time.perf_counter() - start < 30  # no hub retries
        assert "retry" not in proc.stderr.lower()


def test_detect_reports_too_short_texts_distinctly_and_warns_about_unbound_keys(
    lm, bound_key, tmp_path, capsys
):
    texts = tmp_path / "t.jsonl"
    texts.write_text(json.dumps({"text": "Hi there"}) + "\n")
    out = tmp_path / "r.jsonl"
    assert (
        main(
            [
                "detect",
                str(texts),
                "--key",
                str(bound_key),
                "--tokenizer",
                str(lm),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["verdict"] == "too short to test" and result["is_watermarked"] is False
    err = capsys.readouterr().err
    assert "1 record," in err and "1 too short to test" in err
    unbound = tmp_path / "u.json"
    assert main(["keygen", "--out", str(unbound)]) == 0
    capsys.readouterr()
    assert (
        main(
            ["detect", str(texts), "--key", str(unbound), "--tokenizer", str(lm), "--out", str(out)]
        )
        == 0
    )
    assert "is not bound to a tokenizer" in capsys.readouterr().err


def test_the_python_api_says_too_short_not_negative():
    from safeguard.watermark import Watermarker, WatermarkKey

    wm = Watermarker(WatermarkKey.generate(scheme="gumbel"))
    short = wm.detect([5, 6, 7], false_positive_rate=1e-3)
    assert short.verdict == "too short to test" and short.too_short and not short.is_watermarked
    long = wm.detect(list(range(10, 110)), false_positive_rate=1e-3)
    assert long.verdict in ("not watermarked", "watermarked") and not long.too_short


def test_scrub_refuses_to_overwrite_without_force(tmp_path, capsys):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps({"text": "Call 617-555-0199 today."}) + "\n")
    out.write_text("precious\n")
    argv = ["scrub", str(src), str(out), "--policy", "default", "--no-ner", "--no-progress"]
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err and out.read_text() == "precious\n"
    assert main([*argv, "--force"]) == 0
    assert "617-555-0199" not in out.read_text()


def test_manifests_are_signed_with_signing_key_everywhere(tmp_path, capsys):
    key = tmp_path / "signer.key"
    assert main(["manifest", "keygen", str(key)]) == 0
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n')
    for flag in ("--signing-key", "--key"):  # --key stays accepted for older scripts
        out = tmp_path / f"m{flag}.json"
        assert main(["manifest", "dataset", str(data), "--out", str(out), flag, str(key)]) == 0
        assert json.loads(out.read_text())["signatures"]
    capsys.readouterr()
    assert main(["manifest", "sign", str(out)]) == 2
    assert "--signing-key" in capsys.readouterr().err


def test_eval_fails_only_on_our_own_schemes_calibration():
    from safeguard.cli.eval_cmds import _calibration_failures

    # 5 of 1,500 at 1e-4: P(X >= 5) ~ 7e-7 under calibration; 2 of 1,500: ~1e-2 (chance)
    bad = {"level": 1e-4, "false_positives": 5, "n": 1500}
    chance = {"level": 1e-4, "false_positives": 2, "n": 1500}
    low = {"level": 1e-2, "false_positives": 5, "n": 1500}
    report = {"null": {"gumbel": {"checks": [low, chance, bad]}, "kgw": {"checks": [bad]}}}
    (line,) = _calibration_failures(report)
    assert line.startswith("gumbel: 5 of 1500 human texts flagged at level 0.0001")
    assert _calibration_failures({"null": {"gumbel": {"checks": [low, chance]}}}) == []


def test_scrub_progress_bar_knows_its_total(tmp_path):
    from safeguard.pii.stream import _count_units

    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"text": "a"}\n{"text": "b"}\n{"text": "c"}')
    assert _count_units(data, "jsonl") == 3
    assert _count_units(data, "csv") is None and _count_units(tmp_path / "none", "jsonl") is None
