"""Localisation of watermarked spans in a mixed document (``gumbel`` scheme), numpy/scipy only.

A document may hold watermarked text pasted between human sentences. Detection over the
whole document dilutes the evidence; localisation scans windows instead.

1. Per-token scores ``s_t = -log(1 - u_t)`` of the scored tokens (first occurrence of each
   context, as in detection). Under the null (text independent of the key) they are
   i.i.d. Exp(1), so the sum of ``k`` consecutive scores is Gamma(k, 1) and a window's
   p-value ``Q(k, S)`` is exact.
2. Windows of dyadic sizes ``min_window, 2 min_window, 4 min_window, ...`` (up to the
   number of scored tokens, plus the whole document) start every quarter of their size
   (and one ends at the last token). With ``m`` windows tested, the Bonferroni-adjusted
   p-value ``min(1, m p)`` controls the family-wise error: on an unwatermarked document the
   probability that any span is reported is at most the false-positive rate.
3. Where some window is significant, the edges are set by a two-state segmentation of the
   scores (Viterbi): watermarked tokens are modelled as Exp with mean ``mu`` (the mean score
   of the most significant window), human ones as Exp(1); a token adds its log-likelihood
   ratio ``log(1/mu) + s (1 - 1/mu)`` to a segment and each segment costs ``log(num_scored)``.
   The chosen segments maximise the total, which places each edge where the evidence stops
   and keeps two spans apart when the human text between them is long enough to outweigh
   the cost of a second segment.
4. A segment is reported only if a significant window overlaps it by at least half of the
   window; its p-value is the smallest adjusted p-value of those windows (valid under the
   family-wise bound above: it is not the p-value of the data-chosen span itself).

A token's score depends on its own id and the ``h`` tokens before it, so the evidence for
a scored token also implicates its context: a span starts ``h`` tokens before its first
scored token. The first ``h`` tokens of a pasted span have human context and carry no
evidence, which is why the start is placed this way.

>>> import numpy as np
>>> terms = np.full(300, 0.7)
>>> terms[100:200] = 2.5                        # a watermarked stretch of scored tokens
>>> res = localize_scores(np.arange(1, 301), terms, num_tokens=301, context_width=1,
...                       false_positive_rate=1e-3)
>>> [(s.start, s.end) for s in res.spans]      # token 100 is the context of token 101
[(100, 201)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import special

from safeguard.errors import ConfigError

__all__ = ["LocalizationResult", "Span", "localize_scores", "scan_windows"]

LocalizationMethod = Literal["bonferroni"]


@dataclass(frozen=True)
class Span:
    """A watermarked span of token positions ``[start, end)``.

    Attributes:
        start: Index of the first token of the span.
        end: One past the last token.
        p_value: Family-wise adjusted p-value of the evidence for the span.
    """

    start: int
    end: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "p_value": self.p_value}


@dataclass(frozen=True, kw_only=True)
class LocalizationResult:
    """The watermarked spans found in one document.

    Attributes:
        spans: The spans, in document order (empty if none is significant).
        false_positive_rate: Family-wise rate the caller chose: on unwatermarked text, the
            probability that any span is reported is at most this.
        num_tokens: Tokens in the document (after the prompt).
        windows_tested: Number ``m`` of windows in the Bonferroni correction.
        method: How window p-values were adjusted.
        num_scored: Tokens that carry a score (full, first-seen context).
        key_id: Public id of the key tested.
    """

    spans: tuple[Span, ...]
    false_positive_rate: float
    num_tokens: int
    windows_tested: int
    method: LocalizationMethod = "bonferroni"
    num_scored: int = 0
    key_id: str = ""

    @property
    def is_watermarked(self) -> bool:
        """Whether any span was found."""
        return bool(self.spans)

    def mask(self) -> np.ndarray:
        """Boolean array of shape ``(num_tokens,)``: True inside a reported span."""
        out = np.zeros(self.num_tokens, dtype=bool)
        for span in self.spans:
            out[span.start : span.end] = True
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "spans": [s.to_dict() for s in self.spans],
            "is_watermarked": self.is_watermarked,
            "false_positive_rate": self.false_positive_rate,
            "num_tokens": self.num_tokens,
            "num_scored": self.num_scored,
            "windows_tested": self.windows_tested,
            "method": self.method,
            "key_id": self.key_id,
        }


def scan_windows(
    terms: np.ndarray, *, min_window: int = 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact Gamma p-values of the scan windows over the scores ``terms``.

    Args:
        terms: Scores of the scored tokens, shape ``(n,)``, Exp(1) under the null.
        min_window: Smallest window (in scored tokens); sizes double up to ``n``.

    Returns:
        ``(starts, sizes, p_values)`` of every window, each of shape ``(m,)``; a window covers
        scores ``starts[i] : starts[i] + sizes[i]``.
    """
    n = int(terms.size)
    if n == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0)
    sizes = []
    w = min_window
    while w <= n:
        sizes.append(w)
        w *= 2
    if not sizes or sizes[-1] != n:
        sizes.append(n)  # the whole document
    cumulative = np.concatenate([[0.0], np.cumsum(terms)])
    all_starts, all_sizes = [], []
    for size in sizes:
        starts = np.arange(0, n - size + 1, max(1, size // 4), dtype=np.int64)
        if starts[-1] != n - size:
            starts = np.append(starts, n - size)
        all_starts.append(starts)
        all_sizes.append(np.full(starts.size, size, dtype=np.int64))
    starts = np.concatenate(all_starts)
    lengths = np.concatenate(all_sizes)
    sums = cumulative[starts + lengths] - cumulative[starts]
    return starts, lengths, special.gammaincc(lengths, np.maximum(sums, 0.0))


def _segments(terms: np.ndarray, mean: float, penalty: float) -> list[tuple[int, int]]:
    """Disjoint segments ``[i, j)`` maximising the summed log-likelihood ratio minus penalties."""
    llr = math.log(1.0 / mean) + terms * (1.0 - 1.0 / mean)
    n = terms.size
    # Two states: 0 = human, 1 = watermarked; entering state 1 costs `penalty`.
    best_out, best_in = 0.0, -math.inf
    from_in = np.zeros(n, dtype=bool)  # state 0 at t reached from state 1 at t-1
    stay_in = np.zeros(n, dtype=bool)  # state 1 at t reached from state 1 at t-1
    for t, x in enumerate(llr.tolist()):
        enter = best_out - penalty
        stay_in[t] = best_in >= enter
        new_in = max(best_in, enter) + x
        from_in[t] = best_in > best_out
        new_out = max(best_out, best_in)
        best_out, best_in = new_out, new_in
    state = 1 if best_in > best_out else 0
    segments, end = [], None
    for t in range(n - 1, -1, -1):
        if state == 1:
            if end is None:
                end = t + 1
            if not stay_in[t]:
                segments.append((t, end))
                end, state = None, 0
        else:
            state = 1 if from_in[t] else 0
    return segments[::-1]


def localize_scores(
    positions: np.ndarray,
    terms: np.ndarray,
    *,
    num_tokens: int,
    context_width: int,
    false_positive_rate: float,
    min_window: int = 16,
    key_id: str = "",
) -> LocalizationResult:
    """Find watermarked spans from per-token scores (the pure core of ``Watermarker.localize``).

    Args:
        positions: Token index of each score, increasing, shape ``(n,)``.
        terms: The scores, Exp(1) under the null, shape ``(n,)``.
        num_tokens: Length of the document in tokens.
        context_width: ``h``: a span starts ``h`` tokens before its first scored token.
        false_positive_rate: Family-wise rate of reporting any span on unwatermarked text.
        min_window: Smallest window, in scored tokens (>= 1).
        key_id: Recorded in the result.

    Raises:
        ConfigError: A bad ``min_window`` or mismatched inputs.
    """
    if isinstance(min_window, bool) or not isinstance(min_window, int) or min_window < 1:
        raise ConfigError(
            f"`min_window` (={min_window!r}) must be an integer >= 1; typical values are 16-64"
        )
    positions = np.asarray(positions, dtype=np.int64)
    terms = np.asarray(terms, dtype=float)
    if positions.shape != terms.shape or positions.ndim != 1:
        raise ConfigError(
            f"`positions` {positions.shape} and `terms` {terms.shape} must be 1-D of one length"
        )
    starts, sizes, p_values = scan_windows(terms, min_window=min_window)
    m = int(p_values.size)
    adjusted = np.minimum(1.0, m * p_values)
    significant = np.flatnonzero(adjusted <= false_positive_rate)
    spans: tuple[Span, ...] = ()
    if significant.size:
        found = _backed_segments(terms, starts, sizes, p_values, adjusted, significant)
        spans = _token_spans(found, positions, context_width)
    return LocalizationResult(
        spans=spans,
        false_positive_rate=false_positive_rate,
        num_tokens=int(num_tokens),
        windows_tested=m,
        num_scored=int(terms.size),
        key_id=key_id,
    )


def _watermarked_mean(terms: np.ndarray, mean: float, penalty: float) -> float:
    """The watermarked tokens' mean score, refined twice on the segments it finds."""
    for _ in range(2):
        inside = np.zeros(terms.size, dtype=bool)
        for i, j in _segments(terms, mean, penalty):
            inside[i:j] = True
        if not inside.any() or terms[inside].mean() <= 1.0:
            break
        mean = float(terms[inside].mean())
    return mean


def _backed_segments(
    terms: np.ndarray,
    starts: np.ndarray,
    sizes: np.ndarray,
    p_values: np.ndarray,
    adjusted: np.ndarray,
    significant: np.ndarray,
) -> list[tuple[int, int, float]]:
    """``(i, j, p)`` in scored-token indices: the segments that a significant window backs
    (overlaps by half of itself), then the significant windows that touch no segment."""
    best = significant[np.argmin(p_values[significant])]
    mean = float(terms[starts[best] : starts[best] + sizes[best]].mean())
    penalty = max(1.0, math.log(terms.size))
    mean = _watermarked_mean(terms, mean, penalty)
    sig_lo, sig_hi = starts[significant], starts[significant] + sizes[significant]
    found: list[tuple[int, int, float]] = []
    covered = np.zeros(significant.size, dtype=bool)
    for i, j in _segments(terms, mean, penalty):
        overlap = np.minimum(sig_hi, j) - np.maximum(sig_lo, i)
        backing = 2 * overlap >= sizes[significant]
        if backing.any():
            covered |= overlap > 0
            found.append((i, j, float(adjusted[significant][backing].min())))
    # Significant windows that touch no reported segment are reported as they are (merged).
    for k in np.flatnonzero(~covered):
        found.append((int(sig_lo[k]), int(sig_hi[k]), float(adjusted[significant][k])))
    return found


def _token_spans(
    found: list[tuple[int, int, float]], positions: np.ndarray, context_width: int
) -> tuple[Span, ...]:
    """Scored-index segments as token spans (starting ``h`` tokens early); overlaps merge."""
    spans: list[list[float]] = []
    for i, j, p in sorted(
        (max(int(positions[i]) - context_width, 0), int(positions[j - 1]) + 1, p)
        for i, j, p in found
    ):
        if spans and i < spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], j)
            spans[-1][2] = min(spans[-1][2], p)
        else:
            spans.append([i, j, p])
    return tuple(Span(int(a), int(b), float(p)) for a, b, p in spans)
