"""Merkle trees over dataset records: root time for 1,000,000 records, proof size, proof time.

Reports (single process, stdlib hashlib):
- root over N records from memory (streaming `merkle_root`, O(log N) memory) — target < 10 s
  for N = 1,000,000 on 2 cores;
- root over the same records as a JSONL file (`dataset_root`: read + hash);
- building the full tree for proofs (`MerkleTree`) and its memory;
- inclusion-proof size (hashes, bytes) and verification time from the root alone.

    python benchmarks/provenance_merkle.py [--records 1000000] [--proofs 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from safeguard.provenance.dataset import dataset_root
from safeguard.provenance.merkle import MerkleTree, merkle_root, verify_inclusion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=20_000)
    args = parser.parse_args()
    n = args.records
    records = [
        json.dumps(
            {"id": i, "text": f"Pt <PERSON> seen for follow-up, note {i} (fictional)."}
        ).encode()
        for i in range(n)
    ]
    mean_len = sum(map(len, records)) / n

    t0, c0 = time.perf_counter(), time.process_time()
    root = merkle_root(records)
    t_root, c_root = time.perf_counter() - t0, time.process_time() - c0

    tmpdir = Path(tempfile.mkdtemp(prefix="sg-merkle-", dir="/tmp"))
    try:
        path = tmpdir / "records.jsonl"
        path.write_bytes(b"\n".join(records) + b"\n")
        t0, c0 = time.perf_counter(), time.process_time()
        count, file_root = dataset_root(path)
        t_file, c_file = time.perf_counter() - t0, time.process_time() - c0
        assert count == n and file_root == root.hex()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    t0, c0 = time.perf_counter(), time.process_time()
    tree = MerkleTree.from_records(records)
    t_tree, c_tree = time.perf_counter() - t0, time.process_time() - c0
    assert tree.root == root
    # memory held by the tree: every stored 32-byte hash object plus its list slot
    hashes = sum(len(level) for level in tree._levels)
    tree_bytes = hashes * (sys.getsizeof(root) + 8)

    rng = random.Random(0)
    idx = [rng.randrange(n) for _ in range(args.proofs)]
    t0 = time.perf_counter()
    proofs = [tree.inclusion_proof(i) for i in idx]
    t_prove = (time.perf_counter() - t0) / len(idx)
    times = []
    for i, p in zip(idx, proofs, strict=True):
        t = time.perf_counter()
        ok = verify_inclusion(records[i], i, n, p.path, root)
        times.append(time.perf_counter() - t)
        assert ok
    sizes = [len(p.path) for p in proofs]

    print(f"records: {n:,} (mean {mean_len:.0f} bytes); load average {os.getloadavg()[0]:.1f}")
    print(
        f"root from memory (merkle_root)        : {t_root:6.2f} s wall, {c_root:6.2f} s CPU ({n / t_root / 1e6:.2f} M records/s)"
    )
    print(f"root from JSONL file (dataset_root)   : {t_file:6.2f} s wall, {c_file:6.2f} s CPU")
    print(
        f"full tree for proofs (MerkleTree)     : {t_tree:6.2f} s wall, {c_tree:6.2f} s CPU, "
        f"{tree_bytes / 2**20:.0f} MiB held ({hashes:,} hashes)"
    )
    print(
        f"proof size                            : {min(sizes)}-{max(sizes)} hashes, max {32 * max(sizes)} bytes"
    )
    print(f"proof generation                      : {t_prove * 1e6:6.1f} us/proof")
    print(
        f"proof verification (root alone)       : median {statistics.median(times) * 1e6:.1f} us, "
        f"p99 {sorted(times)[int(0.99 * len(times))] * 1e6:.1f} us over {len(times):,} proofs"
    )


if __name__ == "__main__":
    main()
