"""Dataset files as Merkle trees: one leaf per JSONL record.

A record is one non-empty line of the file, without its line ending (``\\n`` or
``\\r\\n``), as raw UTF-8 bytes: the bytes are hashed exactly as stored, so a
record can be proven without re-serialising it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from safeguard.errors import DataError
from safeguard.provenance.merkle import InclusionProof, MerkleTree, root_and_count

__all__ = ["dataset_root", "iter_records", "prove_record"]

_BLOCK = 4 * 1024 * 1024


def iter_records(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The records of a JSONL (or any line-based) file, as bytes without line endings.

    Raises:
        FileNotFoundError: No such file.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"dataset file {str(p)!r} does not exist")
    if p.is_dir():
        raise DataError(f"dataset {str(p)!r} is a directory; pass a JSONL file")
    rest = b""
    with open(p, "rb", buffering=0) as handle:
        while True:
            block = handle.read(_BLOCK)
            if not block:
                break
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            for line in lines:
                if line.endswith(b"\r"):
                    line = line[:-1]
                if line:
                    yield line
    if rest.endswith(b"\r"):
        rest = rest[:-1]
    if rest:
        yield rest


def dataset_root(path: str | os.PathLike[str]) -> tuple[int, str]:
    """Record count and hex RFC 6962 Merkle root of a JSONL file (streaming, O(log n) memory)."""
    root, count = root_and_count(iter_records(path))
    return count, root.hex()


def prove_record(path: str | os.PathLike[str], index: int) -> tuple[bytes, InclusionProof]:
    """The record at ``index`` and its inclusion proof.

    Raises:
        DataError: ``index`` is outside the dataset.
    """
    tree = MerkleTree.from_records(iter_records(path))
    proof = tree.inclusion_proof(index)
    for i, record in enumerate(iter_records(path)):
        if i == index:
            return record, proof
    raise DataError(f"`index` (={index}) is outside the dataset")  # pragma: no cover
