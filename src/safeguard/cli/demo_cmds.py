"""``safeguard demo``: the main job on embedded defaults."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the healthcare story end to end on bundled fictional notes and a tiny local model",
    )
    p.add_argument(
        "--out",
        default="safeguard-demo",
        help="folder for every artifact (default: ./safeguard-demo)",
    )
    p.add_argument(
        "--notes", type=int, default=120, help="number of fictional clinical notes (default 120)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from safeguard.cli.main import main
    from safeguard.demo.run import format_table, run_demo

    def echo(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    # The demo runs its verbs through this CLI's entry point, in this process (libraries
    # load once); the demo itself never imports the CLI.
    summary = run_demo(args.out, notes=args.notes, seed=args.seed, echo=echo, verbs=main)
    print(format_table(summary))
    return 0 if summary.ok else 1
