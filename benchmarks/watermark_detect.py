"""Detection throughput of the gumbel scheme on 200-token texts (target: >= 2,000 texts/s, one thread).

Side by side in one run, on the same texts, for a key of PRF version 1 (Philox row seed +
SplitMix64 words, the construction before issue 14) and one of version 2 (AES-128 per
(context, token) block):
  * a straightforward detector: a Python loop over tokens, one PRF call per token
    (how per-token reference implementations score),
  * ``Watermarker.detect`` one text at a time (vectorised within a text),
  * ``Watermarker.detect_batch`` with 1 and 2 threads (one PRF pass per batch).

Repeats are interleaved (every repeat times every detector under both keys, in turn) and
each cell is the best of the repeats.

Run: .venv/bin/python benchmarks/watermark_detect.py [--texts 4000] [--length 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections.abc import Callable

import numpy as np
from scipy import special

from safeguard.watermark import ShortTextWarning, Watermarker, WatermarkKey, prf
from safeguard.watermark.keys import LegacyPRFWarning

TARGET = 2000.0


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


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore", ShortTextWarning)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}; load average at start {load()}"
    )
    rng = np.random.default_rng(0)
    texts = [rng.integers(0, 50257, args.length) for _ in range(args.texts)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LegacyPRFWarning)
        v1 = Watermarker(WatermarkKey.from_secret(os.urandom(32), "gumbel", prf_version=1))
    v2 = Watermarker(WatermarkKey.generate("gumbel"))
    keys = {"v1": v1, "v2": v2}

    few, some = texts[:50], texts[:1000]
    detectors: list[tuple[str, int, Callable[[Watermarker], object]]] = [
        (
            "straightforward per-token loop",
            len(few),
            lambda wm: [straightforward(wm, t) for t in few],
        ),
        (
            "`Watermarker.detect`, one text at a time",
            len(some),
            lambda wm: [wm.detect(t) for t in some],
        ),
        (
            "`Watermarker.detect_batch`, 1 thread",
            len(texts),
            lambda wm: wm.detect_batch(texts, num_threads=1),
        ),
        (
            "`Watermarker.detect_batch`, 2 threads",
            len(texts),
            lambda wm: wm.detect_batch(texts, num_threads=2),
        ),
    ]
    # both keys give the same kind of answer on these unwatermarked texts
    for wm in keys.values():
        assert len(wm.detect_batch(texts[:10], num_threads=1)) == 10

    best = {(name, v): float("inf") for name, _, _ in detectors for v in keys}
    started = time.perf_counter()
    for r in range(args.repeats):
        order = list(keys) if r % 2 == 0 else list(reversed(keys))
        for name, count, fn in detectors:
            if name.startswith("straightforward") and r >= 2:
                continue  # ~10 s per repeat: two are enough
            for v in order:
                t0 = time.perf_counter()
                fn(keys[v])
                best[name, v] = min(best[name, v], (time.perf_counter() - t0) / count)
    print(
        f"\ngumbel detection, {args.length}-token texts, vocabulary 50,257, {args.texts} texts, "
        f"best of {args.repeats} interleaved repeats ({time.perf_counter() - started:.0f} s; "
        f"load average at the end {load()})\n"
    )
    print("| detector | PRF v1 texts/s | PRF v2 texts/s | v2 / v1 |")
    print("|---|---:|---:|---:|")
    for name, _, _ in detectors:
        r1, r2 = 1 / best[name, "v1"], 1 / best[name, "v2"]
        print(f"| {name} | {r1:,.0f} | {r2:,.0f} | {r2 / r1:.2f} |")
    one_thread = 1 / best["`Watermarker.detect_batch`, 1 thread", "v2"]
    print(
        f"\nPRF v2, detect_batch on one thread: {one_thread:,.0f} texts/s "
        f"(target ≥ {TARGET:,.0f}: {'met' if one_thread >= TARGET else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
