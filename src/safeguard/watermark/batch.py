"""Detection of a batch of token-id records: one place for the batch path, its fallback and Holm.

Every engine that detects many texts goes through this module, so that they give the same
results, messages and counts by construction:

- :func:`detect_with_fallback`: one key, many records. The whole batch is scored by
  :meth:`Watermarker.detect_batch` (vectorised); if one record makes it raise (an id
  outside the vocabulary, say), the batch is scored record by record so that only that
  record gets an error (its message, in place of a result).
- :func:`combine_keys`: the per-key results of each record, Holm-adjusted across keys
  into a :class:`MultiKeyResult` exactly as :func:`detect_many` does (a record that one
  key could not test keeps that key's message).
- :func:`detect_records`: what the CLI's local engine and the Ray engine (``safeguard
  detect``) call on a batch of already tokenized records; one key goes through
  :func:`detect_with_fallback`, several keys through :func:`detect_many` per record.

The detection service (:mod:`safeguard.serve.engine`) tokenizes per key (each key has its
own tokenizer) and calls :func:`detect_with_fallback` per key, then :func:`combine_keys`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from safeguard.watermark.keys import WatermarkKey
from safeguard.watermark.result import DetectionResult, MultiKeyResult
from safeguard.watermark.stats import holm
from safeguard.watermark.watermarker import Watermarker, detect_many

__all__ = ["RecordOutcome", "combine_keys", "detect_records", "detect_with_fallback"]

#: ``(token ids, prompt ids or None)`` of one text.
Record = tuple[Sequence[int], Sequence[int] | None]


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


def detect_with_fallback(
    watermarker: Watermarker,
    records: Sequence[Record],
    *,
    false_positive_rate: float,
    vocab_size: int | None = None,
    num_threads: int | None = None,
    options: dict[str, Any] | None = None,
    quiet_batch: bool = True,
) -> list[DetectionResult | str]:
    """Test ``records`` against one key: a result per record, or the message of its error.

    Args:
        watermarker: The key's detector.
        records: Token ids of each text and of its prompt (or ``None``).
        false_positive_rate: Rate at which unwatermarked text is flagged.
        vocab_size: Ids at or above it are an error for that record.
        num_threads: Threads of the vectorised pass (default: every core).
        options: Scheme detection options (``resolution``, ...).
        quiet_batch: Silence warnings during the vectorised pass too (the record-by-record
            pass always silences them). ``warnings.catch_warnings`` swaps process-wide
            filters and is not thread-safe, so a multi-threaded caller (the detection
            service) passes ``False`` to keep it off its common path.

    Returns:
        One :class:`DetectionResult` or error message per record, in order.

    >>> from safeguard.watermark import WatermarkKey
    >>> wm = Watermarker(WatermarkKey.from_secret(b"k" * 32, "gumbel"))
    >>> out = detect_with_fallback(wm, [([1, 2, 3, 4, 5], None), ([1, 99], None)],
    ...                            false_positive_rate=1e-3, vocab_size=50)
    >>> type(out[0]).__name__, out[1].startswith("`token_ids` holds id 99")
    ('DetectionResult', True)
    """
    options = dict(options or {})
    if not records:
        return []
    try:
        with warnings.catch_warnings() if quiet_batch else contextlib.nullcontext():
            if quiet_batch:
                warnings.simplefilter("ignore")
            results: list[DetectionResult | str] = list(
                watermarker.detect_batch(
                    [ids for ids, _ in records],
                    prompts=[p for _, p in records],
                    false_positive_rate=false_positive_rate,
                    num_threads=num_threads,
                    **options,
                )
            )
        if vocab_size is None or all(not ids or max(ids) < vocab_size for ids, _ in records):
            return results
    except ValueError:
        pass  # one record spoils the vectorised pass: test them one by one below
    out: list[DetectionResult | str] = []
    for ids, prompt_ids in records:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.append(
                    watermarker.detect(
                        ids,
                        prompt_ids=prompt_ids,
                        false_positive_rate=false_positive_rate,
                        vocab_size=vocab_size,
                        **options,
                    )
                )
        except ValueError as exc:
            out.append(str(exc))
    return out


def combine_keys(
    per_key: Sequence[Sequence[DetectionResult | str]], false_positive_rate: float
) -> list[MultiKeyResult | str]:
    """Holm-adjust each record's results across keys (one row per key, one column per record).

    A record that some key could not test gets the message of the first such key, as
    :func:`detect_many` raises at the first key that fails.

    >>> from safeguard.watermark import WatermarkKey
    >>> wms = [Watermarker(WatermarkKey.from_secret(bytes([i]) * 32, "gumbel")) for i in (1, 2)]
    >>> rows = [detect_with_fallback(w, [([5, 6, 7, 8], None)], false_positive_rate=0.01)
    ...         for w in wms]
    >>> combined = combine_keys(rows + [["no tokens"]], 0.01)
    >>> combined
    ['no tokens']
    >>> type(combine_keys(rows, 0.01)[0]).__name__
    'MultiKeyResult'
    """
    out: list[MultiKeyResult | str] = []
    for row in zip(*per_key, strict=True):
        failed = [r for r in row if isinstance(r, str)]
        if failed:
            out.append(failed[0])
            continue
        results = tuple(r for r in row if isinstance(r, DetectionResult))
        adjusted = holm([r.p_value for r in results])
        best = min(range(len(adjusted)), key=adjusted.__getitem__)
        out.append(
            MultiKeyResult(
                results=results,
                adjusted_p_values=tuple(adjusted),
                is_watermarked=adjusted[best] <= false_positive_rate,
                best_key_id=results[best].key_id,
                false_positive_rate=false_positive_rate,
            )
        )
    return out


def detect_records(
    keys: Sequence[WatermarkKey],
    records: Sequence[Record],
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
        vocab_size: Ids at or above it are an error for that record (one key).
        options: Scheme detection options (``resolution``, ...).
        watermarker: A ready :class:`Watermarker` of ``keys[0]`` to reuse (one key only).
    """
    options = dict(options or {})
    if not records:
        return []
    if len(keys) == 1:
        results: list[Any] = detect_with_fallback(
            watermarker or Watermarker(keys[0]),
            records,
            false_positive_rate=false_positive_rate,
            vocab_size=vocab_size,
            options=options,
        )
    else:
        results = [_detect_many_or_message(keys, r, false_positive_rate, options) for r in records]
    return [RecordOutcome(payload=None, error=r) if isinstance(r, str) else _ok(r) for r in results]


def _detect_many_or_message(
    keys: Sequence[WatermarkKey], record: Record, fpr: float, options: dict[str, Any]
) -> MultiKeyResult | str:
    ids, prompt_ids = record
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return detect_many(keys, ids, prompt_ids=prompt_ids, false_positive_rate=fpr, **options)
    except ValueError as exc:
        return str(exc)
