"""The watermark detection service for moderation pipelines (FastAPI + uvicorn, extra ``serve``).

>>> from safeguard.serve import load_config, create_app        # doctest: +SKIP
>>> app = create_app(load_config("server.yaml"))                # doctest: +SKIP

``safeguard serve --config server.yaml`` runs it with uvicorn. Importing this package loads
neither FastAPI nor torch/transformers; :func:`create_app` imports FastAPI, and tokenizers
are loaded with :func:`safeguard.watermark.tokenizer.load_tokenizer`.
"""

from __future__ import annotations

from typing import Any

from safeguard.serve.config import (
    AuthThrottle,
    Limits,
    RateLimit,
    ServerConfig,
    Tenant,
    generate_token,
    hash_token,
    load_config,
)

__all__ = [
    "AuthThrottle",
    "Limits",
    "RateLimit",
    "ServerConfig",
    "Tenant",
    "create_app",
    "generate_token",
    "hash_token",
    "load_config",
]


def create_app(config: ServerConfig, **kwargs: Any) -> Any:
    """Build the FastAPI application (see :func:`safeguard.serve.app.create_app`)."""
    from safeguard.serve.app import create_app as _create_app

    return _create_app(config, **kwargs)
