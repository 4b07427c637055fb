"""False-positive rate under one fixed key: how far each key's rate strays from the nominal one.

A deployment runs one watermark key for months, so the false-positive rate its users live
with is the rate *under that key*. ``gumbel``'s p-values are exact over random keys; under
one key, two texts that share a scored ``(context, token)`` pair share its uniform, so their
scores are correlated and the per-key counts of false positives can spread wider than the
Binomial(n, α) of a calibrated detector. Issue 14, section 1 asks for: ≥ 100 fixed keys ×
≥ 1,000 human / low-temperature / repetitive texts; per-key FPR at 0.05 and 0.01 not
over-dispersed against the binomial (stated test), and the worst key ≤ 2× nominal at 0.01.

Corpora (token ids of the shipped evaluation LM's tokenizer; each text is tested with its
16-token prompt as context, as ``safeguard eval`` does):

* ``human``: the first 1,000 held-out human passages in file order; prompt = first 16
  tokens, text = the next ≤ 200 tokens;
* ``low-temperature``: 1,000 continuations of 200 tokens sampled by the shipped LM at
  temperature 0.4 without a watermark (``lm.sample``, full vocabulary), prompts = the first
  16 tokens of 1,000 held-out passages chosen by ``lm.prompts(seed=SEED)``;
* ``repeated``: within-text repetition: tokens 16–55 of passage i repeated 5 times (200
  tokens; ≈ 40 scored tokens, as each context is scored once per text);
* ``shared``: cross-text near-duplicates (a stress test): each text is 5 snippets of 40
  tokens drawn with replacement from a pool of 200 snippets (tokens 16–55 of the first 200
  passages), so every snippet occurs in ~25 texts.

Statistics per corpus, key set and level α ∈ {0.05, 0.01}: mean per-key FPR, its sd across
keys next to the binomial sd sqrt(α(1 − α)/n), the worst key (rate and × α), the chance
that the worst of K calibrated keys (independent Binomial(n, α) counts) is at least that
bad, and two dispersion tests of "per-key counts are Binomial(n, α)": the χ²(K) statistic
of :func:`safeguard.watermark.evaluation.metrics.per_key_spread` and the same statistic's
Monte Carlo tail under K independent binomials (20,000 draws, so no χ² approximation;
its smallest value is 1/20,001 ≈ 5e-05). Both are centred on α, so a conservative
detector (mean rate below α) fails them too; the last column separates the two: a
t-test of the K per-key rates against α, and the binomial dispersion about the observed
mean (χ²(K − 1)). The
mechanism is shown by token arithmetic alone (no key): the share of scored
``(context, token)`` pairs that another text of the corpus scores too, and the overlap
``Σ_i Σ_{j≠i} m_ij / (n N̄)`` (m_ij pairs scored by both texts i and j, N̄ scored tokens per
text), from which a first-order sd inflation sqrt(1 + overlap · φ(z_α)² / (α(1 − α))) is
predicted next to the observed sd / binomial sd.

``exp-edit`` (optional, slow: permutation test): ``--exp-keys`` keys × ``--exp-texts``
human texts, ``Watermarker.detect(resolution=1e-3, early_stop=20)``, a fresh null-key seed
per call (``seed = SEED + 100003·key + text``, reproducible); ``--exp-default-seed`` uses
the API's default ``seed=0`` instead, one null sample for every call.

    python benchmarks/watermark_per_key.py [--keys 100] [--key-start 0] [--texts 1000]
        [--widths 4] [--corpora human,low-temperature,repeated,shared]
        [--exp-keys 0] [--exp-texts 200] [--exp-default-seed]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats

from safeguard.watermark import DetectionMemory, Watermarker, WatermarkKey
from safeguard.watermark.evaluation import lm
from safeguard.watermark.evaluation.attacks import substitute
from safeguard.watermark.evaluation.metrics import per_key_spread
from safeguard.watermark.schemes.gumbel import GumbelConfig

SEED = 20261206
LEVELS = (0.05, 0.01)
PROMPT, NEW = 16, 200
LOW_TEMPERATURE = 0.4
SNIPPET, REPEATS, POOL = 40, 5, 200
MC_DRAWS = 20_000
CORPORA = ("human", "low-temperature", "repeated", "shared")

Corpus = list[tuple[np.ndarray, np.ndarray]]  # (prompt, text) token ids


def fixed_keys(count: int, scheme: str = "gumbel", start: int = 0, **params) -> list[WatermarkKey]:
    """Keys ``start .. start + count - 1`` from fixed secrets ``sha256("per-key/<scheme>/<i>")``."""
    return [
        WatermarkKey.from_secret(
            hashlib.sha256(f"per-key/{scheme}/{i}".encode()).digest(), scheme, **params
        )
        for i in range(start, start + count)
    ]


def tokenizer():
    tok = lm._tokenizer()
    tok.model_max_length = 10**9  # passages are cut here, never fed whole to the model
    return tok


def human_corpus(n: int) -> Corpus:
    """The first ``n`` held-out passages: (first 16 tokens, next ≤ 200 tokens)."""
    tok = tokenizer()
    out = []
    for text in lm.human_texts(n):
        ids = np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
        out.append((ids[:PROMPT], ids[PROMPT : PROMPT + NEW]))
    return out


def corpus_prompts(n: int, seed: int) -> list[np.ndarray]:
    """The first 16 tokens of ``n`` held-out passages chosen by ``lm.prompts(seed=seed)``."""
    tok = tokenizer()
    return [
        np.asarray(tok(p, add_special_tokens=False)["input_ids"][:PROMPT], dtype=np.int64)
        for p in lm.prompts(n, tokens=PROMPT, seed=seed)
    ]


def low_temperature_corpus(n: int, model, seed: int = SEED) -> Corpus:
    """``n`` plain samples of 200 tokens at temperature 0.4 from held-out 16-token prompts."""
    prompts = corpus_prompts(n, seed)
    texts = lm.sample(
        model, prompts, new_tokens=NEW, temperature=LOW_TEMPERATURE, seed=seed, batch_size=64
    )
    return list(zip(prompts, texts, strict=True))


def repeated_corpus(human: Corpus) -> Corpus:
    """Each passage's first 40 continuation tokens, repeated 5 times."""
    return [(p, np.tile(t[:SNIPPET], REPEATS)) for p, t in human]


