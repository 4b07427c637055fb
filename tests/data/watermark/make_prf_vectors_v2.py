"""Write ``prf_vectors_v2.json``: test vectors of PRF version 2 (AES-128).

Run once, when the version-2 construction is defined, and commit the output; the tests
check the implementation against the committed file, so any later change of bits fails.
Never regenerate it to make a failing test pass: a new construction gets a new version.
(``prf_vectors.json`` holds the version-1 vectors and is frozen the same way.)

The FIPS 197 known answers are copied from the standard, not computed.

Run: .venv/bin/python tests/data/watermark/make_prf_vectors_v2.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from safeguard.watermark import prf

OUT = Path(__file__).with_name("prf_vectors_v2.json")

#: FIPS 197 (AES), Appendix B (cipher example) and Appendix C.1 (AES-128 example vector).
AES128_KAT = [
    {
        "source": "FIPS 197 Appendix B",
        "key_hex": "2b7e151628aed2a6abf7158809cf4f3c",
        "plaintext_hex": "3243f6a8885a308d313198a2e0370734",
        "ciphertext_hex": "3925841d02dc09fbdc118597196a0b32",
    },
    {
        "source": "FIPS 197 Appendix C.1",
        "key_hex": "000102030405060708090a0b0c0d0e0f",
        "plaintext_hex": "00112233445566778899aabbccddeeff",
        "ciphertext_hex": "69c4e0d86a7b0430d8cdb78070b4c55a",
    },
]

SECRETS = [bytes(32), bytes(range(32))]
TOKEN_ROWS = [
    (0, 0, [0, 1, 2, 3, 50256]),
    (7, 11, [5, 6, 1000, 49999]),
    (0xFFFFFFFF, 0xFFFFFFFF, [0, 2**31 - 1, 0xFFFFFFFE, 0xFFFFFFFF]),
    (255, 0, [17, 17, 131071]),  # an exp key position (b = 0); a repeated token
]
S = prf.SENTINEL
CONTEXTS = {
    1: [[0], [50256], [S]],
    2: [[0, 1], [S, 42]],
    3: [[1, 2, 3], [S, S, 9]],
    4: [[0, 0, 0, 0], [1, 2, 3, 4], [S, S, S, 7], [50256, 50255, 50254, 50253]],
    5: [[1, 2, 3, 4, 5]],
    8: [[9, 8, 7, 6, 5, 4, 3, 2]],
    16: [list(range(16))],
}
DIGEST_ROWS = [(0, 0), (123, 456)]
DIGEST_VOCAB = 50257


def main() -> None:
    cases = []
    for secret in SECRETS:
        for scheme in ("gumbel", "exp"):
            for purpose in ("token", "context"):
                key = prf.derive_prf_key(secret, scheme, purpose, version=2)
                case = {
                    "secret_hex": secret.hex(),
                    "scheme": scheme,
                    "purpose": purpose,
                    "aes_key_hex": key.key.hex(),
                    "uniforms": [
                        {
                            "a": a,
                            "b": b,
                            "tokens": tokens,
                            "u_hex": [float(x).hex() for x in prf.uniforms(key, a, b, tokens)],
                        }
                        for a, b, tokens in TOKEN_ROWS
                    ],
                    "context_words": [
                        {
                            "width": h,
                            "contexts": contexts,
                            "words": [
                                [int(x), int(y)]
                                for x, y in zip(
                                    *prf.context_words(key, np.array(contexts, dtype=np.uint64)),
                                    strict=True,
                                )
                            ],
                        }
                        for h, contexts in CONTEXTS.items()
                    ],
                    "row_sha256": [
                        {
                            "a": a,
                            "b": b,
                            "vocab_size": DIGEST_VOCAB,
                            "sha256_float64_le": hashlib.sha256(
                                prf.uniform_vector(key, a, b, DIGEST_VOCAB).astype("<f8").tobytes()
                            ).hexdigest(),
                        }
                        for a, b in DIGEST_ROWS
                    ],
                }
                cases.append(case)
    payload = {
        "prf_version": 2,
        "construction": (
            "AES-128 keyed with HMAC-SHA256(secret, 'safeguard/prf/v2/<scheme>/<purpose>')[:16]; "
            "u = (floor(w / 2^12) + 1/2) / 2^52 with w = first 8 bytes (little-endian) of "
            "AES(LE32 a | LE32 b | LE32 token | LE32 TOKEN_TAG); context words = first two LE32 "
            "words of the CBC-MAC of LE32(CONTEXT_TAG | h) | LE32(SENTINEL)*pad | LE32 tokens"
        ),
        "token_tag": prf.TOKEN_TAG,
        "context_tag": prf.CONTEXT_TAG,
        "sentinel": prf.SENTINEL,
        "aes128_kat": AES128_KAT,
        "cases": cases,
    }
    OUT.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
