"""The watermark evaluation study behind ``safeguard eval``.

One run generates text on one model and one set of prompts under every scheme asked for
(safeguard's ``gumbel`` / ``exp`` / ``exp-edit`` and transformers' KGW and SynthID-Text),
then measures, on the same texts:

* power: p-values at the full length, TPR at each false-positive level, tokens to reach
  p ≤ α (prefix scan) with a bootstrap interval on the median, ROC curves;
* robustness: the same after each attack of :mod:`~safeguard.watermark.evaluation.attacks`
  (token substitution / insertion / deletion, word deletion, dilution in human text,
  decode → re-encode, Unicode attacks with and without detection-side normalisation);
* calibration: p-values of human text (held-out passages never seen by the model or the
  keys) under many keys, with the observed false-positive share at each level and its
  binomial interval;
* quality: perplexity under the model and self-BLEU of watermarked vs unwatermarked
  samples from the same prompts, each with a two-sample test at a stated level;
* power against entropy on a synthetic next-token source whose entropy is swept;
* localisation of watermarked spans in mixed documents (``gumbel``).

Results are returned as a dict and written by :func:`write_report` as ``report.json``,
``report.md`` and PNG plots. Needs the ``hf`` and ``plots`` extras (torch, transformers,
matplotlib).
"""

from __future__ import annotations

import hashlib
import logging
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from safeguard.errors import UsageError, missing_dependency
from safeguard.watermark.evaluation.report import (
    HEADLINE_ATTACK,
    PERMUTATION_SCHEMES,
    UNICODE_ATTACKS,
    format_markdown,
    write_report,
)
from safeguard.watermark.evaluation.report import attack_label as _attack_label

__all__ = [
    "COMPETITOR_SCHEMES",
    "DEFAULT_ATTACKS",
    "OUR_SCHEMES",
    "EvalConfig",
    "format_markdown",
    "run_eval",
    "write_report",
]

log = logging.getLogger(__name__)

OUR_SCHEMES = ("gumbel", "exp", "exp-edit")
COMPETITOR_SCHEMES = ("kgw", "synthid")

