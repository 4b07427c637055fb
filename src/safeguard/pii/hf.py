"""Scrub Hugging Face ``datasets`` (``Dataset`` and ``IterableDataset``) with ``map(batched=True)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safeguard.errors import DataError
from safeguard.pii.paths import locate, parse_path

__all__ = ["scrub_batch_dict", "scrub_dataset"]


def scrub_batch_dict(
    batch: dict[str, list[Any]],
    scrubber: Any,
    fields: Sequence[str],
    patient_field: str | None = None,
) -> dict[str, list[Any]]:
    """Scrub the ``fields`` of a columnar batch (``{column: [values]}``) in place and return it.

    Raises:
        DataError: A field's column is not in the batch.
    """
    n = len(next(iter(batch.values()))) if batch else 0
    texts: list[str] = []
    pids: list[str | None] = []
    slots: list[tuple[Any, Any]] = []
    row_pids: list[str | None] = [None] * n
    holders: list[tuple[str, int, dict[str, Any]]] = []
    batch = {k: list(v) for k, v in batch.items()}
    if patient_field:
        col, *rest = parse_path(patient_field)
        for i in range(n):
            found = locate({"v": batch[col][i]}, ".".join(["v", *rest]))
            row_pids[i] = str(found[0][0][found[0][1]]) if found else None
    for f in fields:
        col, *rest = parse_path(f)
        if col not in batch:
            raise DataError(
                f"field {f!r}: column {col!r} not in the dataset; columns: {sorted(batch)}"
            )
        for i in range(n):
            holder = {"v": batch[col][i]}
            for container, key in locate(holder, ".".join(["v", *rest])):
                value = container[key]
                if value is None:
                    continue
                if not isinstance(value, str):
                    raise DataError(
                        f"field {f!r} in row {i} is a {type(value).__name__}, expected a string"
                    )
                slots.append((container, key))
                texts.append(value)
                pids.append(row_pids[i])
            holders.append((col, i, holder))
    results = scrubber.scrub_batch(texts, patient_ids=pids)
    for (container, key), res in zip(slots, results, strict=True):
        container[key] = res.text
    for col, i, holder in holders:  # top-level strings were replaced inside their holders
        batch[col][i] = holder["v"]
    return batch


def scrub_dataset(
    dataset: Any,
    scrubber: Any,
    fields: Sequence[str] = ("text",),
    *,
    batch_size: int = 64,
    patient_field: str | None = None,
    num_proc: int | None = None,
) -> Any:
    """``dataset.map(..., batched=True)`` that scrubs ``fields``; works lazily on ``IterableDataset``.

    Args:
        dataset: A ``datasets.Dataset`` or ``datasets.IterableDataset``.
        scrubber: A :class:`~safeguard.pii.Scrubber` (pickled to workers when ``num_proc`` > 1).
        fields: Field paths (``text``, ``meta.note``, ``messages.*.content``).
        batch_size: Rows per ``map`` batch (and per ``nlp.pipe`` call).
        patient_field: Field path grouping rows per patient for date shifting.
        num_proc: Worker processes for ``Dataset.map`` (ignored for iterable datasets).
    """
    columns = getattr(dataset, "column_names", None)
    if columns:
        for f in fields:
            col = parse_path(f)[0]
            if col not in columns:
                raise DataError(
                    f"field {f!r}: column {col!r} not in the dataset; columns: {columns}"
                )

    def fn(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return scrub_batch_dict(dict(batch), scrubber, fields, patient_field)

    kwargs: dict[str, Any] = {"batched": True, "batch_size": batch_size}
    if num_proc and num_proc > 1 and hasattr(dataset, "num_rows"):
        kwargs["num_proc"] = num_proc
    return dataset.map(fn, **kwargs)
