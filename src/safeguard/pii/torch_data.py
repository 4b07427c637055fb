"""Scrub on the fly in PyTorch ``DataLoader`` pipelines (torch is imported only when needed).

- :class:`ScrubbingDataset` wraps a map-style dataset (anything with ``__getitem__`` and
  ``__len__``) whose items are strings or dicts.
- :func:`scrubbing_iterable` wraps an iterable dataset, scrubbing in batches (``nlp.pipe``).
- :class:`ScrubCollator` scrubs a whole batch in one call, then applies an inner collate
  function: the cheapest place to scrub, since NER runs batched.

A :class:`~safeguard.pii.Scrubber` pickles as its config and key, so these work with
``num_workers > 0``; each worker loads spaCy once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from safeguard.errors import DataError
from safeguard.pii.paths import locate

__all__ = ["ScrubCollator", "ScrubbingDataset", "scrubbing_iterable"]


def _scrub_items(items: list[Any], scrubber: Any, fields: Sequence[str]) -> list[Any]:
    texts: list[str] = []
    slots: list[tuple[Any, Any]] = []
    out: list[Any] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            holder: Any = [item]
            slots.append((holder, 0))
            texts.append(item)
            out.append(holder)
            continue
        if not isinstance(item, dict):
            raise DataError(f"item {i} is a {type(item).__name__}; expected a str or a dict")
        item = dict(item)
        for f in fields:
            try:
                found = locate(item, f)
            except KeyError as exc:
                raise DataError(str(exc.args[0])) from None
            for container, key in found:
                if isinstance(container[key], str):
                    slots.append((container, key))
                    texts.append(container[key])
        out.append(item)
    for (container, key), res in zip(slots, scrubber.scrub_batch(texts), strict=True):
        container[key] = res.text
    return [o[0] if isinstance(o, list) else o for o in out]


class ScrubbingDataset:
    """A map-style dataset whose items come back scrubbed.

    Args:
        dataset: The wrapped dataset (items: ``str`` or ``dict``).
        scrubber: The scrubber to apply.
        fields: Field paths to scrub in dict items (``text``, ``meta.note``).
    """

    def __init__(self, dataset: Any, scrubber: Any, fields: Sequence[str] = ("text",)) -> None:
        self.dataset = dataset
        self.scrubber = scrubber
        self.fields = tuple(fields)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return _scrub_items([self.dataset[index]], self.scrubber, self.fields)[0]


def scrubbing_iterable(
    dataset: Iterable[Any],
    scrubber: Any,
    fields: Sequence[str] = ("text",),
    *,
    batch_size: int = 32,
) -> Any:
    """A ``torch.utils.data.IterableDataset`` yielding scrubbed items, scrubbed ``batch_size`` at a time."""
    try:
        from torch.utils.data import IterableDataset
    except ImportError as exc:  # pragma: no cover - torch is optional
        from safeguard.errors import missing_dependency

        raise missing_dependency("torch", "hf") from exc

    class _Scrubbing(IterableDataset):  # type: ignore[misc, type-arg]
        def __iter__(self) -> Iterator[Any]:
            buf: list[Any] = []
            for item in dataset:
                buf.append(item)
                if len(buf) >= batch_size:
                    yield from _scrub_items(buf, scrubber, fields)
                    buf = []
            if buf:
                yield from _scrub_items(buf, scrubber, fields)

    return _Scrubbing()


class ScrubCollator:
    """A ``collate_fn`` that scrubs the batch's text fields, then calls ``collate_fn``.

    Args:
        scrubber: The scrubber to apply.
        fields: Field paths to scrub in dict items.
        collate_fn: Inner collate function (default: return the list of scrubbed items;
            pass e.g. a tokenizer-based collator).
    """

    def __init__(
        self,
        scrubber: Any,
        fields: Sequence[str] = ("text",),
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        self.scrubber = scrubber
        self.fields = tuple(fields)
        self.collate_fn = collate_fn

    def __call__(self, batch: list[Any]) -> Any:
        items = _scrub_items(list(batch), self.scrubber, self.fields)
        return self.collate_fn(items) if self.collate_fn is not None else items
