from __future__ import annotations

import doctest
import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeguard.errors import DataError
from safeguard.provenance import digest as digest_mod
from safeguard.provenance.digest import (
    digest_directory,
    digest_path,
    parse_digest,
    sha256_file,
)


def test_doctests() -> None:
    result = doctest.testmod(digest_mod)
    assert result.attempted > 0 and result.failed == 0


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=5000), block=st.integers(min_value=1, max_value=1024))
def test_sha256_file_matches_hashlib_for_any_block_size(tmp_path_factory, data, block) -> None:
    path = tmp_path_factory.mktemp("d") / "f.bin"
    path.write_bytes(data)
    assert sha256_file(path, block_size=block) == hashlib.sha256(data).hexdigest()


def test_sha256_file_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "nope")
    with pytest.raises(DataError, match="block_size"):
        sha256_file(tmp_path, block_size=0)


def _model(tmp_path):
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_text('{"n_layer": 2}')
    (root / "model.safetensors").write_bytes(os.urandom(3000))
    (root / "sub" / "tok.json").write_text("{}")
    return root


def test_directory_digest_is_sha256_of_sorted_file_digests(tmp_path) -> None:
    root = _model(tmp_path)
    d = digest_directory(root)
    names = [f.path for f in d.files]
    assert names == ["config.json", "model.safetensors", "sub/tok.json"]
    expected = hashlib.sha256(
        b"".join(bytes.fromhex(sha256_file(root / n)) for n in names)
    ).hexdigest()
    assert d.sha256 == expected
    assert d.size == sum((root / n).stat().st_size for n in names)
    assert digest_path(root) == d.sha256


def test_directory_digest_ignores_git_and_detects_changes(tmp_path) -> None:
    root = _model(tmp_path)
    before = digest_directory(root).sha256
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main")
    assert digest_directory(root).sha256 == before
    (root / "config.json").write_text('{"n_layer": 3}')
    assert digest_directory(root).sha256 != before


def test_directory_digest_detects_an_added_file(tmp_path) -> None:
    root = _model(tmp_path)
    before = digest_directory(root).sha256
    (root / "extra.bin").write_bytes(b"x")
    assert digest_directory(root).sha256 != before


def test_directory_digest_refuses_symlinks_and_files(tmp_path) -> None:
    root = _model(tmp_path)
    with pytest.raises(DataError, match="not a directory"):
        digest_directory(root / "config.json")
    with pytest.raises(FileNotFoundError):
        digest_directory(tmp_path / "missing")
    (root / "link").symlink_to(root / "config.json")
    with pytest.raises(DataError, match="symbolic link"):
        digest_directory(root)
    (root / "link").unlink()
    (root / "linked-dir").symlink_to(root / "sub", target_is_directory=True)
    with pytest.raises(DataError, match="symbolic link to a directory"):
        digest_directory(root)


def test_parse_digest() -> None:
    assert parse_digest("sha256:" + "a" * 64) == "a" * 64
    with pytest.raises(DataError, match="64 lower-case hex"):
        parse_digest("sha256:XYZ")


def test_parallel_and_serial_directory_digests_agree(tmp_path) -> None:
    root = _model(tmp_path)
    for i in range(6):
        (root / f"shard-{i}.bin").write_bytes(os.urandom(2000 + i))
    serial = digest_directory(root, max_workers=1)
    assert digest_directory(root, max_workers=4) == serial
    with pytest.raises(DataError, match="max_workers"):
        digest_directory(root, max_workers=0)
