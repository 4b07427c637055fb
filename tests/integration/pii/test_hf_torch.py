"""Hugging Face datasets and PyTorch DataLoader plug-ins."""

from __future__ import annotations

import datasets
import pytest
from torch.utils.data import DataLoader

from safeguard.errors import DataError
from safeguard.pii import Scrubber
from safeguard.pii.hf import scrub_dataset
from safeguard.pii.torch_data import ScrubbingDataset, ScrubCollator, scrubbing_iterable

ROWS = {
    "text": ["Pt John Smith seen 03/02/2024.", "Call 617-555-0123 x12."],
    "meta": [{"notes": [{"body": "MRN: 4481234"}]}, {"notes": [{"body": "Dr. Alice Walker"}]}],
}


def test_dataset_map_batched_with_nested_paths(hipaa: Scrubber) -> None:
    ds = datasets.Dataset.from_dict(ROWS)
    out = scrub_dataset(ds, hipaa, ["text", "meta.notes.*.body"], batch_size=2)
    assert out[0]["text"] == "Pt <PERSON_1> seen <DATE_TIME_1>."
    assert out[1]["text"] == "Call <PHONE_NUMBER_1>."
    assert out[0]["meta"]["notes"][0]["body"] == "MRN: <MEDICAL_RECORD_NUMBER_1>"
    with pytest.raises(DataError, match="column 'body'"):
        scrub_dataset(ds, hipaa, ["body"])


def test_iterable_dataset_is_scrubbed_lazily(hipaa: Scrubber) -> None:
    it = datasets.Dataset.from_dict({"text": ROWS["text"]}).to_iterable_dataset()
    out = scrub_dataset(it, hipaa, ["text"], batch_size=2)
    assert [r["text"] for r in out] == [
        "Pt <PERSON_1> seen <DATE_TIME_1>.",
        "Call <PHONE_NUMBER_1>.",
    ]


def test_dataloader_collator_dataset_and_iterable(hipaa: Scrubber) -> None:
    items = [{"text": "Pt Jane Doe, MRN 12345678", "label": i} for i in range(4)]
    batch = next(iter(DataLoader(items, batch_size=2, collate_fn=ScrubCollator(hipaa))))
    assert batch == [
        {"text": "Pt <PERSON_1>, MRN <MEDICAL_RECORD_NUMBER_1>", "label": i} for i in range(2)
    ]
    assert items[0]["text"] == "Pt Jane Doe, MRN 12345678"  # the source is not modified
    wrapped = ScrubbingDataset(["Call 617-555-0123"], hipaa)
    assert len(wrapped) == 1 and wrapped[0] == "Call <PHONE_NUMBER_1>"
    loader = DataLoader(
        scrubbing_iterable(["SSN 123-45-6789"] * 3, hipaa, batch_size=2), batch_size=None
    )
    assert list(loader) == ["SSN <US_SSN_1>"] * 3
