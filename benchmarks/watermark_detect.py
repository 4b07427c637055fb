"""Detection throughput of the gumbel scheme on 200-token texts (issue target: >= 2,000 texts/s on 2 cores).

Side by side in one run, on the same texts and key:
  * a straightforward detector: a Python loop over tokens, one PRF call per token
    (how per-token reference implementations score),
  * ``Watermarker.detect`` one text at a time (vectorised within a text),
  * ``Watermarker.detect_batch`` with 1 and 2 threads (one PRF pass per batch).

Run: .venv/bin/python benchmarks/watermark_detect.py [--texts 4000] [--length 200]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy import special

from safeguard.watermark import ShortTextWarning, Watermarker, WatermarkKey, prf


def straightforward(wm: Watermarker, tokens: np.ndarray) -> float:
    """Per-token loop: hash each context, read one uniform, deduplicate with a set."""
    scheme = wm.scheme
    h = scheme.config.context_width
    seen, score, n = set(), 0.0, 0
    for t in range(h, len(tokens)):
        a, b = prf.context_words(scheme.context_key, tokens[t - h : t][None, :])
        pair = (int(a[0]), int(b[0]))
        if pair in seen:
            continue
        seen.add(pair)
        u = prf.uniforms(scheme.token_key, a, b, tokens[t : t + 1])[0]
        score += -np.log1p(-u)
        n += 1
    return float(special.gammaincc(n, score))


def rate(fn, count: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--length", type=int, default=200)
    args = parser.parse_args()
    warnings.simplefilter("ignore", ShortTextWarning)
    rng = np.random.default_rng(0)
    wm = Watermarker(WatermarkKey.generate("gumbel"))
    texts = [rng.integers(0, 50257, args.length) for _ in range(args.texts)]

    few = texts[:50]
    rows = [
        (
            "straightforward per-token loop",
            rate(lambda: [straightforward(wm, t) for t in few], len(few), 1),
        ),
        (
            "Watermarker.detect, one text at a time",
            rate(lambda: [wm.detect(t) for t in texts[:1000]], 1000),
        ),
        (
            "Watermarker.detect_batch, 1 thread",
            rate(lambda: wm.detect_batch(texts, num_threads=1), len(texts)),
        ),
        (
            "Watermarker.detect_batch, 2 threads",
            rate(lambda: wm.detect_batch(texts, num_threads=2), len(texts)),
        ),
    ]
    base = rows[0][1]
    print(
        f"gumbel detection, {args.length}-token texts, vocabulary 50,257, {args.texts} texts (best of 3)\n"
    )
    print("| detector | texts/s | vs straightforward |")
    print("|---|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r:,.0f} | {r / base:,.0f}x |")


if __name__ == "__main__":
    main()
