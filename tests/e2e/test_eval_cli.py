"""`safeguard eval`: the evaluation study end to end on the shipped LM and on a model folder."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from safeguard.cli.main import main

pytest.importorskip("transformers")
pytest.importorskip("matplotlib")


def sg(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(args))
        except SystemExit as exc:
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


SMALL = (
    "--quick",
    "--texts",
    "8",
    "--new-tokens",
    "40",
    "--null-keys",
    "1",
    "--entropies",
    "2",
)


@pytest.fixture(scope="module")
def shipped_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    rc, stdout, stderr = sg("eval", *SMALL, "--out", str(out))
    assert rc == 0, stderr
    return out, stdout, json.loads((out / "report.json").read_text())


def test_writes_json_markdown_and_plots(shipped_report):
    out, stdout, report = shipped_report
    for name in ("report.md", "roc.png", "tokens_to_detect.png", "attacks.png", "entropy.png"):
        assert (out / name).stat().st_size > 0, name
    assert "## Power, robustness and calibration" in (out / "report.md").read_text()
    assert "## Power, robustness and calibration" in stdout
    assert set(report["schemes"]) == {"gumbel", "kgw"}
    assert report["model"]["name"].startswith("safeguard evaluation LM")
    for png in ("roc.png", "attacks.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_contents(shipped_report):
    _, stdout, report = shipped_report
    gumbel = report["schemes"]["gumbel"]
    assert gumbel["distortion_free"] and not report["schemes"]["kgw"]["distortion_free"]
    # Every watermarked text is detected at 40 tokens on the shipped LM (its samples carry
    # several nats per token); the p-values are exact, so this is a power check, not luck.
    assert gumbel["tpr"][0]["k"] == gumbel["texts"] == 8
    assert gumbel["tokens_to_detect"]["clean"]["detected_share"] == 1.0
    # The null is checked on held-out human text at every level. With one key the count at
    # each level is Binomial(n, level) if calibrated; the check fails only on counts a
    # calibrated detector shows with probability < 1e-3 (one-sided), so a stray false
    # positive at 1e-4 (a 1% event with ~1,500 texts) is not read as miscalibration.
    from scipy import stats

    for scheme in ("gumbel", "kgw"):
        checks = report["null"][scheme]["checks"]
        assert [c["level"] for c in checks] == [1e-2, 1e-3, 1e-4]
        for c in checks:
            k, n, level = c["false_positives"], c["n"], c["level"]
            assert k == 0 or stats.binom.sf(k - 1, n, level) >= 1e-3, c
    # Normalisation undoes the homoglyph attack that breaks raw detection.
    normalised = report["attacks"]["homoglyphs 0.3"]["gumbel"]["tpr"][0]["rate"]
    raw = report["attacks"]["homoglyphs 0.3 (no normalisation)"]["gumbel"]["tpr"][0]["rate"]
    assert normalised == 1.0 and raw < normalised
    assert report["localization"]["human_documents_with_spans"] == 0
    assert "| gumbel | yes | 8 |" in stdout


def test_model_folder_is_loaded_with_from_pretrained(tmp_path):
    from safeguard.demo.tiny_lm import build_tiny_lm

    model_dir = build_tiny_lm(tmp_path / "lm")
    out = tmp_path / "out"
    rc, _, stderr = sg(
        "eval",
        *SMALL,
        "--model",
        str(model_dir),
        "--schemes",
        "gumbel",
        "--attacks",
        "substitute:0.3",
        "--entropies",
        "",
        "--out",
        str(out),
    )
    assert rc == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["name"] == str(model_dir)
    assert "entropy_sweep" not in report
    assert list(report["attacks"]) == ["substitute 0.3"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("--schemes", "gumbel,nope"), "unknown scheme"),
        (("--attacks", "shred:0.3"), "unknown attack"),
        (("--model", "/nonexistent/model"), "not a directory"),
        (("--threads", "0"), "at least 1"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, args, message):
    rc, _, stderr = sg("eval", "--quick", *args, "--out", str(tmp_path / "x"))
    assert rc == 2
    assert message in stderr
