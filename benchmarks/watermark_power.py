"""Tokens to detect, side by side: safeguard gumbel / exp-edit vs KGW and SynthID-Text.

One randomly initialised GPT-2 (2 layers, n_embd 128, vocabulary 50,257; built here,
nothing downloaded) whose ``initializer_range`` is tuned (bisection, printed) so that
the mean entropy of its next-token distribution along its own samples at
temperature 1 is about 3 nats: a default-initialised model is nearly uniform over
50,257 tokens (~10.8 nats), which makes every watermark look easy. The same prompts
(random token ids) are continued by 200 tokens with full-vocabulary sampling
(``top_k=0``, temperature 1) under each watermark:

* ``gumbel`` (safeguard, context width 4, repeated contexts scored once): exact
  Gamma p-value from ``Watermarker.detect(..., prompt_ids=...)``;
* ``exp-edit`` (safeguard, γ = 0.4): ``Watermarker.detect(..., resolution=1e-3)``,
  a permutation test with 999 null keys (Besag–Clifford stopping at h = 20, which
  gives the same p ≤ 0.01 decisions as the full test; one thread);
* ``kgw``: ``transformers.WatermarkingConfig(greenlist_ratio=0.25, bias=2.0)``
  (lefthash, context width 1). Scored tokens: each distinct (previous token,
  token) pair once, the first generated token keyed by the last prompt token.
  Under the null the green count is Binomial(T, 0.25); the p-value is the exact
  binomial tail. transformers' ``WatermarkDetector`` p-value (normal tail of the
  z-score, every pair counted) is reported next to it;
* ``synthid``: ``transformers.SynthIDTextWatermarkingConfig(ngram_len=5, keys=30
  keys)``. The score is the sum of g-values over scored tokens × 30 layers; a
  token is scored when its 4-token context has not occurred before in the text
  (transformers' generation-time repeated-context masking; its context at the
  first steps is the zero padding the processor starts from, the prompt is never
  context). Under the null each g-value is a Bernoulli draw from the fixed
  sampling table, P(g = 1) = q (the table's share of ones, printed; ≈ 1/2), and
  the g-values of one token's 30 layers index different table entries, so the
  sum is Binomial(30·T, q); the p-value is its exact tail. (The paper's Bayesian
  detector must be trained per key and is not used.)

Both competitors are scored by ``safeguard.watermark.evaluation.competitors``
(``KGW``, ``SynthID``), the library version of this benchmark's detectors.

For each text the p-value is computed on prefixes of 5, 10, ..., 200 generated
tokens; "tokens to detect" is the first prefix length with p ≤ 0.01 (texts that
never reach it count as > 200). The same is done after replacing 30% of the 200
generated tokens (uniformly chosen positions) by uniformly random ids. A null
check runs every detector on unwatermarked (plain) samples at 200 tokens.

transformers' SynthID processor costs ~0.1–0.3 s per step on this model at full
vocabulary (its g-values span the whole vocabulary × 30 layers), so SynthID gets
fewer texts and tokens (defaults: 8 texts × 100 tokens, batch 1); the table says so.

Run:  python benchmarks/watermark_power.py [--texts 24] [--synthid-texts 8] [--synthid-tokens 100]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from scipy import stats
from transformers import GPT2Config, GPT2LMHeadModel

from safeguard.watermark import Watermarker, WatermarkKey
from safeguard.watermark.evaluation.competitors import KGW, SynthID

VOCAB = 50_257
PROMPT_LEN = 16
NEW_TOKENS = 200
STEP = 5
ALPHA = 0.01
SUBSTITUTION = 0.30
TARGET_ENTROPY = 3.0
SCHEMES = ("gumbel", "exp-edit", "kgw", "synthid")


# --------------------------------------------------------------------------- #
# Model with a tuned next-token entropy


def build_model(init_range: float, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=1024,
        n_layer=2,
        n_embd=128,
        n_head=2,
        initializer_range=init_range,
    )
    model = GPT2LMHeadModel(config).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


@torch.no_grad()
def token_entropies(
    model: GPT2LMHeadModel, sequences: torch.Tensor, prompt_len: int
) -> torch.Tensor:
    """Entropy (nats) of the model's distribution at each generated position, shape (batch, new)."""
    logits = model(sequences).logits[:, prompt_len - 1 : -1].double()
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def mean_entropy(model: GPT2LMHeadModel, prompts: torch.Tensor, new_tokens: int) -> float:
    out = model.generate(
        input_ids=prompts,
        attention_mask=torch.ones_like(prompts),
        do_sample=True,
        top_k=0,
        max_new_tokens=new_tokens,
    )
    return float(token_entropies(model, out, prompts.shape[1]).mean())


def tune_init_range(prompts: torch.Tensor, target: float) -> tuple[float, float]:
    """Bisection on log(initializer_range) for a mean per-token entropy of ``target`` nats."""
    lo, hi = math.log(0.02), math.log(2.0)
    best = (0.0, float("inf"))
    for _ in range(8):
        mid = 0.5 * (lo + hi)
        torch.manual_seed(123)
        h = mean_entropy(build_model(math.exp(mid)), prompts[:4], 64)
        if abs(h - target) < abs(best[1] - target):
            best = (math.exp(mid), h)
        if h > target:
            lo = mid
        else:
            hi = mid
    return best


