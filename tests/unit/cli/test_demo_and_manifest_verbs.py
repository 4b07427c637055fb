"""``safeguard demo`` hands the demo the CLI's own entry point; ``safeguard manifest``'s
sub-verbs keep their options (no model, nothing run)."""

from __future__ import annotations

import contextlib
import io

import pytest

import safeguard.demo.run as demo_run
from safeguard.cli.main import build_parser, main
from safeguard.demo.summary import DemoSummary


@pytest.mark.parametrize("ok", [True, False])
def test_demo_verb_runs_the_demo_in_process_through_main(monkeypatch, tmp_path, ok) -> None:
    seen = {}

    def fake_run_demo(out_dir, *, notes, seed, echo, verbs):
        seen.update(out_dir=out_dir, notes=notes, seed=seed, verbs=verbs)
        echo("[1/9] a step ...")
        return DemoSummary(
            out_dir=str(out_dir),
            chain_verified=ok,
            tamper_detected=True,
            fpr=1e-4,
            watermarked_p_values=[1e-9],
            epsilon_spent=1.0,
            epsilon_budget=8.0,
        )

    monkeypatch.setattr(demo_run, "run_demo", fake_run_demo)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["demo", "--out", str(tmp_path), "--notes", "7", "--seed", "2"])
    assert rc == (0 if ok else 1)
    assert seen == {"out_dir": str(tmp_path), "notes": 7, "seed": 2, "verbs": main}
    assert err.getvalue() == "[1/9] a step ...\n"  # progress goes to stderr
    assert "provenance chain" in out.getvalue()  # the table goes to stdout


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["manifest", "dataset", "d.jsonl", "--out", "m.json", "--key", "k"], {"key": "k"}),
        (["manifest", "dataset", "d.jsonl", "-o", "m.json", "--signing-key", "k"], {"key": "k"}),
        (["manifest", "create", "scrub", "--subject", "a", "--output", "m"], {"output": "m"}),
        (["manifest", "sign", "m.json", "--key", "k", "-o", "n.json"], {"output": "n.json"}),
        (["manifest", "prove", "d.jsonl", "--index", "3"], {"output": None, "index": 3}),
        (["manifest", "export", "m", "--format", "croissant", "--out", "x"], {"output": "x"}),
        (["manifest", "verify", "m", "--chain"], {"threshold": 1, "chain": True}),
    ],
)
def test_manifest_sub_verbs_parse_as_before(argv, expected) -> None:
    args = vars(build_parser().parse_args(argv))
    assert {k: args[k] for k in expected} == expected


@pytest.mark.parametrize("verb", ["dataset", "create"])
def test_output_is_required_where_a_manifest_is_written(verb, capsys) -> None:
    argv = ["manifest", verb, "x"] + (["--subject", "a"] if verb == "create" else [])
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "-o/--out/--output" in capsys.readouterr().err


def test_the_old_key_option_stays_hidden(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["manifest", "sign", "--help"])
    help_text = capsys.readouterr().out
    assert "--signing-key" in help_text and "--key " not in help_text
