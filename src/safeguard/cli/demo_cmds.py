"""``safeguard demo``: the main job on embedded defaults."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the end-to-end demo on bundled data and a tiny local model"
    )
    p.add_argument(
        "--out",
        default="safeguard-demo",
        help="folder for every artifact (default: ./safeguard-demo)",
    )
    p.add_argument("--scheme", default="gumbel", help="watermark scheme (default: gumbel)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from safeguard.demo.run import format_table, run_demo

    summary = run_demo(args.out, scheme=args.scheme, seed=args.seed)
    print(format_table(summary))
    ok = (
        summary.flagged_watermarked == len(summary.watermarked_p_values)
        and summary.flagged_plain == 0
    )
    return 0 if ok else 1