def shared_corpus(human: Corpus, seed: int = SEED) -> Corpus:
    """Texts of 5 snippets drawn with replacement from a pool of 200 (near-duplicates)."""
    rng = np.random.default_rng(seed)
    pool = [t[:SNIPPET] for _, t in human[:POOL]]
    out = []
    for p, _ in human:
        picks = rng.integers(0, len(pool), size=REPEATS)
        out.append((p, np.concatenate([pool[j] for j in picks])))
    return out


def pvalues(
    keys: Sequence[WatermarkKey], corpus: Corpus, memories: Sequence[DetectionMemory] | None = None
) -> np.ndarray:
    """``(keys, texts)`` p-values from ``Watermarker.detect_batch`` (one thread).

    With ``memories`` (one per key), each key's texts are tested in corpus order through
    that key's :class:`DetectionMemory`, as a deployment tests its stream.
    """
    prompts = [p for p, _ in corpus]
    texts = [t for _, t in corpus]
    rows = []
    for k, key in enumerate(keys):
        extra = {"memory": memories[k]} if memories is not None else {}
        res = Watermarker(key).detect_batch(
            texts, prompts=prompts, false_positive_rate=0.01, num_threads=1, **extra
        )
        rows.append([r.p_value for r in res])
    return np.asarray(rows)


