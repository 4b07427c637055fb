"""Distortion-free sampling watermarks and model-free detectors.

>>> from safeguard.watermark import WatermarkKey, Watermarker
>>> key = WatermarkKey.generate(scheme="gumbel")
>>> wm = Watermarker(key)

``wm.generate(model, **inputs, do_sample=True)`` wraps ``model.generate``;
``wm.detect(token_ids)`` and ``wm.detect_text(text, tokenizer)`` need only the key;
``wm.localize(token_ids)`` finds watermarked spans inside a longer document.
Importing this package loads numpy and scipy only; torch and transformers are
imported when generation is used.
"""

from __future__ import annotations

from safeguard.watermark.keys import LegacyPRFWarning, WatermarkKey, tokenizer_fingerprint
from safeguard.watermark.localize import LocalizationResult, Span
from safeguard.watermark.memory import DetectionMemory
from safeguard.watermark.normalize import normalize_text
from safeguard.watermark.result import DetectionResult, MultiKeyResult
from safeguard.watermark.schemes import get_scheme, list_schemes, register_scheme
from safeguard.watermark.watermarker import ShortTextWarning, Watermarker, detect_many

__all__ = [
    "DetectionMemory",
    "DetectionResult",
    "LegacyPRFWarning",
    "LocalizationResult",
    "MultiKeyResult",
    "ShortTextWarning",
    "Span",
    "WatermarkKey",
    "Watermarker",
    "detect_many",
    "get_scheme",
    "list_schemes",
    "normalize_text",
    "register_scheme",
    "tokenizer_fingerprint",
]
