"""The :class:`Scrubber`: detect PHI/PII with Presidio + Safe Harbor recognizers, then transform it.

>>> from safeguard.pii import Scrubber                                  # doctest: +SKIP
>>> Scrubber.from_policy("healthcare-hipaa").scrub("Pt John Smith, MRN 448812").text  # doctest: +SKIP
'Pt <PERSON_1>, MRN <MEDICAL_RECORD_NUMBER_1>'
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from safeguard.errors import ConfigError, DataError
from safeguard.pii.config import NER_ENTITIES, ScrubConfig
from safeguard.pii.keys import PseudonymKey
from safeguard.pii.operators import DocumentContext, apply_operator, document_digest
from safeguard.pii.patterns import PATTERN_ENTITIES, Candidate, PatternDetector
from safeguard.pii.recognizers import RECALL_FIRST, run_recognizers
from safeguard.pii.refine import unescape_line_breaks
from safeguard.pii.resolve import resolve
from safeguard.pii.types import Finding, ScrubResult

__all__ = ["Scrubber", "chunk_spans"]

log = logging.getLogger(__name__)


def chunk_spans(text: str, max_chars: int, overlap: int) -> list[tuple[int, int]]:
    """Cut ``text`` into windows of at most ``max_chars`` that overlap by about ``overlap``.

    Cuts fall on a newline or a blank where one exists in the last quarter of a window, so
    that words are rarely split; a span that straddles a cut is seen whole by the next window.

    >>> chunk_spans("a" * 10, 4, 1)
    [(0, 4), (3, 7), (6, 10)]
    """
    n = len(text)
    if n <= max_chars:
        return [(0, n)]
    spans: list[tuple[int, int]] = []
    start = 0
    while start < n:
        end = min(n, start + max_chars)
        if end < n:
            floor = start + (3 * max_chars) // 4
            cut = max(text.rfind("\n", floor, end), text.rfind(" ", floor, end))
            if cut > start:
                end = cut + 1
        spans.append((start, end))
        if end >= n:
            break
        nxt = max(end - overlap, start + 1)
        blank = text.find(" ", nxt, end)
        start = blank + 1 if 0 <= blank < end - 1 and overlap > 0 else nxt
    return spans


class Scrubber:
    """Finds identifiers in text and replaces them according to a :class:`ScrubConfig`.

    One Presidio analyzer (and one spaCy pipeline per process) is built lazily on first use
    and shared. A Scrubber pickles as its config and key, so it can be sent to worker
    processes (``DataLoader(num_workers>0)``, ``multiprocessing``).

    Args:
        config: What to detect and how to transform it.
        key: Key for ``pseudonym``, ``surrogate`` and ``date_shift`` operators.

    Raises:
        ConfigError: A keyed operator is configured without a key, or the key's id differs
            from the ``key_id`` the policy requires.
    """

    def __init__(self, config: ScrubConfig, *, key: PseudonymKey | None = None) -> None:
        if not isinstance(config, ScrubConfig):
            raise ConfigError(f"`config` must be a ScrubConfig, got {type(config).__name__}")
        if config.needs_key() and key is None:
            keyed = sorted({op for op in config.operators.values() if op in _keyed()})
            raise ConfigError(
                f"operators {keyed} need a pseudonym key; pass `key=PseudonymKey.load(path)` "
                "(CLI: --key-file) or use the 'tag' / 'redact' operators"
            )
        if key is not None and config.key_id and key.key_id != config.key_id:
            raise ConfigError(
                f"the policy requires key id {config.key_id!r} but the key given has id "
                f"{key.key_id!r}; use the key the policy names"
            )
        self.config = config
        self.key = key
        self._analyzer: Any = None
        self._detector = PatternDetector(
            entities=frozenset(e for e in config.all_entities if e in PATTERN_ENTITIES)
            | frozenset(config.deny_list),
            context_words=config.context_words,
            deny_list=config.deny_list,
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_policy(
        cls, policy: Any = "healthcare-hipaa", *, key: PseudonymKey | None = None, **overrides: Any
    ) -> Scrubber:
        """Build from a policy name (``"healthcare-hipaa"``), a path, or a loaded Policy.

        ``overrides`` replace fields of the resulting :class:`ScrubConfig` (e.g.
        ``operators={"DEFAULT": "redact"}``).
        """
        return cls(ScrubConfig.from_policy(policy, **overrides), key=key)

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "key": self.key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], key=state["key"])  # type: ignore[misc]

    def __repr__(self) -> str:
        key = self.key.key_id if self.key else None
        return (
            f"Scrubber(policy={self.config.policy_name!r}, entities={len(self.config.all_entities)}, "
            f"key_id={key!r})"
        )

    @property
    def analyzer(self) -> Any:
        """The Presidio-backed analyzer (built on first use)."""
        if self._analyzer is None and not self.config.use_ner:
            self._analyzer = _PatternsOnly(self._detector)
        if self._analyzer is None:
            from safeguard.pii._presidio import SafeguardAnalyzer

            ner = (
                [e for e in NER_ENTITIES if e in self.config.all_entities]
                if self.config.use_ner
                else []
            )
            self._analyzer = SafeguardAnalyzer(
                self._detector,
                ner_entities=ner,
                spacy_model=self.config.spacy_model,
                recall_first=self.config.recall_first,
            )
        return self._analyzer

    # ------------------------------------------------------------------ analysis
    def analyze(self, text: str) -> list[Finding]:
        """Findings in one text (non-overlapping, in text order)."""
        return self.analyze_batch([text])[0]

    def analyze_batch(self, texts: Sequence[str]) -> list[list[Finding]]:
        """Findings for each text; long texts are chunked and their spans merged.

        Raises:
            ConfigError: A text is not a ``str``.
            DataError: A text holds a lone surrogate (``"\\ud800"``), which is not Unicode.
        """
        cfg = self.config
        pieces: list[str] = []
        owners: list[tuple[int, int]] = []  # (text index, offset)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ConfigError(f"texts[{i}] must be a str, got {type(text).__name__}")
            _check_unicode(text, f"texts[{i}]")
            if cfg.recall_first:  # same length: offsets stay valid for the original text
                text = unescape_line_breaks(text)
            for s, e in chunk_spans(text, cfg.max_chunk_chars, cfg.chunk_overlap):
                pieces.append(text[s:e])
                owners.append((i, s))
        per_piece = self.analyzer.analyze_batch(pieces, batch_size=cfg.batch_size) if pieces else []
        gathered: list[list[Candidate]] = [[] for _ in texts]
        for (i, offset), piece, cands in zip(owners, pieces, per_piece, strict=True):
            if cfg.recall_first:
                cands = [*cands, *run_recognizers(RECALL_FIRST, piece, cfg.all_entities)]
            if offset:
                cands = [
                    Candidate(
                        c.start + offset, c.end + offset, c.entity, c.score, c.source, c.recognizer
                    )
                    for c in cands
                ]
            gathered[i].extend(cands)
        out = []
        for text, cands in zip(texts, gathered, strict=True):
            resolved = resolve(
                unescape_line_breaks(text) if cfg.recall_first else text,
                cands,
                threshold=cfg.score_threshold,
                entity_thresholds=cfg.entity_thresholds,
                allow_list=cfg.allow_list,
                recall_first=cfg.recall_first,
            )
            out.append(
                [
                    Finding(c.entity, c.start, c.end, round(c.score, 4), c.recognizer)
                    for c in resolved
                ]
            )
        return out

    # ------------------------------------------------------------------ transformation
    def anonymize(
        self, text: str, findings: Iterable[Finding], *, patient_id: str | None = None
    ) -> ScrubResult:
        """Apply the configured operators to ``findings`` (from :meth:`analyze`) in ``text``."""
        _check_unicode(text, "`text`")
        cfg = self.config
        ctx = DocumentContext(
            key=self.key,
            patient_id=patient_id,
            doc_digest=document_digest(text) if self.key is not None else "",
            date_shift_days=cfg.date_shift_days,
            restricted_zip3=frozenset(cfg.restricted_zip3),
        )
        parts: list[str] = []
        done: list[Finding] = []
        pos = 0
        for f in sorted(findings, key=lambda f: f.start):
            if f.start < pos:
                raise ConfigError(f"findings overlap at offset {f.start}; pass resolved findings")
            op = cfg.operator_for(f.entity)
            parts.append(text[pos : f.start])
            parts.append(
                apply_operator(op, ctx, f.entity, text[f.start : f.end], cfg.params_for(f.entity))
            )
            done.append(Finding(f.entity, f.start, f.end, f.score, f.recognizer, op))
            pos = f.end
        parts.append(text[pos:])
        return ScrubResult(
            text="".join(parts), findings=tuple(done), key_id=self.key.key_id if self.key else None
        )

    def scrub(self, text: str, *, patient_id: str | None = None) -> ScrubResult:
        """Detect and transform identifiers in one text.

        Raises:
            DataError: ``text`` holds a lone surrogate (not valid Unicode); the message gives
                its position. Nothing is replaced silently.
        """
        return self.anonymize(text, self.analyze(text), patient_id=patient_id)

    def scrub_batch(
        self, texts: Sequence[str], *, patient_ids: Sequence[str | None] | None = None
    ) -> list[ScrubResult]:
        """:meth:`scrub` over many texts, with NER batched through ``nlp.pipe``."""
        if patient_ids is not None and len(patient_ids) != len(texts):
            raise ConfigError(
                f"`patient_ids` has {len(patient_ids)} entries for {len(texts)} texts; "
                "give one per text or None"
            )
        ids = patient_ids if patient_ids is not None else [None] * len(texts)
        return [
            self.anonymize(t, fs, patient_id=p)
            for t, fs, p in zip(texts, self.analyze_batch(texts), ids, strict=True)
        ]

    def report_fields(self) -> dict[str, Any]:
        """Config facts for scrub reports (no secrets: the key appears by id only)."""
        return {
            "policy": self.config.policy_name,
            "entities": list(self.config.all_entities),
            "operators": dict(self.config.operators),
            "score_threshold": self.config.score_threshold,
            "spacy_model": self.config.spacy_model,
            "recall_first": self.config.recall_first,
            "key_id": self.key.key_id if self.key else None,
        }


def _check_unicode(text: str, name: str) -> None:
    """Refuse text holding a lone surrogate (``"\\ud800"``): it is not Unicode text.

    Such a code point cannot be encoded as UTF-8, so spaCy, the keyed operators' digests and
    any UTF-8 writer would fail on it later with a bare ``UnicodeEncodeError``. Replacing it
    (with U+FFFD) would not be safe either: the scrubbed text would silently differ from the
    source, and a surrogate inside an identifier ("Jo\\ud800hn Smith") splits it so that it
    may no longer be recognised, letting the rest of it through. So the caller gets a
    :class:`DataError` naming the position; :func:`safeguard.pii.stream.scrub_file`
    quarantines such records before they reach the scrubber.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(
            f"{name} contains a lone surrogate (U+{ord(text[exc.start]):04X}) at character "
            f"{exc.start}: it is not valid Unicode and cannot be scrubbed or written as UTF-8; "
            "fix the source text (e.g. decode its bytes with errors='replace') and retry"
        ) from None


def _keyed() -> set[str]:
    from safeguard.pii.operators import KEYED_OPERATORS

    return KEYED_OPERATORS


class _PatternsOnly:
    """Analyzer for ``use_ner=False``: the pattern recognizers alone (no Presidio, no spaCy)."""

    def __init__(self, detector: PatternDetector) -> None:
        self._detector = detector

    def analyze_batch(self, texts: Sequence[str], batch_size: int = 64) -> list[list[Candidate]]:
        return [self._detector.detect(t) for t in texts]
