"""Detection of a batch of texts against one or more keys (no HTTP here).

Each key tokenizes the texts with its own tokenizer (texts are tokenized once per distinct
tokenizer) and scores them with :func:`safeguard.watermark.batch.detect_with_fallback`
(the vectorised pass, record by record when one text spoils it); when several keys are
tested, the p-values of each text are Holm-adjusted across keys by
:func:`safeguard.watermark.batch.combine_keys`, exactly as
:func:`safeguard.watermark.detect_many` does. The batch, fallback and Holm logic is the
one ``safeguard detect`` and the Ray engine use; only the service's rule for texts without
tokens lives here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from safeguard.serve.keystore import KeyEntry
from safeguard.watermark.batch import combine_keys, detect_with_fallback
from safeguard.watermark.normalize import normalize_text
from safeguard.watermark.result import DetectionResult, MultiKeyResult

__all__ = ["NO_TOKENS", "TextOutcome", "detect_texts"]

#: The error of a text that a key's tokenizer turns into no tokens (the service's own rule:
#: such a text is not sent to the detector).
NO_TOKENS = "the text has no tokens under the key's tokenizer; there is nothing to test"


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
    return [
        TextOutcome(None, r) if isinstance(r, str) else TextOutcome(r)
        for r in combine_keys(per_key, false_positive_rate)
    ]


def _detect_one_key(
    entry: KeyEntry,
    ids: list[list[int] | None],
    prompt_ids: list[list[int] | None],
    fpr: float,
    num_threads: int,
) -> list[DetectionResult | str]:
    """Detection results for one key, or an error message for texts that cannot be tested."""
    usable = {i: (x, prompt_ids[i] or None) for i, x in enumerate(ids) if x}
    out: list[DetectionResult | str] = [NO_TOKENS] * len(ids)
    results = detect_with_fallback(
        entry.watermarker,
        list(usable.values()),
        false_positive_rate=fpr,
        num_threads=num_threads,
        options={"memory": entry.memory} if entry.memory is not None else None,
        quiet_batch=False,  # worker threads leave the process-wide warning filters alone
    )
    for i, r in zip(usable, results, strict=True):
        out[i] = r
    return out
