"""What a caller learns per text: a verdict; with ``statistics`` detail, coarse p-values.

Never scores or per-token values. p-values are rounded up to :data:`P_VALUE_GRID` (still
valid p-values, too coarse to read single tokens' values from), and a text that is not
flagged and has fewer than ``MIN_SCORED_TOKENS`` scored tokens is "too short to test",
without statistics (``src/safeguard/serve/README.md``, "What a caller with a token can
learn about a key").
"""

from __future__ import annotations

from typing import Any

from safeguard.serve.engine import TextOutcome

__all__ = ["P_VALUE_GRID", "coarse_p_value", "result_dicts"]


#: p-values are reported rounded up to this grid: still valid p-values (rounding up keeps
#: P(p ≤ α) ≤ α), and too coarse to read single tokens' values from.
P_VALUE_GRID = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, *(10.0**-k for k in range(3, 31)))


def coarse_p_value(p: float) -> float:
    """``p`` rounded up to :data:`P_VALUE_GRID` (below 1e-30: 1e-30).

    >>> coarse_p_value(0.37), coarse_p_value(0.012), coarse_p_value(3.1e-7), coarse_p_value(0.0)
    (0.5, 0.02, 1e-06, 1e-30)
    """
    for bound in reversed(P_VALUE_GRID):
        if p <= bound:
            return bound
    return 1.0


def result_dicts(
    texts: list[str], outcomes: list[TextOutcome], decision_only: bool
) -> list[dict[str, Any]]:
    """Per-text results in the shape of :class:`TextResult` (unset fields left out).

    What a caller learns is aggregate and coarse: a verdict per text; with ``statistics``
    detail, p-values rounded up to :data:`P_VALUE_GRID` and token counts, never scores.
    A text with fewer than ``MIN_SCORED_TOKENS`` scored tokens that is not flagged is
    "too short to test", without statistics.
    """
    results: list[dict[str, Any]] = []
    for i, (text, outcome) in enumerate(zip(texts, outcomes, strict=True)):
        if not text:
            results.append(
                {
                    "index": i,
                    "is_watermarked": None,
                    "error": "the text is empty; there is nothing to test",
                }
            )
            continue
        if outcome.result is None:
            results.append({"index": i, "is_watermarked": None, "error": outcome.error})
            continue
        multi = outcome.result
        verdict = multi.verdict
        entry: dict[str, Any] = {
            "index": i,
            "is_watermarked": multi.is_watermarked,
            "verdict": verdict,
        }
        if not decision_only and verdict != "too short to test":
            entry.update(
                p_value=coarse_p_value(min(multi.adjusted_p_values)),
                best_key_id=multi.best_key_id,
                results=[
                    {
                        "key_id": r.key_id,
                        "scheme": r.scheme,
                        "verdict": r.verdict,
                        "p_value": coarse_p_value(r.p_value),
                        "adjusted_p_value": coarse_p_value(adj),
                        "num_tokens": r.num_tokens,
                        "num_scored": r.num_scored,
                        "method": r.method,
                        "min_p_value": r.min_p_value,
                        "approximate": r.approximate,
                        "warnings": list(r.warnings),
                    }
                    for r, adj in zip(multi.results, multi.adjusted_p_values, strict=True)
                ],
            )
        results.append(entry)
    return results
