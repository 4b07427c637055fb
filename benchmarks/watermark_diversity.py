"""Cross-text diversity (self-BLEU) under one watermark key, and what keeping it costs.

A distortion-free scheme samples each text exactly as the model would, over random keys.
Texts generated under one fixed key share that key, though: wherever two texts reach the
same ``h``-token context, ``gumbel`` without a context memory draws the same uniforms and
tends to pick the same next token, so shared phrases run on and self-BLEU across texts
rises. ``exp``/``exp-edit`` read one cyclic key sequence of ``key_len`` positions from a
random shift, so texts overlap on key positions unless ``key_len`` is much longer than a
text. The script measures, on the shipped evaluation LM (64 prompts from held-out human
passages × 200 new tokens at temperature 0.7; self-BLEU-4 and distinct-4 over the 64
texts):

1. diversity: plain sampling (two seeds, for sampling noise); gumbel with its default
   context memory, without it (``context_memory=0``) at widths 4 and 8; exp-edit at several
   ``key_len``;
2. the price: the share of gumbel steps the memory leaves unkeyed, and detection of the
   texts at FPR 1e-3, over a stream of texts under one key in blocks of 64, for two memory
   sizes; exp-edit's detection time per text (T = 999 null keys) at each ``key_len``.

    python benchmarks/watermark_diversity.py [--stream 512] [--memory 65536,1048576]
"""

from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np
import torch

from safeguard.watermark import Watermarker, WatermarkKey
from safeguard.watermark.evaluation import lm, quality

TEXTS, NEW, PROMPT, BATCH, TEMPERATURE = 64, 200, 16, 16, 0.7


def key(scheme: str = "gumbel", index: int = 0, **params) -> WatermarkKey:
    secret = hashlib.sha256(f"diversity/{scheme}/{index}".encode()).digest()
    return WatermarkKey.from_secret(secret, scheme, **params)


def sample(
    model, prompts, wm: Watermarker | None, seed: int, start: int, count: int
) -> list[list[int]]:
    """``count`` continuations of prompts ``start..start+count`` (cycling), in batches of 16."""
    chosen = [prompts[j % len(prompts)] for j in range(start, start + count)]
    texts = lm.sample(
        model,
        chosen,
        watermarker=wm,
        new_tokens=NEW,
        temperature=TEMPERATURE,
        seed=seed,
        batch_size=BATCH,
    )
    return [t.tolist() for t in texts]


def diversity(model, prompts, exp_detect: int) -> None:
    print(f"{TEXTS} texts × {NEW} tokens, temperature {TEMPERATURE}, shipped evaluation LM\n")
    print("| sampling | self-BLEU-4 | distinct-4 |")
    print("|---|---|---|")
    cases = [
        ("plain sampling, seed 1", None, 1),
        ("plain sampling, seed 2", None, 2),
        ("gumbel, one key (default: context memory on, width 4)", key(), 3),
        ("gumbel, one key, no context memory, width 4", key(context_memory=0), 4),
        ("gumbel, one key, no context memory, width 8", key(context_memory=0, context_width=8), 5),
    ]
    exp_keys = {n: key("exp-edit", key_len=n) for n in (256, 1024, 4096)}
    cases += [(f"exp-edit, one key, key_len {n}", k, 6) for n, k in exp_keys.items()]
    exp_texts: dict[int, list[list[int]]] = {}
    for label, k, seed in cases:
        texts = sample(model, prompts, Watermarker(k) if k else None, seed, 0, TEXTS)
        if k is not None and k.scheme == "exp-edit":
            exp_texts[k.params["key_len"]] = texts
        print(
            f"| {label} | {quality.self_bleu(texts):.3f} | {quality.distinct_n(texts, 4):.3f} |",
            flush=True,
        )
    if exp_detect <= 0:
        return
    print("\nexp-edit detection per text (T = 999 null keys, 1 thread)\n")
    print("| key_len | s / text | p-values |")
    print("|---:|---:|---|")
    for n, texts in exp_texts.items():
        wm = Watermarker(exp_keys[n])
        t0 = time.perf_counter()
        ps = [wm.detect(t, resolution=1e-3).p_value for t in texts[:exp_detect]]
        per = (time.perf_counter() - t0) / len(ps)
        print(f"| {n} | {per:.2f} | {', '.join(f'{p:.3g}' for p in ps)} |", flush=True)


def stream(model, prompts, count: int, sizes: list[int]) -> None:
    print(
        f"\ngumbel stream: {count} texts under one key (prompts cycle through "
        f"{len(prompts)} held-out passages); per block: share of steps the memory left "
        "unkeyed · share detected at FPR 1e-3 · median p\n"
    )
    print("| texts | " + " | ".join(f"context_memory {m:,}" for m in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    rows: dict[int, list[str]] = {}
    for size in sizes:
        wm = Watermarker(key(index=1, context_memory=size))
        memory = wm.scheme.memory
        for block in range(0, count, TEXTS):
            before = (memory.lookups, memory.repeats)
            texts = sample(model, prompts, wm, 100 + block, block, min(TEXTS, count - block))
            lookups, repeats = memory.lookups - before[0], memory.repeats - before[1]
            ps = np.array([r.p_value for r in wm.detect_batch(texts, false_positive_rate=1e-3)])
            rows.setdefault(block, []).append(
                f"{repeats / max(lookups, 1):.1%} · {np.mean(ps <= 1e-3):.2f} · {np.median(ps):.1g}"
            )
            print(f"  memory {size}: block {block // TEXTS + 1} done", flush=True)
    for block, cells in rows.items():
        print(f"| {block + 1}–{min(block + TEXTS, count)} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", type=int, default=512, help="texts in the gumbel stream")
    parser.add_argument(
        "--exp-detect", type=int, default=3, help="exp-edit texts timed per key_len"
    )
    parser.add_argument(
        "--memory", default="65536,1048576", help="context_memory sizes of the gumbel stream"
    )
    parser.add_argument("--only-stream", action="store_true", help="skip the diversity table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tok = lm.load_eval_lm()
    total = min(max(TEXTS, args.stream), len(lm.human_texts()))
    prompts = [
        tok(p, add_special_tokens=False)["input_ids"][:PROMPT] for p in lm.prompts(total, seed=0)
    ]
    started = time.perf_counter()
    if not args.only_stream:
        diversity(model, prompts, args.exp_detect)
    stream(model, prompts, args.stream, [int(x) for x in args.memory.split(",")])
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
