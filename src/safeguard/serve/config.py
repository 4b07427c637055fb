"""The server configuration (``server.yaml``): key store, tokenizers, tenants, limits.

Only hashes of the bearer tokens are stored (``sha256:<hex>``); the tokens themselves are
shown once, by ``safeguard serve-token``. Relative paths are resolved against the folder of
the configuration file.

Example::

    schema_version: 1
    key_store: keys/                  # folder of watermark key files (*.json, mode 0600)
    tokenizers: [tokenizers/gpt2]     # matched to keys by vocabulary fingerprint
    policy: moderation                # default false-positive rate from its watermark section
    limits: {max_texts: 256, max_chars_per_text: 32000}
    tenants:
      - name: trust-and-safety
        token_sha256: "sha256:9f86d0..."
        keys: [wm-0123456789abcdef]
        rate_limit: {requests_per_second: 20, burst: 40}
        max_in_flight: 4              # detection requests of this tenant at once; more get 429
        detail: decision              # verdicts only; `statistics` adds coarse p-values (trusted callers)
        texts_per_key_per_day: 1000   # probing budget per key; more get 429
    detection_memory: memory/         # optional: each (context, token) pair scored once per key
    auth_throttle: {max_failures: 10, window_seconds: 60}   # per client address
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from safeguard.errors import ConfigError

__all__ = [
    "KEY_ID_PATTERN",
    "AuthThrottle",
    "Limits",
    "RateLimit",
    "ServerConfig",
    "Tenant",
    "generate_token",
    "hash_token",
    "load_config",
]

#: Shape of a watermark key id (``WatermarkKey.key_id``).
KEY_ID_PATTERN = r"^wm-[0-9a-f]{16}$"
_TOKEN_HASH_PATTERN = r"^sha256:[0-9a-f]{64}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimit(_Model):
    """A token bucket per tenant: ``burst`` requests at once, refilled at ``requests_per_second``.

    Attributes:
        requests_per_second: Sustained request rate.
        burst: Requests that may arrive at once after an idle period.
    """

    requests_per_second: float = Field(default=10.0, gt=0, le=1e6)
    burst: int = Field(default=20, ge=1, le=1_000_000)


class AuthThrottle(_Model):
    """Failed authentications allowed per client address before it is refused with 429.

    A token bucket per address: ``max_failures`` failures at once, refilled over
    ``window_seconds``. While an address is throttled, its requests are refused before the
    token is checked, whichever token they carry. The address is the TCP peer, or the
    ``X-Forwarded-For`` client when uvicorn trusts the proxy (``--forwarded-allow-ips``);
    behind an untrusted proxy every caller shares the proxy's address.

    Attributes:
        max_failures: Failures an address may have at once.
        window_seconds: Seconds for its allowance to refill completely.
        max_addresses: Addresses tracked at most (least recently failed dropped first).
    """

    max_failures: int = Field(default=10, ge=1, le=1_000_000)
    window_seconds: float = Field(default=60.0, gt=0, le=86_400)
    max_addresses: int = Field(default=65_536, ge=1, le=10_000_000)


class Limits(_Model):
    """Per-request limits; a request over any of them is refused with 413.

    Attributes:
        max_body_bytes: Size of the HTTP body.
        max_texts: Texts in one request.
        max_chars_per_text: Characters of one text (or prompt).
        max_total_chars: Characters over all texts and prompts of one request.
        max_keys: Key ids named in one request.
    """

    max_body_bytes: int = Field(default=4 << 20, ge=1024, le=1 << 30)
    max_texts: int = Field(default=256, ge=1, le=100_000)
    max_chars_per_text: int = Field(default=32_000, ge=1, le=10_000_000)
    max_total_chars: int = Field(default=1_000_000, ge=1, le=100_000_000)
    max_keys: int = Field(default=16, ge=1, le=1024)


class Tenant(_Model):
    """A caller of the service.

    Attributes:
        name: Shown in logs (never the token).
        token_sha256: ``sha256:<hex>`` of the tenant's bearer token.
        keys: Key ids from the key store this tenant may test against.
        rate_limit: The tenant's request budget.
        max_in_flight: Detection requests of this tenant the service works on at once (from
            reading the body to the response); more are refused with 429 and ``Retry-After``,
            so one tenant cannot take every worker thread.
        detail: ``decision`` (the default) returns only the verdict of each text at the
            requested rate: a forger gets no gradient to climb. ``statistics`` adds p-values
            rounded up to a fixed grid (still valid p-values; never scores or per-token values)
            for callers trusted like key holders: even coarse p-values let a caller hill-climb
            a forgery within about a thousand queries (``tests/unit/serve/test_probing.py``).
        texts_per_key_per_day: Texts this tenant may have tested against each key in any 24
            hours; more are refused with 429 and ``Retry-After``. It bounds what a caller
            holding a token can learn about a key by probing the detector.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    token_sha256: str = Field(pattern=_TOKEN_HASH_PATTERN)
    keys: tuple[str, ...] = Field(min_length=1)
    rate_limit: RateLimit = RateLimit()
    max_in_flight: int = Field(default=4, ge=1, le=1024)
    detail: Literal["statistics", "decision"] = "decision"
    texts_per_key_per_day: int = Field(default=1000, ge=1, le=1_000_000_000)

    @field_validator("keys")
    @classmethod
    def _key_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key_id in value:
            if not re.match(KEY_ID_PATTERN, key_id):
                raise ValueError(
                    f"key id {key_id!r} is not a watermark key id (wm- and 16 hex digits); "
                    "copy it from `safeguard keygen` output"
                )
        return value


