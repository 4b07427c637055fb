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


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and shows each option's default unless its help does."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or default in ([], ())
            or not action.option_strings
        ):
            return action.help
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors exit with code 2, a one-line hint and a suggestion."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        hint = _suggestion(self, message)
        sys.stderr.write(f"safeguard: error: {message}{hint}\n")
        raise SystemExit(EXIT_USAGE)


def _suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    """``; did you mean 'detect'?`` for a mistyped verb or option, else ``""``."""
    import difflib
    import re

    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if choice:
        known = re.findall(r"'([^']*)'", choice.group(2)) or [
            c.strip() for c in choice.group(2).split(",")
        ]
        close = difflib.get_close_matches(choice.group(1), known, n=1, cutoff=0.6)
        return f"; did you mean {close[0]!r}?" if close else ""
    unknown = re.search(r"unrecognized arguments: (\S+)", message)
    if unknown and unknown.group(1).startswith("-"):
        options = [o for a in parser._actions for o in a.option_strings]
        for sub in parser._subparsers._group_actions if parser._subparsers else []:
            for child in getattr(sub, "choices", {}).values():
                options += [o for a in child._actions for o in a.option_strings]
        close = difflib.get_close_matches(unknown.group(1).split("=")[0], options, n=1, cutoff=0.6)
        return f"; did you mean {close[0]!r}?" if close else ""
    return ""


def _format_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """One line per warning, without the source file and line a user cannot act on."""
    kind = "" if category is UserWarning else f"{category.__name__}: "
    return f"safeguard: warning: {kind}{message}\n"


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
    _describe(sub)
    return parser


def _describe(sub: argparse._SubParsersAction) -> None:
    """Give every verb (and sub-verb) without a description its one-line help as one."""
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, child in sub.choices.items():
        if not child.description and helps.get(name):
            child.description = helps[name]
        if child._subparsers is not None:
            for action in child._subparsers._group_actions:
                if isinstance(action, argparse._SubParsersAction):
                    _describe(action)


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
    import warnings

    previous = warnings.formatwarning
    warnings.formatwarning = _format_warning
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader went away (`safeguard keygen ... | head -3`): what it read is all it
        # wanted. Point stdout at /dev/null so the interpreter's final flush stays quiet.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
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
    finally:
        warnings.formatwarning = previous


def run() -> None:  # pragma: no cover - thin wrapper for `python -m safeguard`
    raise SystemExit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
