"""Generation overhead of safeguard's watermarks vs plain sampling, KGW and SynthID-Text.

Side by side in one run, on randomly initialised GPT-2 models built here from a
``GPT2Config`` (vocabulary 50,257, nothing downloaded):

* ``small``: 2 layers, n_embd 128 (~7M parameters, most of them the embedding);
* ``gpt2-124M``: 12 layers, n_embd 768, 12 heads (GPT-2 small's shape, ~124M).

For each model, batch size (1, 4) and sampling mode (full vocabulary ``top_k=0``,
and ``top_k=50``), it times ``model.generate`` with the same prompts and
``max_new_tokens`` under:

* ``plain``: ordinary multinomial sampling (the baseline);
* ``gumbel``, ``exp``, ``exp-edit``: ``Watermarker(key).generate(model, ...)``;
* ``kgw``: ``transformers.WatermarkingConfig(greenlist_ratio=0.25, bias=2.0)``;
* ``synthid``: ``transformers.SynthIDTextWatermarkingConfig`` with 30 keys
  (tournament depth m = 30) and ``ngram_len=5``.

Repeats are interleaved (every repeat runs every method once, in a rotating
order) after one warm-up call per method and model; the table reports the median
time per generated token and the ratio of medians to ``plain``. SynthID's processor
costs far more than a forward pass here, so it is timed in a separate interleaved
pair (``plain`` vs ``synthid``, same prompts) with 8 new tokens and one repeat by
default. End-of-sequence stopping is
disabled so every call generates exactly ``max_new_tokens`` tokens.

A second table times the watermark logits processors alone on ``(batch, 50257)``
scores (no model), which separates their per-step cost from the forward pass.

Run:  python benchmarks/watermark_generate.py [--repeats-small 9] [--repeats-large 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import platform
import pstats
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    SynthIDTextWatermarkingConfig,
    WatermarkingConfig,
)

from safeguard.watermark import Watermarker, WatermarkKey

VOCAB = 50_257
PROMPT_LEN = 16
TARGET = 1.10
SCHEMES = ("gumbel", "exp", "exp-edit")
MAIN_METHODS = ("plain", *SCHEMES, "kgw")
METHODS = (*MAIN_METHODS, "synthid")
SYNTHID_TOKENS = 8


@dataclass(frozen=True)
class ModelSpec:
    name: str
    n_layer: int
    n_embd: int
    n_head: int
    max_new_tokens: int


SMALL = ModelSpec("small", 2, 128, 2, 64)
LARGE = ModelSpec("gpt2-124M", 12, 768, 12, 24)


def build_model(spec: ModelSpec, seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=1024,
        n_layer=spec.n_layer,
        n_embd=spec.n_embd,
        n_head=spec.n_head,
    )
    model = GPT2LMHeadModel(config).eval()
    # No end-of-sequence stop: every call generates exactly max_new_tokens tokens.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def synthid_config(seed: int) -> SynthIDTextWatermarkingConfig:
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randint(0, 2**20, (30,), generator=gen).tolist()
    return SynthIDTextWatermarkingConfig(ngram_len=5, keys=keys)


def make_runners(
    model: GPT2LMHeadModel, inputs: dict[str, torch.Tensor], top_k: int, max_new_tokens: int
) -> dict[str, Callable[[], torch.Tensor]]:
    common = dict(inputs, do_sample=True, top_k=top_k, max_new_tokens=max_new_tokens)
    watermarkers = {s: Watermarker(WatermarkKey.generate(s)) for s in SCHEMES}
    kgw = WatermarkingConfig(greenlist_ratio=0.25, bias=2.0)
    synthid = synthid_config(1)

    runners: dict[str, Callable[[], torch.Tensor]] = {
        "plain": lambda: model.generate(**common),
        "kgw": lambda: model.generate(**common, watermarking_config=kgw),
        "synthid": lambda: model.generate(**common, watermarking_config=synthid),
    }
    for s, wm in watermarkers.items():
        # Every timed call starts with an empty context memory (gumbel), so every step is
        # keyed: the repeats reuse one prompt, and remembered contexts would skip the draw.
        runners[s] = lambda wm=wm: (wm.clear_context_memory(), wm.generate(model, **common))[1]
    return runners


def time_config(
    model: GPT2LMHeadModel,
    batch: int,
    top_k: int,
    max_new_tokens: int,
    repeats: int,
    seed: int,
    methods: tuple[str, ...],
    warm_up: bool,
) -> dict[str, float]:
    """Median seconds per generated token (per sequence step) for each of ``methods``."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (batch, PROMPT_LEN), generator=gen)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    runners = make_runners(model, inputs, top_k, max_new_tokens)
    times: dict[str, list[float]] = {m: [] for m in methods}
    if warm_up:
        for m in methods:
            out = runners[m]()
            assert out.shape == (batch, PROMPT_LEN + max_new_tokens), (m, out.shape)
    for r in range(repeats):
        order = methods[r % len(methods) :] + methods[: r % len(methods)]
        for m in order:
            t0 = time.perf_counter()
            runners[m]()
            times[m].append(time.perf_counter() - t0)
    return {m: statistics.median(v) / max_new_tokens for m, v in times.items()}


