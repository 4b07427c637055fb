"""The PRF, both versions: known answers, committed vectors, the version-2 specification written
out independently, random access, numpy/torch bit identity, uniformity."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from safeguard.watermark import prf

DATA = Path(__file__).parents[2] / "data" / "watermark"
V1 = json.loads((DATA / "prf_vectors.json").read_text())
V2 = json.loads((DATA / "prf_vectors_v2.json").read_text())
VERSIONS = [1, 2]


def case_id(case):
    return f"{case['secret_hex'][:4]}-{case['scheme']}-{case['purpose']}"


def test_vector_files_and_versions():
    assert V1["prf_version"] == 1 and V2["prf_version"] == 2
    assert prf.PRF_VERSION == 2 and prf.PRF_VERSIONS == (1, 2)
    assert (V2["token_tag"], V2["context_tag"], V2["sentinel"]) == (
        prf.TOKEN_TAG,
        prf.CONTEXT_TAG,
        prf.SENTINEL,
    )


# -- version 1 (legacy key files) ---------------------------------------------------------------


@pytest.mark.parametrize("case", V1["philox_kat"])
def test_v1_philox_known_answers(case):
    words = prf.philox4x32(*[np.array([c], dtype=np.uint64) for c in case["counter"]], *case["key"])
    assert [int(w[0]) for w in words] == case["output"]


@pytest.mark.parametrize("case", V1["cases"], ids=case_id)
def test_v1_committed_vectors_numpy(case):
    key = prf.derive_prf_key(
        bytes.fromhex(case["secret_hex"]), case["scheme"], case["purpose"], version=1
    )
    assert isinstance(key, prf.PhiloxKey)
    assert [key.k0, key.k1, key.salt] == case["prf_key"]
    for row in case["uniforms"]:
        u = prf.uniforms(key, row["a"], row["b"], np.array(row["tokens"]))
        assert [float(x).hex() for x in u] == row["u_hex"]
    c0, c1 = prf.context_words(key, np.array(case["context_words"]["contexts"]))
    assert [[int(x), int(y)] for x, y in zip(c0, c1, strict=True)] == case["context_words"]["words"]


@pytest.mark.parametrize("case", V1["cases"], ids=case_id)
def test_v1_committed_vectors_torch(case):
    torch = pytest.importorskip("torch")
    from safeguard.watermark import prf_torch

    key = prf.derive_prf_key(
        bytes.fromhex(case["secret_hex"]), case["scheme"], case["purpose"], version=1
    )
    for row in case["uniforms"]:
        n = len(row["tokens"])
        u = prf_torch.uniforms(
            key, torch.full((n,), row["a"]), torch.full((n,), row["b"]), torch.tensor(row["tokens"])
        )
        assert [float(x).hex() for x in u.tolist()] == row["u_hex"]


# -- version 2 (AES-128) ---------------------------------------------------------------------


@pytest.mark.parametrize("kat", V2["aes128_kat"], ids=lambda k: k["source"])
def test_aes128_known_answers(kat):
    """FIPS 197 example vectors: a broken or substituted AES backend fails here."""
    block = np.frombuffer(bytes.fromhex(kat["plaintext_hex"]), dtype=np.uint8)
    out = prf.aes128_encrypt(bytes.fromhex(kat["key_hex"]), block)
    assert out.tobytes().hex() == kat["ciphertext_hex"]
    # the same block among others: ECB encrypts each block on its own
    many = np.concatenate([block, np.zeros(16, np.uint8), block])
    assert (
        prf.aes128_encrypt(bytes.fromhex(kat["key_hex"]), many)[32:].tobytes().hex()
        == (kat["ciphertext_hex"])
    )


@pytest.mark.parametrize("case", V2["cases"], ids=case_id)
def test_v2_committed_vectors_numpy(case):
    key = prf.derive_prf_key(
        bytes.fromhex(case["secret_hex"]), case["scheme"], case["purpose"], version=2
    )
    assert isinstance(key, prf.AESKey) and key.key.hex() == case["aes_key_hex"]
    for row in case["uniforms"]:
        u = prf.uniforms(key, row["a"], row["b"], np.array(row["tokens"], dtype=np.uint64))
        assert [float(x).hex() for x in u] == row["u_hex"]
    for group in case["context_words"]:
        c0, c1 = prf.context_words(key, np.array(group["contexts"], dtype=np.uint64))
        assert [[int(x), int(y)] for x, y in zip(c0, c1, strict=True)] == group["words"]
    for row in case["row_sha256"]:
        full = prf.uniform_vector(key, row["a"], row["b"], row["vocab_size"])
        assert hashlib.sha256(full.astype("<f8").tobytes()).hexdigest() == row["sha256_float64_le"]


@pytest.mark.parametrize("case", V2["cases"][:4], ids=case_id)
def test_v2_committed_vectors_torch(case):
    torch = pytest.importorskip("torch")
    from safeguard.watermark import prf_torch

    key = prf.derive_prf_key(
        bytes.fromhex(case["secret_hex"]), case["scheme"], case["purpose"], version=2
    )
    for row in case["uniforms"]:
        n = len(row["tokens"])
        u = prf_torch.uniforms(
            key,
            np.full(n, row["a"], dtype=np.uint64),
            np.full(n, row["b"], dtype=np.uint64),
            torch.tensor(row["tokens"], dtype=torch.int64),
        )
        assert [float(x).hex() for x in u.tolist()] == row["u_hex"]
    for row in case["row_sha256"]:
        full = prf_torch.uniform_matrix(key, [row["a"]], [row["b"]], row["vocab_size"])[0]
        digest = hashlib.sha256(full.numpy().astype("<f8").tobytes()).hexdigest()
        assert digest == row["sha256_float64_le"]


def _spec_aes(key: bytes, block: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _spec_key(secret: bytes, scheme: str, purpose: str) -> bytes:
    label = f"safeguard/prf/v2/{scheme}/{purpose}".encode()
    return hmac.new(secret, label, hashlib.sha256).digest()[:16]


def _spec_uniform(key: bytes, a: int, b: int, v: int) -> float:
    (w,) = struct.unpack("<Q", _spec_aes(key, struct.pack("<4I", a, b, v, prf.TOKEN_TAG))[:8])
    return ((w >> 12) + 0.5) / 2**52  # exact: (2k + 1) / 2**53 with 2k + 1 < 2**53


def _spec_context(key: bytes, context: list[int]) -> tuple[int, int]:
    h = len(context)
    words = [prf.CONTEXT_TAG | h] + [prf.SENTINEL] * (-(h + 1) % 4) + list(context)
    state = bytes(16)
    for i in range(0, len(words), 4):
        block = struct.pack("<4I", *words[i : i + 4])
        state = _spec_aes(key, bytes(x ^ y for x, y in zip(state, block, strict=True)))
    return struct.unpack("<2I", state[:8])


@settings(max_examples=60, deadline=None)
@given(
    secret=st.binary(min_size=32, max_size=32),
    a=st.integers(0, 2**32 - 1),
    b=st.integers(0, 2**32 - 1),
    tokens=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=6),
    context=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=16),
)
def test_v2_equals_its_specification_written_block_by_block(secret, a, b, tokens, context):
    """The vectorised numpy code against the construction of the module docstring, one
    block at a time through ``cryptography`` directly (packing, byte order, bit mapping)."""
    token_key = prf.derive_prf_key(secret, "gumbel", "token")
    context_key = prf.derive_prf_key(secret, "gumbel", "context")
    assert token_key.key == _spec_key(secret, "gumbel", "token")
    got = prf.uniforms(token_key, a, b, np.array(tokens, dtype=np.uint64))
    assert got.tolist() == [_spec_uniform(token_key.key, a, b, v) for v in tokens]
    c0, c1 = prf.context_words(context_key, np.array([context], dtype=np.uint64))
    assert (int(c0[0]), int(c1[0])) == _spec_context(context_key.key, context)


def test_v2_uniforms_lie_on_the_half_open_52_bit_grid():
    """u = (k + 1/2) / 2**52: u * 2**53 is an odd integer, and 1 - u is exact, so neither
    log(u) nor log1p(-u) ever sees 0 or 1."""
    key = prf.derive_prf_key(b"\x06" * 32, "gumbel", "token")
    u = prf.uniform_vector(key, 1, 2, 100_000)
    scaled = u * 2.0**53
    assert np.array_equal(scaled, np.floor(scaled)) and (scaled % 2 == 1).all()
    assert ((1.0 - u) * 2.0**53 % 2 == 1).all()
    assert u.min() >= 2.0**-53 and u.max() <= 1 - 2.0**-53


# -- both versions -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_vector_draw_equals_random_access_and_torch(version):
    torch = pytest.importorskip("torch")
    from safeguard.watermark import prf_torch

    key = prf.derive_prf_key(b"k" * 32, "gumbel", "token", version=version)
    vocab = 50257  # odd, to exercise the last half-used word of version 1
    full = prf.uniform_vector(key, 123, 456, vocab)
    assert full.shape == (vocab,)
    picks = np.array([0, 1, 2, 777, vocab - 2, vocab - 1])
    assert np.array_equal(prf.uniforms(key, 123, 456, picks), full[picks])
    matrix = prf_torch.uniform_matrix(key, torch.tensor([123, 9]), torch.tensor([456, 10]), vocab)
    assert np.array_equal(matrix[0].numpy(), full)
    assert np.array_equal(matrix[1].numpy(), prf.uniform_vector(key, 9, 10, vocab))
    assert np.array_equal(prf.uniform_matrix(key, [123, 9], [456, 10], vocab), matrix.numpy())
    sparse = prf_torch.token_uniforms(
        key, torch.tensor([123]), torch.tensor([456]), torch.from_numpy(picks[None, :])
    )
    assert np.array_equal(sparse[0].numpy(), full[picks])
    exps = prf_torch.exponentials(key, [123], [456], vocab, "cpu")
    assert torch.equal(exps, matrix[:1].log().neg())
    token_exps = prf_torch.token_exponentials(
        key, np.array([123]), np.array([456]), torch.from_numpy(picks[None, :])
    )
    assert torch.equal(token_exps, sparse.log().neg())
    # the race keys log(-log u) of the generation hot path (numpy's log on CPU for version 2)
    logs = prf_torch.log_exponentials(key, [123], [456], vocab, "cpu")
    assert torch.allclose(logs, exps.log(), rtol=1e-15, atol=1e-15)
    token_logs = prf_torch.token_log_exponentials(
        key, np.array([123]), np.array([456]), torch.from_numpy(picks[None, :])
    )
    assert torch.allclose(token_logs, token_exps.log(), rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=30, deadline=None)
@given(
    a=st.integers(0, 2**32 - 1),
    b=st.integers(0, 2**32 - 1),
    tokens=st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=20),
)
def test_numpy_and_torch_identical_bits(version, a, b, tokens):
    torch = pytest.importorskip("torch")
    from safeguard.watermark import prf_torch

    key = prf.derive_prf_key(b"\x01" * 32, "exp", "token", version=version)
    n = len(tokens)
    u_np = prf.uniforms(key, a, b, np.array(tokens))
    u_t = prf_torch.uniforms(key, torch.full((n,), a), torch.full((n,), b), torch.tensor(tokens))
    assert np.array_equal(u_np, u_t.numpy())
    assert ((u_np > 0) & (u_np < 1)).all()


@pytest.mark.parametrize("version", VERSIONS)
def test_uniforms_are_uniform_and_keys_are_independent(version):
    # KS at level 0.001 with fixed keys: a defective mapping (e.g. a lost bit) fails this.
    k1 = prf.derive_prf_key(b"\x02" * 32, "gumbel", "token", version=version)
    k2 = prf.derive_prf_key(b"\x03" * 32, "gumbel", "token", version=version)
    u1 = prf.uniform_vector(k1, 5, 6, 200_000)
    u2 = prf.uniform_vector(k2, 5, 6, 200_000)
    assert stats.kstest(u1, "uniform").pvalue > 1e-3
    assert abs(np.corrcoef(u1, u2)[0, 1]) < 0.01  # sd of r is ~0.0022 under independence
    # neighbouring rows are unrelated too
    u3 = prf.uniform_vector(k1, 5, 7, 200_000)
    assert abs(np.corrcoef(u1, u3)[0, 1]) < 0.01


@pytest.mark.parametrize("version", VERSIONS)
def test_context_words_are_uniform_and_distinct(version):
    key = prf.derive_prf_key(b"\x07" * 32, "gumbel", "context", version=version)
    ctx = np.random.default_rng(0).integers(0, 50257, size=(50_000, 4))
    a, b = prf.context_words(key, ctx)
    words = (a << np.uint64(32)) | b
    assert len(np.unique(words)) == len(np.unique(ctx, axis=0))  # no 64-bit collision
    # top byte of a: chi-square over 256 cells at level 1e-3
    counts = np.bincount((a >> np.uint64(24)).astype(np.int64), minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_v2_context_width_is_part_of_the_message():
    """A left-padded short context never collides with a longer one (the length word)."""
    key = prf.derive_prf_key(b"\x08" * 32, "gumbel", "context")
    s = prf.SENTINEL
    short = prf.context_words(key, np.array([[5, 6]], dtype=np.uint64))
    padded = prf.context_words(key, np.array([[s, s, 5, 6]], dtype=np.uint64))
    assert (int(short[0][0]), int(short[1][0])) != (int(padded[0][0]), int(padded[1][0]))


def test_purposes_schemes_and_versions_are_separated():
    secret = b"\x04" * 32
    v2 = {
        (s, p): prf.derive_prf_key(secret, s, p)
        for s in ("gumbel", "exp")
        for p in ("token", "context")
    }
    assert len({k.key for k in v2.values()}) == 4
    v1 = {
        (s, p): prf.derive_prf_key(secret, s, p, version=1)
        for s in ("gumbel", "exp")
        for p in ("token", "context")
    }
    assert len({(k.k0, k.k1, k.salt) for k in v1.values()}) == 4
    u1 = prf.uniform_vector(v1["gumbel", "token"], 3, 4, 1000)
    u2 = prf.uniform_vector(v2["gumbel", "token"], 3, 4, 1000)
    assert not np.intersect1d(u1, u2).size
    with pytest.raises(ValueError, match="`version`"):
        prf.derive_prf_key(secret, "gumbel", "token", version=3)


def test_prf_key_reprs_hide_material():
    k1 = prf.derive_prf_key(b"\x05" * 32, "gumbel", "token", version=1)
    assert str(k1.k0) not in repr(k1) and "redacted" in repr(k1)
    k2 = prf.derive_prf_key(b"\x05" * 32, "gumbel", "token")
    assert k2.key.hex() not in repr(k2) and str(k2.key) not in repr(k2) and "redacted" in repr(k2)


def test_row_seeds_exist_only_in_version_1():
    with pytest.raises(TypeError, match="version 1"):
        prf.row_seed(prf.derive_prf_key(b"\x05" * 32, "gumbel", "token"), 1, 2)


def test_missing_cryptography_says_how_to_install_it():
    code = (
        "import sys\n"
        "sys.modules['cryptography'] = None  # any import of cryptography now fails\n"
        "from safeguard.watermark import prf\n"
        "key = prf.derive_prf_key(bytes(32), 'gumbel', 'token')\n"
        "try:\n"
        "    prf.uniforms(key, 1, 2, [3])\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("DependencyError") and "pip install" in out.stdout


def test_doctests():
    import doctest

    result = doctest.testmod(prf)
    assert result.attempted >= 4 and result.failed == 0
