"""What one ``safeguard eval`` run measures: :class:`EvalConfig`, its quick preset, and the
schemes and attacks the study knows.

Plain data with validation; importing it loads neither torch nor transformers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from safeguard.errors import UsageError

__all__ = [
    "COMPETITOR_SCHEMES",
    "DEFAULT_ATTACKS",
    "OUR_SCHEMES",
    "EvalConfig",
    "quick_config",
]

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
        forgery_keys: Keys the hill-climbing forger attacks per oracle (``gumbel``; 0 skips).
        forgery_budget: Texts the forger may have tested per key (the detection service's
            default daily budget per tenant and key is 1,000).
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
    forgery_keys: int = 10
    forgery_budget: int = 1000
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
        forgery_keys=2,
        forgery_budget=300,
    )
    base.update(overrides)
    return EvalConfig(**base)
