"""RFC 6962 Merkle trees over dataset records, with inclusion proofs (stdlib only).

Leaves and interior nodes are domain-separated, as in RFC 6962 section 2.1
(and RFC 9162 section 2.1.1)::

    leaf_hash(d)     = SHA-256(0x00 || d)
    node_hash(l, r)  = SHA-256(0x01 || l || r)
    MTH({})          = SHA-256()
    MTH(D[n])        = node_hash(MTH(D[0:k]), MTH(D[k:n])),  k = largest power of 2 < n

The tree is built bottom-up, level by level; a node without a right sibling is
carried up unchanged, which yields exactly the RFC's root and audit paths.
An inclusion proof ("was this exact record in the training set?") is the audit
path of RFC 6962 section 2.1.1, checked from the root alone with the algorithm
of RFC 9162 section 2.1.3.2.

>>> tree = MerkleTree.from_records([b"a", b"b", b"c"])
>>> tree.size
3
>>> root = tree.root
>>> root == node_hash(node_hash(leaf_hash(b"a"), leaf_hash(b"b")), leaf_hash(b"c"))
True
>>> proof = tree.inclusion_proof(2)
>>> proof.verify(b"c", root)
True
>>> proof.verify(b"x", root)
False
>>> verify_inclusion(b"c", 2, 3, proof.path, root)
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from safeguard.errors import DataError

__all__ = [
    "EMPTY_ROOT",
    "InclusionProof",
    "MerkleTree",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "record_bytes",
    "root_and_count",
    "verify_inclusion",
]

_HASH_LEN = 32

#: Root of the empty tree: SHA-256 of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior-node hash: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def record_bytes(record: bytes | str | dict[str, Any] | list[Any]) -> bytes:
    """The canonical bytes of one record, the data a leaf commits to.

    Bytes are taken as they are; text is UTF-8 with one trailing newline (``\\n`` or
    ``\\r\\n``) removed, so a JSONL line hashes the same read with or without it; a
    dict or list is canonical JSON (sorted keys, no whitespace, UTF-8).

    >>> record_bytes('{"a": 1}\\n')
    b'{"a": 1}'
    >>> record_bytes({"b": 1, "a": "é"})
    b'{"a":"\\xc3\\xa9","b":1}'
    """
    if isinstance(record, bytes):
        return record
    if isinstance(record, str):
        if record.endswith("\r\n"):
            record = record[:-2]
        elif record.endswith("\n"):
            record = record[:-1]
        return record.encode("utf-8")
    if isinstance(record, (dict, list)):
        return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8"
        )
    raise DataError(
        f"a record must be bytes, str, dict or list, got {type(record).__name__}; "
        "serialise it first"
    )


def _next_level(level: list[bytes]) -> list[bytes]:
    sha = hashlib.sha256
    pairs = len(level) // 2
    out = [sha(b"\x01" + level[2 * i] + level[2 * i + 1]).digest() for i in range(pairs)]
    if len(level) % 2:
        out.append(level[-1])
    return out


@dataclass(frozen=True, kw_only=True)
class InclusionProof:
    """An audit path proving that one leaf is in a tree of a given size.

    Attributes:
        index: The leaf's position (0-based).
        tree_size: Number of leaves in the tree.
        path: Sibling hashes from the leaf up to the root (RFC 6962 ``PATH``).
    """

    index: int
    tree_size: int
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.tree_size:
            raise DataError(
                f"`index` (={self.index}) must be in [0, tree_size={self.tree_size}); "
                "use a record position inside the dataset"
            )
        for h in self.path:
            if len(h) != _HASH_LEN:
                raise DataError(f"proof hashes must be {_HASH_LEN} bytes, got {len(h)}")

    @property
    def size_bytes(self) -> int:
        """Bytes of hash material in the proof."""
        return _HASH_LEN * len(self.path)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: hashes in hex."""
        return {
            "index": self.index,
            "tree_size": self.tree_size,
            "path": [h.hex() for h in self.path],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InclusionProof:
        """Inverse of :meth:`to_dict`.

        Raises:
            DataError: A field is missing or malformed.
        """
        try:
            return cls(
                index=int(data["index"]),
                tree_size=int(data["tree_size"]),
                path=tuple(bytes.fromhex(h) for h in data["path"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"malformed inclusion proof ({exc}); expected {{'index', 'tree_size', 'path': [hex, ...]}}"
            ) from exc

    def verify(self, record: bytes | str | dict[str, Any] | list[Any], root: bytes | str) -> bool:
        """Whether ``record`` is leaf ``index`` of the tree with ``root`` (bytes or hex)."""
        root_bytes = bytes.fromhex(root) if isinstance(root, str) else root
        return verify_inclusion(
            record_bytes(record), self.index, self.tree_size, self.path, root_bytes
        )


class MerkleTree:
    """A Merkle tree kept in memory (all levels), to answer inclusion proofs.

    Memory is about 100 bytes per record (two 32-byte hashes plus object overhead).
    For a root only, :func:`merkle_root` keeps one level at a time.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        level = list(leaf_hashes)
        levels = [level]
        while len(level) > 1:
            level = _next_level(level)
            levels.append(level)
        self._levels = levels

    @classmethod
    def from_records(
        cls, records: Iterable[bytes | str | dict[str, Any] | list[Any]]
    ) -> MerkleTree:
        """Build the tree over records (see :func:`record_bytes` for their canonical bytes)."""
        sha = hashlib.sha256
        return cls([sha(b"\x00" + record_bytes(r)).digest() for r in records])

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0])

    @property
    def root(self) -> bytes:
        """The tree head (``SHA-256()`` for an empty tree)."""
        if not self._levels[0]:
            return EMPTY_ROOT
        return self._levels[-1][0]

    def inclusion_proof(self, index: int) -> InclusionProof:
        """The audit path of leaf ``index``.

        Raises:
            DataError: ``index`` is outside ``[0, size)``.
        """
        if not 0 <= index < self.size:
            raise DataError(
                f"`index` (={index}) must be in [0, {self.size}); the tree has {self.size} records"
            )
        path = []
        i = index
        for level in self._levels[:-1]:
            sibling = i ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            i //= 2
        return InclusionProof(index=index, tree_size=self.size, path=tuple(path))


#: Leaves hashed per batch by :func:`merkle_root` (a power of two).
_CHUNK = 1 << 14


def _leaf_hashes(chunk: list[Any]) -> list[bytes]:
    sha = hashlib.sha256
    return [sha(b"\x00" + (r if type(r) is bytes else record_bytes(r))).digest() for r in chunk]


def _level_root(level: list[bytes]) -> bytes:
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def root_and_count(
    records: Iterable[bytes | str | dict[str, Any] | list[Any]],
) -> tuple[bytes, int]:
    """Root of the RFC 6962 tree over ``records`` and their number, in O(log n) memory.

    Records are hashed in batches of 16,384: each full batch is a perfect subtree, pushed on
    a stack that merges equal heights like a binary counter; the last, partial batch is the
    rightmost subtree, and the stack is folded right to left onto it, which is RFC 6962's
    split at the largest power of two.
    """
    it = iter(records)
    stack: list[tuple[int, bytes]] = []  # (height in batches, root) of perfect subtrees
    count = 0
    partial: list[bytes] = []
    while True:
        leaves = _leaf_hashes(list(islice(it, _CHUNK)))
        count += len(leaves)
        if len(leaves) < _CHUNK:
            partial = leaves
            break
        height, h = 0, _level_root(leaves)
        while stack and stack[-1][0] == height:
            _, left = stack.pop()
            h = node_hash(left, h)
            height += 1
        stack.append((height, h))
    if partial:
        h = _level_root(partial)
    elif stack:
        _, h = stack.pop()
    else:
        return EMPTY_ROOT, 0
    while stack:
        _, left = stack.pop()
        h = node_hash(left, h)
    return h, count


def merkle_root(records: Iterable[bytes | str | dict[str, Any] | list[Any]]) -> bytes:
    """Root of the RFC 6962 tree over ``records``, keeping O(log n) hashes in memory.

    >>> merkle_root([]) == EMPTY_ROOT
    True
    >>> records = [bytes([i % 256]) for i in range(70_000)]
    >>> merkle_root(records) == MerkleTree.from_records(records).root
    True
    """
    return root_and_count(records)[0]


def verify_inclusion(
    record: bytes, index: int, tree_size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """Check an audit path against a root alone (RFC 9162 section 2.1.3.2).

    Args:
        record: The record's canonical bytes (see :func:`record_bytes`).
        index: Its claimed position.
        tree_size: Number of leaves in the tree the root belongs to.
        path: The audit path, leaf to root.
        root: The trusted tree head.

    Returns:
        True when the path leads from the record to ``root``; False otherwise (never raises
        on a bad proof).
    """
    if not 0 <= index < tree_size:
        return False
    fn, sn = index, tree_size - 1
    r = leaf_hash(record)
    for p in path:
        if len(p) != _HASH_LEN or sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