class ServerConfig(_Model):
    """Everything ``safeguard serve`` needs.

    Attributes:
        schema_version: Version of this schema (currently 1).
        host: Interface to listen on (default loopback only).
        port: TCP port.
        key_store: Folder of watermark key files (``*.json``).
        tokenizers: Tokenizer (or model) folders; each key uses the one whose vocabulary
            fingerprint it is bound to.
        default_tokenizer: Tokenizer for keys that are not bound to one.
        policy: Policy whose ``watermark.false_positive_rate`` is the default rate.
        false_positive_rate: Default rate; overrides the policy's.
        max_false_positive_rate: Largest rate a caller may ask for.
        limits: Per-request limits.
        tenants: Callers and the keys each may use.
        auth_throttle: Failed authentications allowed per client address.
        detect_threads: Threads one request's batch detection may use.
        openapi: Serve ``/openapi.json`` and ``/docs``.
        allow_legacy_prf_keys: Serve keys of PRF version 1, whose detection answers leak
            the key (two answers in one context recover every value of that context). Off:
            such keys are refused at start-up; re-create them (``safeguard keygen``).
        detection_memory: Folder of detection memories, one per ``gumbel`` key
            (``<key id>.memory.npz``, mode 0600; :class:`safeguard.watermark.DetectionMemory`).
            Set, each (context, token) pair is scored once per key over every text the
            service tests, so the false-positive count under each key is binomial whatever
            the texts share, and a probe learns each pair's value at most once; a text asked
            about again gets its earlier answer. The cost: a near-copy of a text seen before
            is tested on its new pairs only. Saved every ``memory_save_seconds`` and at
            shutdown. Unset (default): stateless detection.
        detection_memory_capacity: Pairs each memory holds at its stated false-hit rate
            (16 bits each; default 2**24, 32 MiB per key).
        memory_save_seconds: Save the memories at most this often (after a request).
    """

    schema_version: Literal[1] = 1
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    key_store: Path
    tokenizers: tuple[Path, ...] = ()
    default_tokenizer: Path | None = None
    policy: str | None = "moderation"
    false_positive_rate: float | None = Field(default=None, gt=0, lt=1)
    max_false_positive_rate: float = Field(default=0.1, gt=0, lt=1)
    limits: Limits = Limits()
    tenants: tuple[Tenant, ...] = Field(min_length=1)
    auth_throttle: AuthThrottle = AuthThrottle()
    detect_threads: int = Field(default=1, ge=1, le=256)
    openapi: bool = True
    allow_legacy_prf_keys: bool = False
    detection_memory: Path | None = None
    detection_memory_capacity: int = Field(default=1 << 24, ge=1024, le=1 << 34)
    memory_save_seconds: float = Field(default=60.0, ge=0)

    @model_validator(mode="after")
    def _unique(self) -> ServerConfig:
        names = [t.name for t in self.tenants]
        if len(set(names)) != len(names):
            raise ValueError(f"tenant names must be unique; got {names}")
        hashes = [t.token_sha256 for t in self.tenants]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two tenants share one token hash; give each tenant its own token")
        return self

    def default_false_positive_rate(self) -> float:
        """The rate used when a request names none: ``false_positive_rate``, else the
        policy's ``watermark.false_positive_rate``, else 1e-3."""
        if self.false_positive_rate is not None:
            return self.false_positive_rate
        if self.policy:
            from safeguard.policy import load_policy

            policy = load_policy(self.policy)
            if policy.watermark is not None:
                return float(policy.watermark.false_positive_rate)
        return 1e-3

    def resolve_paths(self, base: Path) -> ServerConfig:
        """Return a copy whose relative paths are taken relative to ``base``."""

        def fix(p: Path | None) -> Path | None:
            return None if p is None else (p if p.is_absolute() else base / p)

        return self.model_copy(
            update={
                "key_store": fix(self.key_store),
                "tokenizers": tuple(fix(p) for p in self.tokenizers),
                "default_tokenizer": fix(self.default_tokenizer),
                "detection_memory": fix(self.detection_memory),
            }
        )


def hash_token(token: str) -> str:
    """``sha256:<hex>`` of a bearer token, the form stored in the configuration."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def generate_token() -> tuple[str, str]:
    """A fresh random bearer token (256 bits, URL-safe) and its hash for the configuration."""
    token = "sgt_" + secrets.token_urlsafe(32)
    return token, hash_token(token)


def load_config(path: str | Path) -> ServerConfig:
    """Read and validate ``server.yaml``.

    Raises:
        ConfigError: The file is missing, not YAML, or violates the schema (every problem is
            listed with its location).
    """
    source = Path(path)
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"server config {str(source)!r} does not exist; pass --config with a YAML file"
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"cannot read server config {str(source)!r}: {type(exc).__name__}"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"server config {str(source)!r} must be a YAML mapping")
    try:
        config = ServerConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"server config {str(source)!r} is invalid: {problems}") from None
    return config.resolve_paths(source.resolve().parent)
