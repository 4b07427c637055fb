"""Detection results (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["DetectionResult", "MultiKeyResult"]

PValueMethod = Literal["gamma-exact", "permutation", "permutation-cached", "none"]


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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["warnings"] = list(self.warnings)
        return d


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [r.to_dict() for r in self.results],
            "adjusted_p_values": list(self.adjusted_p_values),
            "is_watermarked": self.is_watermarked,
            "best_key_id": self.best_key_id,
            "false_positive_rate": self.false_positive_rate,
        }
