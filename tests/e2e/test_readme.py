"""Every code snippet in README.md runs.

Python blocks run in order in one namespace, after a preamble that provides what a reader
already has: ``model``, ``tokenizer``, ``inputs``, ``train_loader`` and ``MODEL_DIR`` (a tiny
GPT-2 built offline). Bash blocks run in order in one scratch folder with ``$MODEL_DIR`` set,
``notes.jsonl`` present and ``.venv`` pointing at this interpreter's environment. A block
preceded by ``<!-- not run by the tests: ... -->`` says why it is skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"
BLOCK = re.compile(r"(<!-- not run by the tests[^>]*-->\s*)?```(python|bash)\n(.*?)```", re.S)


def blocks(lang: str) -> list[str]:
    return [
        m.group(3)
        for m in BLOCK.finditer(README.read_text())
        if m.group(2) == lang and not m.group(1)
    ]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from safeguard.demo.tiny_lm import build_tiny_lm
    from safeguard.pii.synthetic import generate_examples

    root = tmp_path_factory.mktemp("readme")
    model_dir = build_tiny_lm(root / "model")
    examples = generate_examples(60, seed=3)
    with open(root / "notes.jsonl", "w", encoding="utf-8") as fh:
        for i in range(30):
            text = " ".join(ex.text for ex in examples[2 * i : 2 * i + 2])
            fh.write(json.dumps({"patient_id": f"P{i % 10}", "text": text}) + "\n")
    (root / ".venv").symlink_to(Path(sys.prefix))
    return root, model_dir


@pytest.mark.slow
def test_readme_bash_blocks(workspace):
    root, model_dir = workspace
    env = {**os.environ, "MODEL_DIR": str(model_dir)}
    for block in blocks("bash"):
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, (
            f"{block}\n--- stdout\n{proc.stdout[-2000:]}\n--- stderr\n{proc.stderr[-3000:]}"
        )


@pytest.mark.slow
def test_readme_python_blocks(workspace, monkeypatch):
    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, model_dir = workspace
    monkeypatch.chdir(root)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    enc = tokenizer(
        ["The river rose", "Patient is"], padding="max_length", max_length=12, return_tensors="pt"
    )
    records = [
        {
            "input_ids": enc["input_ids"][i % 2],
            "attention_mask": enc["attention_mask"][i % 2],
            "labels": enc["input_ids"][i % 2].masked_fill(enc["attention_mask"][i % 2] == 0, -100),
        }
        for i in range(64)
    ]
    if not (root / "key.json").exists():
        from safeguard.watermark import WatermarkKey

        WatermarkKey.generate("gumbel").bind(tokenizer).save(root / "key.json")
    namespace = {
        "model": model,
        "tokenizer": tokenizer,
        "inputs": tokenizer(["The river rose"], return_tensors="pt"),
        "train_loader": DataLoader(records, batch_size=8),
        "MODEL_DIR": str(model_dir),
        "torch": torch,
    }
    for block in blocks("python"):
        exec(compile(block, "README.md", "exec"), namespace)
