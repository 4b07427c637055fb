"""Null statistics of the EXP and EXP-edit watermarks: the text scored against fresh random
keys, drawn per (distinct token, key position) and computed in chunks, optionally on
several threads, with results that depend only on the generator's state.

See the "p-values" and "Numerics" paragraphs of :mod:`safeguard.watermark.alignment`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache

import numpy as np

from safeguard.errors import ConfigError
from safeguard.watermark.alignment_kernels import (
    DEFAULT_GAMMA,
    METHODS,
    Method,
    _check_gamma,
    _check_method,
    _check_token_index,
    _edit_kernel,
    key_span,
)

__all__ = ["count_null_hits", "null_statistics"]

_CHUNK = 128  # resamples per work item: the DP's rolling diagonals stay in L2 cache
_CHUNK_BYTES = 32 << 20  # cap on a work item's (n, m, width) float32 cost cube
_GEN_BLOCK = 1 << 18  # float32s converted per step when drawing Exp(1)
_LOG_2_24 = 24.0 * math.log(2.0)


def _fill_exponential(bitgen: np.random.BitGenerator, out: np.ndarray, offset: float) -> None:
    """Fill a contiguous float32 array with ``Exp(1) + offset`` from 24-bit uniforms."""
    flat = out.reshape(-1)
    const = np.float32(_LOG_2_24 + offset)
    half = np.float32(0.5)
    for start in range(0, flat.size, _GEN_BLOCK):
        block = flat[start : start + _GEN_BLOCK]
        k = block.size
        bits = bitgen.random_raw((k + 1) // 2).view(np.uint32)[:k]
        np.right_shift(bits, 8, out=bits)
        np.copyto(block, bits, casting="unsafe")
        np.add(block, half, out=block)
        np.log(block, out=block)
        np.subtract(const, block, out=block)


def _null_cube(
    bitgen: np.random.BitGenerator,
    token_index: np.ndarray,
    n: int,
    width: int,
    direction: int,
    offset: float,
) -> np.ndarray:
    """Draw ``(n, m, width)`` null costs ``E[(x + direction·r + o) mod n, token_index[r]] + offset``.

    Columns of a text's first occurrences are i.i.d.; a repeated token's column
    is the first occurrence's column rolled so that the same (token, key
    position) pair always gets the same draw.
    """
    m = token_index.shape[0]
    cube = np.empty((n, m, width), dtype=np.float32)
    _, first = np.unique(token_index, return_index=True)
    first_of = np.empty(int(token_index.max()) + 1, dtype=np.int64)
    first_of[token_index[first]] = first
    firsts = first_of[token_index]
    repeats = np.flatnonzero(firsts != np.arange(m))
    if repeats.size == 0:
        _fill_exponential(bitgen, cube, offset)
        return cube
    unique_cols = np.sort(first)
    block = np.empty((n, unique_cols.size, width), dtype=np.float32)
    _fill_exponential(bitgen, block, offset)
    cube[:, unique_cols] = block
    for r in repeats:
        r0 = int(firsts[r])
        k = (direction * (int(r) - r0)) % n  # cube[x, r] = cube[(x + k) mod n, r0]
        cube[: n - k, r] = cube[k:, r0]
        cube[n - k :, r] = cube[:k, r0]
    return cube


def _exp_null(
    bitgen: np.random.BitGenerator, token_index: np.ndarray, n: int, width: int
) -> np.ndarray:
    """``(width,)`` null ``exp`` statistics, exactly, without an ``(n, m)`` cube.

    ``S[s] = Σ_i E[(s + i) mod n, token_index[i]]``. A token occurring once
    contributes one distinct entry to each shift's sum, so the singletons'
    part of ``S`` is i.i.d. ``Gamma(#singletons, 1)`` over shifts; only the
    ``n`` draws of each repeated token are materialised and added, rolled.
    """
    counts = np.bincount(token_index)
    single = int((counts[token_index] == 1).sum())
    sums = np.zeros((n, width), dtype=np.float64)
    if single:
        np.random.Generator(bitgen).standard_gamma(single, size=(n, width), out=sums)
    repeated = np.flatnonzero(counts > 1)
    if repeated.size:
        draws = np.empty((repeated.size, n, width), dtype=np.float32)
        _fill_exponential(bitgen, draws, 0.0)
        row_of = np.full(counts.size, -1, dtype=np.int64)
        row_of[repeated] = np.arange(repeated.size)
        for i in np.flatnonzero(counts[token_index] > 1):
            e = draws[row_of[token_index[i]]]
            k = int(i) % n  # sums[s] += e[(s + i) mod n]
            sums[: n - k] += e[k:]
            sums[n - k :] += e[:k]
    return (-sums.max(axis=0)).astype(np.float32)


def _null_chunk(
    seed: np.random.SeedSequence,
    token_index: np.ndarray,
    n: int,
    width: int,
    method: str,
    gamma: float,
) -> np.ndarray:
    bitgen = np.random.SFC64(seed)
    m = token_index.shape[0]
    if method == "exp":
        return _exp_null(bitgen, token_index, n, width)
    cube = _null_cube(bitgen, token_index, n, width, -1, 2.0 * gamma)
    return _edit_kernel(cube, gamma, key_span(m, n))


def _resolve_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise ConfigError(
        f"`rng` (={rng!r}) must be a numpy Generator, an int seed or None; "
        "pass np.random.default_rng(seed) for reproducible p-values"
    )


def _resolve_threads(num_threads: int | None) -> int:
    if num_threads is None:
        return max(1, os.cpu_count() or 1)
    if isinstance(num_threads, bool) or int(num_threads) < 1:
        raise ConfigError(
            f"`num_threads` (={num_threads!r}) must be an int >= 1, or None for the CPU count"
        )
    return int(num_threads)


def _chunk_width(m: int, n: int) -> int:
    """Resamples per work item: ``_CHUNK``, fewer for long texts (memory cap)."""
    return max(1, min(_CHUNK, _CHUNK_BYTES // (4 * m * n)))


def _chunk_seeds(rng: np.random.Generator, total: int, width: int) -> list[np.random.SeedSequence]:
    entropy = rng.integers(0, 2**63, size=4, dtype=np.int64).tolist()
    return np.random.SeedSequence(entropy).spawn(-(-total // width))


def _run_chunks(
    work: Callable[[int, int], np.ndarray],
    total: int,
    width: int,
    num_threads: int,
    keep_going: Callable[[np.ndarray], bool],
) -> None:
    """Run ``work(chunk_id, width)`` over chunks in order, feeding ``keep_going``.

    Chunks are computed ``num_threads`` at a time but delivered in order; once
    ``keep_going`` returns False no further chunk is started.
    """
    widths = [min(width, total - start) for start in range(0, total, width)]
    if num_threads == 1 or len(widths) == 1:
        for cid, w in enumerate(widths):
            if not keep_going(work(cid, w)):
                return
        return
    with ThreadPoolExecutor(max_workers=num_threads) as pool:
        pending: list[Future[np.ndarray]] = []
        nxt = 0
        while nxt < len(widths) and len(pending) < num_threads + 1:
            pending.append(pool.submit(work, nxt, widths[nxt]))
            nxt += 1
        while pending:
            stats = pending.pop(0).result()
            if not keep_going(stats):
                for fut in pending:
                    fut.cancel()
                return
            if nxt < len(widths):
                pending.append(pool.submit(work, nxt, widths[nxt]))
                nxt += 1


def null_statistics(
    token_index: np.ndarray,
    n: int,
    *,
    method: Method = "exp-edit",
    gamma: float = DEFAULT_GAMMA,
    num_resamples: int = 999,
    rng: np.random.Generator | int | None = None,
    num_threads: int | None = 1,
) -> np.ndarray:
    """Statistics of a text scored against ``num_resamples`` fresh random keys.

    The null costs are ``-E`` with ``E ~ Exp(1)`` drawn per (distinct token,
    key position), so repeated tokens keep their equality pattern; nothing of
    vocabulary size is materialised. The output depends only on ``rng``'s
    state, not on ``num_threads``.

    Args:
        token_index: ``(m,)`` index of each position's token among the text's
            distinct tokens (``np.unique(tokens, return_inverse=True)[1]``).
        n: Key length.
        method: ``"exp"`` or ``"exp-edit"``.
        gamma: Insertion/deletion cost (``exp-edit`` only).
        num_resamples: Number of null keys ``T ≥ 1``.
        rng: Generator (or seed) driving the draws.
        num_threads: Worker threads (numpy releases the GIL); None uses every
            CPU. Default 1: on the 2-core reference machine 2 threads gave no
            gain, the work being memory-bound.

    Returns:
        ``(num_resamples,)`` float32 null statistics.

    Raises:
        ConfigError: On a bad ``method``, ``gamma``, ``n``, ``num_resamples`` or ``token_index``.

    >>> stats = null_statistics(np.arange(50), 64, method="exp", num_resamples=5, rng=0)
    >>> stats.shape, bool(np.all(stats < 0))
    ((5,), True)
    """
    _check_method(method)
    g = _check_gamma(gamma) if method == "exp-edit" else 0.0
    if int(n) < 1:
        raise ConfigError(f"`n` (={n!r}) must be >= 1: the number of key positions")
    if int(num_resamples) < 1:
        raise ConfigError(f"`num_resamples` (={num_resamples!r}) must be >= 1")
    tok = np.asarray(token_index)
    if tok.ndim != 1 or tok.size < 1:
        raise ConfigError(f"`token_index` must be a non-empty 1-D array, got shape {tok.shape}")
    tok = _check_token_index(tok, tok.shape[0])
    total = int(num_resamples)
    out = np.empty(total, dtype=np.float32)
    filled = [0]

    def collect(stats: np.ndarray) -> bool:
        out[filled[0] : filled[0] + stats.size] = stats
        filled[0] += stats.size
        return True

    _stream_null(tok, int(n), method, g, total, rng, num_threads, collect)
    return out


def _stream_null(
    token_index: np.ndarray,
    n: int,
    method: str,
    gamma: float,
    total: int,
    rng: np.random.Generator | int | None,
    num_threads: int | None,
    consume: Callable[[np.ndarray], bool],
) -> None:
    """Draw ``total`` null statistics chunk by chunk, in order, into ``consume``; stop when
    it returns False. The draws depend only on ``rng``, not on ``num_threads``."""
    width = _chunk_width(token_index.shape[0], n)
    seeds = _chunk_seeds(_resolve_rng(rng), total, width)

    def work(cid: int, width: int) -> np.ndarray:
        return _null_chunk(seeds[cid], token_index, n, width, method, gamma)

    _run_chunks(work, total, width, _resolve_threads(num_threads), consume)


@lru_cache(maxsize=32)
def _cached_table(method: str, m: int, n: int, gamma: float, total: int) -> np.ndarray:
    seed = np.random.SeedSequence([m, n, total, round(gamma * 1e6), METHODS.index(method)])
    table = null_statistics(
        np.arange(m),
        n,
        method=method,  # type: ignore[arg-type]
        gamma=gamma,
        num_resamples=total,
        rng=np.random.Generator(np.random.PCG64(seed)),
    )
    table.sort()
    table.setflags(write=False)
    return table


def count_null_hits(
    observed: float,
    token_index: np.ndarray,
    n: int,
    method: str,
    gamma: float,
    total: int,
    *,
    rng: np.random.Generator | int | None,
    early_stop: int | None,
    num_threads: int,
) -> tuple[int, int, bool]:
    """``(seen, hits, stopped)``: null statistics drawn, those ``≤ observed``, early stop.

    Draws up to ``total`` null statistics in chunks; with ``early_stop = h`` it stops at the
    ``h``-th hit in draw order (Besag–Clifford), so ``seen`` counts the draws up to it.
    """
    thresh = np.float32(observed)
    h = early_stop
    state = {"seen": 0, "hits": 0, "stopped": False}

    def consume(stats: np.ndarray) -> bool:
        hits = stats <= thresh
        if h is not None and state["hits"] + int(hits.sum()) >= h:
            # the h-th hit, in draw order, is where sequential sampling stops
            where = np.flatnonzero(hits)[h - state["hits"] - 1]
            state["seen"] += int(where) + 1
            state["hits"] = h
            state["stopped"] = True
            return False
        state["seen"] += stats.size
        state["hits"] += int(hits.sum())
        return True

    _stream_null(token_index, n, method, gamma, total, rng, num_threads, consume)
    return int(state["seen"]), int(state["hits"]), bool(state["stopped"])
