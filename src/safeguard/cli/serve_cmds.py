"""``safeguard serve | serve-token``: the HTTP detection service and its bearer tokens.

    safeguard serve --config server.yaml [--host 127.0.0.1] [--port 8000]
    safeguard serve-token          # prints a new token (give it to the caller) and its hash

Exit codes: 0 clean shutdown; 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the HTTP watermark detection service",
        description="Serve POST /v1/detect, GET /v1/keys and GET /healthz with uvicorn.",
    )
    p.add_argument("--config", required=True, help="server YAML (keys, tokenizers, tenants)")
    p.add_argument("--host", help="interface to listen on (default: the config's, 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default: the config's, 8000)")
    p.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="log level of the service (default info)",
    )
    p.set_defaults(func=_serve)

    t = subparsers.add_parser(
        "serve-token",
        help="create a bearer token for a tenant of `safeguard serve`",
        description=(
            "Print a new random bearer token and the sha256 hash to put in the server config "
            "(`tenants[].token_sha256`). The token is shown only this once."
        ),
    )
    t.set_defaults(func=_serve_token)


def _serve(args: argparse.Namespace) -> int:
    import logging

    from safeguard.errors import ConfigError, missing_dependency
    from safeguard.serve import create_app, load_config

    try:
        import uvicorn
    except ImportError as exc:
        raise missing_dependency("uvicorn", "serve") from exc
    config = load_config(args.config)
    if args.port is not None and not 0 <= args.port <= 65535:
        raise ConfigError(f"--port (={args.port}) must be in 0..65535")
    host = args.host or config.host
    port = config.port if args.port is None else args.port
    level = getattr(logging, args.log_level.upper())
    logging.getLogger("safeguard").setLevel(level)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.setLevel(min(handler.level or level, level))
    app = create_app(config)
    sys.stderr.write(f"safeguard serve: listening on http://{host}:{port}\n")
    uvicorn.run(app, host=host, port=port, log_level=args.log_level, access_log=False)
    return 0


def _serve_token(args: argparse.Namespace) -> int:
    from safeguard.serve import generate_token

    token, digest = generate_token()
    sys.stdout.write(json.dumps({"token": token, "token_sha256": digest}, indent=2) + "\n")
    return 0
