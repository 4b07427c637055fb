"""The gumbel scheme's memory of contexts used by earlier texts (generation side only)."""

from __future__ import annotations

import pickle
import threading

import numpy as np

from safeguard.watermark import Watermarker, WatermarkKey
from safeguard.watermark.schemes.gumbel import ContextMemory, GumbelScheme


def test_capacity_rounds_up_to_a_power_of_two_and_the_table_is_lazy():
    memory = ContextMemory(1000)
    assert memory.size == 1024 and memory._table is None
    assert ContextMemory(1).size == 1 and ContextMemory(1024).size == 1024
    assert memory.use(5) and memory._table is not None


def test_a_used_word_repeats_until_a_colliding_word_evicts_it():
    memory = ContextMemory(8)
    assert memory.use(3) and not memory.use(3)
    assert memory.use(3 + 8)  # same slot: evicts 3
    assert memory.use(3)  # forgotten, so usable again
    assert not memory.use(3)
    big = (1 << 64) - 5  # full 64-bit words are kept exactly
    assert memory.use(big) and not memory.use(big)
    assert memory.use(0) and not memory.use(0)  # 0 (the empty mark) is still remembered
    assert (memory.lookups, memory.repeats) == (9, 4)
    memory.clear()
    assert (memory.lookups, memory.repeats) == (0, 0) and memory.use(3)


def test_concurrent_use_counts_every_lookup_once():
    memory = ContextMemory(1 << 20)  # ~8 colliding pairs among 4,000 words
    words = np.random.default_rng(0).integers(1, 1 << 62, size=4000).tolist()

    def worker(part):
        for w in part:
            memory.use(w)

    threads = [threading.Thread(target=worker, args=(words[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert memory.lookups == 4000
    assert memory.repeats == 0
    assert sum(not memory.use(w) for w in words) >= 3950  # nearly all still held


def test_rows_skip_contexts_an_earlier_text_used():
    import torch

    key = WatermarkKey.from_secret(bytes(range(32)), "gumbel", context_width=2)
    scheme: GumbelScheme = Watermarker(key).scheme
    ids = torch.tensor([[5, 6, 7], [5, 6, 7], [1, 6, 7]])
    state = scheme.start(3, 3, [0, 0, 0], None)
    _, _, active = scheme.rows(state, ids)
    assert active.tolist() == [True, False, False]  # rows 2 and 3 share row 1's context (6, 7)
    later = scheme.start(1, 3, [0], None)
    _, _, active = scheme.rows(later, ids[:1])
    assert active.tolist() == [False]  # a later generation meets it again
    off = Watermarker(WatermarkKey.from_secret(bytes(range(32)), "gumbel", context_memory=0))
    state = off.scheme.start(3, 3, [0, 0, 0], None)
    assert off.scheme.rows(state, ids)[2].tolist() == [True, True, True]


def test_a_gumbel_watermarker_pickles_with_a_fresh_context_memory():
    wm = Watermarker(WatermarkKey.from_secret(bytes(range(32)), "gumbel"))
    wm.scheme.memory.use(12345)
    copy = pickle.loads(pickle.dumps(wm))
    assert copy.scheme.memory.size == wm.scheme.memory.size == 1 << 20
    assert copy.scheme.memory.lookups == 0 and copy.scheme.memory.use(12345)
    tokens = np.arange(80) % 50
    assert copy.detect(tokens).p_value == wm.detect(tokens).p_value