#: (attack, rate) pairs run by default. Text-level Unicode attacks are run twice: with the
#: detector's normalisation (the default detection path) and without it.
DEFAULT_ATTACKS: tuple[tuple[str, float], ...] = (
    ("substitute", 0.05),
    ("substitute", 0.1),
    ("substitute", 0.2),
    ("substitute", 0.3),
    ("substitute", 0.5),
    ("insert", 0.1),
    ("insert", 0.3),
    ("delete", 0.1),
    ("delete", 0.3),
    ("delete-words", 0.1),
    ("delete-words", 0.3),
    ("dilute", 0.5),
    ("dilute", 0.75),
    ("roundtrip", 0.0),
    ("homoglyphs", 0.3),
    ("zero-width", 0.3),
    ("whitespace", 0.3),
)


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """What one evaluation run measures.

    Attributes:
        model: A directory with a causal LM saved by ``save_pretrained`` (and its tokenizer);
            ``None`` uses the small evaluation LM shipped with safeguard.
        schemes: Schemes to compare: any of ``gumbel``, ``exp``, ``exp-edit``, ``kgw``,
            ``synthid``.
        texts: Watermarked texts per scheme (one per prompt; prompts are the starts of
            held-out human passages).
        permutation_texts: Cap on texts for the permutation-tested schemes (``exp``,
            ``exp-edit``), whose detection costs ~0.5 s per text.
        new_tokens: Tokens generated after each prompt.
        prompt_tokens: Prompt length in tokens.
        temperature: Sampling temperature (every scheme samples; ``top_k=0``). The default
            0.7 gives the shipped LM a mean next-token entropy of ~3 nats (5.4 at 1.0: it is
            a small, briefly trained model), closer to what larger models show at 1.0.
        step: Prefix step (tokens) of the tokens-to-detect scan.
        alpha: Level of the tokens-to-detect scan.
        levels: False-positive rates at which TPR and the null are reported.
        attacks: ``(name, rate)`` pairs applied to the watermarked texts.
        null_keys: Keys under which every human text is tested (``gumbel``, KGW, SynthID),
            so the null sample is ``null_keys × human texts``.
        synthid_null_keys: Keys for SynthID's null (its g-values cost ~30 ms per text).
        permutation_null: Human texts tested under the permutation schemes (level 1e-2 only:
            their resolution is 1e-3).
        entropies: Entropy levels (nats/token) of the synthetic next-token source; empty to
            skip the sweep.
        entropy_texts: Texts per scheme and entropy level in the sweep.
        entropy_tokens: Tokens per text in the sweep.
        localize_docs: Mixed documents (and as many human-only documents) for the
            localisation check; 0 to skip.
        seed: Seeds prompts, keys, sampling and attacks.
        batch_size: Generation batch size.
    """

    model: str | None = None
    schemes: tuple[str, ...] = ("gumbel", "exp-edit", "kgw", "synthid")
    texts: int = 64
    permutation_texts: int = 24
    new_tokens: int = 200
    prompt_tokens: int = 16
    temperature: float = 0.7
    step: int = 5
    alpha: float = 0.01
    levels: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
    attacks: tuple[tuple[str, float], ...] = DEFAULT_ATTACKS
    null_keys: int = 20
    synthid_null_keys: int = 4
    permutation_null: int = 200
    entropies: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 4.0)
    entropy_texts: int = 16
    entropy_tokens: int = 100
    localize_docs: int = 40
    seed: int = 0
    batch_size: int = 16

    def __post_init__(self) -> None:
        known = OUR_SCHEMES + COMPETITOR_SCHEMES
        bad = [s for s in self.schemes if s not in known]
        if bad or not self.schemes:
            raise UsageError(
                f"unknown scheme(s) {', '.join(map(repr, bad)) or '(none given)'}; "
                f"choose from {', '.join(known)}"
            )
        for name in ("texts", "new_tokens", "prompt_tokens", "step", "null_keys", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"`{name}` (={getattr(self, name)!r}) must be at least 1")
        if self.step > self.new_tokens:
            raise UsageError(
                f"`step` (={self.step}) must not exceed `new_tokens` (={self.new_tokens})"
            )
        if not 0 < self.alpha < 1 or any(not 0 < lv < 1 for lv in self.levels):
            raise UsageError("`alpha` and every level must be in (0, 1)")
        if self.temperature <= 0:
            raise UsageError(f"`temperature` (={self.temperature!r}) must be positive")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["attacks"] = [list(a) for a in self.attacks]
        return d


def quick_config(**overrides: Any) -> EvalConfig:
    """A small run (a minute or two on two cores) for smoke tests and first looks."""
    base = dict(
        schemes=("gumbel", "kgw"),
        texts=12,
        permutation_texts=6,
        new_tokens=60,
        step=10,
        attacks=(("substitute", 0.3), ("delete", 0.1), ("homoglyphs", 0.3), ("dilute", 0.5)),
        null_keys=2,
        synthid_null_keys=1,
        permutation_null=20,
        entropies=(1.0, 3.0),
        entropy_texts=6,
        entropy_tokens=40,
        localize_docs=6,
    )
    base.update(overrides)
    return EvalConfig(**base)


# --------------------------------------------------------------------------------------- #
# Small helpers


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise missing_dependency("torch", "hf") from exc
    return torch


def _secret(seed: int, *parts: Any) -> bytes:
    return hashlib.sha256(
        ("safeguard-eval/" + "/".join(map(str, (seed, *parts)))).encode()
    ).digest()


def _rng(seed: int, *parts: Any) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(_secret(seed, "rng", *parts)[:8], "little"))


def _lengths(total: int, step: int) -> list[int]:
    out = list(range(step, total + 1, step))
    if out[-1] != total:
        out.append(total)
    return out


class _Progress:
    """Stage messages and tqdm bars on stderr; silent when ``echo`` is None."""

    def __init__(self, echo: Callable[[str], None] | None) -> None:
        self.echo = echo
        self.t0 = time.perf_counter()

    def stage(self, message: str) -> None:
        if self.echo is not None:
            self.echo(f"[{time.perf_counter() - self.t0:6.0f} s] {message}")

    def bar(self, iterable: Any, desc: str, total: int | None = None) -> Any:
        if self.echo is None:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)


