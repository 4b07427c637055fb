"""Detection of a batch of texts against one or more keys (no HTTP here).

Each key tokenizes the texts with its own tokenizer (texts are tokenized once per distinct
tokenizer), scores the whole batch with :meth:`Watermarker.detect_batch`, and, when several
keys are tested, the p-values of each text are Holm-adjusted across keys exactly as
:func:`safeguard.watermark.detect_many` does.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from safeguard.serve.keystore import KeyEntry
from safeguard.watermark.normalize import normalize_text
from safeguard.watermark.result import DetectionResult, MultiKeyResult
from safeguard.watermark.stats import holm

__all__ = ["TextOutcome", "detect_texts"]


@dataclass(frozen=True)
class TextOutcome:
    """The outcome for one text: a multi-key result, or the reason it could not be tested."""

    result: MultiKeyResult | None
    error: str | None = None


def _tokenize(tokenizer: Any, texts: Sequence[str | None]) -> list[list[int] | None]:
    # Unicode edits (zero-width, look-alike letters, odd spaces) are undone first, as in
    # Watermarker.detect_text; ASCII text is unchanged by it.
    return [
        None
        if t is None
        else list(tokenizer(normalize_text(t), add_special_tokens=False)["input_ids"])
        for t in texts
    ]


def detect_texts(
    entries: Sequence[KeyEntry],
    texts: Sequence[str],
    *,
    prompts: Sequence[str | None] | None = None,
    false_positive_rate: float,
    num_threads: int = 1,
) -> list[TextOutcome]:
    """Test every text against every key of ``entries``.

    Args:
        entries: Keys to test (at least one).
        texts: The texts, in request order.
        prompts: The prompt of each text (or ``None``), never scored.
        false_positive_rate: Family-wise false-positive rate per text.
        num_threads: Threads for the vectorised detector.

    Returns:
        One :class:`TextOutcome` per text, in order.
    """
    prompts = list(prompts) if prompts is not None else [None] * len(texts)
    token_cache: dict[str, tuple[list[list[int] | None], list[list[int] | None]]] = {}
    per_key: list[list[DetectionResult | str]] = []
    for entry in entries:
        if entry.tokenizer_id not in token_cache:
            token_cache[entry.tokenizer_id] = (
                _tokenize(entry.tokenizer, texts),
                _tokenize(entry.tokenizer, prompts),
            )
        ids, prompt_ids = token_cache[entry.tokenizer_id]
        per_key.append(_detect_one_key(entry, ids, prompt_ids, false_positive_rate, num_threads))

    outcomes: list[TextOutcome] = []
    for i in range(len(texts)):
        row = [results[i] for results in per_key]
        failed = [r for r in row if isinstance(r, str)]
        if failed:
            outcomes.append(TextOutcome(None, failed[0]))
            continue
        results = tuple(r for r in row if isinstance(r, DetectionResult))
        adjusted = holm([r.p_value for r in results])
        best = min(range(len(adjusted)), key=adjusted.__getitem__)
        outcomes.append(
            TextOutcome(
                MultiKeyResult(
                    results=results,
                    adjusted_p_values=tuple(adjusted),
                    is_watermarked=adjusted[best] <= false_positive_rate,
                    best_key_id=results[best].key_id,
                    false_positive_rate=false_positive_rate,
                )
            )
        )
    return outcomes


def _detect_one_key(
    entry: KeyEntry,
    ids: list[list[int] | None],
    prompt_ids: list[list[int] | None],
    fpr: float,
    num_threads: int,
) -> list[DetectionResult | str]:
    """Detection results for one key, or an error message for texts that cannot be tested."""
    empty = "the text has no tokens under the key's tokenizer; there is nothing to test"
    usable = [i for i, x in enumerate(ids) if x]
    out: list[DetectionResult | str] = [empty] * len(ids)
    if not usable:
        return out
    try:
        batch = entry.watermarker.detect_batch(
            [ids[i] for i in usable],
            prompts=[prompt_ids[i] or None for i in usable],
            false_positive_rate=fpr,
            num_threads=num_threads,
        )
        for i, r in zip(usable, batch, strict=True):
            out[i] = r
        return out
    except ValueError:
        pass  # one bad text spoils the vectorised pass: go one by one
    for i in usable:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[i] = entry.watermarker.detect(
                    ids[i], prompt_ids=prompt_ids[i] or None, false_positive_rate=fpr
                )
        except ValueError as exc:
            out[i] = str(exc)
    return out
