"""An adversary with detection access tries to forge a watermarked text through the service.

Threat model: the adversary holds a tenant token for a key (not the key), and may send as
many texts as the tenant's daily budget allows. Its goal is a text the service flags at
FPR 1e-3. Its strategy is the strongest simple one against a detector oracle: hill-climbing.
From a random 24-word text, each round sends 255 variants (one word changed each) in one
request and keeps the variant the service ranks best; any flagged variant wins.

* With ``detail: decision`` (the default) the answers carry no gradient: the forger does no
  better than blind trial, and the budget stops it (measured: 2 of 20 keys, a day's budget
  each, against 0.63 per key for 1,000 independent random texts at FPR 1e-3).
* With ``detail: statistics`` the p-values, even rounded up to the grid, let the same forger
  climb (20 of 20): the power check that shows the attack is competent, and why statistics
  are for trusted callers only.
* Texts under 16 scored tokens get "too short to test" and no statistics, so short probes
  cannot isolate one token's value; the PRF (version 2) makes each value independent of
  every other, so nothing learned about one (context, token) carries to another.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from safeguard.serve import create_app
from safeguard.serve.config import load_config
from safeguard.watermark import Watermarker, WatermarkKey

BUDGET = 1000  # the default texts_per_key_per_day
ROUND = 255
WORDS = 24
ATTACKS = 20


@pytest.fixture(scope="module")
def service(world):
    keys = [WatermarkKey.from_secret(bytes([100 + i]) * 32, "gumbel") for i in range(ATTACKS)]
    keys = [k.bind(world.tokenizer) for k in keys]
    for i, key in enumerate(keys):
        key.save(world.key_store / f"probe{i}.json")
    base = world.config_dict()
    tenants = []
    for detail in ("decision", "statistics"):
        tenants.append(
            {
                **base["tenants"][0],
                "name": f"forger-{detail}",
                "token_sha256": base["tenants"][0 if detail == "statistics" else 1]["token_sha256"],
                "keys": [k.key_id for k in keys],
                "detail": detail,
                "texts_per_key_per_day": BUDGET,
            }
        )
    path = world.write_config("probing.yaml", tenants=tenants)
    with TestClient(create_app(load_config(path))) as client:
        yield client, keys


def _forge(client, world, key, tenant, seed):
    """Hill-climb for a text the service flags at 1e-3; returns (text or None, texts sent)."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(400)])  # the world's vocabulary
    headers = world.headers("alpha" if tenant.endswith("statistics") else "beta")

    def ask(texts):
        r = client.post(
            "/v1/detect",
            json={"texts": texts, "key_ids": [key.key_id], "false_positive_rate": 1e-3},
            headers=headers,
        )
        return r

    base = rng.integers(0, len(words), size=WORDS)
    best, sent = 1.0, 0
    while True:
        size = min(ROUND, BUDGET - sent) or 1  # the whole budget, then one text too many
        variants = []
        for _ in range(size):
            v = base.copy()
            v[rng.integers(4, WORDS)] = rng.integers(0, len(words))
            variants.append(v)
        r = ask([" ".join(words[v]) for v in variants])
        if r.status_code == 429:
            assert sent == BUDGET and "texts per key per 24 hours" in r.json()["error"]["message"]
            return None, sent
        assert r.status_code == 200, r.text
        sent += size
        results = r.json()["results"]
        for v, res in zip(variants, results, strict=True):
            if res["is_watermarked"]:
                return " ".join(words[v]), sent
        ps = [res.get("p_value", 1.0) for res in results]
        j = int(np.argmin(ps))
        if ps[j] < best:
            base, best = variants[j], ps[j]


@pytest.mark.parametrize(("detail", "most", "least"), [("decision", 4, 0), ("statistics", 20, 17)])
def test_a_days_budget_does_not_forge_a_watermark_without_statistics(
    service, world, detail, most, least
):
    client, keys = service
    wins = 0
    for i, key in enumerate(keys):
        text, sent = _forge(client, world, key, f"forger-{detail}", seed=i)
        assert sent <= BUDGET
        if text is not None:
            # a forgery counts only if the key holder's own detector agrees
            ids = world.tokenizer(text)["input_ids"]
            assert Watermarker(key).detect(ids, false_positive_rate=1e-3).is_watermarked
            wins += 1
    # decision: no better than blind trial. 1,000 independent random texts would pass at 1e-3
    # with probability 1 - 0.999**1000 = 0.63; the forger's variants are correlated and it
    # wins far less (measured 2 of 20). If its true rate were 0.1, 5 or more wins of 20
    # would happen 4% of the time; the keys and seeds are fixed, so the outcome is too.
    # statistics: the power check: the same forger, given coarse p-values, succeeds (20/20).
    assert least <= wins <= most, f"{detail}: {wins} of {len(keys)} forgeries"


def test_the_budget_is_per_key_and_refuses_with_retry_after(world):
    path = world.write_config(
        "budget.yaml",
        tenants=[{**world.config_dict()["tenants"][1], "texts_per_key_per_day": 5}],
    )
    with TestClient(create_app(load_config(path))) as client:
        ask = lambda n: client.post(  # noqa: E731
            "/v1/detect", json={"texts": ["w1 w2 w3"] * n}, headers=world.headers("beta")
        )
        assert ask(3).status_code == 200 and ask(2).status_code == 200
        r = ask(1)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "5 texts per key per 24 hours" in r.json()["error"]["message"]
        too_many = ask(6)
        assert too_many.status_code == 429


def test_keys_of_the_leaky_prf_version_1_are_refused_unless_allowed(world, tmp_path):
    from safeguard.errors import ConfigError
    from safeguard.serve.keystore import KeyRing

    store = tmp_path / "keys"
    store.mkdir()
    old = WatermarkKey.from_secret(bytes([7]) * 32, "gumbel", prf_version=1)
    with pytest.warns(UserWarning):
        old = old.bind(world.tokenizer)
    old.save(store / "old.json")
    base = world.config_dict()
    tenant = {**base["tenants"][1], "keys": [old.key_id]}
    cfg = dict(base, key_store=str(store), tenants=[tenant])
    from safeguard.serve import ServerConfig

    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="PRF version 1"):
        KeyRing.from_config(ServerConfig.model_validate(cfg))
    with pytest.warns(UserWarning):
        ring = KeyRing.from_config(
            ServerConfig.model_validate({**cfg, "allow_legacy_prf_keys": True})
        )
    assert ring.get(tenant["name"], old.key_id) is not None
