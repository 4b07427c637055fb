from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from safeguard.provenance import (
    PrivateKey,
    dataset_predicate,
    dataset_root,
    generate_keypair,
    generation_predicate,
    scrub_predicate,
    training_predicate,
    write_manifest,
)
from safeguard.provenance.digest import digest_directory, sha256_file


@dataclass
class Run:
    dir: Path
    key: PrivateKey
    key_path: Path
    pub_path: Path
    raw: Path
    clean: Path
    model: Path
    text: Path
    raw_manifest: Path
    scrub_manifest: Path
    training_manifest: Path
    generation_manifest: Path


def ledger_lines(n: int) -> list[str]:
    """``n`` hand-built ledger entries (JSON lines with ``index``, ``prev`` and ``hash``)."""
    lines, prev = [], "0" * 64
    for i in range(n):
        body = {"index": i, "kind": "run_start" if i == 0 else "step", "prev": prev}
        body["hash"] = prev = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        lines.append(json.dumps(body, sort_keys=True))
    return lines


def build_run(
    root: Path,
    *,
    epsilon_spent: float = 6.5,
    scrub_policy: str = "healthcare-hipaa",
    watermark: dict | None = None,
    sign: bool = True,
    ledger_entries: int | None = None,
    dp_seed: int | None = None,
) -> Run:
    """A whole healthcare run as plain files: raw -> scrubbed -> model -> text, with manifests.

    With ``ledger_entries``, the model folder holds a hand-built ``privacy_ledger.jsonl`` of
    that many entries and the training manifest records its anchor (``entries``/``head``).
    """
    root.mkdir(parents=True, exist_ok=True)
    key_path = root / "keys" / "signing.pem"
    key_path.parent.mkdir()
    key = generate_keypair(key_path)
    signing = key if sign else None
    raw = root / "raw.jsonl"
    raw.write_text(
        '{"text": "Pt Jane Roe (fictional), MRN 000123, seen 2024-01-02."}\n'
        '{"text": "Follow-up for Jane Roe (fictional) at 555-0100."}\n'
    )
    clean = root / "clean.jsonl"
    clean.write_text(
        '{"text": "Pt <PERSON>, MRN <MEDICAL_RECORD_NUMBER>, seen <DATE_TIME>."}\n'
        '{"text": "Follow-up for <PERSON> at <PHONE_NUMBER>."}\n'
    )
    n, mroot = dataset_root(raw)
    raw_manifest = write_manifest(
        "dataset",
        [raw],
        dataset_predicate(
            name="raw-notes", record_count=n, merkle_root=mroot, licenses=["CC0-1.0"]
        ),
        root / "raw.dataset.json",
        signing,
    )
    scrub_manifest = write_manifest(
        "scrub",
        [clean],
        scrub_predicate(
            policy_name=scrub_policy,
            inputs=[("raw.jsonl", sha256_file(raw))],
            outputs=[("clean.jsonl", sha256_file(clean))],
            entity_counts={
                "PERSON": 2,
                "MEDICAL_RECORD_NUMBER": 1,
                "DATE_TIME": 1,
                "PHONE_NUMBER": 1,
            },
            quarantined=0,
            records_in=2,
            records_out=2,
        ),
        root / "scrub.json",
        signing,
    )
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text('{"n_layer": 2}')
    (model / "model.safetensors").write_bytes(bytes(range(256)) * 8)
    anchor: dict = {}
    if ledger_entries is not None:
        lines = ledger_lines(ledger_entries)
        (model / "privacy_ledger.jsonl").write_text("".join(line + "\n" for line in lines))
        head = json.loads(lines[-1])["hash"] if lines else "0" * 64
        anchor = {"entries": ledger_entries, "head": head}
    training_manifest = write_manifest(
        "training",
        [model],
        training_predicate(
            dp_config={
                "target_epsilon": 8.0,
                "target_delta": 1e-5,
                "max_grad_norm": 1.0,
                "noise_multiplier": 1.0,
                "seed": dp_seed,
            },
            datasets=[("clean.jsonl", sha256_file(clean))],
            base_model=("tiny-gpt2", "c" * 64),
            ledger={
                "epsilon_spent": epsilon_spent,
                "delta": 1e-5,
                "accountant": "prv",
                "steps": 12,
                "seeded_noise": dp_seed is not None,
                **anchor,
            },
        ),
        root / "training.json",
        signing,
    )
    text = root / "generations.jsonl"
    text.write_text('{"text": "a generated sentence"}\n')
    wm = (
        {"scheme": "gumbel", "key_id": "wm-key-0001", "params": {"context_width": 4}}
        if watermark is None
        else watermark
    )
    generation_manifest = write_manifest(
        "generation",
        [text],
        generation_predicate(model=("model", digest_directory(model).sha256), watermark=wm or None),
        root / "generation.json",
        signing,
    )
    return Run(
        dir=root,
        key=key,
        key_path=key_path,
        pub_path=key_path.with_name("signing.pem.pub"),
        raw=raw,
        clean=clean,
        model=model,
        text=text,
        raw_manifest=raw_manifest,
        scrub_manifest=scrub_manifest,
        training_manifest=training_manifest,
        generation_manifest=generation_manifest,
    )


@pytest.fixture
def run(tmp_path) -> Run:
    return build_run(tmp_path / "run")


@pytest.fixture
def cli(monkeypatch, capsys):
    """Call the real `safeguard` entry point in-process; returns (exit code, stdout, stderr)."""
    from safeguard.cli import main as cli_main

    def call(*argv: str) -> tuple[int, str, str]:
        code = cli_main.main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


@pytest.fixture
def make_run():
    """The `build_run` factory, for tests that need a variant of the run."""
    return build_run
