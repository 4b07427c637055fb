"""The key store of the service: watermark keys, their tokenizers, and which tenant sees which.

Keys are read once at start-up from a folder of key files. Each key is paired with the
tokenizer its ``tokenizer_fingerprint`` names (or the default tokenizer for unbound keys),
so a text is always tokenized the way the key's generations were.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeguard._files import warn_if_readable_by_others
from safeguard.errors import ConfigError, KeyFileError
from safeguard.serve.config import ServerConfig

__all__ = ["KeyEntry", "KeyRing", "MemorySaver"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyEntry:
    """One usable key: the detector and the tokenizer it needs.

    Attributes:
        key_id: Public id of the key.
        scheme: Scheme name.
        tokenizer_id: Fingerprint of the tokenizer (``default`` for unbound keys).
        watermarker: ``Watermarker`` for the key.
        tokenizer: Tokenizer with ``__call__(text, add_special_tokens=False)``.
        memory: The key's ``DetectionMemory`` (``detection_memory`` set, gumbel keys), or None.
    """

    key_id: str
    scheme: str
    tokenizer_id: str
    watermarker: Any
    tokenizer: Any
    memory: Any = None

    def __repr__(self) -> str:
        return f"KeyEntry({self.key_id}, scheme={self.scheme}, tokenizer={self.tokenizer_id})"


def _memory(config: ServerConfig, key: Any) -> Any:
    """The key's detection memory when ``detection_memory`` is set (gumbel keys), else None."""
    if config.detection_memory is None or key.scheme != "gumbel":
        return None
    from safeguard.watermark import DetectionMemory

    return DetectionMemory.open_in(
        config.detection_memory, key.key_id, capacity=config.detection_memory_capacity
    )


class KeyRing:
    """Keys by id, and for each tenant the ids it may use.

    Args:
        entries: Usable keys by id.
        tenant_keys: Tenant name -> key ids (every id is in ``entries``).
    """

    def __init__(self, entries: dict[str, KeyEntry], tenant_keys: dict[str, tuple[str, ...]]):
        self._entries = entries
        self._tenant_keys = tenant_keys

    @classmethod
    def from_config(cls, config: ServerConfig) -> KeyRing:
        """Load the keys and tokenizers that the tenants of ``config`` need.

        Raises:
            ConfigError: The key store is missing, a tenant names a key that is not in it,
                or a key's tokenizer is not among the configured tokenizers.
        """
        from safeguard.watermark import Watermarker, WatermarkKey
        from safeguard.watermark.keys import tokenizer_fingerprint
        from safeguard.watermark.tokenizer import load_tokenizer

        store = Path(config.key_store)
        if not store.is_dir():
            raise ConfigError(
                f"`key_store` ({str(store)!r}) is not a folder; point it at the folder of key files"
            )
        wanted = {k for t in config.tenants for k in t.keys}
        keys: dict[str, Any] = {}
        for path in sorted(store.glob("*.json")):
            try:
                key = WatermarkKey.load(path)
            except KeyFileError as exc:
                log.warning("key store: skipping %s: %s", path.name, exc)
                continue
            if key.key_id not in wanted:
                continue
            if key.prf_version < 2 and not config.allow_legacy_prf_keys:
                raise ConfigError(
                    f"key {key.key_id} ({path.name}) uses PRF version {key.prf_version}, whose "
                    "detection answers leak the key to a caller who probes the service; create a "
                    "new key with `safeguard keygen` (version 2), or set `allow_legacy_prf_keys: "
                    "true` while you migrate"
                )
            warn_if_readable_by_others(path, f"key file (key {key.key_id})", logger=log)
            keys[key.key_id] = key
        missing = sorted(wanted - keys.keys())
        if missing:
            raise ConfigError(
                f"tenants name key ids {missing} that are not in the key store {str(store)!r}; "
                "copy their key files there or remove the ids from `tenants[].keys`"
            )

        tokenizers: dict[str, Any] = {}
        for folder in config.tokenizers:
            tok = load_tokenizer(folder)
            tokenizers[tokenizer_fingerprint(tok)] = tok
        default = load_tokenizer(config.default_tokenizer) if config.default_tokenizer else None

        entries: dict[str, KeyEntry] = {}
        for key_id, key in sorted(keys.items()):
            fp = key.tokenizer_fingerprint
            if fp is None:
                if default is None:
                    raise ConfigError(
                        f"key {key_id} is not bound to a tokenizer and `default_tokenizer` is not "
                        "set; set it to the folder of the tokenizer used at generation"
                    )
                tok, tok_id = default, "default"
            else:
                if fp not in tokenizers:
                    raise ConfigError(
                        f"key {key_id} is bound to tokenizer {fp}, which is none of `tokenizers` "
                        f"({sorted(tokenizers) or 'none configured'}); add the tokenizer folder "
                        "used at generation to `tokenizers`"
                    )
                tok, tok_id = tokenizers[fp], fp
            entries[key_id] = KeyEntry(
                key_id, key.scheme, tok_id, Watermarker(key), tok, _memory(config, key)
            )
        log.info("key store: %d keys, %d tokenizers", len(entries), len(tokenizers))
        return cls(entries, {t.name: tuple(t.keys) for t in config.tenants})

    def save_memories(self, folder: Path | None) -> None:
        """Write every key's detection memory into ``folder`` (no-op without one)."""
        if folder is None:
            return
        from safeguard.watermark.memory import memory_file

        for entry in self._entries.values():
            if entry.memory is not None:
                entry.memory.save(memory_file(folder, entry.key_id))

    def keys_of(self, tenant: str) -> tuple[str, ...]:
        """Key ids ``tenant`` may use, in configuration order."""
        return self._tenant_keys.get(tenant, ())

    def get(self, tenant: str, key_id: str) -> KeyEntry | None:
        """The key ``key_id`` if ``tenant`` may use it, else ``None`` (whether or not it exists)."""
        if key_id not in self._tenant_keys.get(tenant, ()):
            return None
        return self._entries.get(key_id)

    def __len__(self) -> int:
        return len(self._entries)


class MemorySaver:
    """Saves the keys' detection memories at most every ``every`` seconds, and on demand.

    Args:
        ring: The keys (entries without a memory are skipped).
        folder: ``detection_memory`` of the configuration (None: nothing to save).
        every: Least seconds between two saves from :meth:`maybe_save`.
        clock: Monotonic clock.
    """

    def __init__(self, ring: KeyRing, folder: Path | None, every: float, clock: Any) -> None:
        self.ring, self.folder, self.every, self.clock = ring, folder, every, clock
        self._last = clock()
        self._lock = threading.Lock()

    def maybe_save(self) -> None:
        """Save if the last save is ``every`` seconds old (one saver at a time; others skip)."""
        if self.folder is None or self.clock() - self._last < self.every:
            return
        if self._lock.acquire(blocking=False):
            try:
                self._last = self.clock()
                self.ring.save_memories(self.folder)
            finally:
                self._lock.release()

    def save(self) -> None:
        with self._lock:
            self.ring.save_memories(self.folder)
            self._last = self.clock()
