"""``gumbel`` context widths 1–4 with the context memory: diversity, power, robustness, per-key FPR.

A substitution breaks the keyed context of the next h tokens as well as its own token, so
under a share s of random substitutions about (1 − s)^(h+1) of the scored tokens keep
their watermark: 0.7^5 ≈ 17% at h = 4, 0.7^2 = 49% at h = 1. A narrower context costs in
three other places, which this script measures side by side on the shipped evaluation LM
(temperature 0.7, full-vocabulary sampling, 16-token prompts from held-out passages,
200 new tokens; seed 20261206, keys from fixed secrets):

1. diversity: self-BLEU-4 and distinct-4 of 64 texts (8 prompts × 8 samples) under one
   key, against plain sampling from the same prompts and torch seed (and a second plain
   seed for sampling noise), with :func:`quality.compare_self_bleu`'s permutation test
   (200 permutations, level 0.01); the same without the context memory for reference;
2. the unkeyed steps: a narrow context repeats more often, within a text (scored once,
   sampled without the watermark) and across texts (the context memory leaves a context
   an earlier text used to the model), so the share of keyed steps falls as one
   ``Watermarker`` generates more texts: a stream of 256 texts (256 distinct prompts) per
   width, in blocks of 64;
3. power and robustness, per block of the stream: median tokens to p ≤ 0.01 (prefixes
   5, 10, …, 200; never-detected texts count as beyond 200) with a 95% bootstrap interval;
   TPR at FPR 1e-2 of the first 150 tokens, clean and with 30% of them substituted
   (``attacks.substitute``, 45 of 150 positions, uniform random ids, the same rng seed for
   every width); median tokens to detect with 30% of all 200 tokens substituted;
4. per-key false positives on human text: 100 fixed keys × the first 1,000 held-out
   passages (16-token prompt + ≤ 200 tokens), per width, as in
   ``benchmarks/watermark_per_key.py`` (narrow contexts share more scored
   (context, token) pairs across texts, which correlates the texts under one key).

    python benchmarks/watermark_context_width.py [--widths 1,2,3,4] [--stream 256] [--block 64]
        [--keys 100] [--null-texts 1000] [--only-stream]

``--widths 3,4 --stream 1024 --block 256 --only-stream`` follows two widths over a longer
stream (prompts: 1,024 distinct held-out passages). Run from the repository root: the
per-key part imports ``benchmarks/watermark_per_key.py`` (the script's own folder is on
``sys.path``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

import numpy as np
import torch
import watermark_per_key as per_key  # benchmarks/watermark_per_key.py, next to this script

from safeguard.watermark import Watermarker, WatermarkKey
from safeguard.watermark.evaluation import attacks, lm, metrics, quality

SEED = 20261206
TEMPERATURE, NEW, PROMPT, BATCH = 0.7, 200, 16, 16
DIVERSITY_PROMPTS, SAMPLES_PER_PROMPT = 8, 8
SUBSTITUTION, SHORT = 0.30, 150
ALPHA = 0.01
LENGTHS = list(range(5, NEW + 1, 5))


def key(width: int, purpose: str, **params) -> WatermarkKey:
    secret = hashlib.sha256(f"context-width/{SEED}/{purpose}/{width}".encode()).digest()
    return WatermarkKey.from_secret(secret, "gumbel", context_width=width, **params)


def sample(model, prompts, wm: Watermarker | None, seed: int) -> list[np.ndarray]:
    return lm.sample(
        model,
        prompts,
        watermarker=wm,
        new_tokens=NEW,
        temperature=TEMPERATURE,
        seed=seed,
        batch_size=BATCH,
    )


def diversity(model, prompts, widths) -> dict[str, dict[str, float]]:
    """Self-BLEU of 8 prompts × 8 samples: plain (two seeds) and each width, memory on / off."""
    chosen = [p for p in prompts[:DIVERSITY_PROMPTS] for _ in range(SAMPLES_PER_PROMPT)]
    plain = sample(model, chosen, None, SEED + 1)
    plain2 = sample(model, chosen, None, SEED + 2)
    out = {
        "plain": {"self_bleu": quality.self_bleu(plain), "distinct": quality.distinct_n(plain, 4)}
    }
    test = quality.compare_self_bleu(plain2, plain, n_boot=200, seed=SEED)
    out["plain, second seed"] = {
        "self_bleu": test.mean_a,
        "distinct": quality.distinct_n(plain2, 4),
        "diff": test.difference,
        "p": test.p_value,
    }
    for width in widths:
        for memory in (True, False):
            params = {} if memory else {"context_memory": 0}
            wm = Watermarker(key(width, "diversity", **params))
            texts = sample(model, chosen, wm, SEED + 1)
            test = quality.compare_self_bleu(texts, plain, n_boot=200, seed=SEED)
            out[f"{width}{'' if memory else ' no memory'}"] = {
                "self_bleu": test.mean_a,
                "distinct": quality.distinct_n(texts, 4),
                "diff": test.difference,
                "p": test.p_value,
            }
        print(f"  diversity, width {width} done", flush=True)
    return out


def prefix_pvalues(wm: Watermarker, prompts, texts) -> np.ndarray:
    seqs = [t[:n] for t in texts for n in LENGTHS]
    ps = [p for p in prompts for _ in LENGTHS]
    res = wm.detect_batch(seqs, prompts=ps, false_positive_rate=ALPHA, num_threads=1)
    return np.array([r.p_value for r in res]).reshape(len(texts), len(LENGTHS))


def block_power(wm: Watermarker, prompts, texts, block_index: int, vocab: int) -> dict[str, object]:
    """Power and robustness of one block of the stream."""
    rng = np.random.default_rng([SEED, block_index])  # the same edits for every width
    short_sub = [
        attacks.substitute(t[:SHORT], SUBSTITUTION, vocab_size=vocab, rng=rng) for t in texts
    ]
    full_sub = [attacks.substitute(t, SUBSTITUTION, vocab_size=vocab, rng=rng) for t in texts]

    def pvals(seqs):
        res = wm.detect_batch(seqs, prompts=prompts, false_positive_rate=ALPHA, num_threads=1)
        return np.array([r.p_value for r in res])

    ttd = metrics.tokens_to_detect(prefix_pvalues(wm, prompts, texts), LENGTHS, ALPHA)
    ttd_sub = metrics.tokens_to_detect(prefix_pvalues(wm, prompts, full_sub), LENGTHS, ALPHA)
    return {
        "ttd": metrics.median_with_ci(ttd, seed=SEED),
        "ttd_sub": metrics.median_with_ci(ttd_sub, seed=SEED),
        "tpr": metrics.tpr_at_fpr(pvals([t[:SHORT] for t in texts]), (ALPHA,), seed=SEED)[0],
        "tpr_sub": metrics.tpr_at_fpr(pvals(short_sub), (ALPHA,), seed=SEED)[0],
        "median_p": float(np.median(pvals([t[:SHORT] for t in texts]))),
    }


def stream(model, prompts, width: int, count: int, block: int) -> list[dict[str, object]]:
    """``count`` texts under one Watermarker, in blocks: unkeyed shares and power per block."""
    wm = Watermarker(key(width, "stream"))
    memory = wm.scheme.memory
    blocks = []
    for b, start in enumerate(range(0, count, block)):
        chunk = [prompts[j % len(prompts)] for j in range(start, min(start + block, count))]
        before = (memory.lookups, memory.repeats)
        texts = sample(model, chunk, wm, SEED + 100 + b)
        lookups, repeats = memory.lookups - before[0], memory.repeats - before[1]
        steps = len(chunk) * NEW
        row = {
            "texts": f"{start + 1}–{start + len(chunk)}",
            "within": (steps - lookups) / steps,  # context repeated inside the text
            "memory": repeats / steps,  # context used by an earlier text
            "keyed": (lookups - repeats) / steps,
        }
        row.update(block_power(wm, chunk, texts, b, int(model.config.vocab_size)))
        blocks.append(row)
        print(f"  stream, width {width}: block {b + 1} done", flush=True)
    return blocks


def fmt_median(m: metrics.MedianEstimate) -> str:
    def one(x: float) -> str:
        return f"> {NEW}" if np.isinf(x) else f"{x:g}"

    return f"{one(m.median)} [{one(m.ci_low)}, {one(m.ci_high)}]"


def fmt_rate(r: metrics.RateEstimate) -> str:
    return f"{r.rate:.2f} ({r.k}/{r.n})"


def print_diversity(div: dict[str, dict[str, float]]) -> None:
    print(
        f"\nDiversity: {DIVERSITY_PROMPTS} prompts × {SAMPLES_PER_PROMPT} samples × {NEW} "
        f"tokens, T = {TEMPERATURE}; difference to plain sampling (seed {SEED + 1}) with its "
        "permutation p\n"
    )
    print("| sampling | self-BLEU-4 | distinct-4 | difference to plain | p |")
    print("|---|---|---|---|---|")
    for label, row in div.items():
        name = label if label.startswith("plain") else f"gumbel, width {label}"
        diff = f"{row['diff']:+.3f}" if "diff" in row else ""
        p = f"{row['p']:.2g}" if "p" in row else ""
        print(f"| {name} | {row['self_bleu']:.3f} | {row['distinct']:.3f} | {diff} | {p} |")


def print_streams(streams: dict[int, list[dict[str, object]]], count: int, block: int) -> None:
    print(
        f"\nStream: {count} texts under one Watermarker per width (default context memory), "
        f"blocks of {block}; unkeyed = share of steps sampled without the watermark (context "
        "repeated within the text · context used by an earlier text); TPR at FPR "
        f"{ALPHA:g} on the first {SHORT} tokens\n"
    )
    print(
        "| width | texts | keyed steps | unkeyed: within text · earlier text | "
        f"median tokens to p ≤ 0.01 | TPR, {SHORT} tokens | median p, {SHORT} tokens | "
        f"TPR, {SHORT} tokens, 30% substituted | median tokens, 30% substituted |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for w, blocks in streams.items():
        for r in blocks:
            print(
                f"| {w} | {r['texts']} | {r['keyed']:.1%} | {r['within']:.1%} · "
                f"{r['memory']:.1%} | {fmt_median(r['ttd'])} | {fmt_rate(r['tpr'])} | "
                f"{r['median_p']:.1g} | {fmt_rate(r['tpr_sub'])} | {fmt_median(r['ttd_sub'])} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="1,2,3,4")
    parser.add_argument("--stream", type=int, default=256, help="texts per width in the stream")
    parser.add_argument("--keys", type=int, default=100, help="fixed keys for the per-key FPR")
    parser.add_argument("--null-texts", type=int, default=1000, help="human passages per key")
    parser.add_argument("--block", type=int, default=64, help="texts per block of the stream")
    parser.add_argument(
        "--only-stream", action="store_true", help="skip the diversity and per-key parts"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    widths = [int(w) for w in args.widths.split(",")]
    model, tok = lm.load_eval_lm()
    prompts = [
        np.asarray(tok(p, add_special_tokens=False)["input_ids"][:PROMPT], dtype=np.int64)
        for p in lm.prompts(max(args.stream, DIVERSITY_PROMPTS), tokens=PROMPT, seed=SEED)
    ]

    div: dict[str, dict[str, float]] = {}
    null: dict[int, tuple[list[dict[str, float]], tuple[float, float, float]]] = {}
    if not args.only_stream:
        t0 = time.perf_counter()
        div = diversity(model, prompts, widths)
        print(f"diversity: {time.perf_counter() - t0:.0f} s", flush=True)
    t0 = time.perf_counter()
    streams = {w: stream(model, prompts, w, args.stream, args.block) for w in widths}
    print(f"streams: {time.perf_counter() - t0:.0f} s", flush=True)
    if not args.only_stream:
        t0 = time.perf_counter()
        human = per_key.human_corpus(args.null_texts)
        for w in widths:
            p = per_key.pvalues(per_key.fixed_keys(args.keys, context_width=w), human)
            null[w] = (per_key.spread_rows(p), per_key.overlap_stats(human, w))
        print(f"per-key null: {time.perf_counter() - t0:.0f} s", flush=True)

    if div:
        print_diversity(div)
    print_streams(streams, args.stream, args.block)
    if null:
        print(
            f"\nPer-key false positives: {args.keys} fixed keys × {args.null_texts} held-out "
            "human passages (16-token prompt + ≤ 200 tokens)\n"
        )
        print(per_key.HEADER)
        for w, (rows, overlap) in null.items():
            print("\n".join(per_key.format_rows("human", w, rows, overlap)))
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
