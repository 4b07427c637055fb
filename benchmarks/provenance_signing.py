"""Envelope signing and verification: safeguard vs securesystemslib on the same statement.

Both sign a DSSE envelope around the same in-toto statement with the same Ed25519 key and
verify it; times are per envelope (median of --n runs).

    python benchmarks/provenance_signing.py [--n 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time

from securesystemslib.dsse import Envelope as SslEnvelope
from securesystemslib.signer import CryptoSigner

from safeguard.provenance import (
    Envelope,
    PrivateKey,
    Statement,
    Subject,
    training_predicate,
)


def _median_us(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    key = PrivateKey.generate()
    st = Statement(
        subjects=(Subject(name="model", digest={"sha256": "ab" * 32}),),
        predicate_type="https://slsa.dev/provenance/v1",
        predicate=training_predicate(
            dp_config={"target_epsilon": 8.0, "max_grad_norm": 1.0},
            datasets=[("clean.jsonl", "cd" * 32)],
            ledger={"epsilon_spent": 7.9},
        ),
    )
    payload = st.to_bytes()
    env = Envelope(payload=payload).signed(key)
    pub = key.public_key
    signer = CryptoSigner(key._key)
    ssl_key = signer.public_key
    ssl_env = SslEnvelope(
        payload=payload, payload_type="application/vnd.in-toto+json", signatures={}
    )
    ssl_env.sign(signer)
    doc = env.to_json()

    ours_sign = _median_us(lambda: Envelope(payload=payload).signed(key), args.n)
    ours_verify = _median_us(lambda: Envelope.from_json(doc).verify([pub]), args.n)

    def ssl_sign() -> None:
        e = SslEnvelope(payload=payload, payload_type="application/vnd.in-toto+json", signatures={})
        e.sign(signer)

    ssl_dict = ssl_env.to_dict()
    ssl_sign_us = _median_us(ssl_sign, args.n)
    ssl_verify_us = _median_us(
        lambda: SslEnvelope.from_dict(
            dict(ssl_dict, signatures=[dict(s) for s in ssl_dict["signatures"]])
        ).verify([ssl_key], 1),
        args.n,
    )
    print(f"payload: {len(payload)} bytes; median of {args.n} runs")
    print(f"sign   : safeguard {ours_sign:6.1f} us   securesystemslib {ssl_sign_us:6.1f} us")
    print(
        f"verify : safeguard {ours_verify:6.1f} us   securesystemslib {ssl_verify_us:6.1f} us (parse + verify)"
    )


if __name__ == "__main__":
    main()
