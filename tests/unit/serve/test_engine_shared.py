"""The service's engine runs on the shared batch detection of ``safeguard.watermark.batch``.

The batch pass, its record-by-record fallback and the Holm correction across keys live once,
in :mod:`safeguard.watermark.batch`; ``safeguard detect`` (local and Ray) and the service's
:func:`~safeguard.serve.engine.detect_texts` all go through it. These tests pin the seam:
the engine calls it once per key, its results equal :func:`detect_many` text by text, and
its own rule (a text without tokens is not sent to the detector) still holds.
"""

from __future__ import annotations

import doctest
import warnings

import pytest

import safeguard.serve.engine as engine
from safeguard.serve.engine import NO_TOKENS, detect_texts
from safeguard.serve.keystore import KeyEntry
from safeguard.watermark import Watermarker, detect_many
from safeguard.watermark import batch as shared
from safeguard.watermark.batch import combine_keys, detect_records, detect_with_fallback

FPR = 1e-3


def _entry(world, name: str, watermarker=None) -> KeyEntry:
    key = world.keys[name]
    return KeyEntry(
        key.key_id,
        key.scheme,
        key.tokenizer_fingerprint,
        watermarker or Watermarker(key),
        world.tokenizer,
    )


def _ids(world, text: str) -> list[int]:
    return list(world.tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.fixture(scope="module")
def texts(world):
    marked = [world.watermarked_text(world.keys["a1"], n, seed=n) for n in (10, 40, 120)]
    return [*marked, world.plain_text(80, seed=3), "", "w5"]


def test_batch_module_doctests():
    result = doctest.testmod(shared)
    assert result.attempted >= 2 and result.failed == 0


def test_engine_equals_detect_many_text_by_text(world, texts):
    entries = [_entry(world, "a1"), _entry(world, "a2")]
    outcomes = detect_texts(entries, texts, false_positive_rate=FPR)
    keys = [world.keys["a1"], world.keys["a2"]]
    for text, outcome in zip(texts, outcomes, strict=True):
        if not _ids(world, text):
            assert outcome.result is None and outcome.error == NO_TOKENS
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = detect_many(keys, _ids(world, text), false_positive_rate=FPR)
        got = outcome.result
        assert got.is_watermarked == expected.is_watermarked
        assert got.best_key_id == expected.best_key_id
        assert got.verdict == expected.verdict
        assert got.adjusted_p_values == pytest.approx(expected.adjusted_p_values, rel=1e-12)
    assert outcomes[2].result.is_watermarked and outcomes[2].result.best_key_id == (
        world.keys["a1"].key_id
    )


def test_engine_calls_the_shared_functions_once_per_key(world, texts, monkeypatch):
    calls: list[int] = []
    combined: list[int] = []

    def spy(wm, records, **kwargs):
        calls.append(len(records))
        assert kwargs["quiet_batch"] is False  # worker threads leave the warning filters alone
        return detect_with_fallback(wm, records, **kwargs)

    def combine_spy(per_key, fpr):
        combined.append(len(per_key))
        return combine_keys(per_key, fpr)

    monkeypatch.setattr(engine, "detect_with_fallback", spy)
    monkeypatch.setattr(engine, "combine_keys", combine_spy)
    detect_texts([_entry(world, "a1"), _entry(world, "a2")], texts, false_positive_rate=FPR)
    with_tokens = sum(bool(_ids(world, t)) for t in texts)
    assert calls == [with_tokens, with_tokens]  # texts without tokens are never sent
    assert combined == [2]


class _Spoiler:
    """A detector whose vectorised pass always raises, and one text of which is invalid."""

    def __init__(self, wm: Watermarker, bad: list[int]) -> None:
        self.wm, self.bad = wm, bad

    def detect_batch(self, *args, **kwargs):
        raise ValueError("one text spoils the batch")

    def detect(self, ids, **kwargs):
        if list(ids) == self.bad:
            raise ValueError("this text is invalid")
        return self.wm.detect(ids, **kwargs)


def test_engine_falls_back_text_by_text_and_keeps_each_error(world, texts):
    bad = _ids(world, texts[3])
    spoiler = _Spoiler(Watermarker(world.keys["a1"]), bad)
    plain = detect_texts([_entry(world, "a1")], texts, false_positive_rate=FPR)
    fallen = detect_texts([_entry(world, "a1", spoiler)], texts, false_positive_rate=FPR)
    for i, (a, b) in enumerate(zip(plain, fallen, strict=True)):
        if i == 3:
            assert b.result is None and b.error == "this text is invalid"
        elif a.result is None:
            assert b.error == a.error == NO_TOKENS
        else:
            assert b.result.is_watermarked == a.result.is_watermarked
            assert b.result.results[0].p_value == pytest.approx(a.result.results[0].p_value)


def test_a_key_that_cannot_test_a_text_gives_its_message_for_that_text_only(world, texts):
    bad = _ids(world, texts[0])
    spoiler = _Spoiler(Watermarker(world.keys["a2"]), bad)
    out = detect_texts(
        [_entry(world, "a1"), _entry(world, "a2", spoiler)], texts, false_positive_rate=FPR
    )
    assert out[0].result is None and out[0].error == "this text is invalid"
    assert out[2].result is not None and out[2].result.is_watermarked


def test_combine_keys_is_detect_many_exactly(world, texts):
    keys = [world.keys["a1"], world.keys["a2"], world.keys["b1"]]
    records = [(_ids(world, t), None) for t in texts if _ids(world, t)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_key = [
            [Watermarker(k).detect(ids, false_positive_rate=FPR) for ids, _ in records]
            for k in keys
        ]
        expected = [detect_many(keys, ids, false_positive_rate=FPR) for ids, _ in records]
    assert combine_keys(per_key, FPR) == expected


def test_fallback_errors_only_the_record_out_of_the_vocabulary():
    from safeguard.watermark import WatermarkKey

    wm = Watermarker(WatermarkKey.from_secret(b"\x07" * 32, "gumbel"))
    records = [([1, 2, 3, 4, 5, 6], None), ([1, 2, 70], [3]), ([7, 8, 9], None)]
    out = detect_with_fallback(wm, records, false_positive_rate=FPR, vocab_size=50)
    assert isinstance(out[1], str) and "70" in out[1]
    assert [type(r).__name__ for r in (out[0], out[2])] == ["DetectionResult"] * 2
    outcomes = detect_records([wm.key], records, false_positive_rate=FPR, vocab_size=50)
    assert [o.error is not None for o in outcomes] == [False, True, False]
    assert detect_with_fallback(wm, [], false_positive_rate=FPR) == []


def test_quiet_batch_decides_whether_the_vectorised_pass_touches_warning_filters(monkeypatch):
    from safeguard.watermark import WatermarkKey

    wm = Watermarker(WatermarkKey.from_secret(b"\x08" * 32, "gumbel"))
    entered: list[int] = []
    original = warnings.catch_warnings

    def counting(*args, **kwargs):
        entered.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(warnings, "catch_warnings", counting)
    records = [([1, 2, 3, 4, 5, 6], None)] * 3
    detect_with_fallback(wm, records, false_positive_rate=FPR, quiet_batch=False)
    assert entered == []
    detect_with_fallback(wm, records, false_positive_rate=FPR)
    assert entered == [1]
