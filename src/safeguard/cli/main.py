"""Entry point of the ``safeguard`` command.

Each verb lives in its own module under :mod:`safeguard.cli` and exposes
``register(subparsers) -> None``, which adds an ``argparse`` sub-parser whose
``func`` default takes the parsed namespace and returns an exit code. Verb
modules are listed explicitly in :data:`VERBS`; heavy libraries are imported
inside the verb's function, never at module import.

Exit codes: 0 ok, 1 a finding or a failed check, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from safeguard import __version__
from safeguard.errors import DependencyError, SafeguardError, UsageError, VerificationError

EXIT_OK = 0
EXIT_FINDING = 1
EXIT_USAGE = 2

#: Verb modules, in the order they appear in ``safeguard --help``.
VERBS: tuple[str, ...] = (
    "safeguard.cli.watermark_cmds",
    "safeguard.cli.manifest_cmds",
    "safeguard.cli.policy_cmds",
    "safeguard.cli.demo_cmds",
    "safeguard.cli.scrub_cmds",
    "safeguard.cli.train_cmds",
    "safeguard.cli.serve_cmds",
    "safeguard.cli.eval_cmds",
)

log = logging.getLogger("safeguard")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors exit with code 2 and a one-line hint."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"safeguard: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="safeguard",
        description="Responsible-AI safeguards: watermarks, DP fine-tuning, PII scrubbing, provenance.",
    )
    parser.add_argument("--version", action="version", version=f"safeguard {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for name in VERBS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (also used as the console-script entry point)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except VerificationError as exc:
        sys.stderr.write(f"safeguard {args.verb}: verification failed: {exc}\n")
        return EXIT_FINDING
    except (
        UsageError,
        DependencyError,
        FileNotFoundError,
        IsADirectoryError,
        PermissionError,
    ) as exc:
        sys.stderr.write(f"safeguard {args.verb}: error: {exc}\n")
        return EXIT_USAGE
    except SafeguardError as exc:
        sys.stderr.write(f"safeguard {args.verb}: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


def run() -> None:  # pragma: no cover - thin wrapper for `python -m safeguard`
    raise SystemExit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
