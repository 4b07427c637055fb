"""The service with ``detection_memory``: pairs scored once per key; saved, reloaded, refused."""

from __future__ import annotations

import os
import stat

import pytest
from fastapi.testclient import TestClient

from safeguard.errors import ConfigError
from safeguard.serve import create_app
from safeguard.serve.config import load_config
from safeguard.serve.keystore import KeyRing
from safeguard.watermark import DetectionMemory, Watermarker, WatermarkKey

from .test_probing import BUDGET, _forge

ATTACKS = 10


def _ask(client, world, texts, tenant="alpha"):
    r = client.post("/v1/detect", json={"texts": texts}, headers=world.headers(tenant))
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_statistics_do_not_let_a_forger_climb_through_the_memory(world, tmp_path):
    # The forger of test_probing climbs coarse p-values to a text that the key holder's own
    # (stateless) detector confirms at 1e-3, for 20 of 20 keys, without a memory. With it,
    # each variant (one word changed) scores only the few pairs no earlier query scored: under
    # 16 scored tokens it is "too short to test" and gets no p-value, so the climb is blind.
    # The service still flags a query now and then, at its nominal rate: each query's p-value
    # is uniform given the earlier ones, so 1,000 queries hit 1e-3 with probability 0.63,
    # as 1,000 random texts would. Such a text is no forgery: its full text is not
    # watermarked. Confirmed forgeries: a blind text passes at 1e-3 with probability 1e-3 per
    # try; 2 or more of 10 keys would need luck far below 1e-3; keys and seeds are fixed.
    keys = [WatermarkKey.from_secret(bytes([150 + i]) * 32, "gumbel") for i in range(ATTACKS)]
    keys = [k.bind(world.tokenizer) for k in keys]
    for i, key in enumerate(keys):
        key.save(world.key_store / f"memory-probe{i}.json", overwrite=True)
    tenant = {
        **world.config_dict()["tenants"][0],
        "name": "forger-statistics",
        "keys": [k.key_id for k in keys],
        "texts_per_key_per_day": BUDGET,
    }
    path = world.write_config(
        "memory-probing.yaml", tenants=[tenant], detection_memory=str(tmp_path / "memory")
    )
    flagged = confirmed = 0
    with TestClient(create_app(load_config(path))) as client:
        for i, key in enumerate(keys):
            text, sent = _forge(client, world, key, "forger-statistics", seed=i)
            assert sent <= BUDGET
            if text is not None:
                flagged += 1
                ids = world.tokenizer(text)["input_ids"]
                confirmed += Watermarker(key).detect(ids, false_positive_rate=1e-3).is_watermarked
    assert confirmed <= 1, f"{confirmed} of {ATTACKS} forgeries confirmed ({flagged} flagged)"


def test_memory_is_saved_at_shutdown_and_answers_repeats_after_a_restart(world, tmp_path):
    folder = tmp_path / "memory"
    path = world.write_config("memory.yaml", detection_memory=str(folder))
    text = world.watermarked_text(world.keys["a1"], 80, seed=3)
    with TestClient(create_app(load_config(path))) as client:
        first = _ask(client, world, [text, text + " w1 w2 w3"])
    files = sorted(folder.glob("*.memory.npz"))
    assert len(files) == 3  # every gumbel key of the store's tenants
    assert all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in files)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert first[0]["is_watermarked"]
    # The near-copy scored only its new tail: too short to test, and flagged no more.
    assert first[1]["verdict"] == "too short to test"
    with TestClient(create_app(load_config(path))) as client:
        again = _ask(client, world, [text])
    assert again[0] == first[0]
    memory = DetectionMemory.load(folder / f"{world.keys['a1'].key_id}.memory.npz")
    assert memory.texts == 2


def test_a_memory_folder_that_is_a_file_is_refused(world, tmp_path):
    bad = tmp_path / "memory"
    bad.write_text("not a folder")
    with pytest.raises(ConfigError, match="must be a folder"):
        KeyRing.from_config(load_config(world.write_config("bad.yaml", detection_memory=str(bad))))