def processor_costs(repeats: int = 30) -> list[tuple[str, int, str, float]]:
    """Per-call cost of each watermark processor alone on random (batch, V) scores (ms)."""
    rows = []
    for top_k in (0, 50):
        for batch in (1, 4):
            scores = torch.randn(batch, VOCAB)
            if top_k:
                kth = scores.topk(top_k, dim=1).values[:, -1:]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            procs = {
                s: Watermarker(WatermarkKey.generate(s)).watermarking_config() for s in SCHEMES
            }
            procs["kgw"] = WatermarkingConfig(greenlist_ratio=0.25, bias=2.0)
            procs["synthid"] = synthid_config(1)
            for name, cfg in procs.items():
                proc = cfg.construct_processor(VOCAB, torch.device("cpu"))
                ids = torch.randint(0, VOCAB, (batch, PROMPT_LEN))
                proc(ids, scores)
                n = max(2, repeats // 10) if name == "synthid" else repeats
                t0 = time.perf_counter()
                for _ in range(n):
                    ids = torch.cat([ids, torch.randint(0, VOCAB, (batch, 1))], dim=1)
                    proc(ids, scores)
                rows.append((f"top_k={top_k}", batch, name, (time.perf_counter() - t0) / n * 1e3))
    return rows


def profile_gumbel(model: GPT2LMHeadModel, batch: int, top_k: int, max_new_tokens: int) -> str:
    ids = torch.randint(0, VOCAB, (batch, PROMPT_LEN))
    wm = Watermarker(WatermarkKey.generate("gumbel"))
    kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=top_k)
    wm.generate(model, **kwargs, max_new_tokens=4)
    prof = cProfile.Profile()
    prof.enable()
    wm.generate(model, **kwargs, max_new_tokens=max_new_tokens)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats-small", type=int, default=9)
    parser.add_argument("--repeats-large", type=int, default=3)
    parser.add_argument("--repeats-synthid", type=int, default=1)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one gumbel run (small model)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    started = time.perf_counter()
    print(
        f"machine: {platform.machine()}, {platform.python_version()}, torch {torch.__version__}, "
        f"torch threads = {torch.get_num_threads()}"
    )
    specs = [SMALL] if args.skip_large else [SMALL, LARGE]
    header = (
        "| model | params | batch | sampling | new tokens | repeats | plain ms/token | "
        + " | ".join(f"{m} ×" for m in METHODS[1:])
        + " |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    worst = 0.0
    for spec in specs:
        model = build_model(spec, seed=0)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        repeats = args.repeats_small if spec is SMALL else args.repeats_large
        first = True
        for top_k in (0, 50):
            for batch in (1, 4):
                seed = batch + top_k
                t = time_config(
                    model, batch, top_k, spec.max_new_tokens, repeats, seed, MAIN_METHODS, first
                )
                # SynthID's processor dominates its step time: fewer tokens and repeats (same prompts).
                ts = time_config(
                    model,
                    batch,
                    top_k,
                    SYNTHID_TOKENS,
                    args.repeats_synthid,
                    seed,
                    ("plain", "synthid"),
                    first,
                )
                first = False
                ratios = {m: t[m] / t["plain"] for m in MAIN_METHODS[1:]}
                ratios["synthid"] = ts["synthid"] / ts["plain"]
                worst = max(worst, *(ratios[s] for s in SCHEMES))
                sampling = "full vocab (top_k=0)" if top_k == 0 else f"top_k={top_k}"
                lines.append(
                    f"| {spec.name} | {params:.1f}M | {batch} | {sampling} | {spec.max_new_tokens} | {repeats} | "
                    f"{t['plain'] * 1e3:.2f} | "
                    + " | ".join(f"{ratios[m]:.2f}" for m in METHODS[1:])
                    + " |"
                )
                print(lines[-1], flush=True)
        if args.profile and spec is SMALL:
            print(profile_gumbel(model, 4, 0, spec.max_new_tokens))
        del model

    print("\nGeneration time, ratio of medians to plain sampling (× = watermarked / plain):\n")
    print("\n".join(lines))
    print(
        f"\nworst safeguard ratio: {worst:.2f}× (target ≤ {TARGET:.2f}×: "
        f"{'met' if worst <= TARGET else 'MISSED'})"
    )

    print("\nWatermark logits processor alone, ms per call on (batch, 50257) scores:\n")
    rows = processor_costs()
    print("| sampling | batch | " + " | ".join(METHODS[1:]) + " |")
    print("|---|---|" + "---|" * (len(METHODS) - 1))
    for sampling in ("top_k=0", "top_k=50"):
        for batch in (1, 4):
            cells = {n: ms for s, b, n, ms in rows if s == sampling and b == batch}
            print(
                f"| {sampling} | {batch} | "
                + " | ".join(f"{cells[m]:.2f}" for m in METHODS[1:])
                + " |"
            )
    print(f"\ntotal wall time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
