"""Hashing throughput: safeguard's streaming sha256 vs coreutils `sha256sum` on the same file.

Creates a 1 GiB file of random bytes in /tmp (deleted afterwards), warms the page cache,
then alternates the hashers `--repeats` times and reports the best and median
throughput of each and their ratio (target: safeguard >= 90% of sha256sum).
`openssl dgst -sha256` is timed as well when installed, as a second reference
(GNU coreutils' sha256sum may not use the CPU's SHA extensions; OpenSSL does).

    python benchmarks/provenance_hashing.py [--size-mib 1024] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from safeguard.provenance.digest import sha256_file


def _make_file(path: Path, size_mib: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for i in range(size_mib):
            # vary each MiB cheaply so the file is not one repeated block
            handle.write(i.to_bytes(8, "little") + block[8:])


def _time(fn) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("sha256sum") is None:
        raise SystemExit("sha256sum (coreutils) is not installed")
    tmpdir = Path(tempfile.mkdtemp(prefix="sg-hash-", dir="/tmp"))
    path = tmpdir / "blob.bin"
    try:
        _make_file(path, args.size_mib)
        size = path.stat().st_size
        # warm the page cache so both read from memory
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)
        ours, theirs, ossl = [], [], []
        has_openssl = shutil.which("openssl") is not None
        for _ in range(args.repeats):
            t, d_ours = _time(lambda: sha256_file(path))
            ours.append(t)
            t, out = _time(
                lambda: (
                    subprocess.run(
                        ["sha256sum", str(path)], capture_output=True, text=True, check=True
                    ).stdout
                )
            )
            theirs.append(t)
            assert out.split()[0] == d_ours, "digests differ"
            if has_openssl:
                t, out = _time(
                    lambda: (
                        subprocess.run(
                            ["openssl", "dgst", "-sha256", "-r", str(path)],
                            capture_output=True,
                            text=True,
                            check=True,
                        ).stdout
                    )
                )
                ossl.append(t)
                assert out.split()[0] == d_ours, "digests differ"
        mib = size / (1 << 20)
        best_ours, best_theirs = min(ours), min(theirs)
        print(f"file: {mib:.0f} MiB in {tmpdir}; load average {os.getloadavg()[0]:.1f}")
        print(
            f"safeguard sha256_file : best {mib / best_ours:8.1f} MiB/s  median {mib / statistics.median(ours):8.1f} MiB/s"
        )
        print(
            f"sha256sum (coreutils) : best {mib / best_theirs:8.1f} MiB/s  median {mib / statistics.median(theirs):8.1f} MiB/s"
        )
        if ossl:
            print(
                f"openssl dgst -sha256  : best {mib / min(ossl):8.1f} MiB/s  median {mib / statistics.median(ossl):8.1f} MiB/s"
            )
        print(
            f"ratio vs sha256sum    : best {best_theirs / best_ours:.3f}, median {statistics.median(theirs) / statistics.median(ours):.3f}"
        )
        if ossl:
            print(
                f"ratio vs openssl      : best {min(ossl) / best_ours:.3f}, median {statistics.median(ossl) / statistics.median(ours):.3f}"
            )
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    main()
