"""Detection of a batch of token-id records: one place for the batch path and its fallback.

The CLI's local engine and the Ray engine (``safeguard detect``) both hand a batch of
already tokenized records to :func:`detect_records` and write what it returns, so that the
two engines give the same results, messages and counts by construction.

One key: the whole batch is scored by :meth:`Watermarker.detect_batch` (vectorised); if one
record makes it raise (an id outside the vocabulary, say), the batch is scored record by
record so that only that record gets an error. Several keys: each record is tested against
all of them with Holm's correction (:func:`detect_many`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from safeguard.watermark.keys import WatermarkKey
from safeguard.watermark.watermarker import Watermarker, detect_many

__all__ = ["RecordOutcome", "detect_records"]


@dataclass(frozen=True)
class RecordOutcome:
    """What detection said about one record.

    Attributes:
        payload: The result as a dict (``DetectionResult.to_dict()`` for one key,
            ``MultiKeyResult.to_dict()`` for several); ``None`` when ``error`` is set.
        flagged: The record is watermarked at the requested rate.
        too_short: Its verdict is "too short to test".
        error: Why the record could not be tested.
    """

    payload: dict[str, Any] | None
    flagged: bool = False
    too_short: bool = False
    error: str | None = None


def _ok(result: Any) -> RecordOutcome:
    return RecordOutcome(
        payload=result.to_dict(),
        flagged=bool(result.is_watermarked),
        too_short=result.verdict == "too short to test",
    )


def detect_records(
    keys: Sequence[WatermarkKey],
    records: Sequence[tuple[Sequence[int], Sequence[int] | None]],
    *,
    false_positive_rate: float,
    vocab_size: int | None = None,
    options: dict[str, Any] | None = None,
    watermarker: Watermarker | None = None,
) -> list[RecordOutcome]:
    """Test ``(token ids, prompt ids)`` records against ``keys``; one outcome per record.

    Args:
        keys: One key, or several (Holm-corrected per record).
        records: Token ids of each text and of its prompt (or ``None``).
        false_positive_rate: Rate at which unwatermarked text is flagged (family-wise per
            record with several keys).
        vocab_size: Ids at or above it are an error for that record.
        options: Scheme detection options (``resolution``, ...).
        watermarker: A ready :class:`Watermarker` of ``keys[0]`` to reuse (one key only).
    """
    options = dict(options or {})
    if not records:
        return []
    if len(keys) == 1:
        wm = watermarker or Watermarker(keys[0])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results = wm.detect_batch(
                    [ids for ids, _ in records],
                    prompts=[p for _, p in records],
                    false_positive_rate=false_positive_rate,
                    **options,
                )
            if vocab_size is None or all(not ids or max(ids) < vocab_size for ids, _ in records):
                return [_ok(r) for r in results]
        except ValueError:
            pass  # one record is invalid: test them one by one below
    out = []
    for ids, prompt_ids in records:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if len(keys) == 1:
                    result: Any = (watermarker or Watermarker(keys[0])).detect(
                        ids,
                        prompt_ids=prompt_ids,
                        false_positive_rate=false_positive_rate,
                        vocab_size=vocab_size,
                        **options,
                    )
                else:
                    result = detect_many(
                        keys,
                        ids,
                        prompt_ids=prompt_ids,
                        false_positive_rate=false_positive_rate,
                        **options,
                    )
        except ValueError as exc:
            out.append(RecordOutcome(payload=None, error=str(exc)))
            continue
        out.append(_ok(result))
    return out
