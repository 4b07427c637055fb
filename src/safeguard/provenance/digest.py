"""Streaming sha256 digests of files and directories (stdlib only).

Files are read in large blocks into one reused buffer; :mod:`hashlib` releases
the GIL on blocks this size, so hashing runs at the speed of OpenSSL's sha256.

A directory (a model folder) is digested the way OpenSSF model signing does it:
every regular file below it gets its own sha256, the files are sorted by their
relative POSIX path, and the directory digest is the sha256 of the concatenated
per-file digests. ``.git`` folders are skipped. The per-file digests are
returned too, so a manifest can list them and name the file that changed.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "b.txt").write_bytes(b"world")
>>> _ = (d / "a.txt").write_bytes(b"hello")
>>> sha256_file(d / "a.txt")
'2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'
>>> digest = digest_directory(d)
>>> [f.path for f in digest.files]
['a.txt', 'b.txt']
>>> import hashlib
>>> digest.sha256 == hashlib.sha256(hashlib.sha256(b"hello").digest() + hashlib.sha256(b"world").digest()).hexdigest()
True
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from safeguard.errors import DataError

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "IGNORED_NAMES",
    "DirectoryDigest",
    "FileDigest",
    "digest_directory",
    "digest_path",
    "format_digest",
    "parse_digest",
    "sha256_bytes",
    "sha256_file",
]

#: Bytes read per call; large enough that hashing dominates the syscall cost.
DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024

#: Names skipped anywhere below a digested directory.
IGNORED_NAMES = frozenset({".git"})


@dataclass(frozen=True, kw_only=True)
class FileDigest:
    """sha256 of one file inside a digested directory.

    Attributes:
        path: Path relative to the directory, with ``/`` separators.
        sha256: Lower-case hex digest of the file's bytes.
        size: Size in bytes.
    """

    path: str
    sha256: str
    size: int


@dataclass(frozen=True, kw_only=True)
class DirectoryDigest:
    """Digest of a directory: the combined sha256 and the per-file digests it covers.

    Attributes:
        sha256: sha256 over the per-file digests (raw bytes) in path order.
        files: The per-file digests, sorted by path.
    """

    sha256: str
    files: tuple[FileDigest, ...]

    @property
    def size(self) -> int:
        """Total size of the files in bytes."""
        return sum(f.size for f in self.files)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``.

    >>> sha256_bytes(b"")
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    return hashlib.sha256(data).hexdigest()


def _hash_file(path: Path, block_size: int) -> tuple[bytes, int]:
    digest = hashlib.sha256()
    buffer = bytearray(block_size)
    view = memoryview(buffer)
    total = 0
    with open(path, "rb", buffering=0) as handle:
        while True:
            n = handle.readinto(view)
            if not n:
                break
            digest.update(view[:n])
            total += n
    return digest.digest(), total


def sha256_file(path: str | os.PathLike[str], *, block_size: int = DEFAULT_BLOCK_SIZE) -> str:
    """Stream a file through sha256 and return the hex digest.

    Args:
        path: The file to hash.
        block_size: Bytes read per call (default 4 MiB).

    Raises:
        FileNotFoundError: The file does not exist.
        IsADirectoryError: ``path`` is a directory; use :func:`digest_directory`.
    """
    if block_size <= 0:
        raise DataError(f"`block_size` (={block_size}) must be > 0; the default is 4 MiB")
    return _hash_file(Path(path), block_size)[0].hex()


def _walk(root: Path) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if d not in IGNORED_NAMES]
        for d in dirnames:
            if (Path(dirpath) / d).is_symlink():
                raise DataError(
                    f"{str(Path(dirpath) / d)!r} is a symbolic link to a directory; directory digests "
                    "cover regular files only, so copy the target into the folder or remove the link"
                )
        for name in filenames:
            if name in IGNORED_NAMES:
                continue
            full = Path(dirpath) / name
            if full.is_symlink():
                raise DataError(
                    f"{str(full)!r} is a symbolic link; directory digests cover regular files only, "
                    "so copy the target into the folder or remove the link"
                )
            found.append((full.relative_to(root).as_posix(), full))
    found.sort(key=lambda item: item[0])
    return found


def digest_directory(
    path: str | os.PathLike[str],
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    max_workers: int | None = None,
) -> DirectoryDigest:
    """Digest every regular file below ``path`` and combine them (OpenSSF model-signing style).

    Files are hashed in a thread pool (hashlib releases the GIL while hashing large
    blocks, so shards of a big model are hashed in parallel); the result does not depend
    on the number of workers.

    Args:
        path: The directory, e.g. a ``save_pretrained`` folder.
        block_size: Bytes read per call.
        max_workers: Threads hashing files (default: up to 4, at most the CPU count).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataError: ``path`` is not a directory, or holds a symbolic link.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"directory {str(root)!r} does not exist")
    if not root.is_dir():
        raise DataError(f"{str(root)!r} is not a directory; use sha256_file for single files")
    if max_workers is not None and max_workers < 1:
        raise DataError(f"`max_workers` (={max_workers}) must be >= 1, or None for the default")
    entries = _walk(root)
    workers = max_workers or min(4, os.cpu_count() or 1)
    if workers > 1 and len(entries) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            hashed = list(pool.map(lambda e: _hash_file(e[1], block_size), entries))
    else:
        hashed = [_hash_file(full, block_size) for _, full in entries]
    combined = hashlib.sha256()
    files = []
    for (rel, _), (raw, size) in zip(entries, hashed, strict=True):
        combined.update(raw)
        files.append(FileDigest(path=rel, sha256=raw.hex(), size=size))
    return DirectoryDigest(sha256=combined.hexdigest(), files=tuple(files))


def digest_path(path: str | os.PathLike[str], *, block_size: int = DEFAULT_BLOCK_SIZE) -> str:
    """Hex sha256 of a file, or the combined digest of a directory.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    p = Path(path)
    if p.is_dir():
        return digest_directory(p, block_size=block_size).sha256
    if not p.exists():
        raise FileNotFoundError(f"file {str(p)!r} does not exist")
    return sha256_file(p, block_size=block_size)


def format_digest(hex_digest: str) -> str:
    """``sha256:<hex>``, the form used in policies and predicates.

    >>> format_digest("ab" * 32)[:12]
    'sha256:ababa'
    """
    return f"sha256:{hex_digest}"


def parse_digest(value: str) -> str:
    """Hex part of ``sha256:<hex>`` (or of a bare hex digest), validated.

    >>> parse_digest("sha256:" + "0" * 64) == "0" * 64
    True

    Raises:
        DataError: Not a sha256 digest.
    """
    hex_part = value.split(":", 1)[1] if value.startswith("sha256:") else value
    if len(hex_part) != 64 or any(c not in "0123456789abcdef" for c in hex_part):
        raise DataError(
            f"digest {value!r} is not a sha256 digest; expected 64 lower-case hex characters, "
            "optionally prefixed by 'sha256:'"
        )
    return hex_part
