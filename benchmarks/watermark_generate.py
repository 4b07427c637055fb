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

``--prf`` runs only the PRF comparison (issue 14): ``plain`` vs ``gumbel`` with a PRF
version 1 key (Philox + SplitMix64, expanded in torch) vs a version 2 key (AES-128 on the
host, copied to the device) on ``GPT2Config()`` defaults (GPT-2 small's shape, 124M),
batch 1 and 4, full vocabulary and top_k=50, 64 new tokens, interleaved repeats; the
ratios are medians of per-repeat ratios (each repeat runs the three back to back), with
their range, for wall time and for the process's CPU time; and "in situ", the share of each
watermarked call spent inside the watermark processor (timed around every call), turned into
that call's ratio to the same call without it. Then the two processors alone, interleaved.
Target: v2 ≤ 1.05× plain.

Run:  python benchmarks/watermark_generate.py [--repeats-small 9] [--repeats-large 3] [--profile]
      python benchmarks/watermark_generate.py --prf [--repeats-prf 5] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import statistics
import time
import warnings
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
from safeguard.watermark.keys import LegacyPRFWarning

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


PRF_TARGET = 1.05
PRF_METHODS = ("plain", "gumbel-v1", "gumbel-v2")


def prf_watermarkers() -> dict[str, Watermarker]:
    """gumbel Watermarkers with a PRF version 1 and a version 2 key (default parameters)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LegacyPRFWarning)
        old = WatermarkKey.from_secret(os.urandom(32), "gumbel", prf_version=1)
    return {
        "gumbel-v1": Watermarker(old),
        "gumbel-v2": Watermarker(WatermarkKey.generate("gumbel")),
    }


class ProcessorClock:
    """Accumulates the wall time spent inside the watermark logits processor (in situ)."""

    spent = 0.0

    @classmethod
    def install(cls) -> None:
        from safeguard.watermark.hf import WatermarkLogitsProcessor

        inner = WatermarkLogitsProcessor.__call__

        def timed(self, input_ids, scores):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return inner(self, input_ids, scores)
            finally:
                cls.spent += time.perf_counter() - t0

        WatermarkLogitsProcessor.__call__ = timed  # type: ignore[method-assign]


def prf_runners(
    model: GPT2LMHeadModel, wms: dict[str, Watermarker], common: dict
) -> dict[str, Callable[[], torch.Tensor]]:
    runners: dict[str, Callable[[], torch.Tensor]] = {"plain": lambda: model.generate(**common)}
    for name, wm in wms.items():
        # an empty context memory per call: every step of every repeat is keyed
        runners[name] = lambda wm=wm: (wm.clear_context_memory(), wm.generate(model, **common))[1]
    return runners


def prf_comparison(repeats: int, new_tokens: int) -> None:
    """plain vs gumbel with a v1 key vs a v2 key on GPT2Config() defaults (124M), interleaved."""
    torch.manual_seed(0)
    config = GPT2Config()
    model = GPT2LMHeadModel(config).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    params = sum(p.numel() for p in model.parameters()) / 1e6
    wms = prf_watermarkers()
    ProcessorClock.install()
    print(
        f"model: GPT2Config() defaults, randomly initialised: {config.n_layer} layers, n_embd "
        f"{config.n_embd}, vocabulary {config.vocab_size}, {params:.1f}M parameters"
    )
    header = (
        "| batch | sampling | new tokens | repeats | plain ms/token | gumbel v1 × wall (range) "
        "| gumbel v2 × wall (range) | gumbel v1 × CPU (range) | gumbel v2 × CPU (range) "
        "| v2 / v1 CPU | v1 in situ × | v2 in situ × |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    worst = {"wall": 0.0, "cpu": 0.0}
    for top_k in (0, 50):
        for batch in (1, 4):
            gen = torch.Generator().manual_seed(batch + top_k)
            ids = torch.randint(0, VOCAB, (batch, PROMPT_LEN), generator=gen)
            common = dict(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                top_k=top_k,
                max_new_tokens=new_tokens,
            )
            runners = prf_runners(model, wms, common)
            for m in PRF_METHODS:  # warm-up
                assert runners[m]().shape == (batch, PROMPT_LEN + new_tokens)
            times = {(m, c): [] for m in PRF_METHODS for c in ("wall", "cpu")}
            share: dict[str, list[float]] = {m: [] for m in PRF_METHODS[1:]}
            for r in range(repeats):
                order = PRF_METHODS[r % 3 :] + PRF_METHODS[: r % 3]
                for m in order:
                    ProcessorClock.spent = 0.0
                    w0, c0 = time.perf_counter(), time.process_time()
                    runners[m]()
                    times[m, "cpu"].append(time.process_time() - c0)
                    times[m, "wall"].append(time.perf_counter() - w0)
                    if m in share:
                        share[m].append(ProcessorClock.spent / times[m, "wall"][-1])
            ratios = {
                (m, c): [t / p for t, p in zip(times[m, c], times["plain", c], strict=True)]
                for m in PRF_METHODS[1:]
                for c in ("wall", "cpu")
            }
            med = {k: statistics.median(v) for k, v in ratios.items()}
            for c in worst:
                worst[c] = max(worst[c], med["gumbel-v2", c])
            v2_v1 = statistics.median(
                a / b
                for a, b in zip(times["gumbel-v2", "cpu"], times["gumbel-v1", "cpu"], strict=True)
            )
            sampling = "full vocab (top_k=0)" if top_k == 0 else f"top_k={top_k}"
            cells = " | ".join(
                f"{med[m, c]:.3f} ({min(ratios[m, c]):.2f}–{max(ratios[m, c]):.2f})"
                for c in ("wall", "cpu")
                for m in PRF_METHODS[1:]
            )
            # in situ: the processor's share f of each watermarked call; 1 / (1 - f) is that call's
            # time over the same call without the processor, free of run-to-run drift
            in_situ = " | ".join(
                f"{1 / (1 - statistics.median(share[m])):.3f}" for m in PRF_METHODS[1:]
            )
            lines.append(
                f"| {batch} | {sampling} | {new_tokens} | {repeats} | "
                f"{statistics.median(times['plain', 'wall']) / new_tokens * 1e3:.1f} | {cells} | "
                f"{v2_v1:.3f} | {in_situ} |"
            )
            print(lines[-1], flush=True)
    print(
        "\nGeneration time, median of per-repeat ratios to plain sampling (range); wall = "
        "perf_counter, CPU = this process's CPU time (process_time); in situ = 1 / (1 - f) with "
        "f the median share of a watermarked call spent inside the watermark processor:\n"
    )
    print("\n".join(lines))
    for c, label in (("wall", "wall"), ("cpu", "CPU")):
        print(
            f"worst gumbel v2 ratio ({label}): {worst[c]:.3f}× (target ≤ {PRF_TARGET:.2f}×: "
            f"{'met' if worst[c] <= PRF_TARGET else 'MISSED'})"
        )
    del model

    print(
        "\nProcessor alone, ms per call on (batch, 50257) scores, best of 5 interleaved runs of 50:\n"
    )
    print("| sampling | batch | gumbel v1 | gumbel v2 | v2 / v1 |")
    print("|---|---|---|---|---|")
    for top_k in (0, 50):
        for batch in (1, 4):
            scores = torch.randn(batch, VOCAB)
            if top_k:
                kth = scores.topk(top_k, dim=1).values[:, -1:]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            best = {m: float("inf") for m in PRF_METHODS[1:]}
            for _ in range(5):
                for name in PRF_METHODS[1:]:
                    wm = prf_watermarkers()[name]
                    proc = wm.watermarking_config().construct_processor(VOCAB)
                    ids = torch.randint(0, VOCAB, (batch, PROMPT_LEN))
                    proc(ids, scores)
                    t0 = time.perf_counter()
                    for _ in range(50):
                        ids = torch.cat([ids, torch.randint(0, VOCAB, (batch, 1))], dim=1)
                        proc(ids, scores)
                    best[name] = min(best[name], (time.perf_counter() - t0) / 50 * 1e3)
            print(
                f"| top_k={top_k} | {batch} | {best['gumbel-v1']:.2f} | {best['gumbel-v2']:.2f} | "
                f"{best['gumbel-v2'] / best['gumbel-v1']:.2f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats-small", type=int, default=9)
    parser.add_argument("--repeats-large", type=int, default=3)
    parser.add_argument("--repeats-synthid", type=int, default=1)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one gumbel run (small model)"
    )
    parser.add_argument(
        "--prf", action="store_true", help="only plain vs gumbel with PRF v1 and v2 keys (124M)"
    )
    parser.add_argument("--repeats-prf", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.prf:
        started = time.perf_counter()
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
            f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}, {platform.python_version()}, "
            f"torch {torch.__version__}, torch threads = {torch.get_num_threads()}"
        )
        prf_comparison(args.repeats_prf, args.new_tokens)
        print(
            f"\nload average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}; "
            f"total wall time: {time.perf_counter() - started:.0f} s"
        )
        return

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
