"""Detection memory: each (context, token) pair is scored once per key, over every text.

Why. A ``gumbel`` p-value is exact over the key: for any text independent of the key,
``P(p <= alpha) = alpha``. A deployment, though, runs *one* key for months, and two texts
that contain the same ``(context, token)`` pair read the same uniform under that key. On
a stream of texts that share phrases (low-temperature model output, templates, quoted or
reposted passages) the decisions under one key are then correlated, and the share of
texts one key flags spreads around ``alpha`` far wider than a binomial count: some keys
flag several times ``alpha`` of such a stream. No stateless detector can avoid this: it
must give the same answer to the same text, so copies are flagged together.

What. A :class:`DetectionMemory` remembers, for one key, every pair that earlier
detections scored, and a pair is scored only the first time it is seen. The uniforms of
the pairs a new text scores are then PRF outputs that no earlier answer depended on, so
under the null each text's p-value is uniform *given every earlier answer*: for one fixed
sequence of texts (chosen in advance, or adaptively from earlier answers), the number
flagged under a random key is exactly Binomial(n, alpha). Across keys the per-key false-
positive counts are binomial, so a fixed key's rate concentrates at ``alpha`` at the
binomial rate, whatever the texts share. A text asked about again, token for token, gets
the answer it got the first time (kept in a bounded table of recent texts).

Costs. A pair that an earlier text scored is not scored again, so a near-copy of a text
seen before is tested on its new pairs only (an edited repost of a watermarked text is
weaker evidence the second time), and a long-running memory skips the commonest phrases of
the language. Detection of unrelated texts is unchanged. The same rule stops a caller
who probes the detector from learning a pair's uniform twice.

Storage. Pairs go into a Bloom filter (``16`` bits and 7 probes per pair of capacity,
about 0.05 % false hits at capacity). A false hit skips a pair that was never scored: a
loss of power, never of validity, since whether a pair is skipped does not depend on its
uniform (pair words come from the key's context PRF, uniforms from its token PRF). Past
capacity the false hits grow; :attr:`DetectionMemory.over_capacity` tells when to start a
larger memory. A memory is bound to one key id and can be saved to a 0600 file.

Threat model. The guarantee covers the detections recorded in one memory. Deleting the
file, or restoring an older copy, forgets pairs: texts detected afterwards may again share
scored pairs with texts detected before. Keep the memory file with the key, like the
key itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from safeguard.errors import ConfigError, DetectionError
from safeguard.watermark.prf import splitmix64

__all__ = ["DEFAULT_MEMORY_CAPACITY", "DetectionMemory", "memory_file"]

#: Default pair capacity: 2**22 pairs (about 20,000 texts of 200 tokens) in 8 MiB.
DEFAULT_MEMORY_CAPACITY = 1 << 22
#: Default number of recent texts whose answers are kept for exact repeats.
DEFAULT_REPEATS = 1 << 16
_BITS_PER_PAIR = 16
_PROBES = 7
_FORMAT = 1
_TOKEN_SALT = np.uint64(0x9E3779B97F4A7C15)
_STEP_SALT = np.uint64(0xD1B54A32D192ED03)


def pair_words(context_words: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """One 64-bit word per ``(context, token)`` pair, from the 64-bit keyed context word.

    >>> pair_words(np.array([1], np.uint64), np.array([2])).dtype
    dtype('uint64')
    """
    tokens = np.asarray(targets).astype(np.uint64)
    with np.errstate(over="ignore"):
        return splitmix64(np.asarray(context_words, np.uint64) ^ splitmix64(tokens + _TOKEN_SALT))


def text_digest(tokens: np.ndarray, prompt: np.ndarray | None) -> bytes:
    """16-byte digest of a text and the prompt it was tested with (what its answer depends on)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(tokens, dtype="<i8").tobytes())
    h.update(b"|")
    if prompt is not None:
        h.update(np.asarray(prompt, dtype="<i8").tobytes())
    return h.digest()