# --------------------------------------------------------------------------------------- #
# Detectors behind one interface


class _Detector:
    """p-values of one scheme under one key, from token ids."""

    name: str
    permutation: bool = False

    def pvalue(self, prompt: np.ndarray, gen: np.ndarray) -> float:
        raise NotImplementedError

    def prefix_pvalues(
        self, prompt: np.ndarray, gen: np.ndarray, lengths: Sequence[int], alpha: float
    ) -> np.ndarray:
        """p-values at each prefix length; entries after the first p ≤ ``alpha`` may be NaN."""
        raise NotImplementedError

    def pvalues(self, prompts: Sequence[np.ndarray], gens: Sequence[np.ndarray]) -> np.ndarray:
        return np.array([self.pvalue(p, g) for p, g in zip(prompts, gens, strict=True)])


class _Ours(_Detector):
    def __init__(self, scheme: str, key: Any) -> None:
        from safeguard.watermark import Watermarker

        self.name = scheme
        self.wm = Watermarker(key)
        self.permutation = scheme in PERMUTATION_SCHEMES
        self.options: dict[str, Any] = (
            {"resolution": 1e-3, "early_stop": 20, "num_threads": 1} if self.permutation else {}
        )

    def pvalue(self, prompt: np.ndarray, gen: np.ndarray) -> float:
        import warnings

        if gen.size == 0:
            return 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(
                self.wm.detect(
                    gen, prompt_ids=prompt, false_positive_rate=0.01, **self.options
                ).p_value
            )

    def prefix_pvalues(
        self, prompt: np.ndarray, gen: np.ndarray, lengths: Sequence[int], alpha: float
    ) -> np.ndarray:
        out = np.full(len(lengths), np.nan)
        for i, n in enumerate(lengths):
            out[i] = self.pvalue(prompt, gen[:n])
            if out[i] <= alpha and self.permutation:
                break  # the scan only needs the first detection; permutation tests are costly
        return out

    def pvalues(self, prompts: Sequence[np.ndarray], gens: Sequence[np.ndarray]) -> np.ndarray:
        import warnings

        if self.permutation or any(g.size == 0 for g in gens):
            return super().pvalues(prompts, gens)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = self.wm.detect_batch(
                list(gens), prompts=list(prompts), false_positive_rate=0.01, num_threads=1
            )
        return np.array([r.p_value for r in results])


class _Theirs(_Detector):
    def __init__(self, competitor: Any) -> None:
        self.name = competitor.name
        self.competitor = competitor

    def pvalue(self, prompt: np.ndarray, gen: np.ndarray) -> float:
        if gen.size == 0:
            return 1.0
        return float(self.competitor.pvalue(prompt, gen))

    def prefix_pvalues(
        self, prompt: np.ndarray, gen: np.ndarray, lengths: Sequence[int], alpha: float
    ) -> np.ndarray:
        return np.asarray(self.competitor.prefix_pvalues(prompt, gen, list(lengths)), dtype=float)


def _competitor(scheme: str, seed: int, index: int, vocab_size: int) -> Any:
    from safeguard.watermark.evaluation import competitors

    rng = _rng(seed, scheme, "key", index)
    if scheme == "kgw":
        return competitors.KGW(hashing_key=int(rng.integers(1, 2**31)), vocab_size=vocab_size)
    return competitors.SynthID(
        keys=[int(k) for k in rng.integers(0, 2**20, size=30)], vocab_size=vocab_size
    )


def _our_key(scheme: str, seed: int, index: int) -> Any:
    from safeguard.watermark import WatermarkKey

    return WatermarkKey.from_secret(_secret(seed, scheme, "key", index), scheme=scheme)


def _detector(scheme: str, seed: int, vocab_size: int, index: int = 0) -> _Detector:
    if scheme in OUR_SCHEMES:
        return _Ours(scheme, _our_key(scheme, seed, index))
    return _Theirs(_competitor(scheme, seed, index, vocab_size))