# --------------------------------------------------------------------------- #


def first_detection(pvalue_at: Callable[[int], float], lengths: list[int]) -> float:
    """First prefix length with p ≤ ALPHA (scanning in order), or inf."""
    for length in lengths:
        if pvalue_at(length) <= ALPHA:
            return float(length)
    return math.inf


def substitute(gen: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    out = gen.copy()
    pos = rng.choice(len(gen), size=round(fraction * len(gen)), replace=False)
    out[pos] = rng.integers(0, VOCAB, size=len(pos))
    return out


def fmt_median(values: list[float], cap: int) -> str:
    med = statistics.median(values)
    return f"> {cap}" if math.isinf(med) else f"{med:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=24)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--synthid-texts", type=int, default=8)
    parser.add_argument("--synthid-tokens", type=int, default=100)
    parser.add_argument("--init-range", type=float, default=None, help="skip the entropy tuning")
    parser.add_argument(
        "--target-entropy", type=float, default=TARGET_ENTROPY, help="nats per token"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    print(
        f"machine: {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"torch threads = {torch.get_num_threads()}"
    )
    rng = np.random.default_rng(0)
    gen_t = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, VOCAB, (args.texts, PROMPT_LEN), generator=gen_t)

    if args.init_range is None:
        init_range, h = tune_init_range(prompts, args.target_entropy)
        print(
            f"tuned initializer_range = {init_range:.4f} (mean entropy {h:.2f} nats on 4×64 tokens)"
        )
    else:
        init_range = args.init_range
    model = build_model(init_range)
    params = sum(p.numel() for p in model.parameters()) / 1e6

    watermarkers = {s: Watermarker(WatermarkKey.generate(s)) for s in ("gumbel", "exp-edit")}
    kgw = KGW(greenlist_ratio=0.25, bias=2.0, hashing_key=int(rng.integers(1, 2**31)))
    synthid = SynthID(ngram_len=5, keys=[int(k) for k in rng.integers(0, 2**20, size=30)])
    kgw_cfg = kgw.generation_config(model.config)
    synthid_cfg = synthid.generation_config(model.config)

    # ---- generation -------------------------------------------------------------------
    texts: dict[str, np.ndarray] = {}
    entropy: dict[str, float] = {}
    gen_seconds: dict[str, float] = {}
    n_texts = {name: args.texts for name in ("plain", *SCHEMES)}
    n_tokens = {name: NEW_TOKENS for name in ("plain", *SCHEMES)}
    n_texts["synthid"] = min(args.texts, args.synthid_texts)
    n_tokens["synthid"] = args.synthid_tokens
    for name in ("plain", *SCHEMES):
        torch.manual_seed(1)
        chunks, ents = [], []
        t0 = time.perf_counter()
        # transformers' SynthID processor is superlinear in the batch size here: batch 1.
        batch = 1 if name == "synthid" else args.batch
        for i in range(0, n_texts[name], batch):
            p = prompts[i : i + batch]
            kw = dict(
                input_ids=p,
                attention_mask=torch.ones_like(p),
                do_sample=True,
                top_k=0,
                temperature=1.0,
                max_new_tokens=n_tokens[name],
            )
            if name in watermarkers:
                out = watermarkers[name].generate(model, **kw)
            elif name == "kgw":
                out = model.generate(**kw, watermarking_config=kgw_cfg)
            elif name == "synthid":
                out = model.generate(**kw, watermarking_config=synthid_cfg)
            else:
                out = model.generate(**kw)
            ents.append(token_entropies(model, out, PROMPT_LEN))
            chunks.append(out[:, PROMPT_LEN:].numpy())
        gen_seconds[name] = time.perf_counter() - t0
        texts[name] = np.concatenate(chunks)
        entropy[name] = float(torch.cat(ents).mean())
        print(
            f"generated {name}: {gen_seconds[name]:.0f} s, mean entropy {entropy[name]:.2f} nats",
            flush=True,
        )

    prompts_np = prompts.numpy()
    lengths_of = {name: list(range(STEP, n_tokens[name] + 1, STEP)) for name in n_tokens}

    def pvalue_fn(
        scheme: str, prompt: np.ndarray, gen: np.ndarray, lengths: list[int]
    ) -> Callable[[int], float]:
        if scheme == "gumbel":
            wm = watermarkers["gumbel"]
            return lambda n: (
                wm.detect(gen[:n], prompt_ids=prompt, false_positive_rate=ALPHA).p_value
            )
        if scheme == "exp-edit":
            wm = watermarkers["exp-edit"]
            return lambda n: (
                wm.detect(
                    gen[:n],
                    false_positive_rate=ALPHA,
                    resolution=1e-3,
                    early_stop=20,
                    num_threads=1,
                ).p_value
            )
        scorer = kgw if scheme == "kgw" else synthid
        cache: dict[str, np.ndarray] = {}

        def at(n: int) -> float:
            if "p" not in cache:
                cache["p"] = scorer.prefix_pvalues(prompt, gen, lengths)
            return float(cache["p"][lengths.index(n)])

        return at

    # ---- detection --------------------------------------------------------------------
    import warnings

    warnings.simplefilter("ignore")
    results: dict[tuple[str, str], list[float]] = {}
    det_seconds: dict[str, float] = {}
    sub_rng = np.random.default_rng(7)
    attacked = {
        s: np.stack([substitute(g, SUBSTITUTION, sub_rng) for g in texts[s]]) for s in SCHEMES
    }
    for scheme in SCHEMES:
        t0 = time.perf_counter()
        for variant, data in (("clean", texts[scheme]), ("30% substituted", attacked[scheme])):
            results[(scheme, variant)] = [
                first_detection(
                    pvalue_fn(scheme, prompts_np[i], data[i], lengths_of[scheme]),
                    lengths_of[scheme],
                )
                for i in range(n_texts[scheme])
            ]
        det_seconds[scheme] = time.perf_counter() - t0
        print(f"detected {scheme}: {det_seconds[scheme]:.0f} s", flush=True)

    # transformers' own KGW p-value (normal approximation, repeated pairs counted)
    kgw_hf = [
        first_detection(
            (lambda pv: lambda n: float(pv[lengths_of["kgw"].index(n)]))(
                kgw.normal_pvalues(prompts_np[i], texts["kgw"][i], lengths_of["kgw"])
            ),
            lengths_of["kgw"],
        )
        for i in range(args.texts)
    ]

    # null check: unwatermarked samples at 200 tokens
    null_flags: dict[str, float] = {}
    for scheme in SCHEMES:
        flags = [
            pvalue_fn(scheme, prompts_np[i], texts["plain"][i], lengths_of["plain"])(NEW_TOKENS)
            <= ALPHA
            for i in range(args.texts)
        ]
        null_flags[scheme] = float(np.mean(flags))

    # ---- report -----------------------------------------------------------------------
    print(
        f"\nModel: GPT-2, 2 layers, n_embd 128, vocab {VOCAB}, {params:.1f}M parameters, "
        f"initializer_range {init_range:.4f}; prompts of {PROMPT_LEN} random tokens, "
        "full-vocabulary sampling (top_k=0) at temperature 1. "
        f"SynthID table share of ones q = {synthid.q:.4f}.\n"
    )
    print(
        "| scheme | p-value | texts × new tokens | mean entropy (nats/token) | median tokens to p ≤ 0.01 | "
        "detected | 30% substituted: median | 30% substituted: detected | plain text flagged at 200 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    method = {
        "gumbel": "exact Gamma",
        "exp-edit": "permutation, 999 null keys",
        "kgw": "exact binomial",
        "synthid": "exact binomial",
    }
    for scheme in SCHEMES:
        clean, sub = results[(scheme, "clean")], results[(scheme, "30% substituted")]
        print(
            f"| {scheme} | {method[scheme]} | {n_texts[scheme]} × {n_tokens[scheme]} | {entropy[scheme]:.2f} | "
            f"{fmt_median(clean, n_tokens[scheme])} | {np.mean(np.isfinite(clean)):.0%} | "
            f"{fmt_median(sub, n_tokens[scheme])} | {np.mean(np.isfinite(sub)):.0%} | "
            f"{null_flags[scheme]:.0%} |"
        )
    print(
        f"| kgw (transformers' p-value) | normal tail, repeats counted | {n_texts['kgw']} × {NEW_TOKENS} | "
        f"{entropy['kgw']:.2f} | {fmt_median(kgw_hf, NEW_TOKENS)} | {np.mean(np.isfinite(kgw_hf)):.0%} | | | |"
    )
    print(f"\nplain sampling: mean entropy {entropy['plain']:.2f} nats/token")

    print(
        "\nKGW: transformers' normal-tail p-value vs the exact Binomial(T, 0.25) tail at the same z:\n"
    )
    print("| T | z | green count | exact p | transformers p | exact / transformers |")
    print("|---|---|---|---|---|---|")
    for total in (25, 50, 200):
        for z in (2.0, 3.0, 4.0, 5.0, 6.0):
            green = math.ceil(0.25 * total + z * math.sqrt(total * 0.25 * 0.75))
            if green > total:
                continue
            z_real = (green - 0.25 * total) / math.sqrt(total * 0.25 * 0.75)
            exact = float(stats.binom.sf(green - 1, total, 0.25))
            approx = float(stats.norm.sf(z_real))
            print(
                f"| {total} | {z_real:.2f} | {green} | {exact:.3g} | {approx:.3g} | {exact / approx:.2f} |"
            )

    print(
        "\ntimes: generation "
        + ", ".join(f"{k} {v:.0f} s" for k, v in gen_seconds.items())
        + "; detection scans "
        + ", ".join(f"{k} {v:.0f} s" for k, v in det_seconds.items())
    )
    print(f"total wall time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