def power_with_memory(
    model, key: WatermarkKey, memory: DetectionMemory, n: int, seed: int
) -> list[str]:
    """What the memory costs a watermarked text: TPR at 1e-2 and scored tokens, fresh vs remembered.

    ``n`` texts of 200 tokens are generated under ``key`` (temperature 1) from held-out
    prompts and tested (a) with no memory, (b) through ``memory`` after the null corpora it
    has already seen, and (c) the same texts with 30% of tokens substituted, tested again
    through the memory (an edited repost of texts it has already seen).
    """
    prompts = corpus_prompts(n, seed + 1)
    wm = Watermarker(key)
    texts = lm.sample(model, prompts, watermarker=wm, new_tokens=NEW, seed=seed + 1, batch_size=64)
    rng = np.random.default_rng(seed + 2)
    edited = [substitute(t, 0.3, vocab_size=model.config.vocab_size, rng=rng) for t in texts]
    rows = []
    for label, batch, extra in (
        ("no memory", texts, {}),
        (f"through the memory after {memory.texts} null texts", texts, {"memory": memory}),
        ("30% substituted copies, through the same memory", edited, {"memory": memory}),
        ("30% substituted copies, no memory", edited, {}),
    ):
        res = wm.detect_batch(
            batch, prompts=prompts, false_positive_rate=0.01, num_threads=1, **extra
        )
        tpr = np.mean([r.p_value <= 0.01 for r in res])
        scored = np.median([r.num_scored for r in res])
        rows.append(f"| {label} | {len(res)} | {tpr:.3f} | {scored:.0f} |")
    return rows


def overlap_stats(corpus: Corpus, width: int) -> tuple[float, float, float]:
    """How much the texts of a corpus share what ``gumbel`` scores. Pure token arithmetic, no key.

    A ``(context, token)`` pair is scored at its context's first occurrence in a text
    (``skip_repeated_context``). Under one key, texts i and j that both score ``m_ij`` pairs
    share those uniforms, so their scores (sums of about N terms) have correlation about
    ``m_ij / N``.

    Returns:
        ``(scored, shared, overlap)``: mean scored tokens per text; the share of scored
        pairs also scored in another text; and ``Σ_i Σ_{j≠i} m_ij / (n N̄)``, the summed
        score correlation of a text with all the others (0 for texts with nothing in common).
    """
    pair_text: dict[tuple[int, ...], set[int]] = {}
    per_text: list[list[tuple[int, ...]]] = []
    for i, (prompt, text) in enumerate(corpus):
        seq = np.concatenate([prompt, text]).tolist()
        seen: set[tuple[int, ...]] = set()
        pairs = []
        for t in range(len(prompt), len(seq)):
            ctx = tuple(seq[max(0, t - width) : t])
            if len(ctx) < width or ctx in seen:
                continue
            seen.add(ctx)
            pair = (*ctx, seq[t])
            pairs.append(pair)
            pair_text.setdefault(pair, set()).add(i)
        per_text.append(pairs)
    n = len(corpus)
    scored = sum(len(p) for p in per_text) / n
    shared = sum(1 for pairs in per_text for pair in pairs if len(pair_text[pair]) > 1)
    both = sum(len(s) * (len(s) - 1) for s in pair_text.values())
    return scored, shared / max(scored * n, 1), both / (n * max(scored, 1e-9))


def predicted_sd_ratio(overlap: float, level: float) -> float:
    """First-order sd inflation of per-key FPRs: sqrt(1 + overlap · φ(z_α)² / (α(1 − α))).

    Two texts whose (roughly normal) scores have correlation ρ are both flagged at level α
    with covariance ≈ ρ φ(z_α)² (first term of the bivariate normal tail expansion), so the
    variance of a key's count grows by that factor summed over text pairs. Valid for small
    overlaps; near-duplicates (large ρ) exceed it.
    """
    z = stats.norm.isf(level)
    return float(np.sqrt(1 + overlap * stats.norm.pdf(z) ** 2 / (level * (1 - level))))


def worst_key_tail(worst_count: int, keys: int, n: int, level: float) -> float:
    """P(max of ``keys`` independent Binomial(n, level) >= worst_count)."""
    below = stats.binom.cdf(worst_count - 1, n, level)
    return float(1.0 - below**keys)


