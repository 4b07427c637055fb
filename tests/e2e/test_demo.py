"""`safeguard demo`: the whole healthcare story runs end to end and every claim in its table holds."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from safeguard.cli.main import main


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        rc = main(["demo", "--out", str(out), "--notes", "40"])
    assert rc == 0, buf.getvalue() + err.getvalue()[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] and summary["chain_verified"] and summary["tamper_detected"]
    assert summary["pii_found"] > 100 and summary["measured_recall"] >= 0.95
    assert summary["epsilon_spent"] <= summary["epsilon_budget"]
    assert all(p <= summary["fpr"] for p in summary["watermarked_p_values"])
    assert (
        sum(p <= summary["fpr"] for p in summary["plain_p_values"]) <= 1
    )  # 2+ false flags: p ~ 3e-7
    for artifact in (
        "data/clean_notes.jsonl",
        "data/scrub_report.json",
        "model-dp/privacy_ledger.jsonl",
        "model-dp/privacy_report.json",
        "generations.jsonl",
        "manifests/generation.json",
        "manifests/training.json",
        "manifests/scrub.json",
        "manifests/raw.dataset.json",
    ):
        assert (out / artifact).exists(), artifact
    table = buf.getvalue()
    assert "provenance chain" in table and "verified" in table
    # raw identifiers from the fictional notes do not survive scrubbing
    raw = [
        json.loads(x)["text"] for x in (out / "data" / "raw_notes.jsonl").read_text().splitlines()
    ]
    clean = (out / "data" / "clean_notes.jsonl").read_text()
    labels = [
        json.loads(x) for x in (out / "data" / "raw_notes.labels.jsonl").read_text().splitlines()
    ]
    leaked = [
        text[s["start"] : s["end"]]
        for text, lab in zip(raw, labels, strict=True)
        for s in lab["spans"]
        if len(text[s["start"] : s["end"]]) >= 6 and text[s["start"] : s["end"]] in clean
    ]
    assert len(leaked) <= 0.02 * sum(len(lab["spans"]) for lab in labels), leaked[:10]
