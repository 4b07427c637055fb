"""Dataset files as Merkle trees: one leaf per JSONL record.

A record is one non-empty line of the file, without its line ending (``\\n`` or
``\\r\\n``), as raw UTF-8 bytes: the bytes are hashed exactly as stored, so a
record can be proven without re-serialising it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from safeguard.errors import DataError
from safeguard.provenance.merkle import EMPTY_ROOT, InclusionProof, MerkleTree

__all__ = ["dataset_root", "iter_records", "prove_record"]


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
    with open(p, "rb", buffering=4 * 1024 * 1024) as handle:
        for line in handle:
            if line.endswith(b"\n"):
                line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            if line:
                yield line


def dataset_root(path: str | os.PathLike[str]) -> tuple[int, str]:
    """Record count and hex RFC 6962 Merkle root of a JSONL file (streaming, O(log n) memory)."""
    sha = hashlib.sha256
    stack: list[tuple[int, bytes]] = []
    count = 0
    for record in iter_records(path):
        count += 1
        height, h = 0, sha(b"\x00" + record).digest()
        while stack and stack[-1][0] == height:
            _, left = stack.pop()
            h = sha(b"\x01" + left + h).digest()
            height += 1
        stack.append((height, h))
    if not stack:
        return 0, EMPTY_ROOT.hex()
    _, h = stack.pop()
    while stack:
        _, left = stack.pop()
        h = sha(b"\x01" + left + h).digest()
    return count, h.hex()


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