def monte_carlo_dispersion(counts: np.ndarray, n: int, level: float, seed: int = SEED) -> float:
    """Tail of D = Σ (c − nα)² / (nα(1 − α)) under independent Binomial(n, α) counts."""
    var = n * level * (1 - level)
    observed = float(np.sum((counts - n * level) ** 2) / var)
    rng = np.random.default_rng(seed)
    sims = rng.binomial(n, level, size=(MC_DRAWS, counts.size))
    d = np.sum((sims - n * level) ** 2, axis=1) / var
    return float((1 + np.count_nonzero(d >= observed - 1e-9)) / (1 + MC_DRAWS))


def spread_rows(p: np.ndarray) -> list[dict[str, float]]:
    """per_key_spread at LEVELS, with the worst-key tail and a Monte Carlo dispersion p."""
    keys, n = p.shape
    rows = per_key_spread(p, LEVELS)
    for row in rows:
        counts = np.count_nonzero(p <= row["level"], axis=1)
        row["worst_count"] = int(counts.max())
        row["worst_tail"] = worst_key_tail(int(counts.max()), keys, n, row["level"])
        row["mc_dispersion_p"] = monte_carlo_dispersion(counts, n, row["level"])
        row["pooled_rate"] = float(np.mean(p <= row["level"]))
        # The χ² above is centred on α, so a conservative mean inflates it too; these two
        # separate the mean (t-test of the K per-key rates) from the spread about it.
        rates = counts / n
        row["mean_t_p"] = float(stats.ttest_1samp(rates, row["level"]).pvalue)
        pbar = float(rates.mean())
        if 0 < pbar < 1:
            d = float(np.sum((counts - counts.mean()) ** 2) / (n * pbar * (1 - pbar)))
            row["about_mean_p"] = float(stats.chi2.sf(d, keys - 1))
        else:
            row["about_mean_p"] = float("nan")
    return rows


