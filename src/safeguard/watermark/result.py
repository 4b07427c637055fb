"""Detection results (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["MIN_SCORED_TOKENS", "DetectionResult", "MultiKeyResult", "Verdict"]

PValueMethod = Literal["gamma-exact", "permutation", "permutation-cached", "none"]

#: Below this many scored tokens a test that does not flag a text says nothing either way:
#: its verdict is "too short to test", never "not watermarked" (and the detection service
#: withholds the statistics of such texts, which would describe single tokens).
MIN_SCORED_TOKENS = 16

#: What a result means, in words a moderation pipeline can branch on.
Verdict = Literal["watermarked", "not watermarked", "too short to test"]


@dataclass(frozen=True, kw_only=True)
class DetectionResult:
    """The outcome of testing one token sequence against one key.

    Attributes:
        p_value: Probability, under the null (text independent of the key), of a score at
            least this extreme. Exact (``gamma-exact``) or a valid permutation p-value.
        score: The scheme's test statistic (higher is more watermarked for ``gumbel``; for
            ``exp``/``exp-edit`` it is the alignment cost, lower is more watermarked).
        num_tokens: Tokens in the text after stripping the prompt.
        num_scored: Independent terms that entered the statistic (after skipping tokens
            without a full context and repeated contexts).
        is_watermarked: ``p_value <= false_positive_rate``.
        false_positive_rate: The rate the caller chose.
        key_id: Public id of the key tested (never the secret).
        scheme: Scheme name.
        method: How the p-value was obtained.
        min_p_value: Smallest p-value the method could report (permutation tests), else 0.
        approximate: True when the p-value comes from a cached null table that assumes
            distinct tokens rather than from resamples matching this text.
        warnings: Human-readable caveats (text too short, resolution too coarse, ...).
        verdict: ``"watermarked"`` when flagged; ``"too short to test"`` when not flagged and
            fewer than :data:`MIN_SCORED_TOKENS` tokens were scored (absence of evidence, not
            evidence of absence); else ``"not watermarked"``. Derived when not given.
    """

    p_value: float
    score: float
    num_tokens: int
    num_scored: int
    is_watermarked: bool
    false_positive_rate: float
    key_id: str
    scheme: str
    method: PValueMethod = "gamma-exact"
    min_p_value: float = 0.0
    approximate: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)
    verdict: Verdict | None = None

    def __post_init__(self) -> None:
        if self.verdict is None:
            object.__setattr__(self, "verdict", _verdict(self.is_watermarked, self.num_scored))

    @property
    def too_short(self) -> bool:
        """Whether the text was too short for a negative answer (see :attr:`verdict`)."""
        return self.verdict == "too short to test"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["warnings"] = list(self.warnings)
        return d


def _verdict(flagged: bool, num_scored: int) -> Verdict:
    if flagged:
        return "watermarked"
    return "too short to test" if num_scored < MIN_SCORED_TOKENS else "not watermarked"


@dataclass(frozen=True, kw_only=True)
class MultiKeyResult:
    """Detection against several keys with Holm–Bonferroni adjustment.

    Attributes:
        results: One result per key, in the order given (raw p-values).
        adjusted_p_values: Holm-adjusted p-values, same order.
        is_watermarked: Whether any adjusted p-value is at most the false-positive rate.
        best_key_id: Key with the smallest adjusted p-value.
        false_positive_rate: Family-wise rate the caller chose.
    """

    results: tuple[DetectionResult, ...]
    adjusted_p_values: tuple[float, ...]
    is_watermarked: bool
    best_key_id: str
    false_positive_rate: float

    @property
    def verdict(self) -> Verdict:
        """``watermarked`` if flagged; ``too short to test`` if no key's test could say no."""
        if self.is_watermarked:
            return "watermarked"
        if all(r.too_short for r in self.results):
            return "too short to test"
        return "not watermarked"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "results": [r.to_dict() for r in self.results],
            "adjusted_p_values": list(self.adjusted_p_values),
            "is_watermarked": self.is_watermarked,
            "best_key_id": self.best_key_id,
            "false_positive_rate": self.false_positive_rate,
        }