class DetectionMemory:
    """The pairs earlier detections under one key scored, and the answers of recent texts.

    Pass it to detection (``Watermarker(key).detect(..., memory=memory)``, also
    ``detect_batch`` and ``detect_text``); ``gumbel`` keys only.

    Args:
        key_id: The key this memory belongs to (``WatermarkKey.key_id``); detection refuses
            a memory of another key.
        capacity: Pairs the filter holds at its stated false-hit rate (a 200-token text
            adds up to 200); ``16 * capacity`` bits are allocated on first use.
        repeats: Texts whose answers are kept for exact repeats (most recent first out).

    >>> memory = DetectionMemory("k1", capacity=1024)
    >>> words = np.array([11, 12, 13], dtype=np.uint64)
    >>> memory.claim(words).tolist()
    [True, True, True]
    >>> memory.claim(words[:2]).tolist()
    [False, False]
    """

    def __init__(
        self,
        key_id: str,
        *,
        capacity: int = DEFAULT_MEMORY_CAPACITY,
        repeats: int = DEFAULT_REPEATS,
    ) -> None:
        if not isinstance(key_id, str) or not key_id:
            raise ConfigError(
                f"`key_id` (={key_id!r}) must be a key id string (WatermarkKey.key_id)"
            )
        for name, value in (("capacity", capacity), ("repeats", repeats)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 34:
                raise ConfigError(
                    f"`{name}` (={value!r}) must be a positive integer (at most 2**34)"
                )
        self.key_id = key_id
        self.capacity = capacity
        self.repeats = repeats
        bits = max(64, 1 << (capacity * _BITS_PER_PAIR - 1).bit_length())
        self._mask = np.uint64(bits - 1)
        self._bits: np.ndarray | None = None  # uint64 words, allocated on first insert
        self._answers: OrderedDict[bytes, tuple[float, int]] = OrderedDict()
        self.lock = threading.RLock()
        self.pairs = 0  # pairs inserted (first sightings)
        self.skipped = 0  # pairs not scored because an earlier text scored them
        self.texts = 0  # texts tested (repeats excluded)

    def __repr__(self) -> str:
        return (
            f"DetectionMemory(key_id={self.key_id!r}, pairs={self.pairs}, capacity={self.capacity}, "
            f"texts={self.texts})"
        )

    @property
    def over_capacity(self) -> bool:
        """More pairs than ``capacity``: false hits (lost power) grow; start a larger memory."""
        return self.pairs > self.capacity

    def check_key(self, key_id: str) -> None:
        if key_id != self.key_id:
            raise DetectionError(
                f"this detection memory belongs to key {self.key_id}, not {key_id}; "
                "use one memory per key"
            )

    # pairs ------------------------------------------------------------------------------------
    def _probes(self, words: np.ndarray) -> np.ndarray:
        """Bit positions, shape ``(n, probes)`` (double hashing)."""
        h1 = splitmix64(words)
        with np.errstate(over="ignore"):
            h2 = splitmix64(words ^ _STEP_SALT) | np.uint64(1)
            steps = np.arange(_PROBES, dtype=np.uint64)
            return (h1[:, None] + steps[None, :] * h2[:, None]) & self._mask

    def _contains(self, probes: np.ndarray) -> np.ndarray:
        if self._bits is None:
            return np.zeros(probes.shape[0], dtype=bool)
        bit = (self._bits[probes >> np.uint64(6)] >> (probes & np.uint64(63))) & np.uint64(1)
        return bit.all(axis=1).astype(bool)

    def claim(self, words: np.ndarray) -> np.ndarray:
        """Which pairs to score: the first sighting of each pair, in order, over all texts ever.

        ``words`` are pair words in scoring order (texts in order, positions in order); a
        pair is kept where no earlier text (in this memory or earlier in ``words``) had it.
        Every pair is then recorded. Returns a boolean mask of ``words``' shape.
        """
        words = np.asarray(words, dtype=np.uint64)
        keep = np.zeros(words.size, dtype=bool)
        if words.size == 0:
            return keep
        _, first = np.unique(words, return_index=True)
        keep[first] = True
        with self.lock:
            probes = self._probes(words)
            keep &= ~self._contains(probes)
            if self._bits is None:
                self._bits = np.zeros((int(self._mask) + 1) // 64, dtype=np.uint64)
            new = probes[keep].ravel()
            np.bitwise_or.at(self._bits, new >> np.uint64(6), np.uint64(1) << (new & np.uint64(63)))
            self.pairs += int(keep.sum())
            self.skipped += int(words.size - keep.sum())
        return keep

    # answers to exact repeats -----------------------------------------------------------------
    def recall(self, digest: bytes) -> tuple[float, int] | None:
        """``(score, num_scored)`` of the text with this digest, if it was tested before."""
        with self.lock:
            return self._answers.get(digest)

    def remember(self, digest: bytes, score: float, num_scored: int) -> None:
        with self.lock:
            self._answers[digest] = (float(score), int(num_scored))
            self._answers.move_to_end(digest)
            while len(self._answers) > self.repeats:
                self._answers.popitem(last=False)
            self.texts += 1

    # files ------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the memory to ``path`` atomically (mode 0600)."""
        from safeguard._files import write_private

        with self.lock:
            digests = np.frombuffer(b"".join(self._answers), dtype=np.uint8).reshape(-1, 16)
            values = np.array(list(self._answers.values()), dtype=np.float64).reshape(-1, 2)
            header = {
                "format": _FORMAT,
                "key_id": self.key_id,
                "capacity": self.capacity,
                "repeats": self.repeats,
                "pairs": self.pairs,
                "skipped": self.skipped,
                "texts": self.texts,
            }
            buf = io.BytesIO()
            np.savez_compressed(
                buf,
                header=np.array(json.dumps(header)),
                bits=self._bits if self._bits is not None else np.zeros(0, np.uint64),
                digests=digests,
                answers=values,
            )
        return write_private(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, key_id: str | None = None) -> DetectionMemory:
        """Read a memory written by :meth:`save`; with ``key_id``, refuse another key's memory."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                if not isinstance(header, dict):
                    raise ValueError("bad header")
                bits, digests, answers = data["bits"], data["digests"], data["answers"]
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise DetectionError(f"{path} is not a detection memory file ({exc})") from exc
        if header.get("format") != _FORMAT:
            raise DetectionError(
                f"{path}: unknown detection memory format {header.get('format')!r}"
            )
        try:
            memory = cls._from_parts(header, bits, digests, answers)
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise DetectionError(f"{path} is a damaged detection memory file ({exc})") from exc
        if key_id is not None:
            memory.check_key(key_id)
        return memory

    @classmethod
    def _from_parts(
        cls, header: dict[str, Any], bits: np.ndarray, digests: np.ndarray, answers: np.ndarray
    ) -> DetectionMemory:
        memory = cls(
            str(header["key_id"]), capacity=int(header["capacity"]), repeats=int(header["repeats"])
        )
        if bits.size and (bits.size * 64 != int(memory._mask) + 1 or bits.dtype != np.uint64):
            raise ValueError("the filter's size does not match its capacity")
        if digests.ndim != 2 or digests.shape[1] != 16 or answers.shape != (len(digests), 2):
            raise ValueError("the table of answers is malformed")
        memory._bits = bits.copy() if bits.size else None
        for digest, (score, count) in zip(digests, answers, strict=True):
            memory._answers[bytes(digest)] = (float(score), int(count))
        memory.pairs, memory.skipped, memory.texts = (
            int(header["pairs"]),
            int(header["skipped"]),
            int(header["texts"]),
        )
        return memory

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], key_id: str, *, capacity: int = DEFAULT_MEMORY_CAPACITY
    ) -> DetectionMemory:
        """The memory saved at ``path`` for ``key_id``, or a new one if the file does not exist."""
        if Path(path).exists():
            return cls.load(path, key_id=key_id)
        return cls(key_id, capacity=capacity)

    @classmethod
    def open_in(
        cls,
        folder: str | os.PathLike[str],
        key_id: str,
        *,
        capacity: int = DEFAULT_MEMORY_CAPACITY,
    ) -> DetectionMemory:
        """The memory of ``key_id`` in a memory folder (created with mode 0700 if missing).

        The layout ``safeguard detect --memory DIR`` and the detection service share: one
        ``<key id>.memory.npz`` per key (:func:`memory_file`).
        """
        path = Path(folder)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"the detection memory folder {path} must be a folder; it is a file")
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls.open(memory_file(path, key_id), key_id, capacity=capacity)


def memory_file(folder: str | os.PathLike[str], key_id: str) -> Path:
    """Where the memory of ``key_id`` lives in a memory folder."""
    return Path(folder) / f"{key_id}.memory.npz"
