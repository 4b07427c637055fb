"""The ``safeguard demo`` main job, on embedded defaults.

Today it runs the watermark round trip end to end, offline:

    bundled corpus ─► tokenizer + tiny GPT-2 (save_pretrained)
                   ─► key (bound to the tokenizer, 0600)
                   ─► watermarked and plain generations (JSONL)
                   ─► model-free detection ─► summary table + summary.json

Every artifact is written to the output folder.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["DemoSummary", "format_table", "run_demo"]

log = logging.getLogger(__name__)

PROMPTS = [
    "The river rose",
    "Patient is a fictional adult",
    "A small library",
    "The committee met",
    "Fishing boats returned",
    "History of present illness:",
    "The museum opened",
    "Students gathered",
]


@dataclass(frozen=True)
class DemoSummary:
    """What the demo measured. p-values are per text; ``flagged_*`` count texts at ``fpr``."""

    out_dir: str
    key_id: str
    scheme: str
    fpr: float
    watermarked_p_values: list[float]
    plain_p_values: list[float]
    flagged_watermarked: int
    flagged_plain: int
    seconds: float


def run_demo(
    out_dir: str | Path = "safeguard-demo",
    *,
    scheme: str = "gumbel",
    max_new_tokens: int = 96,
    fpr: float = 1e-3,
    seed: int = 0,
) -> DemoSummary:
    """Run the demo and write its artifacts to ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from safeguard.demo.tiny_lm import build_tiny_lm
    from safeguard.watermark import Watermarker, WatermarkKey

    hf_logging.disable_progress_bar()
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = build_tiny_lm(out / "model", seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()

    key = WatermarkKey.generate(scheme).bind(tokenizer)
    key.save(out / "watermark-key.json", overwrite=True)
    wm = Watermarker(key)

    torch.manual_seed(seed)
    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    width = enc["input_ids"].shape[1]
    common = {
        **enc,
        "do_sample": True,
        "max_new_tokens": max_new_tokens,
        "min_new_tokens": max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
    }
    with torch.no_grad():
        marked = wm.generate(model, **common)
        plain = model.generate(**common)

    records = []
    p_marked, p_plain = [], []
    for kind, batch, sink in (("watermarked", marked, p_marked), ("plain", plain, p_plain)):
        for prompt, row in zip(PROMPTS, batch, strict=True):
            text = tokenizer.decode(row[width:], skip_special_tokens=True)
            result = wm.detect_text(text, tokenizer, prompt=prompt, false_positive_rate=fpr)
            sink.append(result.p_value)
            records.append(
                {"kind": kind, "prompt": prompt, "text": text, "detection": result.to_dict()}
            )
    with open(out / "generations.jsonl", "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    summary = DemoSummary(
        out_dir=str(out),
        key_id=key.key_id,
        scheme=scheme,
        fpr=fpr,
        watermarked_p_values=p_marked,
        plain_p_values=p_plain,
        flagged_watermarked=sum(p <= fpr for p in p_marked),
        flagged_plain=sum(p <= fpr for p in p_plain),
        seconds=time.perf_counter() - start,
    )
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
    return summary


def format_table(summary: DemoSummary) -> str:
    """A plain-text summary table."""

    def med(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[len(ordered) // 2]

    rows = [
        ("step", "result"),
        ("model", "tiny GPT-2 + BPE tokenizer, built offline, loaded with from_pretrained"),
        ("watermark key", f"{summary.key_id} ({summary.scheme}), file mode 0600"),
        (
            "watermarked texts",
            f"{summary.flagged_watermarked}/{len(summary.watermarked_p_values)} flagged at FPR {summary.fpr:g}; median p = {med(summary.watermarked_p_values):.2e}",
        ),
        (
            "plain texts",
            f"{summary.flagged_plain}/{len(summary.plain_p_values)} flagged at FPR {summary.fpr:g}; median p = {med(summary.plain_p_values):.2f}",
        ),
        ("artifacts", summary.out_dir),
        ("time", f"{summary.seconds:.1f} s"),
    ]
    width = max(len(a) for a, _ in rows)
    lines = [f"{a.ljust(width)} | {b}" for a, b in rows]
    lines.insert(1, "-" * width + "-+-" + "-" * max(len(b) for _, b in rows))
    return "\n".join(lines)
