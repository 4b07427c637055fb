"""Test helper (not a test module): a small detection world: a word-level tokenizer, keys for two tenants, a server config.

Watermarked texts are simulated without a model (random peaked next-token distributions,
tokens chosen by the exponential-minimum rule with the key's PRF rows, as generation does),
over a word-level vocabulary so that text -> ids is exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from safeguard.serve import hash_token
from safeguard.watermark import Watermarker, WatermarkKey, prf
from safeguard.watermark.schemes.base import exponential_min_select

WORDS = [f"w{i}" for i in range(400)]


def build_tokenizer(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder


def watermarked_text(key: WatermarkKey, length: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    wm = Watermarker(key)
    h = wm.scheme.config.context_width
    vocab = len(WORDS) + 1
    seq: list[int] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(length):
        logits = rng.normal(size=vocab) * 3.0
        logits[0] = -np.inf  # never [UNK]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        window = np.array(([prf.SENTINEL] * h + seq)[-h:], dtype=np.int64)[None, :]
        a, b = prf.context_words(wm.scheme.context_key, window)
        pair = (int(a[0]), int(b[0]))
        if pair in seen:
            tok = int(rng.choice(vocab, p=p))
        else:
            seen.add(pair)
            tok = exponential_min_select(prf.uniform_vector(wm.scheme.token_key, *pair, vocab), p)
        seq.append(tok)
    return " ".join(WORDS[t - 1] for t in seq)


def plain_text(length: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), size=length))


class World:
    def __init__(self, root: Path) -> None:
        from safeguard.watermark.tokenizer import load_tokenizer

        self.root = root
        self.tok_dir = build_tokenizer(root / "tok")
        self.tokenizer = load_tokenizer(self.tok_dir)
        store = root / "keys"
        store.mkdir()
        self.keys = {
            name: WatermarkKey.from_secret(bytes([i + 1]) * 32, "gumbel").bind(self.tokenizer)
            for i, name in enumerate(("a1", "a2", "b1"))
        }
        for name, key in self.keys.items():
            key.save(store / f"{name}.json")
        self.key_store = store
        self.tokens = {"alpha": "sgt_alpha-token", "beta": "sgt_beta-token"}

    def config_dict(self, **overrides) -> dict:
        cfg = {
            "schema_version": 1,
            "key_store": str(self.key_store),
            "tokenizers": [str(self.tok_dir)],
            "tenants": [
                {
                    "name": "alpha",
                    "token_sha256": hash_token(self.tokens["alpha"]),
                    "keys": [self.keys["a1"].key_id, self.keys["a2"].key_id],
                    "rate_limit": {"requests_per_second": 1000, "burst": 1000},
                    "detail": "statistics",
                    "texts_per_key_per_day": 1_000_000,
                },
                {
                    "name": "beta",
                    "token_sha256": hash_token(self.tokens["beta"]),
                    "keys": [self.keys["b1"].key_id],
                    "rate_limit": {"requests_per_second": 1000, "burst": 1000},
                    "detail": "decision",
                    "texts_per_key_per_day": 1_000_000,
                },
            ],
        }
        cfg.update(overrides)
        return cfg

    def write_config(self, name: str = "server.yaml", **overrides) -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump(json.loads(json.dumps(self.config_dict(**overrides)))))
        return path

    watermarked_text = staticmethod(watermarked_text)
    plain_text = staticmethod(plain_text)

    def headers(self, tenant: str = "alpha") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[tenant]}"}