# --------------------------------------------------------------------------------------- #
# Model, prompts, human text


@dataclass
class _Setup:
    model: Any
    tokenizer: Any
    model_name: str
    prompts: list[np.ndarray]
    human: list[tuple[np.ndarray, np.ndarray]]  # (prompt, continuation) token ids
    vocab_size: int


def _load(config: EvalConfig, progress: _Progress) -> _Setup:
    torch = _torch()
    from safeguard.watermark.evaluation import lm

    if config.model is None:
        model, tokenizer = lm.load_eval_lm()
        name = "safeguard evaluation LM (shipped)"
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(config.model)
        if not path.is_dir():
            raise UsageError(
                f"`--model` (={config.model!r}) is not a directory; pass a folder saved with "
                "save_pretrained (model and tokenizer)"
            )
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        name = str(path)
    progress.stage(
        f"model: {name}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters"
    )

    need = config.prompt_tokens + config.new_tokens
    # Human passages are tokenized whole and cut to length here, never fed whole to the model.
    tokenizer.model_max_length = max(int(getattr(tokenizer, "model_max_length", 0) or 0), 10**9)
    human: list[tuple[np.ndarray, np.ndarray]] = []
    buffer: list[int] = []
    for text in lm.human_texts():
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        # Passages shorter than a text are joined with their successors into one document.
        buffer.extend(
            ids if not buffer else tokenizer("\n\n" + text, add_special_tokens=False)["input_ids"]
        )
        if len(buffer) >= need:
            arr = np.asarray(buffer[:need], dtype=np.int64)
            human.append((arr[: config.prompt_tokens], arr[config.prompt_tokens :]))
            buffer = []
    if len(human) < config.texts:
        raise UsageError(
            f"only {len(human)} human documents of {need} tokens are available; lower "
            "`texts`, `new_tokens` or `prompt_tokens`"
        )
    order = _rng(config.seed, "prompts").permutation(len(human))
    prompts = [human[i][0] for i in order[: config.texts]]
    vocab = int(getattr(model.config, "vocab_size", len(tokenizer)))
    return _Setup(model, tokenizer, name, prompts, human, vocab)


# --------------------------------------------------------------------------------------- #
# Generation


def _generate(
    setup: _Setup,
    scheme: str | None,
    prompts: Sequence[np.ndarray],
    config: EvalConfig,
    progress: _Progress,
    *,
    model: Any = None,
    new_tokens: int | None = None,
    key_index: int = 0,
) -> list[np.ndarray]:
    """Continuations (generated ids only) of ``prompts`` under ``scheme`` (None: plain)."""
    from safeguard.watermark.evaluation.lm import sample

    model = setup.model if model is None else model
    wm = competitor = None
    if scheme in OUR_SCHEMES:
        from safeguard.watermark import Watermarker

        wm = Watermarker(_our_key(scheme, config.seed, key_index))
    elif scheme in COMPETITOR_SCHEMES:
        competitor = _competitor(
            scheme, config.seed, key_index, int(model.config.vocab_size)
        ).generation_config(model.config)
    return sample(
        model,
        prompts,
        watermarker=wm,
        watermarking_config=competitor,
        new_tokens=config.new_tokens if new_tokens is None else new_tokens,
        temperature=config.temperature,
        seed=int.from_bytes(_secret(config.seed, "sample", scheme)[:4], "little"),
        batch_size=config.batch_size,
        progress=lambda it, total: progress.bar(it, f"generate {scheme or 'plain'}", total=total),
    )


# --------------------------------------------------------------------------------------- #
# Attacks


