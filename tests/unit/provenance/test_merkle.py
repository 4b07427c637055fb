from __future__ import annotations

import doctest
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeguard.errors import DataError
from safeguard.provenance import merkle as merkle_mod
from safeguard.provenance.merkle import (
    EMPTY_ROOT,
    InclusionProof,
    MerkleTree,
    leaf_hash,
    merkle_root,
    node_hash,
    record_bytes,
    verify_inclusion,
)

# Leaves and roots of the RFC 6962 reference test vectors (certificate-transparency tests).
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _mth(d: list[bytes]) -> bytes:
    """RFC 6962 section 2.1 MTH, written recursively from the RFC text."""
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(d[:k]) + _mth(d[k:])).digest()


def _path(m: int, d: list[bytes]) -> list[bytes]:
    """RFC 6962 section 2.1.1 PATH(m, D[n])."""
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*_path(m, d[:k]), _mth(d[k:])]
    return [*_path(m - k, d[k:]), _mth(d[:k])]


def test_doctests() -> None:
    result = doctest.testmod(merkle_mod)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("n", range(1, 9))
def test_certificate_transparency_vectors(n: int) -> None:
    assert merkle_root(CT_LEAVES[:n]).hex() == CT_ROOTS[n - 1]
    assert MerkleTree.from_records(CT_LEAVES[:n]).root.hex() == CT_ROOTS[n - 1]


def test_empty_tree() -> None:
    assert merkle_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert MerkleTree([]).root == EMPTY_ROOT
    with pytest.raises(DataError, match="index"):
        MerkleTree([]).inclusion_proof(0)


def test_domain_separation() -> None:
    # A leaf whose data is the concatenation of two child hashes must not collide with the node.
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(a + b) != node_hash(a, b)


@pytest.mark.parametrize("n", range(1, 34))
def test_root_and_paths_match_the_rfc_definition(n: int) -> None:
    d = [f"record-{i}".encode() for i in range(n)]
    tree = MerkleTree.from_records(d)
    assert tree.root == _mth(d) == merkle_root(d)
    for m in range(n):
        proof = tree.inclusion_proof(m)
        assert list(proof.path) == _path(m, d)
        assert proof.verify(d[m], tree.root)


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(st.binary(max_size=20), min_size=1, max_size=60),
    data=st.data(),
)
def test_proofs_verify_and_tampering_fails(records, data) -> None:
    tree = MerkleTree.from_records(records)
    index = data.draw(st.integers(0, len(records) - 1))
    proof = tree.inclusion_proof(index)
    root = tree.root
    assert verify_inclusion(records[index], index, len(records), proof.path, root)
    # another record at the same position fails (unless it is byte-identical)
    other = data.draw(st.binary(max_size=20))
    assert verify_inclusion(other, index, len(records), proof.path, root) == (
        other == records[index]
    )
    # a flipped bit anywhere in the path fails
    if proof.path:
        i = data.draw(st.integers(0, len(proof.path) - 1))
        j = data.draw(st.integers(0, 31))
        bad = bytearray(proof.path[i])
        bad[j] ^= 0x01
        path = list(proof.path)
        path[i] = bytes(bad)
        assert not verify_inclusion(records[index], index, len(records), path, root)
    # a wrong index fails unless both leaves are identical records at mirrored spots
    if len(records) > 1:
        wrong = (index + 1) % len(records)
        if records[wrong] != records[index]:
            assert not verify_inclusion(records[index], wrong, len(records), proof.path, root)


def test_verify_rejects_malformed_inputs() -> None:
    tree = MerkleTree.from_records([b"a", b"b", b"c"])
    proof = tree.inclusion_proof(1)
    assert not verify_inclusion(b"b", 5, 3, proof.path, tree.root)
    assert not verify_inclusion(b"b", 1, 3, [*proof.path, b"x" * 32], tree.root)
    assert not verify_inclusion(b"b", 1, 3, [proof.path[0][:31]], tree.root)
    assert not verify_inclusion(b"b", 1, 3, [], tree.root)


def test_proof_round_trips_through_json() -> None:
    tree = MerkleTree.from_records([{"id": i} for i in range(10)])
    proof = tree.inclusion_proof(7)
    again = InclusionProof.from_dict(proof.to_dict())
    assert again == proof
    assert again.verify({"id": 7}, tree.root.hex())
    assert proof.size_bytes == 32 * len(proof.path) == 32 * 4
    with pytest.raises(DataError, match="malformed"):
        InclusionProof.from_dict({"index": 1})


def test_record_bytes() -> None:
    assert record_bytes("a\r\n") == record_bytes("a\n") == record_bytes(b"a") == b"a"
    assert record_bytes({"b": 1, "a": 2}) == b'{"a":2,"b":1}'
    with pytest.raises(DataError, match="record"):
        record_bytes(3)  # type: ignore[arg-type]


def test_batched_streaming_root_matches_for_every_size(monkeypatch) -> None:
    # small batches exercise full batches, the binary-counter merge and the partial tail
    monkeypatch.setattr(merkle_mod, "_CHUNK", 4)
    for n in range(80):
        d = [f"r{i}".encode() for i in range(n)]
        root, count = merkle_mod.root_and_count(iter(d))
        assert count == n
        assert root == _mth(d)