HEADER = (
    "| corpus | width | keys × texts | scored tokens / text | shared pairs · overlap | α | "
    "mean FPR | sd across keys (binomial) | sd ratio: observed (predicted) | worst key (× α) | "
    "P(worst ≥ this), binomial | dispersion p: χ² · Monte Carlo | "
    "mean = α: t-test p · spread about the mean: χ²(K−1) p |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def small(p: float) -> str:
    """A tail probability; below double precision's resolution of 1 − x it reads ``< 1e-15``."""
    return "< 1e-15" if p < 1e-15 else f"{p:.2g}"


def format_rows(
    corpus: str,
    width: int | str,
    rows: list[dict[str, float]],
    overlap: tuple[float, float, float] | None,
) -> list[str]:
    out = []
    for r in rows:
        if overlap is None:
            scored, shared, predicted = "–", "–", "–"
        else:
            scored = f"{overlap[0]:.1f}"
            shared = f"{overlap[1]:.1%} · {overlap[2]:.2f}"
            predicted = f"{predicted_sd_ratio(overlap[2], r['level']):.2f}"
        out.append(
            f"| {corpus} | {width} | {r['keys']} × {r['texts']} | {scored} | {shared} | "
            f"{r['level']:g} | {r['mean_rate']:.4f} | {r['sd_rate']:.4f} ({r['binomial_sd']:.4f}) | "
            f"{r['sd_rate'] / r['binomial_sd']:.2f} ({predicted}) | "
            f"{r['worst_count']}/{r['texts']} ({r['worst_ratio']:.2f}×) | {small(r['worst_tail'])} | "
            f"{small(r['dispersion_p'])} · {r['mc_dispersion_p']:.2g} | "
            f"{small(r['mean_t_p'])} · {small(r['about_mean_p'])} |"
        )
    return out


def exp_edit_pvalues(
    keys: Sequence[WatermarkKey], corpus: Corpus, *, per_call_seed: bool = True
) -> np.ndarray:
    """exp-edit p-values: a distinct null seed per (key, text) call, or the API default (0)."""
    rows = []
    for k, key in enumerate(keys):
        wm = Watermarker(key)
        rows.append(
            [
                wm.detect(
                    text,
                    false_positive_rate=0.01,
                    resolution=1e-3,
                    early_stop=20,
                    num_threads=1,
                    seed=SEED + 100003 * k + i if per_call_seed else 0,
                ).p_value
                for i, (_, text) in enumerate(corpus)
            ]
        )
        print(f"  exp-edit key {k + 1}/{len(keys)} done", flush=True)
    return np.asarray(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--key-start", type=int, default=0, help="index of the first key")
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument(
        "--widths",
        default=str(GumbelConfig().context_width),
        help="comma-separated gumbel context widths (default: the scheme's default)",
    )
    parser.add_argument("--corpora", default=",".join(CORPORA))
    parser.add_argument("--exp-keys", type=int, default=0, help="exp-edit keys (0: skip)")
    parser.add_argument("--exp-texts", type=int, default=200, help="exp-edit human texts")
    parser.add_argument(
        "--exp-default-seed",
        action="store_true",
        help="exp-edit with the API's default seed=0 (one null sample for every call)",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="gumbel: test each key's corpus in order through one DetectionMemory per key",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=SEED,
        help="seed of the low-temperature prompts and samples and of the shared corpus",
    )
    parser.add_argument(
        "--power",
        type=int,
        default=0,
        help="with --memory: watermarked texts generated under key 0 to measure the memory's cost",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    widths = [int(w) for w in args.widths.split(",") if w]  # "" tests exp-edit only
    names = args.corpora.split(",")
    unknown = set(names) - set(CORPORA)
    if unknown:
        parser.error(f"unknown corpora {sorted(unknown)}; known: {', '.join(CORPORA)}")
    human = human_corpus(args.texts)
    corpora: dict[str, Corpus] = {}
    for name in names:
        if name == "human":
            corpora[name] = human
        elif name == "low-temperature":
            t0 = time.perf_counter()
            model, _ = lm.load_eval_lm()
            corpora[name] = low_temperature_corpus(args.texts, model, args.seed)
            print(
                f"sampled {args.texts} texts at T={LOW_TEMPERATURE}: {time.perf_counter() - t0:.0f} s"
            )
        elif name == "repeated":
            corpora[name] = repeated_corpus(human)
        else:
            corpora[name] = shared_corpus(human, args.seed)
    lines = []
    memory_of_key0 = None
    for width in widths:
        keys = fixed_keys(args.keys, start=args.key_start, context_width=width)
        for name, corpus in corpora.items():
            t0 = time.perf_counter()
            # One memory per key and corpus: each corpus is its own deployment's stream.
            memories = [DetectionMemory(k.key_id) for k in keys] if args.memory else None
            p = pvalues(keys, corpus, memories)
            if memories is not None and name == "human":
                memory_of_key0 = memories[0]
            lines += format_rows(name, width, spread_rows(p), overlap_stats(corpus, width))
            print(f"  width {width}, {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    if lines:
        mode = "through one DetectionMemory per key" if args.memory else "stateless"
        print(f"\ngumbel (default params except the width), {mode}, seed {args.seed}\n")
        print(HEADER)
        print("\n".join(lines))
    if args.memory and args.power > 0 and memory_of_key0 is not None:
        model, _ = lm.load_eval_lm()
        key0 = fixed_keys(1, start=args.key_start, context_width=widths[0])[0]
        print("\n| watermarked texts, key 0 | texts | TPR at 0.01 | median scored tokens |")
        print("|---|---|---|---|")
        print("\n".join(power_with_memory(model, key0, memory_of_key0, args.power, args.seed)))
    if args.exp_keys > 0:
        t0 = time.perf_counter()
        corpus = human[: args.exp_texts]
        p = exp_edit_pvalues(
            fixed_keys(args.exp_keys, "exp-edit"),
            corpus,
            per_call_seed=not args.exp_default_seed,
        )
        seeds = "seed=0 for every call" if args.exp_default_seed else "a null seed per call"
        print(f"\nexp-edit (default params, {seeds}), {time.perf_counter() - t0:.0f} s\n")
        print(HEADER)
        print("\n".join(format_rows("human", "–", spread_rows(p), None)))
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