def _attack(
    name: str,
    rate: float,
    gens: Sequence[np.ndarray],
    setup: _Setup,
    config: EvalConfig,
    *,
    normalize: bool,
) -> list[np.ndarray]:
    from safeguard.watermark.evaluation import attacks

    rng = _rng(config.seed, "attack", name, rate)
    tok = setup.tokenizer
    if name in UNICODE_ATTACKS:
        from safeguard.watermark.normalize import normalize_text

        fn = {
            "homoglyphs": attacks.homoglyphs,
            "zero-width": attacks.zero_width,
            "whitespace": attacks.whitespace,
        }[name]
        out = []
        for g in gens:
            text = fn(tok.decode(g.tolist()), rate, rng=rng)
            if normalize:
                text = normalize_text(text)
            out.append(np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64))
        return out
    human = [h for _, h in setup.human]
    result = []
    for i, g in enumerate(gens):
        extra = {}
        if name == "dilute":
            need = math.ceil(g.size * rate / max(1e-9, 1 - rate)) + 1
            pool, j = [], 0
            while sum(h.size for h in pool) < need and j < len(human):
                pool.append(human[(i * 7919 + 13 + j) % len(human)])
                j += 1
            extra["human_ids"] = np.concatenate(pool)
        result.append(
            np.asarray(
                attacks.apply_attack(name, g, rate=rate, tokenizer=tok, rng=rng, **extra),
                dtype=np.int64,
            )
        )
    return result


# --------------------------------------------------------------------------------------- #
# The study


