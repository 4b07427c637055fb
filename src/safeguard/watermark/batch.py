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
- :func:`detect_lines` / :func:`detect_jsonl`: ``safeguard detect`` over JSONL: parsed
  lines in, one result (or error) line per input line out, in order, with the counts for
  the summary and the exit code; the CLI's local engine is this function.

The detection service (:mod:`safeguard.serve.engine`) tokenizes per key (each key has its
own tokenizer) and calls :func:`detect_with_fallback` per key, then :func:`combine_keys`.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

from safeguard.errors import ConfigError, DataError
from safeguard.watermark.keys import WatermarkKey
from safeguard.watermark.result import DetectionResult, MultiKeyResult
from safeguard.watermark.watermarker import Watermarker, detect_many, holm_combine

__all__ = [
    "DetectCounts",
    "LineOutcome",
    "RecordOutcome",
    "combine_keys",
    "detect_jsonl",
    "detect_lines",
    "detect_records",
    "detect_with_fallback",
]

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
        results = [r for r in row if isinstance(r, DetectionResult)]
        out.append(holm_combine(results, false_positive_rate))
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


# ------------------------------------------------------------------ JSONL records


@dataclass
class DetectCounts:
    """What a detection run did: records read, flagged, too short to test, not processable."""

    total: int = 0
    flagged: int = 0
    errors: int = 0
    too_short: int = 0

    def add(self, outcome: LineOutcome) -> None:
        """Count one output line."""
        self.total += 1
        self.flagged += outcome.flagged
        self.errors += outcome.error
        self.too_short += outcome.too_short


@dataclass(frozen=True)
class LineOutcome:
    """One output line of ``safeguard detect`` and what it counts for.

    Attributes:
        line: The input line number.
        json: The output line, without its line break: ``{"line": N, **result}`` or
            ``{"line": N, "error": "..."}``.
        flagged: Counted as flagged (with localization: a span was found).
        too_short: Its verdict is "too short to test".
        error: The line could not be processed.
    """

    line: int
    json: str
    flagged: bool = False
    too_short: bool = False
    error: bool = False


def detect_lines(
    lines: Iterable[tuple[Any, ...]],
    *,
    keys: Sequence[WatermarkKey],
    tokenizer: Any,
    field: str = "text",
    prompt_field: str | None = None,
    false_positive_rate: float,
    options: dict[str, Any] | None = None,
    normalize: bool = True,
    batch_size: int = 1024,
    localize_min_window: int | None = None,
) -> Iterator[LineOutcome]:
    """Detect in parsed JSONL lines, yielding one :class:`LineOutcome` per line, in order.

    Args:
        lines: ``(line number, record, reason, ...)`` per non-blank line, as
            :func:`safeguard._files.read_jsonl` yields them: a record to detect in, or the
            reason the line cannot be used (``record`` is then ignored).
        keys: One key, or several (Holm-corrected per record).
        tokenizer: The tokenizer used at generation.
        field: Field holding the text.
        prompt_field: Field holding the prompt, if recorded.
        false_positive_rate: Rate at which unwatermarked text is flagged.
        options: Scheme detection options (``resolution``, ...).
        normalize: Undo Unicode edits before tokenizing (:func:`normalize_text`).
        batch_size: Records detected together in one vectorised pass.
        localize_min_window: Also find watermarked spans (one ``gumbel`` key), with windows
            of at least this many scored tokens; a record then counts as flagged when a
            span is found.

    Raises:
        ConfigError: ``localize_min_window`` with other than one key.
    """
    from safeguard.watermark.normalize import normalize_text
    from safeguard.watermark.tokenizer import encode_record

    if localize_min_window is not None and len(keys) != 1:
        raise ConfigError("localization needs exactly one key; pass one gumbel key")
    batch = _LineBatch(keys, tokenizer, false_positive_rate, options, localize_min_window)
    clean = normalize_text if normalize else None
    for n, record, reason, *_ in lines:
        if reason is None:
            try:
                ids, prompt_ids = encode_record(
                    record, tokenizer, field=field, prompt_field=prompt_field, clean=clean
                )
            except DataError as exc:
                reason = str(exc)
        if reason is not None:
            yield from batch.flush()  # keep output in input order
            yield LineOutcome(n, json.dumps({"line": n, "error": reason}), error=True)
            continue
        batch.pending.append((n, ids, prompt_ids))
        if len(batch.pending) >= batch_size:
            yield from batch.flush()
    yield from batch.flush()


def detect_jsonl(source: BinaryIO, sink: IO[str], **kwargs: Any) -> DetectCounts:
    """Detect in every line of a JSONL stream, writing one result line per input line.

    ``source`` is read as bytes, line by line (:func:`safeguard._files.read_jsonl`): a line
    that is not UTF-8, not JSON, or not an object gets an ``error`` line, never a crash.
    Keyword arguments are those of :func:`detect_lines`.

    Returns:
        The counts for a summary and an exit code.
    """
    from safeguard._files import read_jsonl

    counts = DetectCounts()
    for outcome in detect_lines(read_jsonl(source), **kwargs):
        sink.write(outcome.json + "\n")
        counts.add(outcome)
    return counts


class _LineBatch:
    """Records waiting for one :func:`detect_records` pass, and how to report them."""

    def __init__(
        self,
        keys: Sequence[WatermarkKey],
        tokenizer: Any,
        fpr: float,
        options: dict[str, Any] | None,
        min_window: int | None,
    ) -> None:
        self.keys = list(keys)
        self.tokenizer = tokenizer
        self.fpr = fpr
        self.options = dict(options or {})
        self.min_window = min_window
        self.single = Watermarker(self.keys[0]) if len(self.keys) == 1 else None
        self.vocab = len(tokenizer)
        self.pending: list[tuple[int, list[int], list[int] | None]] = []

    def flush(self) -> Iterator[LineOutcome]:
        outcomes = detect_records(
            self.keys,
            [(ids, prompt_ids) for _, ids, prompt_ids in self.pending],
            false_positive_rate=self.fpr,
            vocab_size=self.vocab,
            options=self.options,
            watermarker=self.single,
        )
        pending, self.pending = self.pending, []
        for (n, ids, prompt_ids), outcome in zip(pending, outcomes, strict=True):
            if outcome.error is not None:
                yield LineOutcome(n, json.dumps({"line": n, "error": outcome.error}), error=True)
                continue
            payload, hit = outcome.payload or {}, outcome.flagged
            if self.min_window is not None and self.single is not None:
                payload, hit = self._with_spans(ids, prompt_ids, payload)
            yield LineOutcome(
                n,
                json.dumps({"line": n, **payload}),
                flagged=bool(hit),
                too_short=outcome.too_short,
            )

    def _with_spans(
        self, ids: list[int], prompt_ids: list[int] | None, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Add ``localization`` (spans with their text) to a record's detection payload."""
        assert self.single is not None and self.min_window is not None
        res = self.single.localize(
            ids,
            prompt_ids=prompt_ids,
            false_positive_rate=self.fpr,
            min_window=self.min_window,
            vocab_size=self.vocab,
        )
        located = res.to_dict()
        for span in located["spans"]:
            span["text"] = self.tokenizer.decode(ids[span["start"] : span["end"]])
        return {**payload, "localization": located}, res.is_watermarked