def run_eval(
    config: EvalConfig | None = None, *, echo: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run the study; returns the report as a JSON-serialisable dict (see :func:`write_report`)."""
    from safeguard.watermark.evaluation import metrics, quality

    config = config or EvalConfig()
    progress = _Progress(echo)
    started = time.perf_counter()
    setup = _load(config, progress)
    report: dict[str, Any] = {
        "config": config.to_dict(),
        "environment": _environment(),
        "model": {
            "name": setup.model_name,
            "vocab_size": setup.vocab_size,
            "parameters": int(sum(p.numel() for p in setup.model.parameters())),
            "weights_sha256": _weights_digest(config),
        },
        "schemes": {},
        "attacks": {},
        "null": {},
        "quality": {},
    }
    lengths = _lengths(config.new_tokens, config.step)
    report["lengths"] = lengths

    progress.stage("generating unwatermarked samples")
    plain = _generate(setup, None, setup.prompts, config, progress)
    report["model"]["entropy_plain"] = _mean_entropy(
        setup, setup.prompts, plain, config.temperature
    )

    gens: dict[str, list[np.ndarray]] = {}
    prompts_of: dict[str, list[np.ndarray]] = {}
    for scheme in config.schemes:
        n = config.texts
        if scheme in PERMUTATION_SCHEMES:
            n = min(n, config.permutation_texts)
        prompts_of[scheme] = setup.prompts[:n]
        progress.stage(f"generating {n} texts with {scheme}")
        t0 = time.perf_counter()
        gens[scheme] = _generate(setup, scheme, prompts_of[scheme], config, progress)
        report["schemes"][scheme] = {
            "texts": n,
            "generation_seconds": time.perf_counter() - t0,
            "entropy": _mean_entropy(setup, prompts_of[scheme], gens[scheme], config.temperature),
            "distortion_free": scheme in OUR_SCHEMES,
        }

    # ---- power and tokens to detect -------------------------------------------------------
    for scheme in config.schemes:
        det = _detector(scheme, config.seed, setup.vocab_size)
        prompts = prompts_of[scheme]
        entry = report["schemes"][scheme]
        progress.stage(f"detecting {scheme}")
        t0 = time.perf_counter()
        p_full = det.pvalues(prompts, gens[scheme])
        entry["p_values"] = p_full.tolist()
        variants = {"clean": gens[scheme]}
        variants["substitute 0.3"] = _attack(
            *HEADLINE_ATTACK, gens[scheme], setup, config, normalize=True
        )
        entry["tokens_to_detect"] = {}
        for label, data in variants.items():
            rows = [
                _pad(
                    det.prefix_pvalues(p, g, [n for n in lengths if n <= g.size], config.alpha),
                    len(lengths),
                )
                if g.size >= lengths[0]
                else np.full(len(lengths), np.nan)
                for p, g in progress.bar(
                    zip(prompts, data, strict=True), f"{scheme} {label} scan", len(prompts)
                )
            ]
            prefix = np.stack(rows)
            ttd = metrics.tokens_to_detect(prefix, lengths, alpha=config.alpha)
            med = metrics.median_with_ci(ttd, n_boot=1000, seed=config.seed)
            entry["tokens_to_detect"][label] = {
                "per_text": [None if not math.isfinite(v) else float(v) for v in ttd],
                "median": _num(med.median),
                "ci": [_num(med.ci_low), _num(med.ci_high)],
                "detected_share": float(np.mean(np.isfinite(ttd))),
                "curve": metrics.detection_curve(ttd, lengths).tolist(),
            }
        entry["tpr"] = [
            r.to_dict() for r in metrics.tpr_at_fpr(p_full, config.levels, seed=config.seed)
        ]
        entry["detection_seconds"] = time.perf_counter() - t0

    # ---- robustness -------------------------------------------------------------------------
    attack_runs: list[tuple[str, float, bool]] = []
    for name, rate in config.attacks:
        attack_runs.append((name, rate, True))
        if name in UNICODE_ATTACKS:
            attack_runs.append((name, rate, False))
    for name, rate, normalize in attack_runs:
        label = _attack_label(name, rate, normalize)
        row: dict[str, Any] = {}
        for scheme in config.schemes:
            det = _detector(scheme, config.seed, setup.vocab_size)
            attacked = _attack(name, rate, gens[scheme], setup, config, normalize=normalize)
            p = det.pvalues(prompts_of[scheme], attacked)
            row[scheme] = {
                "p_values": p.tolist(),
                "median_p": float(np.median(p)),
                "tpr": [
                    r.to_dict() for r in metrics.tpr_at_fpr(p, config.levels, seed=config.seed)
                ],
                "mean_tokens": float(np.mean([a.size for a in attacked])),
            }
        report["attacks"][label] = row
        progress.stage(
            f"attack {label}: "
            + ", ".join(
                f"{s} TPR@{config.levels[0]:g} {row[s]['tpr'][0]['rate']:.2f}"
                for s in config.schemes
            )
        )

    # ---- calibration on human text ----------------------------------------------------------
    human_prompts = [h[0] for h in setup.human]
    human_texts = [h[1] for h in setup.human]
    for scheme in config.schemes:
        progress.stage(f"null: {scheme} on human text")
        if scheme in PERMUTATION_SCHEMES:
            n = min(config.permutation_null, len(human_texts))
            det = _detector(scheme, config.seed, setup.vocab_size, 0)
            p_null = det.pvalues(human_prompts[:n], human_texts[:n])
            levels = tuple(lv for lv in config.levels if lv >= 1e-2)
            keys = 1
        else:
            keys = config.synthid_null_keys if scheme == "synthid" else config.null_keys
            chunks = []
            for k in progress.bar(range(keys), f"null {scheme}", keys):
                det = _detector(scheme, config.seed, setup.vocab_size, 1000 + k)
                chunks.append(det.pvalues(human_prompts, human_texts))
            p_null = np.concatenate(chunks)
            levels = config.levels
        report["null"][scheme] = {
            "n": int(p_null.size),
            "keys": keys,
            "texts": int(p_null.size // keys),
            "checks": [c.to_dict() for c in metrics.fpr_check(p_null, levels)],
            "p_values": p_null.tolist(),
        }
        if keys >= 2:  # the rate under each fixed key, as a deployment sees it
            report["null"][scheme]["per_key"] = metrics.per_key_spread(
                p_null.reshape(keys, -1), levels
            )
        fpr_grid, tpr_grid, auc = metrics.roc(
            np.asarray(report["schemes"][scheme]["p_values"]), p_null
        )
        sub = np.asarray(
            report["attacks"]
            .get(_attack_label(*HEADLINE_ATTACK), {})
            .get(scheme, {})
            .get("p_values", [])
        )
        report["schemes"][scheme]["roc"] = _thin_roc(fpr_grid, tpr_grid, auc)
        if sub.size:
            f2, t2, a2 = metrics.roc(sub, p_null)
            report["schemes"][scheme]["roc_substitute_0.3"] = _thin_roc(f2, t2, a2)

    # ---- quality ------------------------------------------------------------------------------
    progress.stage("quality: perplexity and self-BLEU")
    plain_ppl = quality.perplexity(
        setup.model,
        [np.concatenate([p, g]) for p, g in zip(setup.prompts, plain, strict=True)],
        prompt_lengths=[len(p) for p in setup.prompts],
    )
    report["quality"]["plain"] = {
        "perplexity_mean": float(np.mean(plain_ppl)),
        "self_bleu": float(quality.self_bleu([g.tolist() for g in plain])),
    }
    for scheme in config.schemes:
        prompts = prompts_of[scheme]
        ppl = quality.perplexity(
            setup.model,
            [np.concatenate([p, g]) for p, g in zip(prompts, gens[scheme], strict=True)],
            prompt_lengths=[len(p) for p in prompts],
        )
        test = quality.compare(
            np.log(ppl), np.log(plain_ppl[: len(ppl)]), alpha=config.alpha, seed=config.seed
        )
        bleu = quality.compare_self_bleu(
            [g.tolist() for g in gens[scheme]],
            [g.tolist() for g in plain[: len(ppl)]],
            alpha=config.alpha,
            seed=config.seed,
        )
        report["quality"][scheme] = {
            "perplexity_mean": float(np.mean(ppl)),
            "log_perplexity_test": _as_dict(test),
            "self_bleu_test": _as_dict(bleu),
        }

    # ---- entropy sweep --------------------------------------------------------------------------
    if config.entropies:
        report["entropy_sweep"] = _entropy_sweep(config, setup, progress)

    # ---- localisation ---------------------------------------------------------------------------
    if config.localize_docs and "gumbel" in config.schemes:
        report["localization"] = _localization(config, setup, gens["gumbel"], progress)

    report["seconds"] = time.perf_counter() - started
    progress.stage(f"done in {report['seconds']:.0f} s")
    return report


def _weights_digest(config: EvalConfig) -> str | None:
    """SHA-256 of the model's safetensors file, so a report names the exact weights."""
    from safeguard.watermark.evaluation import lm

    folder = Path(config.model) if config.model is not None else lm.EVAL_LM_DIR
    path = folder / "model.safetensors"
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pad(values: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    out[: min(n, values.size)] = values[:n]
    return out


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _as_dict(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return asdict(obj)


def _thin_roc(fpr: np.ndarray, tpr: np.ndarray, auc: float, points: int = 200) -> dict[str, Any]:
    """The ROC's corners (every point where TPR changes) plus a log-spaced sample of FPR."""
    fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    change = np.flatnonzero(np.diff(tpr) != 0)
    positive = fpr[fpr > 0]
    grid = np.geomspace(positive.min(), 1.0, points) if positive.size else np.array([], dtype=float)
    sampled = np.searchsorted(fpr, grid).clip(0, len(fpr) - 1)
    idx = np.unique(np.concatenate([[0, len(fpr) - 1], change, change + 1, sampled]))
    return {"fpr": fpr[idx].tolist(), "tpr": tpr[idx].tolist(), "auc": float(auc)}


def _mean_entropy(
    setup: _Setup,
    prompts: Sequence[np.ndarray],
    gens: Sequence[np.ndarray],
    temperature: float = 1.0,
) -> float:
    """Mean entropy (nats) of the distribution sampled from (the model's at ``temperature``)
    at each generated position."""
    torch = _torch()
    total, count = 0.0, 0
    with torch.no_grad():
        for p, g in zip(prompts, gens, strict=True):
            ids = torch.as_tensor(np.concatenate([p, g]))[None]
            logits = setup.model(ids).logits[0, len(p) - 1 : -1].double() / temperature
            logp = torch.log_softmax(logits, dim=-1)
            h = -(logp.exp() * logp).sum(-1)
            total += float(h.sum())
            count += int(h.numel())
    return total / max(count, 1)


def _entropy_sweep(config: EvalConfig, setup: _Setup, progress: _Progress) -> dict[str, Any]:
    from safeguard.watermark.evaluation import metrics, synthetic

    lengths = _lengths(config.entropy_tokens, config.step)
    sweep: dict[str, Any] = {"levels": list(config.entropies), "lengths": lengths, "schemes": {}}
    models = synthetic.entropy_sweep(config.entropies, seed=config.seed)
    sweep["achieved"] = [m.source.mean_entropy(m.source.inverse_temperature) for m in models]
    sweep_cfg = replace(config, temperature=1.0)
    rng = _rng(config.seed, "sweep-prompts")
    prompts = [
        rng.integers(0, models[0].config.vocab_size, size=4) for _ in range(config.entropy_texts)
    ]
    for scheme in config.schemes:
        rows = []
        for level, model in zip(config.entropies, models, strict=True):
            progress.stage(f"entropy sweep: {scheme} at {level:g} nats")
            gens = _generate(
                setup,
                scheme,
                prompts,
                sweep_cfg,
                _Progress(None),
                model=model,
                new_tokens=config.entropy_tokens,
            )
            det = _detector(scheme, config.seed, int(model.config.vocab_size))
            prefix = np.stack(
                [
                    _pad(det.prefix_pvalues(p, g, lengths, config.alpha), len(lengths))
                    for p, g in zip(prompts, gens, strict=True)
                ]
            )
            ttd = metrics.tokens_to_detect(prefix, lengths, alpha=config.alpha)
            med = metrics.median_with_ci(ttd, n_boot=500, seed=config.seed)
            rows.append(
                {
                    "entropy": level,
                    "median": _num(med.median),
                    "ci": [_num(med.ci_low), _num(med.ci_high)],
                    "detected_share": float(np.mean(np.isfinite(ttd))),
                }
            )
        sweep["schemes"][scheme] = rows
    return sweep


def _localization(
    config: EvalConfig, setup: _Setup, watermarked: Sequence[np.ndarray], progress: _Progress
) -> dict[str, Any]:
    from safeguard.watermark import Watermarker
    from safeguard.watermark.evaluation import attacks

    progress.stage("localisation on mixed documents")
    wm = Watermarker(_our_key("gumbel", config.seed, 0))
    rng = _rng(config.seed, "localize")
    human = [h for _, h in setup.human]
    found, errors, spans_per_doc = 0, [], []
    for i in range(config.localize_docs):
        gen = watermarked[i % len(watermarked)]
        host = np.concatenate([human[(2 * i) % len(human)], human[(2 * i + 1) % len(human)]])
        doc, mask = attacks.dilute(gen, host, gen.size / (gen.size + host.size), rng=rng)
        result = wm.localize(doc, false_positive_rate=config.alpha)
        truth = np.flatnonzero(mask)
        t0, t1 = int(truth[0]), int(truth[-1]) + 1
        spans_per_doc.append(len(result.spans))
        hits = [s for s in result.spans if s.start < t1 and s.end > t0]
        if hits:
            found += 1
            best = max(hits, key=lambda s: min(s.end, t1) - max(s.start, t0))
            errors.append(abs(best.start - t0) + abs(best.end - t1))
    false_docs = 0
    for i in range(config.localize_docs):
        doc = np.concatenate([human[(2 * i + 1) % len(human)], human[(2 * i + 2) % len(human)]])
        if wm.localize(doc, false_positive_rate=config.alpha).spans:
            false_docs += 1
    from safeguard.watermark.evaluation import metrics

    check = metrics.fpr_check(
        np.array([0.0] * false_docs + [1.0] * (config.localize_docs - false_docs)), (config.alpha,)
    )
    return {
        "documents": config.localize_docs,
        "watermarked_tokens": int(watermarked[0].size),
        "found_share": found / config.localize_docs,
        "boundary_error_median": float(np.median(errors)) if errors else None,
        "boundary_error_p90": float(np.quantile(errors, 0.9)) if errors else None,
        "human_documents_with_spans": false_docs,
        "family_wise_check": check[0].to_dict(),
    }


def _environment() -> dict[str, Any]:
    env = {"python": platform.python_version(), "machine": platform.machine()}
    for mod in ("torch", "transformers", "numpy"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - reporting only
            env[mod] = None
    try:
        from safeguard import __version__

        env["safeguard"] = __version__
    except Exception:  # pragma: no cover
        pass
    return env
